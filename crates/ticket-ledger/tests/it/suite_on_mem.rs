//! The behaviour suite, run against the in-memory test double exactly as a store crate runs it.

use std::sync::Arc;

use crate::mem_store::MemStore;

ticket_ledger::behaviour_suite!(mem, async { Arc::new(MemStore::default()) });

// The store expression may also be a concrete `Arc`; one shared store for every case also
// works, since cases use fresh names (as they would against a shared PostgreSQL database).
static SHARED: std::sync::OnceLock<Arc<MemStore>> = std::sync::OnceLock::new();

ticket_ledger::behaviour_suite!(mem_shared, async {
    Arc::clone(SHARED.get_or_init(|| Arc::new(MemStore::default())))
});
