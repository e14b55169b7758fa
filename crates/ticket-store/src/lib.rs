//! Durable storage for the ticket ledger: implementations of [`ticket_ledger::LedgerStore`].
//!
//! The domain (`ticket-ledger`) decides *what* a request changes; this crate makes the change
//! durable and atomic. It holds no business rules: a verify loads the order inside its
//! transaction, calls [`ticket_ledger::plan_verify`], and applies the plan with conditional
//! updates, so every backend gives the same answers and the behaviour suite can hold them to it.
//!
//! Not for: wire formats, authentication, or deciding anything about tickets.
//!
//! # Backends
//!
//! - [`SqliteStore`] (default, embedded): one file, WAL mode, the WAL fsynced before any write
//!   is answered. Opened from a
//!   path ([`SqliteStore::open`]) or a `sqlite:` URL ([`SqliteStore::open_url`]).
//! - [`SqlStore`]: PostgreSQL 12+ (`postgres://`) or MySQL 8.0+ / MariaDB 10.6+ (`mysql://`),
//!   for several ticketd processes sharing one database ([`SqlStore::connect`]). One
//!   implementation over sqlx's `Any` driver; the differences between the two engines are a
//!   `match` on [`Engine`]. Each operation is one transaction that locks its order's row
//!   (`SELECT … FOR UPDATE`), plans with the domain, applies with conditional updates, and is
//!   retried a bounded number of times when the engine reports a serialization failure,
//!   deadlock or lock timeout. A commit whose answer the connection lost is looked up, not
//!   guessed (the `sql::outcome` module docs). See the `sql` module docs and
//!   docs/OPERATIONS.md.
//!
//! Every store also implements [`Transfer`]: a whole-ledger export and import (JSON lines), so
//! an operator can move from one backend to another without losing an event.
//!
//! # Design of the SQLite store
//!
//! - **Durability.** An `Ok` from any write means the transaction committed and the WAL holding
//!   it was fsynced. A refused or failed write leaves nothing behind.
//! - **One writer, group commit.** A dedicated OS thread owns the only write connection; every
//!   write is a job queued to it. It runs all the jobs already waiting in one `BEGIN IMMEDIATE`
//!   transaction, each in its own savepoint (a refused job rolls back only itself; a verify,
//!   which can run again, runs without one, and a verify that fails after writing sends the
//!   batch round again with savepoints), and commits once. A syncer thread fsyncs the WAL and
//!   only then answers the batch's jobs, while the writer already runs the next batch; a
//!   checkpointer thread copies the WAL into the database file. One fsync then serves many
//!   requests, which is how the store is fast without weakening durability. Serialising
//!   writes also serialises verifies of one order, so capacity can never be overrun; a
//!   conditional `UPDATE … WHERE used + n <= capacity` and a `CHECK` constraint back that up.
//! - **Reads beside writes.** `app`, `order`, `audit`, the order and app lists and `ping` use a
//!   small pool of read-only connections on blocking threads and see the last committed
//!   snapshot without queueing behind writes. Apps, read on every gateway request, are also
//!   cached in memory.
//! - **Schema.** Embedded, append-only migrations (`migrations/sqlite/`); instants are UTC
//!   milliseconds in INTEGER columns; the audit trail is append-only, enforced by triggers.
//! - **Shutdown.** [`SqliteStore::close`] commits what is queued and waits for the writer.
//!
//! # Modules
//!
//! - `sqlite`: [`SqliteStore`] and its writer thread, reader pool, SQL, migrations and URL
//!   parsing.
//! - `sql`: [`SqlStore`] for PostgreSQL and MySQL/MariaDB: [`Engine`] (what differs), the
//!   shared SQL of each operation, migrations, retries, and the lookup of a commit whose
//!   answer was lost (`outcome`).
//! - [`transfer`]: [`Transfer`], the export format and its reader/writer.
//! - `plan_rows`: what each write stores, as typed rows built from the domain's plans, and
//!   `statements`: every SQL statement, named once — so each store only loads snapshots and
//!   executes rows;
//! - `rows`: row → domain conversion and the pure helpers every backend shares;
//!   `migrations`: the bookkeeping every backend's migrations share; `apps`: the app cache.
//! - `scratch` (feature `test-support`): a database of its own per test run on the real
//!   servers.
//! - `error`: [`StoreError`], why a store could not be opened. Once open, a store answers with
//!   [`ticket_ledger::LedgerError`] like every backend.

mod apps;
mod error;
mod migrations;
mod plan_rows;
mod rows;
#[cfg(feature = "test-support")]
pub mod scratch;
mod sql;
mod sqlite;
mod statements;
pub mod transfer;

pub use error::StoreError;
pub use sql::{Engine, PoolSettings, SqlStore};
pub use sqlite::{ConnectionSettings, SqliteOptions, SqliteStore, WriterStats};
pub use transfer::{Transfer, TransferError};
