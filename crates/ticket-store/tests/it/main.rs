//! ticket-store's integration tests, one binary: one link instead of one per file.
//!
//! - `suite`: the shared behaviour suite from `ticket-ledger`, run against [`SqliteStore`].
//! - `ci_script`: `.ci/run` sets `CI` itself, so the database tests below can never be skipped
//!   in CI.
//! - `durability`: settings really in effect, reopening, migrations, file modes, URLs, the
//!   constraints that back the code up.
//! - `engines`: the suite and engine-specific cases on the real PostgreSQL and MariaDB/MySQL
//!   servers (a scratch database per run; skipped with a note when no server runs, unless
//!   `CI` is set).
//! - `group_commit`: racing writes through the single writer.
//! - `store`: SQLite-specific behaviour of reads (app cache, audit limits, instants).
//!
//! [`SqliteStore`]: ticket_store::SqliteStore

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(unix)]
mod ci_script;
mod durability;
mod engines;
mod group_commit;
mod store;
mod suite;
mod support;
