//! Group commit on PostgreSQL and MySQL/MariaDB: verifies queued together are applied in one
//! transaction of a fixed number of statements.
//!
//! One verify on its own is a transaction of about ten round trips (lock the order, read its
//! vouchers, refunds and fingerprints, update, log, remember, audit, commit), each a statement
//! the server parses, plans and runs, and a commit the server makes durable. Under load most
//! of that is repeated work, so verifies named by `order_id` go through a queue instead, and a
//! worker takes everything queued (up to [`MAX_BATCH`] verifies, or [`MAX_BATCH_ENTRIES`]
//! reported uses) into one transaction:
//!
//! The planning and the bulk writes are [`super::bulk`]; here, the queue and its workers.
//!
//! 1. lock every order of the batch, in `order_id` order (`SELECT … FOR UPDATE`; the same order
//!    in every process, so two batches can wait for each other but never deadlock), and read
//!    the codes the batch names with their orders' totals (`bulk::read_batch`: not every
//!    code of every order), the refund requests and the fingerprints the batch could replay —
//!    four statements whatever the batch's size (five when a legacy report without a code
//!    makes its order be read whole), which go to the server in one round trip with the
//!    `BEGIN`;
//! 2. plan each verify with the domain's rules ([`plan_verify`](ticket_ledger::plan_verify)) in arrival order, on snapshots
//!    that earlier verifies of the batch have already updated, exactly as if they had run one
//!    after another. A refused verify contributes nothing but the anomaly its refusal raises;
//! 3. write every accepted plan in bulk — counters (still the conditional
//!    `used + n <= capacity`), the use log, fingerprints, review marks, audit entries,
//!    anomalies — the rows of every plan ([`VerifyRows`]) travelling as one JSON parameter
//!    per table (`Engine::json_rows`): on MySQL one statement per table; on PostgreSQL one
//!    statement for them all (`Engine::pg_write_verify`, which checks its own counts), sent
//!    with the events and the `COMMIT` in one round trip; then commit once. Only then is any
//!    verify of the batch answered.
//!
//! A batch is about ten round trips (two on PostgreSQL) for up to [`MAX_BATCH`] verifies
//! instead of ten each, and one durable commit instead of one each. A batch the engine asks to
//! retry (deadlock, serialization failure, lock timeout) runs again from the start, with fresh
//! reads. A batch that fails otherwise is not answered with its failure: each of its verifies
//! runs again alone ([`Db::verify_alone`]), so a request never fails because of a neighbour.
//! That includes a batch whose conditional updates did not change every row they must: under
//! the orders' locks that means the database disagrees with what was read, and running alone
//! pins it on the verify whose write changes no row, which is refused with
//! `LedgerError::WriteChangedNoRow` and recorded as an anomaly, while its neighbours apply.
//!
//! A batch whose `COMMIT` got no answer (the connection failed) is looked up like any write
//! ([`super::outcome`]): found, every verify gets its planned answer; not found, it failed
//! like any other batch; still unknown, each accepted verify is answered
//! `LedgerError::OutcomeUnknown` with its own `request_id` and gets its own anomaly (a refused
//! one keeps its refusal: nothing of it depended on the commit).
//!
//! Several batches may run at once (`PoolSettings::batch_workers`), each on its own pooled
//! connection: while one waits for its round trips, the next is gathered. Each worker has a
//! queue of its own, and a verify goes to the worker its `order_id` picks
//! ([`Batcher::verify`]), so every verify of one order is applied by the same worker:
//!
//! - two workers of a process never wait for each other's order locks. With one shared queue,
//!   a tour group's verifies (60 orders of 500 codes, 64 gates) were spread over all the
//!   workers, every batch named orders another batch held, and the workers ran one after
//!   another, each holding its locks through its commit: 0.8–1.0k verifies/s on PostgreSQL;
//! - a worker that is busy gathers the next batch meanwhile, so batches grow with the load. A
//!   shared queue let any idle worker take a verify the moment it arrived: at 64 clients,
//!   six batches in ten carried one verify, each a transaction of its own.
//!
//! Verifies of different processes still take the orders' row locks, in `order_id` order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::AssertSqlSafe;
use ticket_ledger::{LedgerError, VerifyCommand, VerifyOutcome, VerifyUses};
use tokio::sync::{mpsc, oneshot};

use super::bulk::{self, Answers};
use super::db::{failure_text, During, Failure};
use super::engine::{Engine, ErrorClass};
use super::trace::{unknown_anomaly, Fence, Trace};
use super::Db;
use crate::plan_rows::VerifyRows;

/// Most verifies in one transaction.
pub(crate) const MAX_BATCH: usize = 128;

/// Most `voucher_infos` entries in one transaction (a batch takes one more verify only while
/// it holds fewer): batches of 999-entry reports stay a few megabytes of parameters, well
/// within MariaDB's default 16 MiB `max_allowed_packet`.
pub(crate) const MAX_BATCH_ENTRIES: usize = 2048;

/// Verifies that may wait for a batch before callers are made to wait.
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// One queued verify and where its answer goes.
struct Job {
    cmd: VerifyCommand,
    reply: oneshot::Sender<Result<VerifyOutcome, LedgerError>>,
}

/// The workers' queues, kept by the store.
#[derive(Debug)]
pub(crate) struct Batcher {
    /// One sending side per worker, `None` once closed.
    queues: std::sync::Mutex<Option<Vec<mpsc::Sender<Job>>>>,
    counters: Arc<Counters>,
}

/// What the workers count, for `/metrics` and tests.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    failed: AtomicU64,
    jobs: AtomicU64,
    largest: AtomicU64,
    queued: AtomicU64,
}

impl Batcher {
    /// Starts `workers` workers on the current Tokio runtime.
    pub(crate) fn start(db: Db, workers: usize) -> Self {
        let counters = Arc::new(Counters::default());
        let queues = (0..workers.max(1))
            .map(|_| {
                let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(work(jobs, db.clone(), Arc::clone(&counters)));
                queue
            })
            .collect();
        Self {
            queues: std::sync::Mutex::new(Some(queues)),
            counters,
        }
    }

    /// The batches so far (`syncs`: each commit is made durable by the server).
    pub(crate) fn stats(&self) -> ticket_ledger::BatchStats {
        let c = &self.counters;
        let commits = c.commits.load(Ordering::Relaxed);
        ticket_ledger::BatchStats {
            commits,
            failed_batches: c.failed.load(Ordering::Relaxed),
            jobs: c.jobs.load(Ordering::Relaxed),
            largest_batch: c.largest.load(Ordering::Relaxed),
            syncs: commits,
            queued: c.queued.load(Ordering::Relaxed),
            folds: 0,
            counted_uses: 0,
            guarded_reruns: 0,
        }
    }

    /// Applies `cmd` (named by `order_id`) in the next batch of the worker its order belongs
    /// to, and answers once that batch has committed.
    pub(crate) async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        let queue = {
            let queues = self
                .queues
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let queues = queues.as_ref().ok_or_else(closed)?;
            // Order ids are spread evenly enough by themselves (the platform hands them out
            // in sequence); a verify without one cannot reach the batcher.
            let order = cmd.order.order_id().map_or(0, |id| id.get().unsigned_abs());
            let worker = (order % queues.len() as u64) as usize;
            queues[worker].clone()
        };
        let (reply, answer) = oneshot::channel();
        // Counted before it is sent: the worker takes it off the count when it takes the job.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if queue.send(Job { cmd, reply }).await.is_err() {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(closed());
        }
        answer
            .await
            .map_err(|_| LedgerError::Internal("a verify batch ended without answering".into()))?
    }

    /// Takes no more verifies; the workers finish what is queued and stop.
    pub(crate) fn close(&self) {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

/// How many uses a verify reports (a legacy report counts as one).
fn entries_of(cmd: &VerifyCommand) -> usize {
    match &cmd.uses {
        VerifyUses::Vouchers { entries, .. } => entries.len().max(1),
        VerifyUses::Code { .. } | VerifyUses::Order { .. } => 1,
    }
}

fn closed() -> LedgerError {
    LedgerError::Unavailable("the ledger is closed".into())
}

/// A worker: takes the first waiting verify of its queue and whatever else is queued there,
/// runs them as a batch, answers, and starts over, until the queue is closed and drained.
async fn work(mut queue: mpsc::Receiver<Job>, db: Db, counters: Arc<Counters>) {
    loop {
        let mut batch = Vec::new();
        match queue.recv().await {
            Some(job) => batch.push(job),
            None => return,
        }
        let mut entries = batch.iter().map(|j| entries_of(&j.cmd)).sum::<usize>();
        while batch.len() < MAX_BATCH && entries < MAX_BATCH_ENTRIES {
            match queue.try_recv() {
                Ok(job) => {
                    entries += entries_of(&job.cmd);
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let size = batch.len() as u64;
        counters.queued.fetch_sub(size, Ordering::Relaxed);
        counters.jobs.fetch_add(size, Ordering::Relaxed);
        counters.largest.fetch_max(size, Ordering::Relaxed);
        run(&db, batch, &counters).await;
    }
}

/// Counts a batch as committed or failed. Called before its jobs are answered, so that a
/// caller who reads the counters after its answer finds its batch in them.
fn count_batch(counters: &Counters, committed: bool) {
    let counter = if committed {
        &counters.commits
    } else {
        &counters.failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Runs one batch to its answers (see the module docs), counting it as committed (as a batch)
/// or failed before it answers.
async fn run(db: &Db, batch: Vec<Job>, counters: &Counters) {
    let started = std::time::Instant::now();
    let cmds: Vec<&VerifyCommand> = batch.iter().map(|j| &j.cmd).collect();
    let mut attempt = 1;
    let outcome = loop {
        let failure = match attempt_batch(db, &cmds).await {
            Ok(answered) => break Ok(answered),
            Err(failure) => failure,
        };
        let class = match &failure {
            // The attempt closed its connection (`Open`): the next one prepares anew.
            Failure::Db { error, .. } if bulk::is_stale_prepared(db.engine, error) => {
                ErrorClass::Retry
            }
            Failure::Db { error, .. } => db.engine.classify(error),
            Failure::Conflict(_) => ErrorClass::Retry,
            Failure::Refused(_) | Failure::OutcomeUnknown { .. } => ErrorClass::Other,
        };
        if db.again(&class, attempt).await {
            tracing::debug!(attempt, size = cmds.len(), "retrying a verify batch");
            attempt += 1;
            continue;
        }
        break Err((failure, class, attempt));
    };
    match outcome {
        Ok((answers, committed)) => {
            tracing::debug!(
                size = batch.len(),
                attempts = attempt,
                elapsed_us = started.elapsed().as_micros() as u64,
                committed,
                "verify batch answered"
            );
            count_batch(counters, committed);
            for (job, answer) in batch.into_iter().zip(answers) {
                let _ = job.reply.send(answer);
            }
        }
        // A lone verify's failure is its own answer, except a write that changed no row: that
        // is pinned (and its anomaly recorded) by running the verify alone, below.
        Err((failure, class, attempts)) if batch.len() == 1 && !changed_no_row(&failure) => {
            count_batch(counters, false);
            let answer = match failure {
                Failure::Refused(refusal) => Err(refusal),
                failure => Err(db.ledger_error(&failure, &class, attempts)),
            };
            for job in batch {
                let _ = job.reply.send(answer.clone());
            }
        }
        // Every failure left here wrote nothing, the commit's included: the server answered
        // it with an error (a rollback), or the lookup found it had not happened.
        Err((failure, _, _)) => {
            tracing::warn!(
                size = batch.len(),
                failure = %failure_text(&failure),
                "a verify batch failed; running its verifies one by one"
            );
            count_batch(counters, false);
            for job in batch {
                let answer = db.verify_alone(&job.cmd).await;
                let _ = job.reply.send(answer);
            }
        }
    }
}

/// Whether a batch failed because one of its writes changed no row.
fn changed_no_row(failure: &Failure) -> bool {
    matches!(
        failure,
        Failure::Refused(LedgerError::WriteChangedNoRow { .. })
    )
}

/// One attempt at a batch in one transaction: the answers, in the batch's order, once it has
/// committed, and whether it did (`false`: its outcome stayed unknown, and the answers say
/// so).
///
/// The transaction is begun and ended by statements ticketd sends (`BEGIN` with the reads,
/// [`bulk::plan_batch`]; `COMMIT` after the writes, [`bulk::commit_statement`]), not by sqlx:
/// the `BEGIN` then travels in the reads' round trip, and on PostgreSQL the `COMMIT` in the
/// writes' (two round trips a batch there instead of eight). [`Open`] sees that its
/// connection never goes back to the pool inside that transaction.
async fn attempt_batch(db: &Db, cmds: &[&VerifyCommand]) -> Result<(Answers, bool), Failure> {
    let conn = db
        .pool
        .acquire()
        .await
        .during("taking a connection for a verify batch")?;
    let mut open = Open { conn, open: true };
    let planned = async {
        let (answers, rows) = bulk::plan_batch(&mut open.conn, db.engine, cmds).await?;
        bulk::write_verify(&mut open.conn, db.engine, &rows).await?;
        let commit = bulk::commit_statement(db.engine, &rows)?;
        Ok::<_, Failure>((answers, rows, commit))
    }
    .await;
    let (answers, rows, commit) = match planned {
        Ok(planned) => planned,
        Err(failure) => {
            let cause = match &failure {
                Failure::Db { error, .. } => Some(error),
                _ => None,
            };
            open.roll_back(db.engine, cause).await;
            return Err(failure);
        }
    };
    // `open` is gone after this: a connection whose commit answer was lost is closed now,
    // releasing whatever the server still holds for it before the lookup below looks.
    let committed = open.commit(db.engine, commit).await;
    if let Err(sqlx::Error::Database(error)) = &committed {
        if let Some(refusal) = bulk::refusal_of(error.as_ref()) {
            return Err(Failure::Refused(refusal));
        }
    }
    if bulk::writes_nothing(&rows) {
        // Nothing written (every verify refused, no anomaly): the refusals stand whatever
        // became of the commit.
        if let Err(e) = committed {
            tracing::debug!(error = %e, "committing a batch that wrote nothing failed");
        }
        return Ok((answers, true));
    }
    // The trace is only built if the commit's answer is lost.
    match db.settle(committed, || trace(&rows, cmds, &answers)).await {
        Ok(()) => Ok((answers, true)),
        Err(Failure::OutcomeUnknown { .. }) => {
            let answers = cmds
                .iter()
                .zip(answers)
                .map(|(cmd, answer)| match answer {
                    Ok(_) => Err(LedgerError::OutcomeUnknown {
                        request_id: cmd.meta.request_id.clone(),
                    }),
                    refused => refused,
                })
                .collect();
            Ok((answers, false))
        }
        Err(failure) => Err(failure),
    }
}

/// A pooled connection whose transaction ticketd began with a statement of its own, so sqlx
/// does not know of it: dropped while that transaction may still be open (a failure whose
/// `ROLLBACK` failed too, a commit whose answer was lost, a cancelled attempt), the connection
/// is closed, which ends the transaction on the server, instead of going back to the pool.
struct Open {
    conn: PoolConnection<sqlx::Any>,
    /// Whether the transaction may still be open.
    open: bool,
}

impl Open {
    /// Sends `commit` (the statement that ends the batch, `COMMIT` last) and answers the
    /// server's answer to it. An error the server answered means nothing was committed: what
    /// is left of the transaction (aborted, on PostgreSQL, by a failed statement before the
    /// `COMMIT`) is rolled back. Any other error leaves the transaction's fate unknown: the
    /// connection is closed as this returns (dropped with `open` set), so that the server
    /// ends the transaction and releases its locks, which a lookup of the commit waits for.
    async fn commit(mut self, e: Engine, commit: String) -> Result<(), sqlx::Error> {
        let answer = sqlx::raw_sql(AssertSqlSafe(commit))
            .execute(&mut *self.conn)
            .await
            .map(drop);
        match &answer {
            Ok(()) => self.open = false,
            Err(error @ sqlx::Error::Database(_)) => self.roll_back(e, Some(error)).await,
            Err(_) => {}
        }
        answer
    }

    /// Rolls the transaction back after a failed statement (`cause`, when the database
    /// answered one); if that fails, the connection is closed when dropped. It is also closed,
    /// instead of going back to the pool, if `cause` says its prepared statements are stale
    /// ([`bulk::is_stale_prepared`]): they would fail every batch on it.
    async fn roll_back(&mut self, engine: Engine, cause: Option<&sqlx::Error>) {
        match sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await {
            Ok(_) => self.open = false,
            Err(e) => tracing::warn!(
                error = %e,
                "rolling back a verify batch failed; its connection will be closed"
            ),
        }
        if let Some(error) = cause.filter(|error| bulk::is_stale_prepared(engine, error)) {
            tracing::warn!(
                error = %error,
                "a batch found its connection's prepared statements stale; closing it"
            );
            self.conn.close_on_drop();
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// How to find out whether the batch committed, should its `COMMIT` get no answer; `None`
/// when it writes nothing.
fn trace(rows: &VerifyRows, cmds: &[&VerifyCommand], answers: &Answers) -> Option<Trace> {
    let mark = bulk::mark(rows)?;
    let requests = cmds
        .iter()
        .zip(answers)
        .filter_map(|(cmd, answer)| {
            let outcome = answer.as_ref().ok()?;
            Some(unknown_anomaly(
                Some(outcome.order_id.get()),
                Some(cmd.app_key.as_str().to_owned()),
                &cmd.meta,
            ))
        })
        .collect();
    Some(Trace {
        fence: vec![Fence::Orders(bulk::order_ids(cmds))],
        mark,
        requests,
    })
}
