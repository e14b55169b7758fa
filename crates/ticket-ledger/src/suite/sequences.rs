//! Random lifecycle sequences: issue, verify (delta, cumulative, replays, racing tasks), refund
//! requests and notifications, reversals — and after every step the ledger's invariants.
//!
//! [`run_sequence`] is public so a property test can feed it generated [`Sequence`]s against an
//! in-memory store; the suite case runs a fixed list of seeds ([`sequence_from_seed`]) so every
//! store runs the same sequences.
//!
//! Invariants checked after every step, for every order:
//! - every voucher has `0 ≤ used ≤ capacity`; the order's `used` plus the uses its refunded
//!   tickets take ([`OrderRecord::uses_of_tickets`]) is at most its capacity; refunded tickets
//!   are between 0 and the tickets bought, and are the sum of its succeeded requests;
//! - replaying the order's events rebuilds the ledger: the accepted verifies' and
//!   reconciliations' `detail.changes` deltas minus the reversals' quantities give every
//!   voucher's count (each entry's `used` matching the running count), the `refunded`
//!   notifications give the refunded tickets, the refund events give each request's state;
//! - the `order.status` events form a chain from the order's first status to its current one,
//!   each caused by the request of the event just before it;
//! - a refused step changes nothing on its order; no step fails with `Internal`/`Unavailable`;
//! - a step stores exactly the anomalies it raises: those of an accepted verify's flags, the
//!   one a refused verify or refund notification names (`refusal_anomaly`), nothing else.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::{
    flag_anomalies, refusal_anomaly, Anomaly, AnomalyFilter, IssueCommand, NewAnomaly,
    RefundCommand, RefundRequestCommand, RefundState, ReversalCommand, ISSUE_ACTION, REFUND_ACTION,
};
use crate::{AuditOutcome, OrderRecord, OrderView};
use crate::{LedgerError, LedgerStore};
use crate::{VerifyCommand, VerifyOrigin, VerifyOutcome};

use super::build::{
    issue_cmd, order, received_at, refund_cmd, refund_request, retry_of, reversal, verify_cmd,
    Fresh,
};
use super::check::{given_app, given_order};

/// Codes by order and index; index 3 (and 2 on the first order) is a code never issued.
const CODES: [[&str; 4]; 2] = [
    ["SEQ-0001", "SEQ-0002", "SEQ-0009", "SEQ-0009"],
    ["SEQ-0003", "SEQ-0004", "SEQ-0005", "SEQ-0009"],
];

/// The orders of a sequence and what happens to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// Capacities of the first order's two codes (issued at creation) and of the second
    /// order's two codes (issued by an [`IssueReport::Own`] report); each 1 or more.
    pub caps: [i64; 4],
    /// Tickets bought on each order, each from 1 to its codes' total capacity.
    pub quantities: [i64; 2],
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One verify report: count mode and `(code index, quantity, gate time)` entries with distinct
/// codes; the gate time is seconds before the receive time (`None`: no `used_date`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `write_off_type` 1.
    pub cumulative: bool,
    /// Entries with distinct code indexes (0..4).
    pub entries: Vec<(usize, i64, Option<i64>)>,
}

/// What an issuance report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueReport {
    /// The order's own codes (the second order's two codes; a replay on the first order would
    /// need the first order's codes, so there it conflicts).
    Own,
    /// Another single code.
    Other,
    /// `issue_type` 2.
    Failed,
}

/// Which request a refund notification names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowPick {
    /// No flow id.
    None,
    /// The newest request's flow id.
    Newest,
    /// The oldest request's flow id.
    Oldest,
    /// A flow id no request has.
    Unknown,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An issuance report for order 0 or 1.
    Issue {
        /// Which order.
        order: usize,
        /// What it says.
        report: IssueReport,
    },
    /// A verify report.
    Verify {
        /// Which order.
        order: usize,
        /// The report.
        report: Report,
    },
    /// The verify sent `back` verifies ago (modulo how many there were), again with a new
    /// request id.
    Replay {
        /// How far back.
        back: usize,
    },
    /// A refund request.
    RequestRefund {
        /// Which order.
        order: usize,
        /// Tickets.
        tickets: i64,
    },
    /// A refund notification.
    Refund {
        /// Which order.
        order: usize,
        /// `refund_status` 1 rather than 2.
        succeeded: bool,
        /// `refund_num`.
        refund_num: Option<i64>,
        /// `fliggy_refund_flow_id`.
        flow: FlowPick,
        /// `refund_batch_no` `BATCH-n` (few, so they repeat).
        batch: Option<u8>,
    },
    /// An operator's reversal.
    Reverse {
        /// Which order.
        order: usize,
        /// Code index.
        code: usize,
        /// Uses.
        quantity: i64,
        /// Window in minutes.
        window_mins: i64,
    },
    /// Several of the above at once, each on its own task (nested races and waits are
    /// ignored).
    Race(Vec<Step>),
    /// Time passes.
    Wait {
        /// Minutes.
        mins: i64,
    },
}

/// A concrete command a step becomes.
#[derive(Debug, Clone)]
enum Command {
    Issue(IssueCommand),
    Verify(VerifyCommand),
    RequestRefund(RefundRequestCommand),
    Refund(RefundCommand),
    Reverse(ReversalCommand),
}

impl Command {
    fn order_index(&self, ids: [i64; 2]) -> Option<usize> {
        let id = match self {
            Self::Issue(c) => c.order_id.get(),
            Self::Verify(c) => c.order.order_id()?.get(),
            Self::RequestRefund(c) => c.order_id.get(),
            Self::Refund(c) => c.order_id.get(),
            Self::Reverse(c) => c.order_id.get(),
        };
        ids.iter().position(|&i| i == id)
    }
}

/// What a sequence run knows between steps.
struct Run {
    app: String,
    ids: [i64; 2],
    outs: [String; 2],
    caps: [i64; 4],
    clock: DateTime<Utc>,
    sent: Vec<VerifyCommand>,
    views: [OrderView; 2],
}

impl Run {
    fn command(&mut self, step: &Step) -> Option<Command> {
        let now = self.clock;
        Some(match step {
            Step::Issue { order, report } => {
                let o = order % 2;
                let b = issue_cmd(&self.app, self.ids[o], &self.outs[o]).received_at(now);
                Command::Issue(
                    match report {
                        IssueReport::Own => {
                            b.codes(&[(CODES[1][0], self.caps[2]), (CODES[1][1], self.caps[3])])
                        }
                        IssueReport::Other => b.codes(&[(CODES[1][2], 1)]),
                        IssueReport::Failed => b.failed("sequence failure"),
                    }
                    .build(),
                )
            }
            Step::Verify { order, report } => {
                let o = order % 2;
                let mut b = verify_cmd(&self.app, self.ids[o]).received_at(now);
                if report.cumulative {
                    b = b.cumulative();
                }
                let mut seen = Vec::new();
                for &(i, q, before) in &report.entries {
                    let c = CODES[o][i % 4];
                    if seen.contains(&c) {
                        continue;
                    }
                    seen.push(c);
                    b = b.entry_at(c, q, before.map(|s| now - Duration::seconds(s)));
                }
                let cmd = b.build();
                self.sent.push(cmd.clone());
                Command::Verify(cmd)
            }
            Step::Replay { back } => {
                if self.sent.is_empty() {
                    return None;
                }
                let n = self.sent.len();
                let original = &self.sent[n - 1 - back % n];
                let mut again = retry_of(original, 0);
                again.meta.received_at = now;
                Command::Verify(again)
            }
            Step::RequestRefund { order, tickets } => {
                Command::RequestRefund(refund_request(self.ids[order % 2], *tickets, now))
            }
            Step::Refund {
                order,
                succeeded,
                refund_num,
                flow,
                batch,
            } => {
                let o = order % 2;
                let mut b = refund_cmd(&self.app, self.ids[o]).received_at(now);
                if !succeeded {
                    b = b.failed("sequence refusal");
                }
                if let Some(n) = refund_num {
                    b = b.refund_num(*n);
                }
                if let Some(n) = batch {
                    b = b.batch(&format!("BATCH-{n}"));
                }
                let refunds = &self.views[o].refunds;
                match flow {
                    FlowPick::None => {}
                    FlowPick::Newest => {
                        if let Some(r) = refunds.last() {
                            b = b.flow(&r.flow_id);
                        }
                    }
                    FlowPick::Oldest => {
                        if let Some(r) = refunds.first() {
                            b = b.flow(&r.flow_id);
                        }
                    }
                    FlowPick::Unknown => b = b.flow("RF-NOBODY"),
                }
                Command::Refund(b.build())
            }
            Step::Reverse {
                order,
                code,
                quantity,
                window_mins,
            } => {
                let o = order % 2;
                Command::Reverse(reversal(
                    self.ids[o],
                    CODES[o][code % 4],
                    *quantity,
                    Duration::minutes(*window_mins),
                    now,
                ))
            }
            Step::Race(_) | Step::Wait { .. } => return None,
        })
    }
}

impl Command {
    /// The anomalies the store must keep for this command's `result`: those the flags of an
    /// accepted verify raise, or the one a refusal of a verify or refund notification raises.
    fn anomalies(&self, result: &Result<Answer, LedgerError>) -> Vec<NewAnomaly> {
        match (self, result) {
            (Self::Verify(c), Ok(Answer::Verified(o))) => {
                flag_anomalies(&o.flags, o.order_id, &c.app_key, &c.meta)
            }
            (Self::Verify(c), Err(e)) => {
                refusal_anomaly(e, c.order.order_id(), Some(&c.app_key), &c.meta)
                    .into_iter()
                    .collect()
            }
            (Self::Refund(c), Err(e)) => {
                refusal_anomaly(e, Some(c.order_id), Some(&c.app_key), &c.meta)
                    .into_iter()
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// What a store answered: a verify's outcome (its flags raise anomalies), or that another
/// command was accepted.
#[derive(Debug)]
enum Answer {
    Verified(VerifyOutcome),
    Done,
}

/// Sends a command.
async fn send(store: &dyn LedgerStore, cmd: Command) -> Result<Answer, LedgerError> {
    match cmd {
        Command::Issue(c) => store.issue(c).await.map(|_| Answer::Done),
        Command::Verify(c) => store.verify(c).await.map(Answer::Verified),
        Command::RequestRefund(c) => store.request_refund(c).await.map(|_| Answer::Done),
        Command::Refund(c) => store.refund(c).await.map(|_| Answer::Done),
        Command::Reverse(c) => store.reverse(c).await.map(|_| Answer::Done),
    }
}

/// Refusals are answers; `Internal` and `Unavailable` are failures of the store.
fn business(result: &Result<Answer, LedgerError>) -> Result<(), String> {
    match result {
        Err(e @ (LedgerError::Internal(_) | LedgerError::Unavailable(_))) => {
            Err(format!("the store failed: {e:?}"))
        }
        _ => Ok(()),
    }
}

async fn anomalies(store: &dyn LedgerStore, id: i64) -> Result<Vec<Anomaly>, String> {
    store
        .anomalies(AnomalyFilter {
            order_id: Some(id),
            limit: Some(1000),
            ..AnomalyFilter::default()
        })
        .await
        .map_err(|e| format!("anomalies of {id} failed: {e:?}"))
}

fn kinds_of<'a>(list: impl Iterator<Item = &'a NewAnomaly>) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = list.map(|a| a.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds
}

/// The order's view with its whole history in `events` (the invariants replay all of it),
/// checking that the view's latest events and total agree with it.
async fn read(store: &dyn LedgerStore, id: i64) -> Result<OrderView, String> {
    let mut view = store
        .order(super::build::order_id(id))
        .await
        .map_err(|e| format!("order({id}) failed: {e:?}"))?
        .ok_or_else(|| format!("order({id}) vanished"))?;
    if !view.events_complete() {
        let all = super::check::history(store, id, "the whole history").await;
        let total = i64::try_from(all.len()).map_err(|e| e.to_string())?;
        if total != view.events_total || !all.ends_with(&view.events) {
            return Err(format!(
                "order {id}: the view's {} latest of {} events disagree with the {total} walked",
                view.events.len(),
                view.events_total
            ));
        }
        view.events = all;
    }
    Ok(view)
}

/// Runs `seq` against `store` on a fresh app and two fresh orders, checking the invariants
/// (module docs) after every step. `Err` says which step broke which invariant.
pub async fn run_sequence(store: Arc<dyn LedgerStore>, seq: &Sequence) -> Result<(), String> {
    let f = Fresh::new();
    let app = f.key("seq");
    given_app(&*store, &app).await;
    let mut first = order(
        f.id(1),
        &app,
        &[(CODES[0][0], seq.caps[0]), (CODES[0][1], seq.caps[1])],
    );
    first.quantity = seq.quantities[0];
    let mut second = order(f.id(2), &app, &[]);
    second.quantity = seq.quantities[1];
    let views = [
        given_order(&*store, first).await,
        given_order(&*store, second).await,
    ];
    let mut run = Run {
        ids: [f.id(1), f.id(2)],
        outs: [f.key("out-1"), f.key("out-2")],
        app,
        caps: seq.caps,
        clock: received_at(),
        sent: Vec::new(),
        views,
    };
    for v in &run.views {
        check_order(v).map_err(|e| format!("after creation: {e}"))?;
    }
    for (n, step) in seq.steps.iter().enumerate() {
        run.clock += Duration::minutes(2);
        let ctx = |e: String| format!("step {n} {step:?}: {e}");
        match step {
            Step::Wait { mins } => run.clock += Duration::minutes((*mins).max(0)),
            Step::Race(steps) => {
                let cmds: Vec<Command> = steps.iter().filter_map(|s| run.command(s)).collect();
                if cmds.is_empty() {
                    continue;
                }
                let before = [
                    anomalies(&*store, run.ids[0]).await.map_err(ctx)?,
                    anomalies(&*store, run.ids[1]).await.map_err(ctx)?,
                ];
                let barrier = Arc::new(tokio::sync::Barrier::new(cmds.len()));
                let tasks = cmds.into_iter().map(|cmd| {
                    let store = Arc::clone(&store);
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let result = send(&*store, cmd.clone()).await;
                        (cmd, result)
                    })
                });
                let mut expected = [Vec::new(), Vec::new()];
                for joined in futures::future::join_all(tasks).await {
                    let (cmd, result) =
                        joined.map_err(|e| ctx(format!("a racing task died: {e}")))?;
                    business(&result).map_err(ctx)?;
                    if let Some(o) = cmd.order_index(run.ids) {
                        expected[o].extend(cmd.anomalies(&result));
                    }
                }
                for o in 0..2 {
                    let after = anomalies(&*store, run.ids[o]).await.map_err(ctx)?;
                    let new = after.len().saturating_sub(before[o].len());
                    let got = kinds_of(after[..new].iter().map(|a| &a.anomaly));
                    let want = kinds_of(expected[o].iter());
                    if got != want || after[new..] != before[o][..] {
                        return Err(ctx(format!(
                            "the race stored anomalies {got:?} on order {o}, expected {want:?}"
                        )));
                    }
                }
            }
            _ => {
                let Some(cmd) = run.command(step) else {
                    continue;
                };
                let o = cmd.order_index(run.ids);
                let before = match o {
                    Some(o) => anomalies(&*store, run.ids[o]).await.map_err(ctx)?,
                    None => Vec::new(),
                };
                let result = send(&*store, cmd.clone()).await;
                business(&result).map_err(ctx)?;
                if let Some(o) = o {
                    let mut want = cmd.anomalies(&result);
                    want.reverse();
                    let after = anomalies(&*store, run.ids[o]).await.map_err(ctx)?;
                    let new = after.len().saturating_sub(before.len());
                    let got: Vec<&NewAnomaly> = after[..new].iter().map(|a| &a.anomaly).collect();
                    if got != want.iter().collect::<Vec<_>>() || after[new..] != before[..] {
                        return Err(ctx(format!(
                            "stored anomalies {got:?}, expected {want:?} (answer {result:?})"
                        )));
                    }
                }
                if let (Err(refusal), Some(o)) = (&result, o) {
                    let after = read(&*store, run.ids[o]).await.map_err(ctx)?;
                    if after != run.views[o] {
                        return Err(ctx(format!(
                            "the refusal {refusal:?} changed the order:\nbefore {:?}\nafter  {after:?}",
                            run.views[o]
                        )));
                    }
                }
            }
        }
        for o in 0..2 {
            run.views[o] = read(&*store, run.ids[o]).await.map_err(ctx)?;
            check_order(&run.views[o]).map_err(ctx)?;
        }
    }
    Ok(())
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// The invariants of one order (module docs).
fn check_order(v: &OrderView) -> Result<(), String> {
    let o: &OrderRecord = &v.order;
    let id = o.order_id.get();
    let capacity: i64 = v.vouchers.iter().map(|x| x.capacity).sum();
    let used: i64 = v.vouchers.iter().map(|x| x.used).sum();
    for x in &v.vouchers {
        ensure!(
            0 <= x.used && x.used <= x.capacity,
            "order {id}: voucher {} used {} of {}",
            x.code.masked(),
            x.used,
            x.capacity
        );
    }
    ensure!(
        0 <= o.refunded_tickets && o.refunded_tickets <= o.quantity,
        "order {id}: {} of {} tickets refunded",
        o.refunded_tickets,
        o.quantity
    );
    let refunded_uses = o
        .uses_of_tickets(o.refunded_tickets, capacity)
        .map_err(|e| format!("order {id}: {e}"))?;
    ensure!(
        used + refunded_uses <= capacity,
        "order {id}: used {used} + refunded uses {refunded_uses} > capacity {capacity}"
    );
    let succeeded: i64 = v
        .refunds
        .iter()
        .filter(|r| r.state == RefundState::Succeeded)
        .map(|r| r.refunded_tickets)
        .sum();
    ensure!(
        succeeded == o.refunded_tickets,
        "order {id}: requests refunded {succeeded} tickets, the order counts {}",
        o.refunded_tickets
    );
    for r in &v.refunds {
        ensure!(
            r.state == RefundState::Succeeded || r.refunded_tickets == 0,
            "order {id}: {r:?} refunded tickets without succeeding"
        );
        ensure!(
            r.refunded_tickets <= r.quantity,
            "order {id}: {r:?} refunded more than asked"
        );
    }
    replay_events(v)
}

fn int(v: &serde_json::Value, ctx: &str) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("{ctx}: {v} is not an integer"))
}

fn text<'a>(v: &'a serde_json::Value, ctx: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("{ctx}: {v} is not text"))
}

/// Rebuilds the order's counters, refunds and status chain from its events.
fn replay_events(v: &OrderView) -> Result<(), String> {
    let id = v.order.order_id.get();
    let verify_action = VerifyOrigin::Vendor.action();
    let reconcile_action = VerifyOrigin::Reconciliation.action();
    let mut counts: BTreeMap<String, i64> =
        v.vouchers.iter().map(|x| (x.code.masked(), 0)).collect();
    let mut refunded = 0;
    let mut requests: BTreeMap<String, (i64, RefundState)> = BTreeMap::new();
    // An order starts issued when it was created with codes (no issuance event lists them).
    let issued_by_report = v
        .events
        .iter()
        .any(|e| e.action == ISSUE_ACTION && e.outcome == AuditOutcome::Accepted);
    let mut status = if issued_by_report || v.vouchers.is_empty() {
        "awaiting_issuance".to_owned()
    } else {
        "issued".to_owned()
    };
    for (n, e) in v.events.iter().enumerate() {
        let ctx = format!("order {id} event {n} ({} {})", e.action, e.reason);
        let accepted = e.outcome == AuditOutcome::Accepted;
        if e.action == verify_action || e.action == reconcile_action {
            let changes = e.detail["changes"]
                .as_array()
                .ok_or_else(|| format!("{ctx}: no changes"))?;
            ensure!(
                accepted || changes.is_empty(),
                "{ctx}: a replayed verify lists changes"
            );
            for c in changes {
                let code = text(&c["confirm_code"], &ctx)?;
                let delta = int(&c["delta"], &ctx)?;
                ensure!(delta > 0, "{ctx}: delta {delta}");
                let count = counts
                    .get_mut(code)
                    .ok_or_else(|| format!("{ctx}: unknown code {code}"))?;
                *count += delta;
                ensure!(
                    *count == int(&c["used"], &ctx)?,
                    "{ctx}: running count {count} but the entry says {}",
                    c["used"]
                );
            }
        } else if e.action == "admin.reverse" && accepted {
            let code = text(&e.detail["confirm_code"], &ctx)?;
            let count = counts
                .get_mut(code)
                .ok_or_else(|| format!("{ctx}: unknown code {code}"))?;
            *count -= int(&e.detail["quantity"], &ctx)?;
            ensure!(*count >= 0, "{ctx}: count below zero");
            ensure!(
                *count == int(&e.detail["used"], &ctx)?,
                "{ctx}: running count {count} but the entry says {}",
                e.detail["used"]
            );
        } else if e.action == "admin.request_refund" && accepted {
            let flow = text(&e.detail["fliggy_refund_flow_id"], &ctx)?.to_owned();
            let quantity = int(&e.detail["quantity"], &ctx)?;
            ensure!(
                requests
                    .insert(flow, (quantity, RefundState::Pending))
                    .is_none(),
                "{ctx}: a flow id opened twice"
            );
        } else if e.action == REFUND_ACTION && accepted {
            let flow = text(&e.detail["fliggy_refund_flow_id"], &ctx)?;
            let tickets = int(&e.detail["refunded_tickets"], &ctx)?;
            let request = requests
                .get_mut(flow)
                .ok_or_else(|| format!("{ctx}: settles an unknown request"))?;
            ensure!(
                request.1 == RefundState::Pending,
                "{ctx}: settles a settled request"
            );
            request.1 = match e.reason.as_str() {
                "refunded" => RefundState::Succeeded,
                _ => RefundState::Failed,
            };
            refunded += tickets;
        } else if e.action == "order.status" {
            let from = text(&e.detail["from"], &ctx)?;
            let to = text(&e.detail["to"], &ctx)?;
            ensure!(
                from == status,
                "{ctx}: a transition from {from}, but the order was {status}"
            );
            ensure!(from != to, "{ctx}: a transition to the same status");
            ensure!(e.reason == to, "{ctx}: reason {} for {to}", e.reason);
            let cause = n
                .checked_sub(1)
                .and_then(|p| v.events.get(p))
                .ok_or_else(|| format!("{ctx}: a transition without a cause"))?;
            ensure!(
                cause.request_id == e.request_id
                    && cause.outcome == AuditOutcome::Accepted
                    && cause.action == text(&e.detail["cause"], &ctx)?,
                "{ctx}: the event before it ({} {}) is not its cause",
                cause.action,
                cause.request_id
            );
            status = to.to_owned();
        }
    }
    let ledger: BTreeMap<String, i64> = v
        .vouchers
        .iter()
        .map(|x| (x.code.masked(), x.used))
        .collect();
    ensure!(
        counts == ledger,
        "order {id}: the events rebuild {counts:?}, the ledger has {ledger:?}"
    );
    ensure!(
        refunded == v.order.refunded_tickets,
        "order {id}: the events refund {refunded} tickets, the order counts {}",
        v.order.refunded_tickets
    );
    let listed: BTreeMap<String, (i64, RefundState)> = v
        .refunds
        .iter()
        .map(|r| (r.flow_id.clone(), (r.quantity, r.state)))
        .collect();
    ensure!(
        requests == listed,
        "order {id}: the events rebuild requests {requests:?}, the order lists {listed:?}"
    );
    ensure!(
        status == v.status().as_str(),
        "order {id}: the transitions end at {status}, the order is {}",
        v.status().as_str()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Fixed sequences for the suite

/// SplitMix64: a tiny deterministic generator, so every store runs the same sequences.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo + 1).unwrap_or(1).max(1);
        lo + i64::try_from(self.next() % span).unwrap_or(0)
    }

    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A code index: mostly the order's two codes, sometimes a third or one never issued.
fn random_code(rng: &mut Rng) -> usize {
    if rng.chance(7) {
        2 + rng.index(2)
    } else {
        rng.index(2)
    }
}

fn random_report(rng: &mut Rng) -> Report {
    let cumulative = rng.chance(30);
    let n = rng.index(2) + 1;
    let entries = (0..n)
        .map(|_| {
            let q = if cumulative {
                rng.range(0, 5)
            } else {
                rng.range(1, 2)
            };
            let gate = if rng.chance(15) {
                None
            } else {
                Some(rng.range(0, 5400))
            };
            (random_code(rng), q, gate)
        })
        .collect();
    Report {
        cumulative,
        entries,
    }
}

fn random_step(rng: &mut Rng, nested: bool) -> Step {
    let order = if rng.chance(65) { 0 } else { 1 };
    // Weights out of 20: issue 1, verify 6, replay 2, refund request 2, refund 3, reversal 2,
    // race 2, wait 2 (no race or wait inside a race).
    match rng.index(if nested { 16 } else { 20 }) {
        0 => Step::Issue {
            order,
            report: match rng.index(4) {
                0 | 1 => IssueReport::Own,
                2 => IssueReport::Other,
                _ => IssueReport::Failed,
            },
        },
        1..=6 => Step::Verify {
            order,
            report: random_report(rng),
        },
        7 | 8 => Step::Replay { back: rng.index(6) },
        9 | 10 => Step::RequestRefund {
            order,
            tickets: if rng.chance(10) { 0 } else { rng.range(1, 2) },
        },
        11..=13 => Step::Refund {
            order,
            succeeded: rng.chance(75),
            refund_num: if rng.chance(60) {
                None
            } else {
                Some(rng.range(0, 3))
            },
            flow: match rng.index(20) {
                0..=7 => FlowPick::None,
                8..=12 => FlowPick::Newest,
                13..=17 => FlowPick::Oldest,
                _ => FlowPick::Unknown,
            },
            batch: if rng.chance(30) {
                None
            } else {
                Some(u8::try_from(rng.index(5)).unwrap_or(0))
            },
        },
        14 | 15 => Step::Reverse {
            order,
            code: random_code(rng),
            quantity: if rng.chance(10) { 0 } else { rng.range(1, 2) },
            window_mins: [5, 60, 1440][rng.index(3)],
        },
        16 | 17 => Step::Race(
            (0..rng.range(2, 5))
                .map(|_| random_step(rng, true))
                .collect(),
        ),
        _ => Step::Wait {
            mins: [1, 30, 120, 1500][rng.index(4)],
        },
    }
}

/// The sequence of `len` steps a seed stands for.
pub fn sequence_from_seed(seed: u64, len: usize) -> Sequence {
    let mut rng = Rng(seed);
    let caps = [
        rng.range(1, 6),
        rng.range(1, 6),
        rng.range(1, 6),
        rng.range(1, 6),
    ];
    let quantities = [
        rng.range(1, caps[0] + caps[1]),
        rng.range(1, caps[2] + caps[3]),
    ];
    let mut steps = vec![Step::Issue {
        order: 1,
        report: IssueReport::Own,
    }];
    steps.extend((0..len).map(|_| random_step(&mut rng, false)));
    Sequence {
        caps,
        quantities,
        steps,
    }
}

/// Random lifecycle sequences (16 fixed seeds, 60 steps each) of issue, verify (delta,
/// cumulative, replays, racing tasks), refund requests and notifications and reversals keep
/// every invariant after every step: `0 ≤ used ≤ capacity` per voucher, used plus refunded
/// uses within the order's capacity, refusals changing nothing, and the audit trail rebuilding
/// the counters, refunds and status.
pub async fn random_lifecycle_sequences_keep_the_ledger_consistent(store: Arc<dyn LedgerStore>) {
    for seed in 0..16_u64 {
        let seq = sequence_from_seed(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED, 60);
        if let Err(e) = run_sequence(Arc::clone(&store), &seq).await {
            panic!(
                "sequence of seed {seed} (caps {:?}, quantities {:?}): {e}",
                seq.caps, seq.quantities
            );
        }
    }
}
