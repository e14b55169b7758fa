//! The crate's one integration-test binary: the tests link once instead of once per file.
//!
//! - `rules`: pure tests of [`ticket_ledger::plan_verify`] — a table walking every verify rule,
//!   and proptest properties over random report sequences.
//! - `planners`: order creation, anomaly resolution, reconciliation as a whole, and the
//!   refundable tickets of an order view.
//! - `bounds`: every planner's bounds on counts, and its checked arithmetic on stored counts
//!   beyond them.
//!
//! The behaviour suite and the in-memory store it is checked against are in the
//! `ticket-ledger-suite` crate.

mod bounds;
mod planners;
mod rules;
