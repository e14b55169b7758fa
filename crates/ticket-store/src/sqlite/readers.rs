//! A small pool of read-only connections.
//!
//! Reads never queue behind the writer: in WAL mode a reader sees the last committed snapshot
//! while the writer appends to the log, so each read simply borrows a connection, runs on a
//! blocking thread (SQLite calls block), and gives it back. Connections are opened on demand
//! and at most [`MAX_IDLE`] are kept, so a burst of reads costs a few extra opens rather than a
//! queue. The pool is a `std::sync::Mutex` because it is held only to push or pop a `Vec`,
//! never across a query or an `.await`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use ticket_ledger::LedgerError;

use super::rows::During;
use super::STATEMENT_CACHE;

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 4;

/// Page cache of each read connection (1 MiB). Reads are admin and readiness queries whose
/// pages the OS caches anyway; a small bound keeps the pool's memory flat (4 MiB at most)
/// however large the ledger and its histories grow.
const READER_CACHE_KIB: i64 = 1024;

/// Read-only connections to one database file.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    /// How long a read waits for a lock (see `SqliteOptions::busy_timeout`).
    busy_timeout: Duration,
    /// Idle connections; see the module docs for why a plain mutex.
    idle: Mutex<Vec<Connection>>,
    /// Set by [`Readers::close`]: later reads are refused and returned connections dropped.
    closed: AtomicBool,
}

impl Readers {
    /// A pool for `path`, opening one connection now so that a file readers cannot open fails
    /// the store's `open` rather than its first read.
    pub(crate) fn new(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Self> {
        let first = open(path, busy_timeout)?;
        Ok(Self {
            path: path.to_owned(),
            busy_timeout,
            idle: Mutex::new(vec![first]),
            closed: AtomicBool::new(false),
        })
    }

    /// Runs `f` on a pooled connection. Blocking: call from `spawn_blocking`.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LedgerError::Unavailable("the ledger is closed".into()));
        }
        let pooled = self.lock().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => open(&self.path, self.busy_timeout).during("opening a read connection")?,
        };
        let result = f(&mut conn);
        // Hand the connection's cached pages back to the allocator. Reads are rare (admin
        // views, the app refresh every few seconds) and the OS caches the file anyway. Kept,
        // they added up: the refresh allocated three pages each time and freed none (perf
        // probes on malloc and free), 0.3 MB a minute in the soak test until about 3 MB
        // (docs/PERFORMANCE.md).
        if let Err(e) = conn.release_memory() {
            tracing::debug!(error = %e, "releasing a read connection's cache");
        }
        if !self.closed.load(Ordering::Acquire) {
            let mut idle = self.lock();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result
    }

    /// Refuses further reads and closes the idle connections.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock().clear();
    }

    /// A poisoned pool only means a thread panicked between a push and a pop; the `Vec` is
    /// still a valid list of connections, so keep using it.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens one read-only connection. Without `SQLITE_OPEN_CREATE`, so a missing file is an error
/// rather than a new empty database, and without URI parsing, so the path is taken literally.
fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A reader waits briefly while a checkpoint or WAL recovery holds the lock.
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    super::plans_independent_of_bindings(&conn)?;
    Ok(conn)
}
