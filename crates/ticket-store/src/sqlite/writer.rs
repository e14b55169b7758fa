//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time. Rather than have many tasks contend for the write lock
//! (and sleep in `busy_timeout`), one OS thread owns the only read-write connection and every
//! write is a job sent to it over a channel. That thread:
//!
//! 1. waits for a job, then takes whatever else is already queued (up to [`MAX_BATCH`]);
//! 2. runs `BEGIN IMMEDIATE`, then each job inside its own `SAVEPOINT`: a job that is refused or
//!    fails does `ROLLBACK TO` + `RELEASE`, so it leaves no trace and does not fail its
//!    neighbours. A job that can run again (a verify, [`Writer::submit_repeatable`]) runs
//!    without a savepoint, which costs a copy of each page it changes; if it fails after
//!    writing, the batch is rolled back and run again with a savepoint for each job
//!    ([`run_jobs`]);
//! 3. `COMMIT`s once (one append to the WAL for the whole batch) and hands the batch,
//!    unanswered, to the syncer thread, which fsyncs the WAL and only then answers every job
//!    of the batch ([`super::durable`]). Meanwhile this thread already runs the next batch;
//! 4. if the commit fails, answers every job of the batch with the commit's error at once: an
//!    `Ok` always means committed and fsynced, and a refusal computed against a neighbour's
//!    uncommitted change is never reported as final.
//!
//! Batching is what makes durable writes fast without weakening durability: under load the fsync is shared by
//! the jobs of every batch committed while the previous fsync ran, and a lone request pays no
//! added latency because the writer never waits for more work to arrive. It is a plain thread,
//! not a task, so the transaction can never be held open across an `.await`.
//!
//! Shutdown: [`Writer::close`] stops the queue from taking new jobs, lets the thread finish the
//! ones already queued (and the syncer answer them), and waits until every connection is
//! closed. Dropping the [`Writer`] does the same without waiting.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use ticket_ledger::LedgerError;
use tokio::sync::{mpsc, oneshot, watch};

use super::clock::ThreadClock;
use super::durable::{self, Broken, Fsync, Nudge, RESTART_PAGES, SYNC_QUEUE};
use super::exec::{Held, Prepared};
use super::fold;
use super::rows::ledger_error;
use super::snapshots::Snapshots;

/// What a write job works with: the write connection, inside its batch's transaction (and its
/// own savepoint, unless it runs [`Guard::Unguarded`]), the statements the writer holds for
/// it ([`Held`]), and the writer's [`Snapshots`] of orders.
pub(crate) struct Tx<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) prepared: &'a dyn Prepared,
    pub(crate) snapshots: &'a mut Snapshots,
    guard: Guard,
}

/// How a job's writes can be undone on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The job runs inside its own `SAVEPOINT job`.
    Savepoint,
    /// The job runs without a savepoint ([`Job::repeatable`]); the connection's
    /// `total_changes` when it started tells whether it has written anything yet.
    Unguarded { changes: u64 },
}

impl Tx<'_> {
    /// Undoes everything this job has written so far: `ROLLBACK TO` its savepoint, which stays
    /// open, so the job can go on and write what its refusal keeps (the anomaly a refused
    /// request raises) and still answer `Ok`. What the job put in [`Snapshots`] is not undone:
    /// a job that undoes its writes must not have put back a snapshot of them.
    ///
    /// A job running without a savepoint that has written nothing has nothing to undo. One
    /// that has written something cannot undo it alone: the error sends the batch back to be
    /// run again with a savepoint for each job ([`run_batch`]).
    pub(crate) fn undo(&self) -> Result<(), LedgerError> {
        match self.guard {
            Guard::Savepoint => exec(
                self.conn,
                "ROLLBACK TO job",
                "undoing a refused job's writes",
            ),
            Guard::Unguarded { changes } if self.conn.total_changes() == changes => Ok(()),
            Guard::Unguarded { .. } => Err(LedgerError::Internal(
                "a job without a savepoint cannot undo its writes alone".into(),
            )),
        }
    }
}

/// Most jobs committed together. Bounds the latency a job at the end of a batch waits for the
/// ones before it, and the work lost to a failed commit.
pub(crate) const MAX_BATCH: usize = 256;

/// Jobs that may wait in the queue before senders are made to wait (backpressure rather than
/// unbounded memory when the disk is slower than the callers).
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// Counters of the writer's work, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions that failed to start or commit (their jobs were all answered with errors).
    pub failed_batches: u64,
    /// Jobs run, whatever their outcome.
    pub jobs: u64,
    /// Batches run again from their start with a savepoint for each job, because a job
    /// running without one (a verify) failed after it had written.
    pub guarded_reruns: u64,
    /// The most jobs one transaction carried.
    pub largest_batch: u64,
    /// fsyncs of the WAL by the syncer (each makes one or more committed batches durable).
    pub syncs: u64,
    /// Checkpoints run by the checkpointer thread (WAL pages copied into the database file).
    pub checkpoints: u64,
    /// Folds of the lookups keyed by order committed by the writer (see `sqlite::fold`).
    pub folds: u64,
    /// Microseconds from the start of the last fold to its end.
    pub last_fold_us: u64,
    /// Microseconds of the writer's time the last fold's steps took: at most about one part in
    /// `FOLD_SHARE` (the writer's pace for folds) of `last_fold_us`, unless the fold fell behind.
    pub last_fold_busy_us: u64,
    /// Uses added to the stored counters from the use log (see `sqlite::fold::count_uses`).
    pub counted_uses: u64,
    /// Verifies that found their order's vouchers in the writer's memory, so read nothing.
    pub snapshot_hits: u64,
    /// Verifies that had to read their order's vouchers from the database first.
    pub snapshot_misses: u64,
    /// Fingerprints looked up to tell a retry: those not later than their order's latest
    /// recorded gate time (`sqlite::fold::Horizon`); the others are new without a lookup.
    pub fingerprint_lookups: u64,
}

/// Shared between the writer's threads (which update it) and the store (which reads it).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    failed_batches: AtomicU64,
    jobs: AtomicU64,
    largest_batch: AtomicU64,
    pub(crate) syncs: AtomicU64,
    /// Commits handed to the syncer and not yet made durable (read by `Linger`).
    pub(crate) unsynced: AtomicU64,
    checkpoints: AtomicU64,
    folds: AtomicU64,
    last_fold_us: AtomicU64,
    last_fold_busy_us: AtomicU64,
    counted_uses: AtomicU64,
    snapshot_hits: AtomicU64,
    snapshot_misses: AtomicU64,
    fingerprint_lookups: AtomicU64,
    guarded_reruns: AtomicU64,
}

/// One write, type-erased so jobs of every result type share one queue.
pub(crate) trait Job: Send {
    /// Runs the work (the caller has opened its savepoint). `Err` carries a copy of the job's
    /// own error so the batch can report it if the whole transaction is lost.
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), LedgerError>;
    /// Answers the caller once the batch's fate is known (committed and durable, or not).
    fn finish(self: Box<Self>, batch: Result<(), LedgerError>);
    /// Whether the work can run again, from the start, after its transaction was rolled back
    /// (its closure is `Fn`). Such a job runs without a savepoint of its own while every job
    /// before it in the transaction could run again too ([`run_jobs`]).
    fn repeatable(&self) -> bool {
        false
    }
}

/// A job whose work can run again ([`Writer::submit_repeatable`]).
struct Repeatable<T, F> {
    work: F,
    result: Option<Result<T, LedgerError>>,
    reply: oneshot::Sender<Result<T, LedgerError>>,
}

impl<T, F> Job for Repeatable<T, F>
where
    T: Send,
    F: Fn(&mut Tx<'_>) -> Result<T, LedgerError> + Send,
{
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), LedgerError> {
        // A run replaces what an earlier run of a rolled-back transaction left (a panic now
        // must not leave that run's result as the answer).
        self.result = None;
        let result = (self.work)(tx);
        keep(&mut self.result, result)
    }

    fn finish(self: Box<Self>, batch: Result<(), LedgerError>) {
        answer(batch, self.result, self.reply);
    }

    fn repeatable(&self) -> bool {
        true
    }
}

/// Keeps `result` as a job's answer; returns what the batch needs of it (`Err` carries a copy
/// of the job's error, see [`Job::run`]).
fn keep<T>(
    slot: &mut Option<Result<T, LedgerError>>,
    result: Result<T, LedgerError>,
) -> Result<(), LedgerError> {
    let status = result.as_ref().map(drop).map_err(Clone::clone);
    *slot = Some(result);
    status
}

/// Answers a job's caller with its result, or the batch's error.
fn answer<T>(
    batch: Result<(), LedgerError>,
    result: Option<Result<T, LedgerError>>,
    reply: oneshot::Sender<Result<T, LedgerError>>,
) {
    let answer = match (batch, result) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(result)) => result,
        // The job panicked (its result was never stored); its writes were rolled back.
        (Ok(()), None) => Err(LedgerError::Internal("a write job panicked".into())),
    };
    // The caller may have stopped waiting (request cancelled); the write stands regardless.
    let _ = reply.send(answer);
}

/// A job whose work returns `T`, answered through a oneshot.
struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T, LedgerError>>,
    reply: oneshot::Sender<Result<T, LedgerError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut Tx<'_>) -> Result<T, LedgerError> + Send,
{
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), LedgerError> {
        let result = match self.work.take() {
            Some(work) => work(tx),
            None => Err(LedgerError::Internal("a write job ran twice".into())),
        };
        keep(&mut self.result, result)
    }

    fn finish(self: Box<Self>, batch: Result<(), LedgerError>) {
        answer(batch, self.result, self.reply);
    }
}

enum Message {
    Job(Box<dyn Job>),
    /// Stop taking jobs; finish the queued ones and exit.
    Close,
    /// A paced fold may take its next step ([`tick_loop`]). Takes a slot of the queue like a
    /// job, and adds nothing to a batch.
    Tick,
}

impl Message {
    /// Puts a job into `batch`; a `Close` closes `queue`, which then yields only what was
    /// queued before it.
    fn take(self, queue: &mut mpsc::Receiver<Message>, batch: &mut Vec<Box<dyn Job>>) {
        match self {
            Self::Job(job) => batch.push(job),
            Self::Close => queue.close(),
            Self::Tick => {}
        }
    }
}

/// How the writer makes its commits durable: the WAL the syncer fsyncs, and the connection
/// the checkpointer copies pages with (`None` for an in-memory database, which has no file to
/// copy into).
pub(crate) struct Durability {
    pub(crate) wal: Box<dyn Fsync>,
    pub(crate) checkpointer: Option<durable::Checkpointer>,
    /// New WAL pages that wake the checkpointer ([`durable::CHECKPOINT_PAGES`]).
    pub(crate) checkpoint_pages: i32,
    /// WAL pages past which the writer completes a checkpoint itself ([`RESTART_PAGES`]).
    pub(crate) restart_pages: i32,
}

impl Durability {
    /// A file database: its WAL, and a connection for the checkpointer.
    pub(crate) fn of_file(wal: Box<dyn Fsync>, checkpointer: durable::Checkpointer) -> Self {
        Self {
            wal,
            checkpointer: Some(checkpointer),
            checkpoint_pages: durable::CHECKPOINT_PAGES,
            restart_pages: RESTART_PAGES,
        }
    }
}

/// The handle the store keeps: the queue's sending side.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Message>,
    /// Closed (its sender dropped) when every thread has finished and closed its connection.
    stopped: watch::Receiver<()>,
    stats: Arc<Stats>,
    /// Set when an fsync failed; see [`super::durable`].
    broken: Arc<Broken>,
}

thread_local! {
    /// Pages in the WAL after the last commit on this thread, reported by SQLite's WAL hook
    /// (a plain `fn`, hence a thread-local rather than captured state). Only the writer thread
    /// installs the hook.
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn remember_wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

impl Writer {
    /// Starts the writer thread, which owns `conn` from now on, and with it the syncer and
    /// the checkpointer. `conn` must be configured for [`super::durable`]: WAL mode,
    /// `synchronous=NORMAL`, no automatic checkpoints.
    pub(crate) fn spawn(conn: Connection, durability: Durability) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let (stopped_tx, stopped) = watch::channel(());
        let stats = Arc::new(Stats::default());
        let broken = Arc::new(Broken::default());
        let (thread_stats, thread_broken) = (Arc::clone(&stats), Arc::clone(&broken));
        let ticks = queue.downgrade();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                if let Err(e) = run(conn, jobs, ticks, durability, &thread_stats, &thread_broken) {
                    tracing::error!(error = %e, "the ledger writer could not start its threads");
                }
                // Dropped last: whoever waits in `close` wakes once every connection is closed.
                drop(stopped_tx);
            })?;
        Ok(Self {
            queue,
            stopped,
            stats,
            broken,
        })
    }

    /// Runs `work` in the next batch and returns its result once that batch has committed and
    /// been made durable.
    ///
    /// If the calling future is dropped after the job was queued, the job still runs and may
    /// commit; only the answer is lost. Retries are safe because verifies are idempotent by
    /// fingerprint and creations answer "exists".
    pub(crate) async fn submit<T, F>(&self, work: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, LedgerError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.send(job, answer).await
    }

    /// [`Writer::submit`] for work that can run again from its start after its transaction was
    /// rolled back: it reads and writes only through `tx` (what it leaves in [`Snapshots`] is
    /// cleared with the rollback) and takes nothing by value. Such a job runs without a
    /// savepoint of its own, which saves the copy of every page it changes into SQLite's
    /// sub-journal (docs/PERFORMANCE.md); if it fails after writing, its batch is rolled back
    /// and run again with a savepoint for each job.
    pub(crate) async fn submit_repeatable<T, F>(&self, work: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: Fn(&mut Tx<'_>) -> Result<T, LedgerError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Repeatable {
            work,
            result: None,
            reply,
        });
        self.send(job, answer).await
    }

    async fn send<T>(
        &self,
        job: Box<dyn Job>,
        answer: oneshot::Receiver<Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        self.queue
            .send(Message::Job(job))
            .await
            .map_err(|_| LedgerError::Unavailable("the ledger is closed".into()))?;
        answer.await.map_err(|_| {
            tracing::error!("the ledger writer stopped before answering a job");
            LedgerError::Internal("the ledger writer stopped before answering".into())
        })?
    }

    /// Lets the queued jobs finish, refuses new ones, and waits until the threads have closed
    /// their connections. Idempotent; every concurrent caller waits for the same end.
    pub(crate) async fn close(&self) {
        // If the queue is already closed, the thread is stopping anyway.
        let _ = self.queue.send(Message::Close).await;
        let mut stopped = self.stopped.clone();
        // `changed` fails once the thread dropped its sender; nothing is ever sent on it.
        while stopped.changed().await.is_ok() {}
    }

    /// Whether the writer still takes jobs and can make them durable.
    pub(crate) fn is_running(&self) -> bool {
        !self.queue.is_closed() && !self.broken.is_set()
    }

    /// Messages waiting in the queue: jobs, and a [`Message::Tick`] or two while a paced fold
    /// waits for its next step.
    pub(crate) fn queued(&self) -> usize {
        QUEUE_DEPTH - self.queue.capacity()
    }

    /// Waits until at least `n` messages wait in the queue, and a moment more (tests hold the
    /// writer, queue jobs, and wait for this before releasing it, so the batch's content is
    /// deterministic). The queue counts a message once its sender holds a slot, just before
    /// the message is in it, and a writer released in between can miss it (a CI run saw a job
    /// commit in a batch of its own), so the wait ends 20 ms after the count.
    #[cfg(test)]
    pub(crate) async fn until_queued(&self, n: usize) {
        while self.queued() < n {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    pub(crate) fn stats(&self) -> WriterStats {
        let s = &self.stats;
        WriterStats {
            commits: s.commits.load(Ordering::Relaxed),
            failed_batches: s.failed_batches.load(Ordering::Relaxed),
            jobs: s.jobs.load(Ordering::Relaxed),
            largest_batch: s.largest_batch.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
            folds: s.folds.load(Ordering::Acquire),
            last_fold_us: s.last_fold_us.load(Ordering::Relaxed),
            last_fold_busy_us: s.last_fold_busy_us.load(Ordering::Relaxed),
            counted_uses: s.counted_uses.load(Ordering::Relaxed),
            snapshot_hits: s.snapshot_hits.load(Ordering::Relaxed),
            snapshot_misses: s.snapshot_misses.load(Ordering::Relaxed),
            fingerprint_lookups: s.fingerprint_lookups.load(Ordering::Relaxed),
            guarded_reruns: s.guarded_reruns.load(Ordering::Relaxed),
        }
    }
}

/// The writer thread: starts the syncer, the checkpointer and the fold's ticker (which sends
/// through `ticks`, a sender that does not keep the queue open), runs batches until the queue
/// is closed and drained, then stops them and closes its connection.
fn run(
    conn: Connection,
    mut queue: mpsc::Receiver<Message>,
    ticks: mpsc::WeakSender<Message>,
    durability: Durability,
    stats: &Arc<Stats>,
    broken: &Arc<Broken>,
) -> std::io::Result<()> {
    let (committed, to_sync) = std::sync::mpsc::sync_channel(SYNC_QUEUE);
    let syncer = {
        let (stats, broken) = (Arc::clone(stats), Arc::clone(broken));
        let wal = durability.wal;
        let writer = std::thread::current();
        std::thread::Builder::new()
            .name("ledger-sync".into())
            .spawn(move || durable::sync_loop(to_sync, wal, &stats, &broken, &writer))?
    };
    let (wake, woken) = std::sync::mpsc::sync_channel(1);
    let pace = durable::Pace::new(durability.checkpoint_pages, durability.restart_pages);
    let checkpointer = match durability.checkpointer {
        Some(ckpt) => {
            let (stats, broken) = (Arc::clone(stats), Arc::clone(broken));
            Some(
                std::thread::Builder::new()
                    .name("ledger-checkpoint".into())
                    .spawn(move || {
                        durable::checkpoint_loop(ckpt, woken, pace, &stats.checkpoints, &broken)
                    })?,
            )
        }
        None => None,
    };
    // The ticker, a thread because `blocking_recv` has no timeout: the writer asks it for a
    // tick after a wait; it keeps the earliest it was asked for. A request that finds the
    // channel full is dropped: the ticker has not yet read the ones before it, so a tick is
    // coming anyway, and the pace is checked again when it arrives.
    let (tick_waits, waits) = std::sync::mpsc::sync_channel(TICK_REQUESTS);
    let ticker = std::thread::Builder::new()
        .name("ledger-fold-tick".into())
        .spawn(move || tick_loop(&waits, &ticks))?;
    let mut tick_requests = TickRequests::new(tick_waits);
    // Most commits want no tick: the clock is read only for those that do.
    let mut request_tick = move |wait: Option<std::time::Duration>| {
        if let Some(wait) = wait {
            tick_requests.ask(wait, std::time::Instant::now());
        }
    };
    let mut nudge = Nudge::new(wake, durability.checkpoint_pages);
    let restart_pages = durability.restart_pages;
    conn.wal_hook(Some(remember_wal_pages));

    let statements = Held::new(&conn);
    let mut snapshots = Snapshots::default();
    let mut folds = Folds::default();
    let mut linger = Linger::default();
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    // `blocking_recv` returns `None` once every sender is gone or `close` was called, and in
    // both cases only after the messages already queued have been taken.
    while let Some(first) = queue.blocking_recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            message.take(&mut queue, &mut batch);
            if batch.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if batch.is_empty() {
            // A tick (or the close): the paced fold's next steps, while the queue is empty.
            request_tick(folds.steps(&conn, &mut snapshots, || queue.is_empty(), stats, broken));
            // A broken store is never checkpointed (see `durable`).
            if !broken.is_set() {
                maintain_wal(&conn, &mut nudge, restart_pages);
            }
            continue;
        }
        let began = std::time::Instant::now();
        let clock = ThreadClock::start(tracing::enabled!(tracing::Level::TRACE));
        let hold = linger.hold(batch.len(), stats);
        let mut held = std::time::Duration::ZERO;
        let outcome = if broken.is_set() {
            Err(Broken::error())
        } else {
            run_batch(
                &conn,
                &statements,
                &mut snapshots,
                &mut batch,
                stats,
                |batch| {
                    hold.is_some_and(|until| {
                        Linger::next(until, &mut queue, batch, stats, &mut held)
                    })
                },
            )
        };
        linger.count(batch.len());
        let size = batch.len() as u64;
        // With the fold's steps, the counts and the syncer's fsyncs, the trace of where the
        // writer's time goes: what a slow request waited behind (`ticketd bench --timeline`).
        // `took_us` is the batch's work; `held_us` the time it waited for jobs in between;
        // `cpu_us` and `waited_us` what the thread spent on a CPU and waiting for one
        // (`clock`), over both: the hold is interleaved with the jobs.
        let spent = ThreadClock::spent(clock);
        tracing::trace!(
            jobs = size,
            held_us = micros(held),
            took_us = micros(began.elapsed().saturating_sub(held)),
            cpu_us = spent.cpu_us,
            waited_us = spent.waited_us,
            ok = outcome.is_ok(),
            "ran a batch"
        );
        stats.jobs.fetch_add(size, Ordering::Relaxed);
        stats.snapshot_hits.store(snapshots.hits, Ordering::Relaxed);
        stats
            .snapshot_misses
            .store(snapshots.misses, Ordering::Relaxed);
        stats
            .fingerprint_lookups
            .store(snapshots.lookups, Ordering::Relaxed);
        stats.largest_batch.fetch_max(size, Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                let jobs = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                stats.unsynced.fetch_add(1, Ordering::AcqRel);
                if let Err(unsent) = committed.send(jobs) {
                    stats.unsynced.fetch_sub(1, Ordering::AcqRel);
                    // The syncer is gone (it only stops when this thread lets it), so nobody
                    // can vouch for these commits.
                    for job in unsent.0 {
                        job.finish(Err(LedgerError::Internal(
                            "the ledger's syncer stopped".into(),
                        )));
                    }
                }
                request_tick(folds.after_commit(
                    &conn,
                    &mut snapshots,
                    size,
                    || queue.is_empty(),
                    stats,
                    broken,
                ));
                maintain_wal(&conn, &mut nudge, restart_pages);
            }
            Err(e) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                // Snapshots put back by the batch's jobs describe writes that were undone.
                snapshots.clear();
                // A staged fold goes on at its next step: a ledger that turns quiet now
                // would otherwise leave it waiting for the next job.
                request_tick(folds.wait_for_pace(&snapshots));
                for job in batch.drain(..) {
                    job.finish(Err(e.clone()));
                }
            }
        }
    }
    // The syncer answers what it holds, then stops; the checkpointer stops at its next wait,
    // the ticker at once.
    drop(committed);
    drop(nudge);
    drop(request_tick);
    let _ = ticker.join();
    let _ = syncer.join();
    if let Some(checkpointer) = checkpointer {
        let _ = checkpointer.join();
    }
    drop(statements);
    if let Err((_, e)) = conn.close() {
        tracing::error!(error = %super::rows::chain(&e), "closing the ledger write connection");
    }
    Ok(())
}

/// Whether a small batch holds its transaction open for the fsync in flight ([`Linger::hold`]),
/// running the jobs that arrive meanwhile in it, and commits when that fsync returns.
///
/// Why: a commit writes every page it changed into the WAL, and the pages verifies share (the
/// last page of each appended table, the event counter) are written again by every commit. At
/// half load the writer committed batches of one to three verifies, each fsynced after the
/// one in flight anyway, and wrote 16.6–17.1 KB per verify against 10 KB at saturation.
/// Committing such a batch at once is not acknowledged any sooner: the syncer takes it when
/// its fsync returns. A batch that waited for that fsync before it ran (as this did before)
/// did its work after the fsync, when the requests in it were already due; one that holds runs
/// each job as it arrives, while the fsync is in flight, and is left with only its `COMMIT`
/// when it returns. At saturation the writer must never wait (a writer that waited for the
/// fsync whenever its batch was small lost 6–11 % of its throughput), so only a writer whose
/// batches have been small on average ([`Linger::average`]) holds.
#[derive(Debug)]
struct Linger {
    /// Recent batch sizes, in sixteenths of a job (an average over about 16 batches).
    average: u64,
}

impl Default for Linger {
    fn default() -> Self {
        Self {
            average: 16 * Self::BELOW,
        }
    }
}

impl Linger {
    /// Batches smaller than this, from a writer whose batches average less, hold.
    const BELOW: u64 = 8;
    /// The longest a batch holds, whatever the syncer does.
    const MAX: std::time::Duration = std::time::Duration::from_millis(2);

    fn small(len: usize) -> bool {
        (len as u64) < Self::BELOW
    }

    /// Whether a batch that starts with `len` jobs holds its transaction open for the fsync in
    /// flight, and until when at most: when it is small, batches have been small, and an
    /// earlier commit is being synced.
    fn hold(&self, len: usize, stats: &Stats) -> Option<std::time::Instant> {
        (Self::small(len)
            && self.average < 16 * Self::BELOW
            && stats.unsynced.load(Ordering::Acquire) > 0)
            .then(|| std::time::Instant::now() + Self::MAX)
    }

    /// While a batch holds (until `until`): puts the next job to arrive into `batch`, waiting
    /// for it while the fsync in flight lasts (the time it waits is added to `waited`).
    /// `false` when the batch should commit now: the fsync returned, `until` passed, the batch
    /// is no longer small, or the queue closed.
    fn next(
        until: std::time::Instant,
        queue: &mut mpsc::Receiver<Message>,
        batch: &mut Vec<Box<dyn Job>>,
        stats: &Stats,
        waited: &mut std::time::Duration,
    ) -> bool {
        let began = std::time::Instant::now();
        let next = Self::wait_for_next(until, queue, batch, stats);
        *waited = waited.saturating_add(began.elapsed());
        next
    }

    /// Parks the writer until a job arrives (the queue's waker unparks it), the syncer's fsync
    /// returns (the syncer unparks it, `durable::sync_loop`) or `until` passes. (It polled the
    /// queue every 50 µs before: each poll a timer, a sleep and a wake-up of the writer, 160–800
    /// a second at 9,000 verifies/s, and a commit up to a poll late after its fsync returned.)
    /// A wake-up for something else, or for a moment already passed, only costs one more
    /// look: every condition is checked again after it.
    fn wait_for_next(
        until: std::time::Instant,
        queue: &mut mpsc::Receiver<Message>,
        batch: &mut Vec<Box<dyn Job>>,
        stats: &Stats,
    ) -> bool {
        let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        while Self::small(batch.len()) && stats.unsynced.load(Ordering::Acquire) > 0 {
            let now = std::time::Instant::now();
            if now >= until {
                break;
            }
            match queue.poll_recv(&mut cx) {
                std::task::Poll::Ready(Some(message)) => {
                    let before = batch.len();
                    message.take(queue, batch);
                    if batch.len() > before {
                        return true;
                    }
                }
                std::task::Poll::Ready(None) => return false,
                std::task::Poll::Pending => {
                    std::thread::park_timeout(until.saturating_duration_since(now));
                }
            }
        }
        false
    }

    /// Counts a batch of `len` jobs into the average.
    fn count(&mut self, len: usize) {
        // average += (16 * len - average) / 16, in integers.
        self.average = self.average - self.average / 16 + len as u64;
    }
}

/// Wakes a parked thread: the waker a holding batch leaves with the queue
/// ([`Linger::wait_for_next`]), so that a job sent to it unparks the writer.
#[derive(Debug)]
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// When the writer folds ([`fold`]): after [`fold::FOLD_AT`] jobs, or
/// [`fold::FOLD_FINGERPRINTS`] pending fingerprints, or once the queue is empty and the last
/// fold is [`IDLE_FOLD`] old, so that a quiet ledger's tail stays short too. A fold is
/// [`fold::Staged`]: one step after a batch, and more while the queue is empty, each taken
/// only when the fold's pace allows it ([`FOLD_SHARE`]). (One transaction per part, each after
/// a batch, was measured: 11.3–11.6k verifies/s against 12.4–12.7k in one, and no better p99,
/// because those parts were copied in the order they were appended, each page taking one row
/// per transaction; slices of keys in order do not have that cost.)
#[derive(Debug)]
struct Folds {
    /// Jobs committed since the last fold started.
    jobs: u64,
    /// When the last fold started.
    last: std::time::Instant,
    /// Jobs the staged fold is folding: those committed since the fold before it started.
    folding: u64,
    /// When the uses were last added to the counters (or that failed).
    counted: std::time::Instant,
    /// Whether the last count failed.
    count_failed: bool,
    staged: Option<fold::Staged>,
    /// The writer's time the staged fold's steps have taken.
    spent: std::time::Duration,
}

/// A staged fold takes at most one part in `FOLD_SHARE` of the writer's time since it started:
/// once its steps have taken 1 ms in all, the next waits until the fold is 8 ms old. Why: an
/// empty queue is not an idle writer. At 10,000 verifies/s every request in flight sat waiting
/// for an fsync while the writer, finding its queue empty, took fold steps back to back
/// (0.3–1.3 ms each, up to 7 ms in a row); the requests that fsync answered came back to a
/// busy writer, the fold's pages made the next fsync longer, and for the 216–235 ms a fold
/// lasted the writer had less capacity than the load: 32–45 % of the requests sent during a
/// fold took more than 5 ms, against 2–4 % of the others. Paced at a quarter, 11–14 % did;
/// at an eighth, 4.3–4.5 % (docs/PERFORMANCE.md). A fold's steps take about 7 µs of the
/// writer's time per job folded, so an eighth keeps up with about 18,000 jobs/s. A fold that
/// falls behind ([`Folds::behind`]) is not paced, so that what readers scan past the marks,
/// and the pending fingerprints the writer holds, stay bounded whatever the load.
const FOLD_SHARE: u32 = 8;

/// Jobs past the marks (those a staged fold folds, and those committed since it started)
/// from which the fold is behind and no longer paced: twice [`fold::FOLD_AT`]. Pacing makes a
/// fold last longer, and until it ends readers scan all of these: an order's view, which
/// scans them once, took 4.95 ms behind 16,384 entries and 8.75 ms behind 32,768 in the
/// `sqlite3` shell (docs/PERFORMANCE.md, "Fifteenth session"). The pace measured in
/// docs/PERFORMANCE.md stopped once 16,384 jobs came after the fold's start, about as many
/// past the marks under load.
const BEHIND_AT: u64 = 2 * fold::FOLD_AT;

/// Pending fingerprints from which a staged fold is behind: twice
/// [`fold::FOLD_FINGERPRINTS`], the slack [`BEHIND_AT`] gives the jobs. (The writer forgets a
/// fold's fingerprints only at its end, so a fold that 65,536 pending fingerprints started
/// would otherwise never be paced.) Bounds the writer's memory of them at about 13 MB.
const BEHIND_FINGERPRINTS: usize = 2 * fold::FOLD_FINGERPRINTS;

/// How old the last fold must be before an idle moment folds what is pending.
const IDLE_FOLD: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for Folds {
    fn default() -> Self {
        Self {
            jobs: 0,
            last: std::time::Instant::now(),
            folding: 0,
            counted: std::time::Instant::now(),
            count_failed: false,
            staged: None,
            spent: std::time::Duration::ZERO,
        }
    }
}

impl Folds {
    /// Called after each committed batch of `jobs` jobs; `idle` says whether the queue is
    /// empty now (asked again before each further step). Returns how long the writer should
    /// wait for its next step when nothing else will wake it ([`Folds::steps`]).
    fn after_commit(
        &mut self,
        conn: &Connection,
        snapshots: &mut Snapshots,
        jobs: u64,
        idle: impl Fn() -> bool,
        stats: &Stats,
        broken: &Broken,
    ) -> Option<std::time::Duration> {
        self.jobs = self.jobs.saturating_add(jobs);
        // An fsync failed since the commit: nothing more is written (see `durable`).
        if broken.is_set() {
            return None;
        }
        // After a failed count, the next attempt waits as long as an idle count would: a
        // counter that cannot take its uses fails every time, and is logged once a second,
        // not once per batch.
        let stale = self.counted.elapsed() >= IDLE_FOLD;
        if stale || !self.count_failed {
            match count_uses(conn, &idle, stale, stats) {
                Counting::Nothing => {}
                outcome => {
                    self.counted = std::time::Instant::now();
                    self.count_failed = outcome == Counting::Failed;
                }
            }
        }
        if self.staged.is_none() {
            let due = self.jobs >= fold::FOLD_AT
                || snapshots.pending.len() >= fold::FOLD_FINGERPRINTS
                || (self.jobs > 0 && self.last.elapsed() >= IDLE_FOLD && idle());
            if !due {
                return None;
            }
            self.last = std::time::Instant::now();
            self.folding = std::mem::take(&mut self.jobs);
            self.spent = std::time::Duration::ZERO;
            match fold::Staged::start(conn) {
                Ok(staged) => self.staged = staged,
                Err(e) => tracing::warn!(error = %e, "starting a fold failed"),
            }
        }
        self.steps(conn, snapshots, idle, stats, broken)
    }

    /// Whether the staged fold is behind: too many jobs past the marks ([`BEHIND_AT`]), or
    /// too many fingerprints pending ([`BEHIND_FINGERPRINTS`]).
    fn behind(&self, snapshots: &Snapshots) -> bool {
        self.folding.saturating_add(self.jobs) >= BEHIND_AT
            || snapshots.pending.len() >= BEHIND_FINGERPRINTS
    }

    /// How long until the staged fold's pace allows its next step (zero when it is behind);
    /// `None` without a staged fold.
    fn wait_for_pace(&self, snapshots: &Snapshots) -> Option<std::time::Duration> {
        self.staged.as_ref()?;
        if self.behind(snapshots) {
            return Some(std::time::Duration::ZERO);
        }
        // Durations, not instants: the budget saturates rather than overflows.
        let budget = self.spent.saturating_mul(FOLD_SHARE);
        Some(budget.saturating_sub(self.last.elapsed()))
    }

    /// Takes the staged fold's next steps: the first whenever the fold's pace allows it, more
    /// while it still does and `idle` says the queue is empty. When the pace stops a step and
    /// the queue is empty, returns how long until it allows one, for the writer to ask the
    /// ticker: nothing else may wake the writer before the fold is done (a ledger that turns
    /// quiet). A broken store ([`Broken`]) writes nothing more: the staged fold is dropped.
    fn steps(
        &mut self,
        conn: &Connection,
        snapshots: &mut Snapshots,
        idle: impl Fn() -> bool,
        stats: &Stats,
        broken: &Broken,
    ) -> Option<std::time::Duration> {
        let mut first = true;
        while let Some(wait) = self.wait_for_pace(snapshots) {
            if broken.is_set() {
                self.staged = None;
                return None;
            }
            if !first && !idle() {
                return None;
            }
            first = false;
            if !wait.is_zero() {
                return idle().then_some(wait);
            }
            let Some(staged) = &mut self.staged else {
                return None;
            };
            let began = std::time::Instant::now();
            let clock = ThreadClock::start(tracing::enabled!(tracing::Level::TRACE));
            let what = staged.next_step();
            let step = staged.step(conn, &mut snapshots.pending);
            let took = began.elapsed();
            let thread = ThreadClock::spent(clock);
            self.spent = self.spent.saturating_add(took);
            tracing::trace!(
                step = what,
                took_us = micros(took),
                cpu_us = thread.cpu_us,
                waited_us = thread.waited_us,
                ok = step.is_ok(),
                "a fold step"
            );
            match step {
                Ok(fold::Step::More) => {}
                Ok(fold::Step::Done(folded)) => {
                    let (took_us, busy_us) = (micros(self.last.elapsed()), micros(self.spent));
                    tracing::debug!(
                        fingerprints = folded.fingerprints,
                        uses = folded.uses,
                        entries = folded.entries,
                        app_entries = folded.app_entries,
                        took_us,
                        busy_us,
                        "folded the ledger's lookups"
                    );
                    stats.last_fold_us.store(took_us, Ordering::Relaxed);
                    stats.last_fold_busy_us.store(busy_us, Ordering::Relaxed);
                    // Release: whoever sees the count sees the figures of that fold.
                    stats.folds.fetch_add(1, Ordering::Release);
                    self.staged = None;
                }
                // The rows stay in the tail, where readers find them; a later fold starts
                // again from the marks. Pending fingerprints it had already forgotten may
                // still be in the writer's memory: it is read again at the next lookup.
                Err(e) => {
                    tracing::warn!(error = %e, "folding the ledger's lookups failed");
                    self.staged = None;
                    snapshots.pending.invalidate();
                }
            }
        }
        None
    }
}

/// Requests for a tick the ticker has not read yet, at most.
const TICK_REQUESTS: usize = 8;

/// The writer's end of the ticker's requests: asks for a tick only when none is due by then.
///
/// Why: the writer asks after each commit that leaves its queue empty while the fold's pace
/// holds its next step, which at saturation was most commits. Each request woke the ticker,
/// and the thread it wakes often takes the writer's CPU on the spot: in 3 s at saturation
/// (`perf record -e sched:sched_switch` of the writer) 802 of its preemptions came right after
/// a tick request, 943 after handing a commit to the syncer (docs/PERFORMANCE.md,
/// "Twenty-eighth session"). A tick already due no later than the one asked for does what the
/// new request would, so the request is not sent.
#[derive(Debug)]
struct TickRequests {
    sender: std::sync::mpsc::SyncSender<std::time::Duration>,
    /// When the earliest tick sent and not yet due falls due (a past instant counts as none).
    due: Option<std::time::Instant>,
}

impl TickRequests {
    fn new(sender: std::sync::mpsc::SyncSender<std::time::Duration>) -> Self {
        Self { sender, due: None }
    }

    /// Asks for a tick in `wait` from `now`, unless one is due by then. A tick whose time has
    /// come no longer counts: the ticker may not have delivered it yet, or the writer's full
    /// queue may have refused it, so the request is sent.
    fn ask(&mut self, wait: std::time::Duration, now: std::time::Instant) {
        let at = now.checked_add(wait).unwrap_or(now);
        if self.due.is_some_and(|due| due > now && due <= at) {
            return;
        }
        // A request that finds the channel full is dropped (`run` says why), and is not
        // remembered as due.
        if self.sender.try_send(wait).is_ok() {
            self.due = Some(match self.due {
                Some(due) if due > now => due.min(at),
                _ => at,
            });
        }
    }
}

/// The ticker: puts a [`Message::Tick`] in the writer's queue once the earliest wait it was
/// asked for has passed, so that a paced fold goes on although no job arrives
/// ([`Folds::steps`]). Its sender is weak: it never keeps the queue open. It stops as soon as
/// the writer drops its end of `waits`, sleeping or not.
fn tick_loop(
    waits: &std::sync::mpsc::Receiver<std::time::Duration>,
    queue: &mpsc::WeakSender<Message>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut due: Option<std::time::Instant> = None;
    loop {
        let asked = match due {
            None => waits.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => {
                waits.recv_timeout(due.saturating_duration_since(std::time::Instant::now()))
            }
        };
        match asked {
            Ok(wait) => {
                let at = std::time::Instant::now().checked_add(wait);
                due = match (due, at) {
                    (Some(due), Some(at)) => Some(due.min(at)),
                    (due, at) => due.or(at),
                };
            }
            Err(RecvTimeoutError::Timeout) => {
                due = None;
                let Some(queue) = queue.upgrade() else {
                    return;
                };
                // A full queue wakes the writer anyway; a closed one is shutting down.
                let _ = queue.try_send(Message::Tick);
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// After a commit: adds the uses past the counters' mark to the counters
/// ([`fold::count_uses`]), a slice per transaction, while a whole slice is waiting, and what is
/// left once the queue is empty and the last count is `stale` ([`IDLE_FOLD`] old: counting
/// the few uses of each small batch at half load wrote more than it saved, 16.3 KB per verify
/// against 15.5). A failure is only logged: the uses stay past the mark, where every reader
/// counts them, and a later commit tries again.
fn count_uses(conn: &Connection, idle: &impl Fn() -> bool, stale: bool, stats: &Stats) -> Counting {
    let mut any = Counting::Nothing;
    loop {
        let waiting = match fold::count_marks(conn) {
            Ok((mark, newest)) => newest.saturating_sub(mark),
            Err(e) => {
                tracing::warn!(error = %e, "reading the counters' mark failed");
                return Counting::Failed;
            }
        };
        if waiting <= 0 || (waiting < fold::COUNT_SLICE && !(stale && idle())) {
            return any;
        }
        let began = std::time::Instant::now();
        let clock = ThreadClock::start(tracing::enabled!(tracing::Level::TRACE));
        let slice = fold::count_slice(conn, fold::COUNT_SLICE);
        let spent = ThreadClock::spent(clock);
        match slice {
            Ok(counted) => {
                tracing::trace!(
                    counted,
                    took_us = micros(began.elapsed()),
                    cpu_us = spent.cpu_us,
                    waited_us = spent.waited_us,
                    "counted folded uses"
                );
                stats.counted_uses.fetch_add(counted, Ordering::Relaxed);
                any = Counting::Counted;
                if counted == 0 {
                    return any;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "counting folded uses failed");
                return Counting::Failed;
            }
        }
    }
}

/// What [`count_uses`] did after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    /// Nothing was due.
    Nothing,
    /// Uses were added to the counters.
    Counted,
    /// Reading the mark or counting failed.
    Failed,
}

/// After a commit: wake the checkpointer every [`durable::CHECKPOINT_PAGES`] new pages, and
/// once the log is longer than `restart_pages` ([`RESTART_PAGES`]), finish the checkpoint here
/// so that the next transaction restarts the log (the checkpointer alone may never catch up
/// with a busy writer). A failure is only logged: the log grows until a later attempt succeeds.
fn maintain_wal(conn: &Connection, nudge: &mut Nudge, restart_pages: i32) {
    let pages = WAL_PAGES.with(Cell::get);
    nudge.after_commit(pages);
    if pages >= restart_pages {
        let began = std::time::Instant::now();
        match durable::passive_checkpoint(conn) {
            Ok(progress) => tracing::trace!(
                pages,
                ?progress,
                took_us = micros(began.elapsed()),
                "checkpointed the WAL on the writer"
            ),
            Err(e) => tracing::warn!(
                error = %super::rows::chain(&e),
                "WAL checkpoint on the writer failed"
            ),
        }
    }
}

/// A duration in whole microseconds, for trace events.
pub(crate) fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs one transaction holding every job of `batch`, and those `more` adds to it after the
/// ones before have run (it returns `false` when the batch should commit); the result is the
/// transaction's fate.
///
/// Jobs run without savepoints while every one so far is [`Job::repeatable`] ([`run_jobs`]).
/// If one of them fails after writing, its writes cannot be undone alone: the transaction is
/// rolled back and every job of the batch so far runs again, each in its own savepoint, as
/// do the jobs `more` adds after that.
fn run_batch(
    conn: &Connection,
    prepared: &dyn Prepared,
    snapshots: &mut Snapshots,
    batch: &mut Vec<Box<dyn Job>>,
    stats: &Stats,
    mut more: impl FnMut(&mut Vec<Box<dyn Job>>) -> bool,
) -> Result<(), LedgerError> {
    exec(conn, "BEGIN IMMEDIATE", "starting a write transaction")?;
    let result = begin(conn, snapshots)
        .and_then(|()| {
            let mut ran = 0;
            let mut guarded = false;
            loop {
                let jobs = batch.get_mut(ran..).unwrap_or_default();
                if run_jobs(conn, prepared, snapshots, jobs, &mut guarded)? == Ran::Unguarded {
                    stats.guarded_reruns.fetch_add(1, Ordering::Relaxed);
                    exec(conn, "ROLLBACK", "rolling back to run a batch again")?;
                    // What the jobs put in the snapshots describes writes just undone.
                    snapshots.clear();
                    exec(conn, "BEGIN IMMEDIATE", "starting a write transaction")?;
                    begin(conn, snapshots)?;
                    guarded = true;
                    // Guarded, every job runs to its end: nothing is left to run again.
                    run_jobs(conn, prepared, snapshots, batch, &mut guarded)?;
                }
                ran = batch.len();
                if !more(batch) {
                    return Ok(());
                }
            }
        })
        .and_then(|()| exec(conn, "COMMIT", "committing"));
    if result.is_err() && !conn.is_autocommit() {
        // COMMIT (or a control statement) failed with the transaction still open: undo it all,
        // so nothing of a batch whose jobs are told "failed" can be committed later.
        if let Err(e) = exec(conn, "ROLLBACK", "rolling back a failed batch") {
            tracing::error!(error = %e, "the failed batch could not be rolled back");
        }
    }
    result
}

fn begin(conn: &Connection, snapshots: &mut Snapshots) -> Result<(), LedgerError> {
    snapshots
        .begin_batch(conn)
        .map_err(|e| ledger_error("checking for other writers", &e))
}

/// How [`run_jobs`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    /// Every job ran, and those that failed left nothing behind.
    All,
    /// A job without a savepoint failed after it had written: the transaction must be rolled
    /// back (the jobs after it did not run).
    Unguarded,
}

/// Runs `jobs` in the open transaction. A job runs in its own `SAVEPOINT job` once `guarded`
/// is set, which the first job that is not [`Job::repeatable`] sets for the rest of the
/// transaction; before that, without one.
///
/// Why: a savepoint makes SQLite copy every page a job changes into its sub-journal first
/// (4 KiB each, the last page of every table a verify appends to: about 15,000 of the
/// writer's 270,000 instructions per verify, docs/PERFORMANCE.md), so that `ROLLBACK TO` can
/// put them back. A repeatable job that fails without having written (a refusal decided by
/// its plan, the usual kind) needs nothing put back; one that fails after writing is rare (a
/// write that changed no row, a full disk), and is worth a second run of its batch.
fn run_jobs(
    conn: &Connection,
    prepared: &dyn Prepared,
    snapshots: &mut Snapshots,
    jobs: &mut [Box<dyn Job>],
    guarded: &mut bool,
) -> Result<Ran, LedgerError> {
    for job in jobs.iter_mut() {
        *guarded |= !job.repeatable();
        let guard = if *guarded {
            exec(conn, "SAVEPOINT job", "opening a job's savepoint")?;
            Guard::Savepoint
        } else {
            Guard::Unguarded {
                changes: conn.total_changes(),
            }
        };
        let mut tx = Tx {
            conn,
            prepared,
            snapshots: &mut *snapshots,
            guard,
        };
        let ran = catch_unwind(AssertUnwindSafe(|| job.run(&mut tx))).unwrap_or_else(|_| {
            tracing::error!("a ledger write job panicked; its changes are rolled back");
            Err(LedgerError::Internal("a write job panicked".into()))
        });
        match (ran, guard) {
            (Ok(()), Guard::Savepoint) => {
                exec(conn, "RELEASE job", "releasing a job's savepoint")?;
            }
            (Ok(()), Guard::Unguarded { .. }) => {}
            // Some errors (I/O, disk full) make SQLite roll the whole transaction back: the
            // neighbours' work is gone too, so the batch fails.
            (Err(e), _) if conn.is_autocommit() => {
                return Err(match e {
                    LedgerError::Unavailable(m) => LedgerError::Unavailable(format!(
                        "the write transaction was rolled back: {m}"
                    )),
                    other => LedgerError::Internal(format!(
                        "the write transaction was rolled back: {other}"
                    )),
                });
            }
            (Err(_), Guard::Savepoint) => {
                exec(conn, "ROLLBACK TO job", "undoing a refused job")?;
                exec(conn, "RELEASE job", "releasing a refused job's savepoint")?;
            }
            // Nothing written: the error is the job's answer, and its neighbours stand.
            (Err(_), Guard::Unguarded { changes }) if conn.total_changes() == changes => {}
            (Err(_), Guard::Unguarded { .. }) => return Ok(Ran::Unguarded),
        }
    }
    Ok(Ran::All)
}

/// Runs a parameterless control statement through the statement cache.
fn exec(conn: &Connection, sql: &str, during: &'static str) -> Result<(), LedgerError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .map(drop)
        .map_err(|e| ledger_error(during, &e))
}

#[cfg(test)]
mod tests;
