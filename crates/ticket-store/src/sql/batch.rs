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
//! 1. lock every order of the batch, in `order_id` order (`SELECT … FOR UPDATE`; the same order
//!    in every process, so two batches can wait for each other but never deadlock), and read
//!    their vouchers, refund requests and the fingerprints the batch could replay — four
//!    statements whatever the batch's size;
//! 2. plan each verify with the domain's rules ([`plan_verify`]) in arrival order, on snapshots
//!    that earlier verifies of the batch have already updated, exactly as if they had run one
//!    after another. A refused verify contributes nothing but the anomaly its refusal raises;
//! 3. write every accepted plan in bulk — counters (still the conditional
//!    `used + n <= capacity`), the use log, fingerprints, review marks, audit entries,
//!    anomalies — one statement each, the rows travelling as one JSON parameter
//!    ([`Engine::json_rows`]), then commit once. Only then is any verify of the batch
//!    answered.
//!
//! A batch is about ten round trips for up to [`MAX_BATCH`] verifies instead of ten each, and
//! one durable commit instead of one each. A batch the engine asks to retry (deadlock,
//! serialization failure, lock timeout) runs again from the start, with fresh reads. A batch
//! that fails otherwise is not answered with its failure: each of its verifies runs again alone
//! ([`Db::verify_alone`]), so a request never fails because of a neighbour. That includes a
//! batch whose conditional updates did not change every row they must: under the orders' locks
//! that means the database disagrees with what was read, and running alone pins it on the
//! verify whose write changes no row, which is refused with `LedgerError::WriteChangedNoRow`
//! and recorded as an anomaly, while its neighbours apply.
//!
//! A batch whose `COMMIT` got no answer (the connection failed) is looked up like any write
//! ([`super::outcome`]): found, every verify gets its planned answer; not found, it failed
//! like any other batch; still unknown, each accepted verify is answered
//! `LedgerError::OutcomeUnknown` with its own `request_id` and gets its own anomaly (a refused
//! one keeps its refusal: nothing of it depended on the commit).
//!
//! Several batches may run at once (`PoolSettings::batch_workers`), each on its own pooled
//! connection: while one waits for its round trips, the next is gathered.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};
use ticket_ledger::{
    plan_verify, refusal_anomaly, AuditEntry, Fingerprint, LedgerError, NewAnomaly, OrderId,
    OrderRecord, OrderSnapshot, VerifyCommand, VerifyOutcome, VerifyPlan, VerifyUses,
};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::engine::{Engine, ErrorClass, JsonType};
use super::ops::{all, During, Failure};
use super::outcome::{unknown_anomaly, Fence, Mark, Trace};
use super::{backoff, Db};
use crate::rows::{
    self, ms, ReadRow, ORDER_COLUMNS, REFUND_COLUMNS, VOUCHER_COLUMNS, WRITE_REFUND_REVIEW,
    WRITE_VOUCHER_USED,
};

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

/// The queue's sending side, kept by the store.
#[derive(Debug)]
pub(crate) struct Batcher {
    queue: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
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
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let jobs = Arc::new(Mutex::new(jobs));
        let counters = Arc::new(Counters::default());
        for _ in 0..workers {
            tokio::spawn(work(Arc::clone(&jobs), db.clone(), Arc::clone(&counters)));
        }
        Self {
            queue: std::sync::Mutex::new(Some(queue)),
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
        }
    }

    /// Applies `cmd` (named by `order_id`) in the next batch and answers once that batch has
    /// committed.
    pub(crate) async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        queue.send(Job { cmd, reply }).await.map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| LedgerError::Internal("a verify batch ended without answering".into()))?
    }

    /// Takes no more verifies; the workers finish what is queued and stop.
    pub(crate) fn close(&self) {
        self.queue
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

/// A worker: takes the first waiting verify and whatever else is queued, runs them as a
/// batch, answers, and starts over, until the queue is closed and drained.
async fn work(jobs: Arc<Mutex<mpsc::Receiver<Job>>>, db: Db, counters: Arc<Counters>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = jobs.lock().await;
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
        }
        let size = batch.len() as u64;
        counters.queued.fetch_sub(size, Ordering::Relaxed);
        counters.jobs.fetch_add(size, Ordering::Relaxed);
        counters.largest.fetch_max(size, Ordering::Relaxed);
        let committed = run(&db, batch).await;
        let counter = if committed {
            &counters.commits
        } else {
            &counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs one batch to its answers (see the module docs); whether it committed as a batch.
async fn run(db: &Db, batch: Vec<Job>) -> bool {
    let started = std::time::Instant::now();
    let cmds: Vec<&VerifyCommand> = batch.iter().map(|j| &j.cmd).collect();
    let mut attempt = 1;
    let outcome = loop {
        let failure = match attempt_batch(db, &cmds).await {
            Ok(answered) => break Ok(answered),
            Err(failure) => failure,
        };
        let class = match &failure {
            Failure::Db { error, .. } => db.engine.classify(error),
            Failure::Conflict(_) => ErrorClass::Retry,
            Failure::Refused(_) | Failure::OutcomeUnknown { .. } => ErrorClass::Other,
        };
        if class == ErrorClass::Retry && attempt < db.max_attempts {
            tracing::debug!(attempt, size = cmds.len(), "retrying a verify batch");
            tokio::time::sleep(backoff(attempt)).await;
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
            for (job, answer) in batch.into_iter().zip(answers) {
                let _ = job.reply.send(answer);
            }
            return committed;
        }
        // A lone verify's failure is its own answer, except a write that changed no row: that
        // is pinned (and its anomaly recorded) by running the verify alone, below.
        Err((failure, class, attempts)) if batch.len() == 1 && !changed_no_row(&failure) => {
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
                failure = %super::failure_text(&failure),
                "a verify batch failed; running its verifies one by one"
            );
            for job in batch {
                let answer = db.verify_alone(&job.cmd).await;
                let _ = job.reply.send(answer);
            }
        }
    }
    false
}

/// The answers of a batch, in its order.
type Answers = Vec<Result<VerifyOutcome, LedgerError>>;

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
async fn attempt_batch(db: &Db, cmds: &[&VerifyCommand]) -> Result<(Answers, bool), Failure> {
    let mut tx = db.pool.begin().await.during("starting a transaction")?;
    let planned = plan_batch(&mut tx, db.engine, cmds).await;
    let (answers, writes) = match planned {
        Ok(planned) => planned,
        Err(failure) => {
            if let Err(e) = tx.rollback().await {
                tracing::warn!(error = %e, "rolling back a verify batch failed");
            }
            return Err(failure);
        }
    };
    if let Err(failure) = writes.apply(&mut tx, db.engine).await {
        if let Err(e) = tx.rollback().await {
            tracing::warn!(error = %e, "rolling back a verify batch failed");
        }
        return Err(failure);
    }
    if writes.mark().is_none() {
        // Nothing written (every verify refused, no anomaly): the refusals stand whatever
        // became of the commit.
        if let Err(e) = tx.commit().await {
            tracing::debug!(error = %e, "committing a batch that wrote nothing failed");
        }
        return Ok((answers, true));
    }
    // The trace is only built if the commit's answer is lost.
    match db.commit(tx, || writes.trace(cmds, &answers)).await {
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

/// The batch's orders, in `order_id` order (the order they are locked in).
fn order_ids(cmds: &[&VerifyCommand]) -> Vec<i64> {
    let mut ids: Vec<i64> = cmds
        .iter()
        .filter_map(|c| c.order.order_id())
        .map(OrderId::get)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Steps 1 and 2 of the module docs: locks and reads, then plans every verify.
async fn plan_batch(
    conn: &mut AnyConnection,
    e: Engine,
    cmds: &[&VerifyCommand],
) -> Result<(Vec<Result<VerifyOutcome, LedgerError>>, Writes), Failure> {
    let ids_json = to_json(&order_ids(cmds))?;
    let mut orders = load_orders(conn, e, &ids_json).await?;

    let wanted: Vec<FingerprintRow> = cmds
        .iter()
        .filter_map(|c| c.order.order_id().map(|id| (id, c)))
        .filter(|(id, _)| orders.contains_key(&id.get()))
        .flat_map(|(id, c)| c.fingerprints().into_iter().map(move |fp| (id.get(), fp)))
        .enumerate()
        .map(|(i, (o, fp))| FingerprintRow::new(i, o, fp, None))
        .collect();
    let mut known = known_fingerprints(conn, e, &wanted).await?;

    let mut answers = Vec::with_capacity(cmds.len());
    let mut writes = Writes::default();
    for cmd in cmds {
        let id = cmd.order.order_id();
        let snapshot = id.and_then(|id| orders.get_mut(&id.get()));
        let Some(snapshot) = snapshot else {
            let refusal = LedgerError::OrderNotFound;
            writes
                .anomalies
                .extend(refusal_anomaly(&refusal, id, Some(&cmd.app_key), &cmd.meta));
            answers.push(Err(refusal));
            continue;
        };
        let order = snapshot.order.order_id.get();
        snapshot.seen = cmd
            .fingerprints()
            .into_iter()
            .filter(|fp| known.contains(&(order, fp.clone())))
            .collect();
        match plan_verify(snapshot, cmd) {
            Ok(plan) => {
                writes.add(snapshot, &plan, cmd);
                known.extend(plan.new_fingerprints.iter().map(|fp| (order, fp.clone())));
                // The next verify of this order in the batch is planned on the result. A plan
                // always fits the snapshot it was made from.
                if !plan.apply_to(snapshot) {
                    return Err(Failure::Conflict("a plan did not fit its own snapshot"));
                }
                answers.push(Ok(plan.outcome));
            }
            Err(refusal) => {
                writes.anomalies.extend(refusal_anomaly(
                    &refusal,
                    id,
                    Some(&cmd.app_key),
                    &cmd.meta,
                ));
                answers.push(Err(refusal));
            }
        }
    }
    Ok((answers, writes))
}

/// Locks the batch's orders (in `order_id` order) and reads each one's vouchers and refund
/// requests: the snapshots the batch is planned on, by `order_id`.
async fn load_orders(
    conn: &mut AnyConnection,
    e: Engine,
    ids_json: &str,
) -> Result<HashMap<i64, OrderSnapshot>, Failure> {
    let locked = all(
        conn,
        q(
            e,
            e.select_by_ids("orders", "PRIMARY", ORDER_COLUMNS, "order_id", true),
        )
        .bind(ids_json.to_owned()),
        rows::order,
        "locking the batch's orders",
    )
    .await?;
    let mut orders: HashMap<i64, OrderSnapshot> = locked
        .into_iter()
        .map(|order: OrderRecord| {
            let snapshot = OrderSnapshot {
                order,
                vouchers: Vec::new(),
                seen: HashSet::new(),
                refunds: Vec::new(),
            };
            (snapshot.order.order_id.get(), snapshot)
        })
        .collect();
    let vouchers = all(
        conn,
        q(
            e,
            e.select_by_ids(
                "vouchers",
                "PRIMARY",
                &format!("vouchers.order_id, {VOUCHER_COLUMNS}"),
                "vouchers.order_id, seq",
                false,
            ),
        )
        .bind(ids_json.to_owned()),
        |row| Ok((row.int(0)?, rows::voucher(&Shifted(row))?)),
        "reading the batch's vouchers",
    )
    .await?;
    for (order, voucher) in vouchers {
        if let Some(s) = orders.get_mut(&order) {
            s.vouchers.push(voucher);
        }
    }
    let refunds = all(
        conn,
        q(
            e,
            e.select_by_ids(
                "refund_requests",
                "refund_requests_by_order",
                &format!("refund_requests.order_id, {REFUND_COLUMNS}"),
                "refund_requests.order_id, requested_at_ms, flow_id",
                false,
            ),
        )
        .bind(ids_json.to_owned()),
        |row| Ok((row.int(0)?, rows::refund(&Shifted(row))?)),
        "reading the batch's refunds",
    )
    .await?;
    for (order, refund) in refunds {
        if let Some(s) = orders.get_mut(&order) {
            s.refunds.push(refund);
        }
    }
    Ok(orders)
}

/// Those of `wanted` already recorded, as `(order_id, fingerprint)`.
async fn known_fingerprints(
    conn: &mut AnyConnection,
    e: Engine,
    wanted: &[FingerprintRow],
) -> Result<HashSet<(i64, Fingerprint)>, Failure> {
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    let keys = e.json_rows(&[
        ("o", JsonType::Int),
        ("c", JsonType::Key),
        ("t", JsonType::Int),
        ("q", JsonType::Int),
    ]);
    let found = all(
        conn,
        q(
            e,
            e.select_join(
                ("verify_fingerprints AS f", "PRIMARY"),
                "f.order_id, f.confirm_code, f.used_at_ms, f.quantity",
                &keys,
                ("f.order_id", "o"),
                "f.order_id = d.o AND f.confirm_code = d.c AND f.used_at_ms = d.t \
                 AND f.quantity = d.q",
            ),
        )
        .bind(to_json(wanted)?),
        |row| Ok((row.int(0)?, row.text(1)?, row.int(2)?, row.int(3)?)),
        "looking up the batch's fingerprints",
    )
    .await?;
    // Only fingerprints the batch asked about come back, so each matches one it holds.
    Ok(found
        .into_iter()
        .filter_map(|(order, code, used_at_ms, quantity)| {
            wanted
                .iter()
                .find(|w| w.o == order && w.c == code && w.t == used_at_ms && w.q == quantity)
                .map(|w| (order, w.fingerprint.clone()))
        })
        .collect())
}

/// Everything the batch's accepted verifies (and refused ones' anomalies) write, gathered so
/// that each table is written by one statement.
#[derive(Debug, Default)]
struct Writes {
    /// Uses added per voucher, summed over the batch.
    counters: Vec<CounterRow>,
    /// Where each voucher's row is in `counters`.
    counter_of: HashMap<(i64, String), usize>,
    uses: Vec<UseRow>,
    fingerprints: Vec<FingerprintRow>,
    /// Refunds to mark for review, each once (several verifies may review one).
    reviews: Vec<ReviewRow>,
    audit: Vec<AuditRow>,
    anomalies: Vec<NewAnomaly>,
}

impl Writes {
    /// Gathers what one accepted plan writes (its audit entries see `snapshot` as it was
    /// before the plan, for the status transition).
    fn add(&mut self, snapshot: &OrderSnapshot, plan: &VerifyPlan, cmd: &VerifyCommand) {
        let order = snapshot.order.order_id.get();
        for change in &plan.changes {
            let code = change.code.as_str();
            match self.counter_of.entry((order, code.to_owned())) {
                Entry::Occupied(row) => self.counters[*row.get()].n += change.delta,
                Entry::Vacant(row) => {
                    row.insert(self.counters.len());
                    self.counters.push(CounterRow {
                        o: order,
                        c: code.to_owned(),
                        n: change.delta,
                    });
                }
            }
            self.uses.push(UseRow {
                i: self.uses.len(),
                o: order,
                c: code.to_owned(),
                n: change.delta,
                t: ms(change.used_at),
                r: ms(cmd.meta.received_at),
                q: cmd.meta.request_id.clone(),
            });
        }
        for fp in &plan.new_fingerprints {
            self.fingerprints.push(FingerprintRow::new(
                self.fingerprints.len(),
                order,
                fp.clone(),
                Some(cmd.meta.request_id.clone()),
            ));
        }
        for flow in &plan.review_refunds {
            if !self.reviews.iter().any(|r| &r.f == flow) {
                self.reviews.push(ReviewRow { f: flow.clone() });
            }
        }
        for entry in plan.audit_entries(snapshot, cmd) {
            self.audit.push(AuditRow::of(self.audit.len(), entry));
        }
        self.anomalies.extend(plan.anomalies(cmd));
    }

    /// A row that tells the batch committed: its first audit entry, or without one (every
    /// verify refused) its first anomaly; `None` when it writes nothing (every accepted verify
    /// writes an audit entry, and a refused one at most an anomaly).
    fn mark(&self) -> Option<Mark> {
        if let Some(entry) = self.audit.iter().find(|a| a.order_id.is_some()) {
            return Some(Mark::Audit {
                order_id: entry.order_id?,
                request_id: entry.request_id.clone(),
            });
        }
        self.anomalies.first().map(|anomaly| Mark::Anomaly {
            order_id: anomaly.order_id,
            request_id: anomaly.request_id.clone(),
        })
    }

    /// How to find out whether the batch committed, should its `COMMIT` get no answer; `None`
    /// when it writes nothing.
    fn trace(&self, cmds: &[&VerifyCommand], answers: &Answers) -> Option<Trace> {
        let mark = self.mark()?;
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
            fence: vec![Fence::Orders(order_ids(cmds))],
            mark,
            requests,
        })
    }

    /// Step 3 of the module docs: one statement per table that has rows.
    async fn apply(&self, conn: &mut AnyConnection, e: Engine) -> Result<(), Failure> {
        if !self.counters.is_empty() {
            let source = e.json_rows(&[
                ("o", JsonType::Int),
                ("c", JsonType::Key),
                ("n", JsonType::Int),
            ]);
            let changed = q(
                e,
                e.update_from(
                    ("vouchers AS v", "PRIMARY"),
                    "used = v.used + d.n",
                    &source,
                    ("v.order_id", "o"),
                    "v.order_id = d.o AND v.confirm_code = d.c",
                    "v.used + d.n <= v.capacity",
                ),
            )
            .bind(to_json(&self.counters)?)
            .execute(&mut *conn)
            .await
            .during("counting the batch's uses")?
            .rows_affected();
            // Every order is locked and every count was planned on what was read under the
            // lock, so this cannot miss unless the database disagrees with what was read; then
            // the batch's verifies run alone (see the module docs), which pins the one whose
            // write changes no row.
            if changed != self.counters.len() as u64 {
                return Err(Failure::Refused(LedgerError::WriteChangedNoRow {
                    write: WRITE_VOUCHER_USED,
                }));
            }
            insert(
                conn,
                e,
                "voucher_uses (order_id, confirm_code, quantity, used_at_ms, recorded_at_ms, \
                 request_id)",
                "o, c, n, t, r, q",
                &[
                    ("i", JsonType::Int),
                    ("o", JsonType::Int),
                    ("c", JsonType::Key),
                    ("n", JsonType::Int),
                    ("t", JsonType::Int),
                    ("r", JsonType::Int),
                    ("q", JsonType::Text),
                ],
                to_json(&self.uses)?,
                "logging the batch's uses",
            )
            .await?;
        }
        if !self.fingerprints.is_empty() {
            insert(
                conn,
                e,
                "verify_fingerprints (order_id, confirm_code, used_at_ms, quantity, request_id)",
                "o, c, t, q, r",
                &[
                    ("i", JsonType::Int),
                    ("o", JsonType::Int),
                    ("c", JsonType::Key),
                    ("t", JsonType::Int),
                    ("q", JsonType::Int),
                    ("r", JsonType::Text),
                ],
                to_json(&self.fingerprints)?,
                "remembering the batch's fingerprints",
            )
            .await?;
        }
        if !self.reviews.is_empty() {
            let flows = e.json_rows(&[("f", JsonType::Key)]);
            // Every flow is a pending request of a locked order: each must match its row (both
            // engines count rows matched, so a request already marked counts too).
            let changed = q(
                e,
                e.update_from(
                    ("refund_requests AS r", "PRIMARY"),
                    "needs_review = 1",
                    &flows,
                    ("r.flow_id", "f"),
                    "r.flow_id = d.f",
                    "r.state = 'pending'",
                ),
            )
            .bind(to_json(&self.reviews)?)
            .execute(&mut *conn)
            .await
            .during("marking refunds for review")?
            .rows_affected();
            if changed != self.reviews.len() as u64 {
                return Err(Failure::Refused(LedgerError::WriteChangedNoRow {
                    write: WRITE_REFUND_REVIEW,
                }));
            }
        }
        if !self.audit.is_empty() {
            insert(
                conn,
                e,
                "audit_log (request_id, at_ms, action, app_key, order_id, outcome, reason, \
                 detail, client_ip)",
                "request_id, at_ms, action, app_key, order_id, outcome, reason, detail, \
                 client_ip",
                &[
                    ("i", JsonType::Int),
                    ("request_id", JsonType::Text),
                    ("at_ms", JsonType::Int),
                    ("action", JsonType::Text),
                    ("app_key", JsonType::Key),
                    ("order_id", JsonType::Int),
                    ("outcome", JsonType::Key),
                    ("reason", JsonType::Text),
                    ("detail", JsonType::Text),
                    ("client_ip", JsonType::Text),
                ],
                to_json(&self.audit)?,
                "appending the batch's audit entries",
            )
            .await?;
        }
        if !self.anomalies.is_empty() {
            let rows: Vec<AnomalyRow> = self
                .anomalies
                .iter()
                .enumerate()
                .map(|(i, a)| AnomalyRow::of(i, a))
                .collect();
            insert(
                conn,
                e,
                "anomalies (kind, order_id, app_key, request_id, at_ms, detail, request)",
                "kind, order_id, app_key, request_id, at_ms, detail, request",
                &[
                    ("i", JsonType::Int),
                    ("kind", JsonType::Key),
                    ("order_id", JsonType::Int),
                    ("app_key", JsonType::Key),
                    ("request_id", JsonType::Text),
                    ("at_ms", JsonType::Int),
                    ("detail", JsonType::Text),
                    ("request", JsonType::Text),
                ],
                to_json(&rows)?,
                "recording the batch's anomalies",
            )
            .await?;
        }
        Ok(())
    }
}

/// `INSERT INTO target SELECT select FROM <rows> ORDER BY d.i`: the rows in the batch's order,
/// so ids and audit `seq`s are handed out in the order the verifies arrived.
#[allow(clippy::too_many_arguments)] // one per part of the statement
async fn insert(
    conn: &mut AnyConnection,
    e: Engine,
    target: &str,
    select: &str,
    columns: &[(&str, JsonType)],
    rows: String,
    during: &'static str,
) -> Result<(), Failure> {
    let source = e.json_rows(columns);
    q(
        e,
        format!("INSERT INTO {target} SELECT {select} FROM {source} ORDER BY d.i"),
    )
    .bind(rows)
    .execute(conn)
    .await
    .during(during)
    .map(drop)
}

/// A statement built here, in the engine's placeholder syntax.
fn q(e: Engine, sql: String) -> Query<'static, Any, AnyArguments> {
    sqlx::query(e.sql(sql))
}

fn to_json<T: Serialize + ?Sized>(rows: &T) -> Result<String, Failure> {
    serde_json::to_string(rows).map_err(|e| {
        Failure::Refused(LedgerError::Internal(format!(
            "serialising a batch's rows: {e}"
        )))
    })
}

/// A row read with its first column (`order_id`) set aside: the shared readers of
/// [`crate::rows`] see the columns after it.
struct Shifted<'a>(&'a AnyRow);

impl ReadRow for Shifted<'_> {
    type Error = sqlx::Error;

    fn int(&self, column: usize) -> Result<i64, sqlx::Error> {
        self.0.int(column + 1)
    }

    fn opt_int(&self, column: usize) -> Result<Option<i64>, sqlx::Error> {
        self.0.opt_int(column + 1)
    }

    fn float(&self, column: usize) -> Result<f64, sqlx::Error> {
        self.0.float(column + 1)
    }

    fn text(&self, column: usize) -> Result<String, sqlx::Error> {
        self.0.text(column + 1)
    }

    fn opt_text(&self, column: usize) -> Result<Option<String>, sqlx::Error> {
        self.0.opt_text(column + 1)
    }

    fn corrupt(&self, column: usize, what: String) -> sqlx::Error {
        self.0.corrupt(column + 1, what)
    }
}

// The JSON rows. Keys are short because a batch of 128 verifies carries hundreds of them.

#[derive(Debug, Serialize)]
struct CounterRow {
    o: i64,
    c: String,
    n: i64,
}

#[derive(Debug, Serialize)]
struct UseRow {
    i: usize,
    o: i64,
    c: String,
    n: i64,
    t: i64,
    r: i64,
    q: String,
}

/// A fingerprint looked up (`r` unset) or remembered (`r`: the request that first applied it).
#[derive(Debug, Serialize)]
struct FingerprintRow {
    /// Position in the batch (for the insert's order).
    i: usize,
    o: i64,
    c: String,
    t: i64,
    q: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<String>,
    #[serde(skip)]
    fingerprint: Fingerprint,
}

impl FingerprintRow {
    fn new(i: usize, order: i64, fp: Fingerprint, request_id: Option<String>) -> Self {
        Self {
            i,
            o: order,
            c: fp.code.as_str().to_owned(),
            t: fp.used_at_ms,
            q: fp.quantity,
            r: request_id,
            fingerprint: fp,
        }
    }
}

#[derive(Debug, Serialize)]
struct ReviewRow {
    f: String,
}

#[derive(Debug, Serialize)]
struct AuditRow {
    i: usize,
    request_id: String,
    at_ms: i64,
    action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<i64>,
    outcome: &'static str,
    reason: String,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<String>,
}

impl AuditRow {
    fn of(i: usize, e: AuditEntry) -> Self {
        Self {
            i,
            request_id: e.request_id,
            at_ms: ms(e.at),
            action: e.action,
            app_key: e.app_key,
            order_id: e.order_id,
            outcome: e.outcome.as_str(),
            reason: e.reason,
            detail: e.detail.to_string(),
            client_ip: e.client_ip,
        }
    }
}

#[derive(Debug, Serialize)]
struct AnomalyRow {
    i: usize,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_key: Option<String>,
    request_id: String,
    at_ms: i64,
    detail: String,
    request: String,
}

impl AnomalyRow {
    fn of(i: usize, a: &NewAnomaly) -> Self {
        Self {
            i,
            kind: a.kind.as_str(),
            order_id: a.order_id,
            app_key: a.app_key.clone(),
            request_id: a.request_id.clone(),
            at_ms: ms(a.at),
            detail: a.detail.to_string(),
            request: a.request.to_string(),
        }
    }
}
