//! Making committed batches durable off the writer thread: the syncer and the checkpointer.
//!
//! With `synchronous=FULL`, SQLite fsyncs the WAL inside `COMMIT`, so the one thread that may
//! write sits idle for every fsync, and also copies WAL pages back into the database file
//! (an automatic checkpoint, with two more fsyncs) inside some commits. Both are moved to
//! threads of their own, without weakening what an answer means:
//!
//! - The write connection runs with `synchronous=NORMAL`: `COMMIT` appends the batch's frames
//!   to the WAL and returns without an fsync. The writer hands the batch, unanswered, to the
//!   **syncer**, and starts the next batch at once.
//! - The syncer calls `fdatasync` on the WAL file (its own descriptor of the same inode, which
//!   flushes every frame written before the call, whoever wrote it), and only then answers the
//!   batch's jobs. Batches waiting together share one fsync. The WAL is read back on recovery
//!   as a chain of checksummed frames, so a crash can never keep a later batch and lose an
//!   earlier one: an answered batch, and everything committed before it, is on disk.
//!   Refusals and replays are answered through the syncer too, because they were decided on
//!   state that is only final once it is durable; only a batch whose commit failed is answered
//!   at once (its callers are told to retry, which is always safe).
//! - The **checkpointer**, with a connection of its own, copies WAL pages into the database
//!   file (`PRAGMA wal_checkpoint(PASSIVE)`: it never blocks the writer), woken whenever the
//!   writer reports [`CHECKPOINT_PAGES`] new pages, and keeps copying until it is less than
//!   that behind. A checkpoint with `synchronous=NORMAL` fsyncs the WAL before it copies and
//!   the database file after, as with `FULL`. When the log has grown past [`RESTART_PAGES`],
//!   the writer itself finishes the checkpoint between two batches (only what the
//!   checkpointer has not copied yet is left), so that its next transaction starts the log
//!   over from its beginning and the WAL file stops growing.
//!
//! If an fsync of the WAL fails, the kernel may already have dropped the pages it could not
//! write and marked them clean, so a later fsync could report success for data that is gone.
//! Nothing can be acknowledged after that: the store turns **broken** (every later write is
//! refused as unavailable, readiness fails) and the process must restart, which recovers from
//! what is really on disk — the stance PostgreSQL took for the same reason.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use rusqlite::Connection;
use ticket_ledger::LedgerError;

use super::writer::{Job, Stats};

/// New WAL pages after which the checkpointer is woken, and how far behind the writer it may
/// stay before it sleeps again (1 MiB of 4 KiB pages; SQLite's own automatic checkpoint waits
/// for 1,000).
pub(crate) const CHECKPOINT_PAGES: i32 = 1000;

/// WAL pages past which the writer finishes a checkpoint itself between batches, so that the
/// log restarts from its beginning (about 128 MiB of WAL at most in normal operation). Each
/// restart holds the writer while it copies what the checkpointer has not yet and fsyncs
/// twice (several milliseconds, felt by every request in flight); a longer log makes that
/// rarer. Measured in docs/PERFORMANCE.md: 8,000 pages put p99 at 30 ms under saturation,
/// 32,000 at 14–15 ms.
pub(crate) const RESTART_PAGES: i32 = 32_000;

/// Committed batches that may wait for the syncer before the writer waits too.
pub(crate) const SYNC_QUEUE: usize = 8;

/// What the syncer calls to make everything committed so far durable.
pub(crate) trait WalSync: Send {
    /// Flushes the log to stable storage.
    fn sync(&mut self) -> io::Result<()>;
}

/// The real log: `<database>-wal`, opened by path, synced with `fdatasync`.
#[derive(Debug)]
pub(crate) struct WalFile {
    path: PathBuf,
    file: File,
}

impl WalFile {
    /// Opens the WAL of the database at `db`. The write connection must have opened the
    /// database in WAL mode already (which creates the file), and keeps it open as long as the
    /// store lives, so the file is never deleted and recreated underneath this descriptor.
    pub(crate) fn open(db: &Path) -> io::Result<Self> {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        let path = PathBuf::from(name);
        let file = File::open(&path)?;
        Ok(Self { path, file })
    }
}

impl WalSync for WalFile {
    fn sync(&mut self) -> io::Result<()> {
        // A deleted log would make this fsync meaningless: refuse rather than answer on it.
        if self.file.metadata()?.nlink() == 0 {
            return Err(io::Error::other(format!(
                "{} was deleted while the ledger had it open",
                self.path.display()
            )));
        }
        self.file.sync_data()
    }
}

/// A log that needs no fsync: an in-memory database (the writer's own unit tests).
#[cfg(test)]
pub(crate) struct NoSync;

#[cfg(test)]
impl WalSync for NoSync {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Set once an fsync failed; see the module docs. Shared by the writer, the syncer and the
/// store's readiness.
#[derive(Debug, Default)]
pub(crate) struct Broken(AtomicBool);

impl Broken {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// The error every job is answered with once the store is broken.
    pub(crate) fn error() -> LedgerError {
        LedgerError::Unavailable(
            "the ledger could not make a write durable (fsync failed); restart ticketd".into(),
        )
    }
}

/// The syncer thread's loop: see the module docs. Runs until the writer drops its sender.
pub(crate) fn sync_loop(
    batches: Receiver<Vec<Box<dyn Job>>>,
    mut wal: Box<dyn WalSync>,
    stats: &Stats,
    broken: &Broken,
) {
    while let Ok(mut jobs) = batches.recv() {
        // Everything committed while the last fsync ran shares the next one.
        while let Ok(more) = batches.try_recv() {
            jobs.extend(more);
        }
        let outcome = if broken.is_set() {
            Err(Broken::error())
        } else {
            match wal.sync() {
                Ok(()) => {
                    stats.syncs.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "fsync of the ledger's WAL failed: refusing every write until ticketd restarts"
                    );
                    broken.set();
                    Err(Broken::error())
                }
            }
        };
        for job in jobs {
            job.finish(outcome.clone());
        }
    }
}

/// Wakes the checkpointer; never blocks the writer (a pending wake-up is enough).
#[derive(Debug)]
pub(crate) struct Nudge {
    tx: SyncSender<()>,
    /// New pages that wake the checkpointer ([`CHECKPOINT_PAGES`]).
    every: i32,
    /// WAL size (pages) at the last wake-up.
    last: i32,
}

impl Nudge {
    pub(crate) fn new(tx: SyncSender<()>, every: i32) -> Self {
        Self { tx, every, last: 0 }
    }

    /// Called after every commit with the WAL's size in pages.
    pub(crate) fn after_commit(&mut self, pages: i32) {
        if pages < self.last {
            // The log restarted.
            self.last = 0;
        }
        if pages - self.last >= self.every {
            match self.tx.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => self.last = pages,
                Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

/// The checkpointer thread's loop: on each wake-up, passive checkpoints until the log is
/// copied but for less than [`CHECKPOINT_PAGES`] (the writer appends meanwhile, so "all" is a
/// moving target), then sleep until the next wake-up; until the writer drops its sender.
/// Keeping close behind the writer is what makes the writer's own checkpoint, which restarts
/// the log, cheap: it only copies the last few batches. A failed checkpoint is logged and
/// tried again at the next wake-up; meanwhile the log only grows.
pub(crate) fn checkpoint_loop(conn: Connection, wake: Receiver<()>, checkpoints: &AtomicU64) {
    while wake.recv().is_ok() {
        loop {
            match passive_checkpoint(&conn) {
                Ok(progress) => {
                    checkpoints.fetch_add(1, Ordering::Relaxed);
                    if progress.behind() < i64::from(CHECKPOINT_PAGES) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %super::rows::chain(&e), "WAL checkpoint failed");
                    break;
                }
            }
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %super::rows::chain(&e), "closing the checkpoint connection");
    }
}

/// Where a checkpoint left the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// Another connection was checkpointing (nothing was done).
    busy: bool,
    /// Frames in the log.
    log: i64,
    /// Frames of it now in the database file.
    copied: i64,
}

impl Progress {
    /// Frames still to copy.
    pub(crate) fn behind(self) -> i64 {
        if self.busy {
            self.log
        } else {
            self.log - self.copied
        }
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: copies what it can without waiting for anyone.
pub(crate) fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<Progress> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Progress {
            busy: row.get::<_, i64>(0)? != 0,
            log: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}
