//! `ticketd migrate`, `ticketd export` and `ticketd import`: the operator's tools for a
//! ledger's schema and for moving it between backends (SQLite → PostgreSQL, say) without
//! losing an event. Thin shells over `ticket_store::Transfer`; docs/OPERATIONS.md walks through
//! a move.
//!
//! `export` writes JSON lines to stdout and `import` reads them from stdin, so a move is one
//! pipe or two commands with a file between them; what they did (rows per table) goes to
//! stderr, like every log line, so stdout carries nothing but the export.

use std::io::{BufReader, BufWriter};

use anyhow::Context;
use clap::Args;

use crate::server::{open_store, OpenedStore};
use crate::settings::PoolArgs;

/// Which database a maintenance command works on.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// The ledger: `sqlite:///path/ticketd.db`, `postgres://user:pass@host/db`,
    /// `mysql://user:pass@host/db` (see `ticketd serve --help`).
    #[arg(long, env = "TICKETD_DATABASE_URL")]
    pub database_url: String,

    /// Connection pool (PostgreSQL, MySQL/MariaDB).
    #[command(flatten)]
    pub db_pool: PoolArgs,

    /// Log line format (logs go to stderr).
    #[arg(long, env = "TICKETD_LOG_FORMAT", value_enum, default_value_t = crate::settings::LogFormat::Text)]
    pub log_format: crate::settings::LogFormat,
}

async fn open(args: &DatabaseArgs) -> anyhow::Result<OpenedStore> {
    crate::telemetry::init(args.log_format);
    open_store(&args.database_url, &args.db_pool.pool_settings()).await
}

/// `ticketd migrate`: applies the embedded migrations (opening a store does) and prints the
/// schema version.
pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let store = open(&args).await?;
    println!("schema version {}", store.schema_version);
    store.ledger.close().await;
    Ok(())
}

/// `ticketd export > file`: every row, from one snapshot, as JSON lines on stdout.
pub async fn export(args: DatabaseArgs) -> anyhow::Result<()> {
    let store = open(&args).await?;
    let mut out = BufWriter::new(std::io::stdout());
    let result = store.transfer.export(&mut out).await;
    report(&store, result, "exported", "export failed").await
}

/// `ticketd import < file`: writes an export into an empty ledger, all or nothing.
pub async fn import(args: DatabaseArgs) -> anyhow::Result<()> {
    let store = open(&args).await?;
    let mut input = BufReader::new(std::io::stdin());
    let result = store.transfer.import(&mut input).await;
    let failed = "import failed; nothing was written";
    report(&store, result, "imported", failed).await
}

/// Closes the store, then says what was done (rows per table) or why it failed.
async fn report(
    store: &OpenedStore,
    result: Result<ticket_store::transfer::Counts, ticket_store::TransferError>,
    done: &str,
    failed: &'static str,
) -> anyhow::Result<()> {
    store.ledger.close().await;
    let counts = result.context(failed)?;
    eprintln!("ticketd: {done} {}", summary(&counts));
    Ok(())
}

fn summary(counts: &ticket_store::transfer::Counts) -> String {
    counts
        .iter()
        .map(|(table, n)| format!("{n} {table}"))
        .collect::<Vec<_>>()
        .join(", ")
}
