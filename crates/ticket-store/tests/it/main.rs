//! ticket-store's integration tests on libtest's harness, one binary: one link instead of one
//! per file.
//!
//! - `ci_script`: `.ci/run` sets `CI` itself, so the database tests below can never be skipped
//!   in CI.
//! - `durability`: settings really in effect, reopening, migrations, file modes, URLs, the
//!   constraints that back the code up.
//! - `engines`: engine-specific cases on the real PostgreSQL and MariaDB/MySQL
//!   servers (a scratch database per run; skipped with a note when no server runs, unless
//!   `CI` is set).
//! - `fold`: SQLite's lookups keyed by order, read the same across a fold, and a schema 4
//!   ledger upgraded in place.
//! - `group_commit`: racing writes through the single writer.
//! - `store`: SQLite-specific behaviour of reads (app cache, audit limits, instants).
//!
//! The behaviour suite runs on all three stores from its own target, `tests/suite.rs` (its
//! runner is not libtest's harness); `harness` is the store harness both targets share.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(unix)]
mod ci_script;
mod durability;
mod engines;
mod fold;
mod group_commit;
#[path = "../common/harness.rs"]
mod harness;
mod store;
mod support;
