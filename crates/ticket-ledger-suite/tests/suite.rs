//! The behaviour suite, run against the in-memory test double exactly as a store crate runs it:
//! every case on a store of its own (`mem`), then every case on one store shared by all of them
//! (`mem_shared`), since cases use fresh names, as they would on a shared PostgreSQL database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use ticket_ledger_suite::Store;

#[path = "common/mem_store.rs"]
mod mem_store;

use mem_store::MemStore;

static SHARED: OnceLock<Arc<MemStore>> = OnceLock::new();

fn main() -> ExitCode {
    ticket_ledger_suite::run([
        Store::new("mem", || async { Some(Arc::new(MemStore::default())) }),
        Store::new("mem_shared", || async {
            Some(Arc::clone(
                SHARED.get_or_init(|| Arc::new(MemStore::default())),
            ))
        }),
    ])
}
