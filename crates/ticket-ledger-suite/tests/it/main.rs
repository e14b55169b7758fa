//! The suite crate's tests with libtest's harness (the suite itself runs in `tests/suite.rs`).
//!
//! - `lifecycle`: a proptest property over random lifecycle sequences (issue, verify, refunds,
//!   reversals, races) on the in-memory store, with the suite's invariants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod lifecycle;
#[path = "../common/mem_store.rs"]
mod mem_store;
