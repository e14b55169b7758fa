//! The invariants checked after every step of a sequence (the parent module's docs list them):
//! one order's counts, and its events replayed into the same counts, refunds and status chain.

use std::collections::BTreeMap;

use ticket_ledger::{AuditOutcome, OrderRecord, OrderView, RefundState, VerifyOrigin};
use ticket_ledger::{ISSUE_ACTION, REFUND_ACTION};

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// The invariants of one order (module docs).
pub(super) fn check_order(v: &OrderView) -> Result<(), String> {
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
