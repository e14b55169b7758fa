//! The shared behaviour suite (`ticket-ledger-suite`) on every store: SQLite with every case on
//! its own fresh file, then PostgreSQL and MariaDB/MySQL on the real servers, with one scratch
//! database per engine shared by every case (the cases keep apart by their own names).
//!
//! Without a server the PostgreSQL and MySQL cases print how to start it and are reported
//! ignored, unless `CI` is set (then they fail); see `ticket_store::scratch`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;
use std::sync::Arc;

use ticket_ledger_suite::Store;
use ticket_store::scratch::ScratchDatabase;
use ticket_store::{Engine, PoolSettings, SqlStore};

#[path = "common/harness.rs"]
mod harness;

use harness::{Harnessed, TempStore};

/// A SQL store on the engine's shared scratch database, or `None` without a server.
async fn on_server(engine: Engine) -> Option<Arc<Harnessed<SqlStore>>> {
    let db = ScratchDatabase::shared(engine)?;
    // Small pools: many cases run at once against one server.
    let settings = PoolSettings {
        max_connections: 8,
        ..PoolSettings::default()
    };
    let store = SqlStore::connect(db.url(), &settings)
        .await
        .unwrap_or_else(|e| panic!("opening {}: {e}", db.name()));
    Some(Arc::new(Harnessed::sql(store, db.url())))
}

fn main() -> ExitCode {
    ticket_ledger_suite::run([
        Store::new("sqlite", || async {
            let dir = tempfile::tempdir().expect("tempdir");
            let store =
                ticket_store::SqliteStore::open(&dir.path().join("ledger.db")).expect("open");
            // Hold `dir` for as long as the case holds the store; it is removed when the case
            // ends.
            Some(Arc::new(TempStore::new(store, dir)))
        }),
        Store::new("postgres", || on_server(Engine::Postgres)),
        Store::new("mysql", || on_server(Engine::MySql)),
    ])
}
