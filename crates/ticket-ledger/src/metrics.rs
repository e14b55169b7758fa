//! What the ledger holds in total and how the store is batching, for `/metrics`.

/// What the ledger holds in total, and how the store is batching, for `/metrics`.
///
/// The sums are floating point (Prometheus gauges are anyway): reading them must not fail on
/// any state the ledger holds. Within the bounds ([`crate::limits`]) an `i64` sum would need
/// more than nine billion orders of the largest size to overflow, but a ledger written before
/// the bounds can hold a code of capacity `i64::MAX`, and two of them made an integer `SUM`
/// fail and `/metrics` report `ticketd_ledger_up 0`. A float sum of `i64` values cannot
/// overflow (`f64` reaches 10³⁰⁸); it is exact up to 2⁵³ ≈ 9 × 10¹⁵ and rounds beyond.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreMetrics {
    /// Orders in the ledger.
    pub orders: i64,
    /// Uses issued over all vouchers.
    pub capacity: f64,
    /// Uses recorded over all vouchers.
    pub used: f64,
    /// Tickets refunded over all orders.
    pub refunded_tickets: f64,
    /// Anomalies waiting for an operator.
    pub open_anomalies: i64,
    /// Group commit: transactions committed, jobs run, and the largest batch (stores that
    /// batch writes; `None` elsewhere).
    pub batches: Option<BatchStats>,
    /// Times the store closed the MySQL/MariaDB tables whose triggers had failed to load in
    /// the server, so that it loads them again (a Galera node after a state transfer); 0 on
    /// other engines. Each is a moment the server refused writes to those tables.
    pub trigger_reloads: u64,
    /// Such closings that failed (the `RELOAD` privilege is missing): the server goes on
    /// refusing writes to those tables until an operator closes them.
    pub failed_trigger_reloads: u64,
}

/// Group-commit counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions that failed as a whole (their jobs were answered with an error, or run
    /// again one by one).
    pub failed_batches: u64,
    /// Jobs run.
    pub jobs: u64,
    /// The most jobs one transaction carried.
    pub largest_batch: u64,
    /// fsyncs that made committed transactions durable (several transactions may share one).
    pub syncs: u64,
    /// Writes waiting for a batch right now.
    pub queued: u64,
    /// Folds of the lookups keyed by order, on a store that builds them in bulk (SQLite's
    /// `fold`); 0 on one that keeps them as indexes.
    pub folds: u64,
    /// Uses added to the stored counters from the use log (SQLite, whose counters are folded).
    pub counted_uses: u64,
    /// Transactions run again from their start with a savepoint for each write, because a
    /// write that runs without one (SQLite's verifies) failed after it had written; 0 on a
    /// store without such writes.
    pub guarded_reruns: u64,
}
