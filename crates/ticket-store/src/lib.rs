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
//! - [`SqliteStore`] (default, embedded): one file, WAL mode, `synchronous=FULL`. Opened from a
//!   path ([`SqliteStore::open`]) or a `sqlite:` URL ([`SqliteStore::open_url`]).
//!
//! # Design of the SQLite store
//!
//! - **Durability.** An `Ok` from any write means the transaction committed and SQLite fsynced
//!   the WAL. A refused or failed write leaves nothing behind.
//! - **One writer, group commit.** A dedicated OS thread owns the only write connection; every
//!   write is a job queued to it. It runs all the jobs already waiting in one `BEGIN IMMEDIATE`
//!   transaction, each in its own savepoint (a refused job rolls back only itself), commits
//!   once, and answers the jobs only after the commit succeeded. One fsync then serves many
//!   requests, which is how the store is fast without weakening durability. Serialising writes
//!   also serialises verifies of one order, so capacity can never be overrun; a conditional
//!   `UPDATE … WHERE used + n <= capacity` and a `CHECK` constraint back that up.
//! - **Reads beside writes.** `app`, `order`, `audit` and `ping` use a small pool of read-only
//!   connections on blocking threads and see the last committed snapshot without queueing
//!   behind writes. Apps, read on every gateway request, are also cached in memory.
//! - **Schema.** Embedded, append-only migrations (`migrations/sqlite/`); instants are UTC
//!   milliseconds in INTEGER columns; the audit trail is append-only, enforced by triggers.
//! - **Shutdown.** [`SqliteStore::close`] commits what is queued and waits for the writer.
//!
//! # Modules
//!
//! - `sqlite`: [`SqliteStore`] and its writer thread, reader pool, SQL, migrations and URL
//!   parsing.
//! - `error`: [`StoreError`], why a store could not be opened. Once open, a store answers with
//!   [`ticket_ledger::LedgerError`] like every backend.

mod error;
mod sqlite;

pub use error::StoreError;
pub use sqlite::{ConnectionSettings, SqliteStore, WriterStats};
