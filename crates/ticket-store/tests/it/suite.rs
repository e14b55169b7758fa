//! The shared behaviour suite (`ticket_ledger::suite`), every case on its own fresh file.

use crate::support::TempStore;

ticket_ledger::behaviour_suite!(sqlite, async {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ticket_store::SqliteStore::open(&dir.path().join("ledger.db")).expect("open");
    // Hold `dir` for as long as the case holds the store; it is removed when the case ends.
    std::sync::Arc::new(TempStore::new(store, dir))
});
