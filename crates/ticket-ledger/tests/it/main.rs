//! The crate's one integration-test binary: the tests link once instead of once per file.
//!
//! - `rules`: pure tests of [`ticket_ledger::plan_verify`] — a table walking every verify rule,
//!   and proptest properties over random report sequences.
//! - `planners`: order creation, anomaly resolution, reconciliation as a whole, and the
//!   refundable tickets of an order view.
//! - `bounds`: every planner's bounds on counts, and its checked arithmetic on stored counts
//!   beyond them.
//! - `mem_store` + `suite_on_mem` (feature `suite`): the behaviour suite run against an
//!   in-memory test double, which checks the suite itself; `suite_lists` checks that
//!   `behaviour_suite!` runs every case the suite defines.
//! - `lifecycle` (feature `suite`): a proptest property over random lifecycle sequences (issue,
//!   verify, refunds, reversals, races) on the in-memory store, with the suite's invariants.

mod bounds;
mod planners;
mod rules;

#[cfg(feature = "suite")]
mod lifecycle;
#[cfg(feature = "suite")]
mod mem_store;
#[cfg(feature = "suite")]
mod suite_lists;
#[cfg(feature = "suite")]
mod suite_on_mem;
