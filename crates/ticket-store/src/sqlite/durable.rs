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
//!   the database file after, as with `FULL`. Past half of [`RESTART_PAGES`] it copies the
//!   whole log, which lets the writer's next transaction start the log over from its beginning
//!   at no cost. Only if the log reaches [`RESTART_PAGES`] all the same (a writer saturated
//!   for long) does the writer finish the checkpoint itself between two batches, holding the
//!   requests in flight while it copies what the checkpointer has not, so that the WAL file
//!   stops growing.
//!
//! If an fsync of the WAL or of the database file fails, the kernel may already have dropped
//! the pages it could not write and marked them clean, so a later fsync could report success
//! for data that is gone. Nothing can be acknowledged after that: the store turns **broken**
//! (every later write is refused as unavailable, readiness fails, checkpoints stop) and the
//! process must restart, which recovers from what is really on disk — the stance PostgreSQL
//! took for the same reason.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use rusqlite::Connection;
use ticket_ledger::LedgerError;

use super::clock::ThreadClock;
use super::writer::{Job, Stats};

/// New WAL pages after which the checkpointer is woken, and how far behind the writer it may
/// stay before it sleeps again in a short log (2 MiB of 4 KiB pages; SQLite's own automatic
/// checkpoint waits for 1,000).
///
/// Why so few: every pass ends with an fsync of the database file, which writes the pages the
/// pass copied, at random places, while the syncer's fsyncs of the WAL wait behind them on the
/// same disk. The smaller each burst, the less a WAL fsync finds queued ahead of it. With the
/// ledger's writes at 15,000 verifies/s modelled on the disk alone
/// (`scripts/bench/disk-model`), the WAL's fsyncs had a p99 of 0.54 ms without the copies and
/// 3.57 ms with them in bursts every 55 ms (1,000 pages). In ticketd at that rate, 500 pages
/// had the lower half-load p99 in all eight rounds against 1,000 (5.36–6.03 ms against
/// 5.91–8.81 in 30 s runs, 7.90 / 8.53 / 9.40 against 9.05 / 8.72 / 9.89 in 60 s runs), for
/// the same bytes written per verify; 999-voucher requests lost about 5 %
/// (docs/PERFORMANCE.md, "Fourteenth session"). 4,000 and 8,000 pages made it worse: 14–361 ms
/// where 1,000 had 11–37 ms in the same rounds.
pub(crate) const CHECKPOINT_PAGES: i32 = 500;

/// WAL pages past which the writer finishes a checkpoint itself between batches, so that the
/// log restarts from its beginning (about 128 MiB of WAL at most in normal operation). Each
/// restart holds the writer while it copies what the checkpointer has not yet and fsyncs
/// twice (several milliseconds, felt by every request in flight); a longer log makes that
/// rarer. Measured in docs/PERFORMANCE.md: 8,000 pages put p99 at 30 ms under saturation,
/// 32,000 at 14–15 ms.
pub(crate) const RESTART_PAGES: i32 = 32_000;

/// Committed batches that may wait for the syncer before the writer waits too.
pub(crate) const SYNC_QUEUE: usize = 8;

/// A file the ledger's threads flush to stable storage: the WAL (by the syncer) and the
/// database file (by the checkpointer).
pub(crate) trait Fsync: Send {
    /// Flushes what was written to the file so far to stable storage.
    fn sync(&mut self) -> io::Result<()>;
}

/// One of the ledger's files, opened by path, synced with `fdatasync`.
#[derive(Debug)]
pub(crate) struct SyncedFile {
    path: PathBuf,
    file: File,
}

impl SyncedFile {
    /// Opens the WAL of the database at `db`. The write connection must have opened the
    /// database in WAL mode already (which creates the file), and keeps it open as long as the
    /// store lives, so the file is never deleted and recreated underneath this descriptor.
    pub(crate) fn wal(db: &Path) -> io::Result<Self> {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        Self::open(PathBuf::from(name))
    }

    /// Opens the database file itself (for the checkpointer's flushes).
    pub(crate) fn database(db: &Path) -> io::Result<Self> {
        Self::open(db.to_owned())
    }

    fn open(path: PathBuf) -> io::Result<Self> {
        // Read-only is enough: on Linux fdatasync flushes the inode's pages whoever wrote them.
        let file = File::open(&path)?;
        Ok(Self { path, file })
    }
}

impl Fsync for SyncedFile {
    fn sync(&mut self) -> io::Result<()> {
        // A deleted file would make this fsync meaningless: refuse rather than answer on it.
        if links(&self.file)? == 0 {
            return Err(io::Error::other(format!(
                "{} was deleted while the ledger had it open",
                self.path.display()
            )));
        }
        self.file.sync_data()
    }
}

/// How many names `file` has (0 once it is deleted), asking for nothing else.
///
/// `fstat` (what `File::metadata` does) also reads the file's timestamps. With multigrain
/// timestamps (ext4 since Linux 6.13), a write after such a read is stamped with a fresh
/// fine-grained time, so it changes the inode, and the `fdatasync` after it writes the inode's
/// block too: one more synchronous write per fsync of the WAL. Measured on Linux 6.18, ext4
/// without a journal: an `fstat` before each `fdatasync` made 99.6 % of them write the inode
/// (3 % without), and their median 0.158 ms against 0.111 (docs/PERFORMANCE.md, "The syncer's
/// link check"). `statx` asked for the link count alone reads no timestamp.
///
/// A kernel without `statx` (before 4.11), a sandbox whose seccomp filter refuses it (as
/// container runtimes' default profiles did before it was added), or a system other than
/// Linux gets `fstat` and its inode writes rather than a ledger that cannot sync.
fn links(file: &File) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{statx, AtFlags, StatxFlags};
        links_asking(file, |file| {
            statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::NLINK)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(file.metadata()?.nlink())
    }
}

/// [`links`] with `statx` as a parameter, so the tests can refuse it the ways kernels and
/// sandboxes do: a link count `statx` gave is the answer; missing (`ENOSYS`), refused
/// (`EPERM`, `EACCES`) or answered without the count, `fstat` is asked instead; any other
/// error is the file's and is returned.
#[cfg(target_os = "linux")]
fn links_asking(
    file: &File,
    statx: impl FnOnce(&File) -> rustix::io::Result<rustix::fs::Statx>,
) -> io::Result<u64> {
    use rustix::fs::StatxFlags;
    use rustix::io::Errno;
    use std::os::unix::fs::MetadataExt;
    match statx(file) {
        Ok(stat) if stat.stx_mask & StatxFlags::NLINK.bits() != 0 => {
            return Ok(u64::from(stat.stx_nlink));
        }
        Ok(_) | Err(Errno::NOSYS | Errno::PERM | Errno::ACCESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(file.metadata()?.nlink())
}

/// A log that needs no fsync: an in-memory database (the writer's own unit tests).
#[cfg(test)]
pub(crate) struct NoSync;

#[cfg(test)]
impl Fsync for NoSync {
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
/// After each fsync it unparks `writer`, which may be holding a small batch open until that
/// fsync returns (`Linger` in `writer.rs`).
pub(crate) fn sync_loop(
    batches: Receiver<Vec<Box<dyn Job>>>,
    mut wal: Box<dyn Fsync>,
    stats: &Stats,
    broken: &Broken,
    writer: &std::thread::Thread,
) {
    while let Ok(mut jobs) = batches.recv() {
        // Everything committed while the last fsync ran shares the next one.
        let mut commits = 1;
        while let Ok(more) = batches.try_recv() {
            jobs.extend(more);
            commits += 1;
        }
        let outcome = if broken.is_set() {
            Err(Broken::error())
        } else {
            let began = std::time::Instant::now();
            let clock = ThreadClock::start(tracing::enabled!(tracing::Level::TRACE));
            match wal.sync() {
                Ok(()) => {
                    stats.syncs.fetch_add(1, Ordering::Relaxed);
                    let spent = ThreadClock::spent(clock);
                    tracing::trace!(
                        commits,
                        jobs = jobs.len(),
                        took_us = super::writer::micros(began.elapsed()),
                        cpu_us = spent.cpu_us,
                        waited_us = spent.waited_us,
                        "synced the WAL"
                    );
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
        // Never below zero, whoever sent the commits (tests run this loop on their own).
        let _ = stats
            .unsynced
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(commits))
            });
        writer.unpark();
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

/// What the checkpointer thread works with.
pub(crate) struct Checkpointer {
    /// Its own connection, which copies WAL frames into the database file.
    pub(crate) conn: Connection,
    /// The database file, flushed after every pass that copied something. SQLite itself only
    /// fsyncs the database file when a checkpoint copied the whole log, so without these
    /// flushes the kernel would hold every page copied since the last complete copy (tens of
    /// MB under load) and write them all at that fsync, which then starves the syncer's
    /// fsyncs of the WAL for tens of milliseconds. Flushed after each pass, the same bytes
    /// reach the disk in small steps, and the final fsync finds little left to write.
    pub(crate) database: Box<dyn Fsync>,
}

/// How closely the checkpointer follows the writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Pages it may stay behind in a log shorter than `drain_from` ([`CHECKPOINT_PAGES`]).
    pub(crate) slack: i64,
    /// Log length (pages) from which it copies everything instead: half of
    /// [`RESTART_PAGES`].
    pub(crate) drain_from: i64,
}

impl Pace {
    pub(crate) fn new(checkpoint_pages: i32, restart_pages: i32) -> Self {
        Self {
            slack: i64::from(checkpoint_pages),
            drain_from: i64::from(restart_pages / 2),
        }
    }

    /// Whether a wake-up's work is done after `passes` checkpoints, the last of which left
    /// `progress` (the one before had copied up to frame `copied_before`).
    fn done(self, progress: Progress, passes: u32, copied_before: i64) -> bool {
        if progress.log < self.drain_from {
            return progress.behind() < self.slack;
        }
        // Stuck (a reader holds a snapshot the copy may not overtake) or outrun: the writer
        // finishes the job when the log reaches its limit.
        let stuck = progress.copied <= copied_before;
        progress.behind() == 0 || stuck || passes >= DRAIN_PASSES
    }
}

/// Passes one wake-up may spend trying to copy the whole log. Each pass copies what the
/// writer appended during the previous one, so a writer that is not saturated is caught within
/// a few; a saturated one is left to the writer's own checkpoint, and the bound keeps the
/// fsyncs of the passes (two each) from competing with the syncer's for long.
const DRAIN_PASSES: u32 = 16;

/// The checkpointer thread's loop: on each wake-up, passive checkpoints until the log is
/// copied but for less than [`Pace::slack`] (the writer appends meanwhile, so "all" is a
/// moving target), then sleep until the next wake-up; until the writer drops its sender.
/// Keeping close behind the writer is what makes the writer's own checkpoint, which restarts
/// the log, cheap: it only copies the last few batches.
///
/// Once the log is longer than [`Pace::drain_from`] it copies everything instead (up to
/// [`DRAIN_PASSES`] passes, while each pass still makes progress). When the copy is complete
/// the writer's next transaction restarts the log by itself, for free, and the writer's own
/// checkpoint — which holds every request in flight for several milliseconds — is only needed
/// when the writer outruns this thread. A failed checkpoint is logged and tried again at the
/// next wake-up; meanwhile the log only grows.
///
/// After each pass that copied frames it flushes the database file
/// ([`Checkpointer::database`]). If that fsync fails, the store turns broken, for the reason
/// the module docs give (a later, "successful" fsync could let the log restart over frames
/// whose only other copy was lost), and the thread stops checkpointing.
pub(crate) fn checkpoint_loop(
    ckpt: Checkpointer,
    wake: Receiver<()>,
    pace: Pace,
    checkpoints: &AtomicU64,
    broken: &Broken,
) {
    let Checkpointer { conn, mut database } = ckpt;
    // Frames of the log known to be on disk in the database file.
    let mut flushed = 0;
    'wake_ups: while wake.recv().is_ok() {
        let mut passes = 0;
        let mut copied = -1;
        loop {
            if broken.is_set() {
                break 'wake_ups;
            }
            match passive_checkpoint(&conn) {
                Ok(progress) => {
                    checkpoints.fetch_add(1, Ordering::Relaxed);
                    passes += 1;
                    if !progress.busy && progress.copied > 0 && progress.copied != flushed {
                        if let Err(e) = database.sync() {
                            tracing::error!(
                                error = %e,
                                "fsync of the ledger's database file failed: refusing every write until ticketd restarts"
                            );
                            broken.set();
                            break 'wake_ups;
                        }
                        flushed = progress.copied;
                    }
                    let done = pace.done(progress, passes, copied);
                    copied = progress.copied;
                    if done {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A file database whose WAL holds `pages` uncopied pages, written by a connection with
    /// the writer's settings (no automatic checkpoint), plus a checkpointer connection.
    fn log_of(dir: &Path, pages: usize) -> (Connection, Connection) {
        let path = dir.join("ckpt.db");
        super::super::prepare_file(&path).expect("file");
        let conn = Connection::open(&path).expect("open");
        super::super::configure_writer(&conn, Duration::from_secs(5)).expect("settings");
        conn.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY, pad BLOB NOT NULL)")
            .expect("schema");
        // One row of about one page per commit, each its own transaction.
        for x in 0..pages {
            conn.execute(
                "INSERT INTO t (x, pad) VALUES (?1, zeroblob(3000))",
                [i64::try_from(x).expect("small")],
            )
            .expect("insert");
        }
        let ckpt = super::super::open_checkpointer(&path, Duration::from_secs(5)).expect("ckpt");
        (conn, ckpt)
    }

    /// Counts flushes, and fails them on request.
    #[derive(Clone, Default)]
    struct CountedFlush {
        calls: std::sync::Arc<AtomicU64>,
        fail: bool,
    }

    impl Fsync for CountedFlush {
        fn sync(&mut self) -> io::Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                Err(io::Error::from_raw_os_error(5))
            } else {
                Ok(())
            }
        }
    }

    /// Runs the checkpointer for exactly one wake-up and returns where it left the log and
    /// how many passes it made.
    fn one_wake_up(ckpt: Connection, pace: Pace, writer: &Connection) -> (i64, i64, u64) {
        let flush = CountedFlush::default();
        let broken = Broken::default();
        let result = wake_up_with(ckpt, pace, writer, flush.clone(), &broken);
        assert!(!broken.is_set());
        assert!(
            flush.calls.load(Ordering::SeqCst) >= 1,
            "the database file was flushed"
        );
        result
    }

    fn wake_up_with(
        conn: Connection,
        pace: Pace,
        writer: &Connection,
        flush: CountedFlush,
        broken: &Broken,
    ) -> (i64, i64, u64) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        tx.send(()).expect("wake");
        drop(tx);
        let checkpoints = AtomicU64::new(0);
        let ckpt = Checkpointer {
            conn,
            database: Box::new(flush),
        };
        checkpoint_loop(ckpt, rx, pace, &checkpoints, broken);
        // A PASSIVE checkpoint with nothing left to copy reports the state without changing it.
        let left = passive_checkpoint(writer).expect("state");
        (left.log, left.copied, checkpoints.load(Ordering::Relaxed))
    }

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("ckpt.db-wal"))
            .map(|m| m.len())
            .expect("wal")
    }

    fn at(log: i64, copied: i64) -> Progress {
        Progress {
            busy: false,
            log,
            copied,
        }
    }

    #[test]
    fn a_short_log_may_stay_behind_by_the_slack_and_a_long_one_is_copied_whole() {
        let pace = Pace::new(1000, 32_000);
        assert_eq!(pace.drain_from, 16_000);
        // Short log: within the slack is enough.
        assert!(pace.done(at(10_000, 9_001), 1, -1));
        assert!(!pace.done(at(10_000, 9_000), 1, -1));
        // Long log: only a complete copy ends the wake-up while passes make progress ...
        assert!(!pace.done(at(20_000, 19_999), 1, -1));
        assert!(!pace.done(at(20_100, 20_050), 2, 19_999));
        assert!(pace.done(at(20_100, 20_100), 3, 20_050));
        // ... unless a pass copied nothing new (a reader holds the copy back) ...
        assert!(pace.done(at(20_200, 20_050), 4, 20_050));
        // ... or the writer outruns it for DRAIN_PASSES passes.
        assert!(!pace.done(at(30_000, 29_000), DRAIN_PASSES - 1, 28_000));
        assert!(pace.done(at(30_000, 29_000), DRAIN_PASSES, 28_000));
        // Busy (another connection checkpointing) reports log -1: nothing to do now.
        let busy = Progress {
            busy: true,
            log: -1,
            copied: -1,
        };
        assert!(pace.done(busy, 1, -1));
    }

    #[test]
    fn a_wake_up_on_a_quiet_short_log_copies_all_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, ckpt) = log_of(dir.path(), 300);
        // The log is far below `drain_from`: one pass copies all there is; the writer is not
        // appending, so nothing is left behind.
        let (log, copied, passes) = one_wake_up(ckpt, Pace::new(100, 10_000), &writer);
        assert!(log >= 300, "{log}");
        assert_eq!(log, copied);
        assert_eq!(passes, 1);
    }

    #[test]
    fn past_the_drain_length_a_complete_copy_lets_the_next_write_restart_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, ckpt) = log_of(dir.path(), 400);
        let before = wal_bytes(dir.path());
        let (log, copied, _) = one_wake_up(ckpt, Pace::new(100, 400), &writer);
        assert_eq!(log, copied, "everything copied");
        // The next transaction starts the log over: the file does not grow, and the log's
        // frame count starts again from the few pages this commit wrote.
        writer
            .execute("INSERT INTO t (x, pad) VALUES (-1, zeroblob(10))", [])
            .expect("insert after the drain");
        let after = passive_checkpoint(&writer).expect("state");
        assert!(after.log < 10, "restarted log holds {} frames", after.log);
        assert_eq!(wal_bytes(dir.path()), before);
    }

    #[test]
    fn a_drain_held_back_by_a_reader_stops_instead_of_spinning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, ckpt) = log_of(dir.path(), 50);
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
        let path = dir.path().join("ckpt.db");
        let holder = std::thread::spawn(move || {
            let conn = Connection::open(&path).expect("open");
            // A read transaction on an old snapshot: the copy cannot pass it.
            conn.execute_batch("BEGIN; SELECT count(*) FROM t;")
                .expect("read snapshot");
            held_tx.send(()).expect("held");
            hold_rx.recv().ok();
            conn.execute_batch("COMMIT").expect("end read");
        });
        held_rx.recv().expect("holder ready");
        for x in 1000..1200_i64 {
            writer
                .execute("INSERT INTO t (x, pad) VALUES (?1, zeroblob(3000))", [x])
                .expect("insert past the reader's snapshot");
        }
        let (log, copied, passes) = one_wake_up(ckpt, Pace::new(10, 100), &writer);
        assert!(
            copied < log,
            "the reader's snapshot kept {} frames",
            log - copied
        );
        // One pass copies up to the reader's snapshot, the second finds nothing new.
        assert_eq!(passes, 2);
        hold_tx.send(()).expect("release");
        holder.join().expect("holder");
    }

    #[test]
    fn every_pass_that_copied_flushes_the_database_file_and_a_failed_flush_breaks_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, ckpt) = log_of(dir.path(), 100);
        let flush = CountedFlush {
            fail: true,
            ..CountedFlush::default()
        };
        let broken = Broken::default();
        let (log, copied, passes) =
            wake_up_with(ckpt, Pace::new(10, 10_000), &writer, flush.clone(), &broken);
        assert_eq!(flush.calls.load(Ordering::SeqCst), 1);
        assert!(
            broken.is_set(),
            "a failed fsync of the database file breaks the store"
        );
        assert_eq!(passes, 1, "no pass after the failure");
        // The pass copied, but the log must never restart over it: SQLite's own fsync of the
        // database (at a complete checkpoint) is what would allow that, and the broken store
        // stops every writer that could trigger it.
        assert_eq!(log, copied);
    }

    #[test]
    fn a_broken_store_is_not_checkpointed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, ckpt) = log_of(dir.path(), 100);
        let broken = Broken::default();
        broken.set();
        let flush = CountedFlush::default();
        let (log, copied, passes) =
            wake_up_with(ckpt, Pace::new(10, 10_000), &writer, flush.clone(), &broken);
        assert_eq!(passes, 0);
        assert_eq!(flush.calls.load(Ordering::SeqCst), 0);
        // Only the state query in `wake_up_with` ran: it copies, but nothing checkpointed before.
        assert!(log >= 100 && copied >= 0);
    }

    /// Where `statx` is missing or refused, the link count comes from `fstat`, and a deleted
    /// WAL is still seen as deleted; an error of the file itself is not papered over.
    #[cfg(target_os = "linux")]
    #[test]
    fn without_statx_the_link_count_comes_from_fstat() {
        use rustix::fs::{statx, AtFlags, StatxFlags};
        use rustix::io::Errno;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal");
        let file = File::create(&path).expect("create");
        let counts_without_statx = |file: &File| -> Vec<u64> {
            let missing = links_asking(file, |_| Err(Errno::NOSYS)).expect("no statx");
            let refused = links_asking(file, |_| Err(Errno::PERM)).expect("seccomp EPERM");
            let denied = links_asking(file, |_| Err(Errno::ACCESS)).expect("EACCES");
            // A `statx` that answers without the count it was asked for.
            let partial = links_asking(file, |file| {
                let mut stat = statx(file, "", AtFlags::EMPTY_PATH, StatxFlags::NLINK)?;
                stat.stx_mask &= !StatxFlags::NLINK.bits();
                stat.stx_nlink = 7;
                Ok(stat)
            })
            .expect("statx without the count");
            vec![missing, refused, denied, partial]
        };
        assert_eq!(counts_without_statx(&file), [1, 1, 1, 1]);
        std::fs::hard_link(&path, dir.path().join("second name")).expect("link");
        assert_eq!(counts_without_statx(&file), [2, 2, 2, 2]);
        std::fs::remove_file(&path).expect("unlink");
        std::fs::remove_file(dir.path().join("second name")).expect("unlink");
        assert_eq!(counts_without_statx(&file), [0, 0, 0, 0]);
        assert_eq!(links(&file).expect("statx"), 0);
        let failed = links_asking(&file, |_| Err(Errno::IO)).expect_err("EIO is the file's");
        assert_eq!(failed.raw_os_error(), Some(Errno::IO.raw_os_error()));
    }

    #[test]
    fn a_wal_deleted_under_the_ledger_is_never_synced_as_if_it_were_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_writer, _ckpt) = log_of(dir.path(), 3);
        let path = dir.path().join("ckpt.db");
        let mut wal = SyncedFile::wal(&path).expect("the WAL exists");
        assert_eq!(links(&wal.file).expect("links"), 1);
        wal.sync().expect("a WAL in place syncs");
        std::fs::remove_file(dir.path().join("ckpt.db-wal")).expect("delete the WAL");
        assert_eq!(links(&wal.file).expect("links"), 0);
        let refused = wal
            .sync()
            .expect_err("a deleted WAL must not count as synced");
        assert!(
            refused
                .to_string()
                .contains("was deleted while the ledger had it open"),
            "{refused}"
        );
    }
}
