//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time. Rather than have many tasks contend for the write lock
//! (and sleep in `busy_timeout`), one OS thread owns the only read-write connection and every
//! write is a job sent to it over a channel. That thread:
//!
//! 1. waits for a job, then takes whatever else is already queued (up to [`MAX_BATCH`]);
//! 2. runs `BEGIN IMMEDIATE`, then each job inside its own `SAVEPOINT`: a job that is refused or
//!    fails does `ROLLBACK TO` + `RELEASE`, so it leaves no trace and does not fail its
//!    neighbours;
//! 3. `COMMIT`s once — with `synchronous=FULL` that is one fsync of the WAL for the whole batch;
//! 4. only then answers each job. If the commit fails, every job in the batch gets the commit's
//!    error: an `Ok` always means committed and fsynced, and a refusal computed against a
//!    neighbour's uncommitted change is never reported as final.
//!
//! Batching is what makes durable writes fast (STYLE §6): under load the fsync is shared by up
//! to [`MAX_BATCH`] requests, and a lone request pays no added latency because the writer never
//! waits for more work to arrive. It is a plain thread, not a task, so the transaction can never
//! be held open across an `.await`.
//!
//! Shutdown: [`Writer::close`] stops the queue from taking new jobs, lets the thread finish the
//! ones already queued, and waits until it has closed its connection. Dropping the [`Writer`]
//! does the same without waiting.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use ticket_ledger::LedgerError;
use tokio::sync::{mpsc, oneshot, watch};

use super::rows::ledger_error;

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
    /// The most jobs one transaction carried.
    pub largest_batch: u64,
}

/// Shared between the writer thread (which updates it) and the store (which reads it).
#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    failed_batches: AtomicU64,
    jobs: AtomicU64,
    largest_batch: AtomicU64,
}

/// One write, type-erased so jobs of every result type share one queue.
trait Job: Send {
    /// Runs the work (the caller has opened its savepoint). `Err` carries a copy of the job's
    /// own error so the batch can report it if the whole transaction is lost.
    fn run(&mut self, conn: &Connection) -> Result<(), LedgerError>;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, batch: Result<(), LedgerError>);
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
    F: FnOnce(&Connection) -> Result<T, LedgerError> + Send,
{
    fn run(&mut self, conn: &Connection) -> Result<(), LedgerError> {
        let result = match self.work.take() {
            Some(work) => work(conn),
            None => Err(LedgerError::Internal("a write job ran twice".into())),
        };
        let status = result.as_ref().map(drop).map_err(Clone::clone);
        self.result = Some(result);
        status
    }

    fn finish(self: Box<Self>, batch: Result<(), LedgerError>) {
        let answer = match (batch, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(result)) => result,
            // The job panicked (its result was never stored); its savepoint was rolled back.
            (Ok(()), None) => Err(LedgerError::Internal("a write job panicked".into())),
        };
        // The caller may have stopped waiting (request cancelled); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

enum Message {
    Job(Box<dyn Job>),
    /// Stop taking jobs; finish the queued ones and exit.
    Close,
}

/// The handle the store keeps: the queue's sending side.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Message>,
    /// Closed (its sender dropped) when the thread has finished and closed its connection.
    stopped: watch::Receiver<()>,
    stats: Arc<Stats>,
}

impl Writer {
    /// Starts the writer thread, which owns `conn` from now on.
    pub(crate) fn spawn(conn: Connection) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let (stopped_tx, stopped) = watch::channel(());
        let stats = Arc::new(Stats::default());
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                run(conn, jobs, &thread_stats);
                // Dropped last: whoever waits in `close` wakes once the connection is closed.
                drop(stopped_tx);
            })?;
        Ok(Self {
            queue,
            stopped,
            stats,
        })
    }

    /// Runs `work` in the next batch and returns its result once that batch has committed.
    ///
    /// If the calling future is dropped after the job was queued, the job still runs and may
    /// commit; only the answer is lost. Retries are safe because verifies are idempotent by
    /// fingerprint and creations answer "exists".
    pub(crate) async fn submit<T, F>(&self, work: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.queue
            .send(Message::Job(job))
            .await
            .map_err(|_| LedgerError::Unavailable("the ledger is closed".into()))?;
        answer.await.map_err(|_| {
            tracing::error!("the ledger writer stopped before answering a job");
            LedgerError::Internal("the ledger writer stopped before answering".into())
        })?
    }

    /// Lets the queued jobs finish, refuses new ones, and waits until the thread has closed the
    /// connection. Idempotent; every concurrent caller waits for the same end.
    pub(crate) async fn close(&self) {
        // If the queue is already closed, the thread is stopping anyway.
        let _ = self.queue.send(Message::Close).await;
        let mut stopped = self.stopped.clone();
        // `changed` fails once the thread dropped its sender; nothing is ever sent on it.
        while stopped.changed().await.is_ok() {}
    }

    /// Whether the thread still takes jobs.
    pub(crate) fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Whether at least `n` messages wait in the queue (tests hold the writer, queue jobs,
    /// and wait for this before releasing it, so the batch's content is deterministic).
    #[cfg(test)]
    pub(crate) fn queued_at_least(&self, n: usize) -> bool {
        QUEUE_DEPTH - self.queue.capacity() >= n
    }

    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            failed_batches: self.stats.failed_batches.load(Ordering::Relaxed),
            jobs: self.stats.jobs.load(Ordering::Relaxed),
            largest_batch: self.stats.largest_batch.load(Ordering::Relaxed),
        }
    }
}

/// The thread's loop: batch, run, answer, until the queue is closed and drained.
fn run(conn: Connection, mut queue: mpsc::Receiver<Message>, stats: &Stats) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    // `blocking_recv` returns `None` once every sender is gone or `close` was called, and in
    // both cases only after the messages already queued have been taken.
    while let Some(first) = queue.blocking_recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Job(job) => batch.push(job),
                Message::Close => queue.close(),
            }
            if batch.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let outcome = run_batch(&conn, &mut batch);
        let size = batch.len() as u64;
        stats.jobs.fetch_add(size, Ordering::Relaxed);
        stats.largest_batch.fetch_max(size, Ordering::Relaxed);
        match &outcome {
            Ok(()) => stats.commits.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.failed_batches.fetch_add(1, Ordering::Relaxed),
        };
        for job in batch.drain(..) {
            job.finish(outcome.clone());
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::error!(error = %super::rows::chain(&e), "closing the ledger write connection");
    }
}

/// Runs one transaction holding every job of `batch`; the result is the transaction's fate.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), LedgerError> {
    exec(conn, "BEGIN IMMEDIATE", "starting a write transaction")?;
    let result = run_jobs(conn, batch).and_then(|()| exec(conn, "COMMIT", "committing"));
    if result.is_err() && !conn.is_autocommit() {
        // COMMIT (or a control statement) failed with the transaction still open: undo it all,
        // so nothing of a batch whose jobs are told "failed" can be committed later.
        if let Err(e) = exec(conn, "ROLLBACK", "rolling back a failed batch") {
            tracing::error!(error = %e, "the failed batch could not be rolled back");
        }
    }
    result
}

fn run_jobs(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), LedgerError> {
    for job in batch.iter_mut() {
        exec(conn, "SAVEPOINT job", "opening a job's savepoint")?;
        let ran = catch_unwind(AssertUnwindSafe(|| job.run(conn))).unwrap_or_else(|_| {
            tracing::error!("a ledger write job panicked; its changes are rolled back");
            Err(LedgerError::Internal("a write job panicked".into()))
        });
        match ran {
            Ok(()) => exec(conn, "RELEASE job", "releasing a job's savepoint")?,
            // Some errors (I/O, disk full) make SQLite roll the whole transaction back: the
            // neighbours' work is gone too, so the batch fails.
            Err(e) if conn.is_autocommit() => {
                return Err(match e {
                    LedgerError::Unavailable(m) => LedgerError::Unavailable(format!(
                        "the write transaction was rolled back: {m}"
                    )),
                    other => LedgerError::Internal(format!(
                        "the write transaction was rolled back: {other}"
                    )),
                });
            }
            Err(_) => {
                exec(conn, "ROLLBACK TO job", "undoing a refused job")?;
                exec(conn, "RELEASE job", "releasing a refused job's savepoint")?;
            }
        }
    }
    Ok(())
}

/// Runs a parameterless control statement through the statement cache.
fn exec(conn: &Connection, sql: &str, during: &'static str) -> Result<(), LedgerError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .map(drop)
        .map_err(|e| ledger_error(during, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer_over(conn: Connection) -> Writer {
        Writer::spawn(conn).expect("spawn")
    }

    fn scratch() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
            .expect("schema");
        conn
    }

    fn count(conn: &Connection) -> Result<i64, LedgerError> {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .map_err(|e| ledger_error("count", &e))
    }

    /// Blocks the writer inside a job until the test has queued what it wants batched after it.
    async fn hold(
        writer: &Arc<Writer>,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<(), LedgerError>>,
    ) {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (entered_tx, entered) = oneshot::channel();
        let w = Arc::clone(writer);
        let handle = tokio::spawn(async move {
            w.submit(move |_| {
                let _ = entered_tx.send(());
                gate.recv()
                    .map_err(|_| LedgerError::Internal("gate".into()))
            })
            .await
        });
        entered.await.expect("the writer picked up the gate job");
        (release, handle)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_jobs_share_one_commit_and_a_refusal_spares_its_neighbours() {
        let writer = Arc::new(writer_over(scratch()));
        let (release, gate) = hold(&writer).await;
        let before = writer.stats();

        let mut tasks = Vec::new();
        for x in [1, 2, 2, 3] {
            let w = Arc::clone(&writer);
            tasks.push(tokio::spawn(async move {
                w.submit(move |conn| {
                    conn.execute("INSERT INTO t (x) VALUES (?1)", [x])
                        .map_err(|_| LedgerError::OrderExists)
                })
                .await
            }));
        }
        while !writer.queued_at_least(4) {
            tokio::task::yield_now().await;
        }
        release.send(()).expect("release");
        gate.await.expect("join").expect("gate job");

        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("join"));
        }
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            3,
            "{results:?}"
        );
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == Err(LedgerError::OrderExists))
                .count(),
            1
        );
        let after = writer.stats();
        assert_eq!(after.jobs - before.jobs, 5, "gate + 4");
        assert_eq!(
            after.commits - before.commits,
            2,
            "the gate's batch, then one for all four"
        );
        assert_eq!(after.largest_batch, 4);
        assert_eq!(writer.submit(count).await, Ok(3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_answers_every_job_with_an_error_and_keeps_nothing() {
        // A deferred foreign key is only checked at COMMIT, which is a cheap, deterministic way
        // to make a commit fail after every job of the batch succeeded.
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE c (pid INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TABLE t (x INTEGER NOT NULL UNIQUE);",
        )
        .expect("schema");
        let writer = Arc::new(writer_over(conn));
        let (release, gate) = hold(&writer).await;

        let w = Arc::clone(&writer);
        let good = tokio::spawn(async move {
            w.submit(|conn| {
                conn.execute("INSERT INTO t (x) VALUES (1)", [])
                    .map_err(|e| ledger_error("insert", &e))
            })
            .await
        });
        let w = Arc::clone(&writer);
        let doomed = tokio::spawn(async move {
            w.submit(|conn| {
                conn.execute("INSERT INTO c (pid) VALUES (42)", [])
                    .map_err(|e| ledger_error("insert", &e))
            })
            .await
        });
        while !writer.queued_at_least(2) {
            tokio::task::yield_now().await;
        }
        release.send(()).expect("release");
        gate.await.expect("join").expect("gate job");

        let good = good.await.expect("join");
        let doomed = doomed.await.expect("join");
        assert!(matches!(good, Err(LedgerError::Internal(_))), "{good:?}");
        assert!(
            matches!(doomed, Err(LedgerError::Internal(_))),
            "{doomed:?}"
        );
        assert_eq!(
            writer.submit(count).await,
            Ok(0),
            "nothing of the batch was kept"
        );
        assert_eq!(writer.stats().failed_batches, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_is_an_error_leaves_nothing_and_the_writer_goes_on() {
        let writer = Arc::new(writer_over(scratch()));
        let boom = writer
            .submit(|conn| -> Result<(), LedgerError> {
                conn.execute("INSERT INTO t (x) VALUES (7)", [])
                    .map_err(|e| ledger_error("insert", &e))?;
                panic!("job bug")
            })
            .await;
        assert!(matches!(boom, Err(LedgerError::Internal(_))), "{boom:?}");
        assert_eq!(
            writer.submit(count).await,
            Ok(0),
            "the panicking job left nothing"
        );
        let next = writer
            .submit(|conn| {
                conn.execute("INSERT INTO t (x) VALUES (8)", [])
                    .map_err(|e| ledger_error("insert", &e))
            })
            .await;
        assert_eq!(next, Ok(1), "the writer survived the panic");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_finishes_queued_jobs_then_refuses_new_ones() {
        let writer = Arc::new(writer_over(scratch()));
        let (release, gate) = hold(&writer).await;
        let w = Arc::clone(&writer);
        let queued = tokio::spawn(async move {
            w.submit(|conn| {
                conn.execute("INSERT INTO t (x) VALUES (1)", [])
                    .map(drop)
                    .map_err(|e| ledger_error("insert", &e))
            })
            .await
        });
        while !writer.queued_at_least(1) {
            tokio::task::yield_now().await;
        }
        let w = Arc::clone(&writer);
        let closing = tokio::spawn(async move { w.close().await });
        release.send(()).expect("release");
        closing.await.expect("join");
        gate.await.expect("join").expect("gate");
        assert_eq!(queued.await.expect("join"), Ok(()));
        assert!(!writer.is_running());
        assert!(matches!(
            writer.submit(count).await,
            Err(LedgerError::Unavailable(_))
        ));
        writer.close().await; // again: returns at once
    }
}
