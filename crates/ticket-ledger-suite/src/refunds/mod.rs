//! Refunds (退票): requests opened on the platform side (`requests`), the vendor's notification
//! settling them (`notifications`), and what refunded or reserved tickets do to verify
//! (`verify`, R8, R9). Here: the set-up steps and assertions their cases share.

use chrono::{DateTime, Duration, Utc};

use ticket_ledger::OrderView;
use ticket_ledger::OutcomeKind;
use ticket_ledger::{
    plan_refund, plan_refund_request, refusal_anomaly, RefundCommand, RefundRequest,
    RefundRequestCommand, RefundState,
};
use ticket_ledger::{LedgerError, LedgerStore};

use crate::build::{order, received_at, Fresh};
use crate::check::{
    assert_appended, assert_open_anomaly, assert_refusal, given_app, given_order, ledger,
    snapshot_of, view,
};

pub(crate) mod notifications;
pub(crate) mod requests;
pub(crate) mod verify;

/// When the cases' R9 refunds are asked: half an hour before [`received_at`], so the default
/// gate time ([`gate_time`], an hour before) is before it and [`after_ask`] after it.
pub(super) fn asked_at() -> DateTime<Utc> {
    received_at() - Duration::minutes(30)
}

/// A gate time after [`asked_at`] (and before [`received_at`]), `n` seconds apart.
pub(super) fn after_ask(n: i64) -> DateTime<Utc> {
    asked_at() + Duration::minutes(10) + Duration::seconds(n)
}

/// Registers an app and creates order `f.id(n)` with `vouchers` and `quantity` tickets;
/// returns the app key.
pub(super) async fn given(
    store: &dyn LedgerStore,
    f: &Fresh,
    n: i64,
    vouchers: &[(&str, i64)],
    quantity: i64,
) -> String {
    let a = f.key("app");
    if store
        .app(&super::build::app_key(&a))
        .await
        .expect("app() should answer")
        .is_none()
    {
        given_app(store, &a).await;
    }
    let mut o = order(f.id(n), &a, vouchers);
    o.quantity = quantity;
    given_order(store, o).await;
    a
}

pub(super) fn pair(from: &str, to: &str) -> (String, String) {
    (from.to_owned(), to.to_owned())
}

/// Opens a refund request the case expects to be accepted: the store answers the plan's
/// request, lists it among the order's refunds, and appends exactly the plan's events.
pub(super) async fn request_ok(
    store: &dyn LedgerStore,
    cmd: RefundRequestCommand,
    ctx: &str,
) -> (RefundRequest, OrderView) {
    let before = view(store, cmd.order_id.get(), ctx).await;
    let snapshot = snapshot_of(&before);
    let plan = plan_refund_request(&snapshot, &cmd)
        .unwrap_or_else(|e| panic!("{ctx}: the rules should accept the request, got {e:?}"));
    let want = plan.audit_entries(&snapshot, &cmd);
    let got = store
        .request_refund(cmd.clone())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: request_refund should be accepted, got Err({e:?})"));
    assert_eq!(got, plan.request, "{ctx}: the request opened");
    assert_eq!(
        (
            got.quantity,
            got.requested_at,
            got.state,
            got.refunded_tickets,
            got.needs_review
        ),
        (
            cmd.quantity,
            cmd.meta.received_at,
            RefundState::Pending,
            0,
            false
        ),
        "{ctx}: a new request is pending for its tickets"
    );
    assert!(!got.flow_id.is_empty(), "{ctx}: the request has a flow id");
    let after = assert_appended(store, &before, &want, ctx).await;
    let mut listed = before.refunds.clone();
    listed.push(got.clone());
    assert_eq!(after.refunds, listed, "{ctx}: the order's refunds");
    (got, after)
}

/// Asserts a refund request is refused with `expected` and writes nothing at all.
pub(super) async fn request_refused(
    store: &dyn LedgerStore,
    cmd: RefundRequestCommand,
    app: &str,
    expected: &LedgerError,
    ctx: &str,
) {
    let id = cmd.order_id.get();
    let before = ledger(store, id, app, ctx).await;
    assert_refusal(store.request_refund(cmd).await, expected, ctx);
    assert_eq!(
        ledger(store, id, app, ctx).await,
        before,
        "{ctx}: a refused request writes nothing (order, events, anomalies)"
    );
}

/// Runs a refund notification the case expects to be accepted with `kind`: the store answers
/// the request it settled as the order now lists it, and appends exactly the plan's events.
pub(super) async fn refund_ok(
    store: &dyn LedgerStore,
    cmd: RefundCommand,
    kind: OutcomeKind,
    ctx: &str,
) -> (RefundRequest, OrderView) {
    let before = view(store, cmd.order_id.get(), ctx).await;
    let snapshot = snapshot_of(&before);
    let plan = plan_refund(&snapshot, &cmd)
        .unwrap_or_else(|e| panic!("{ctx}: the rules should accept the notification, got {e:?}"));
    let want = plan.audit_entries(&snapshot, &cmd);
    let (got, got_kind) = store
        .refund(cmd)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: refund should be accepted, got Err({e:?})"));
    assert_eq!(got_kind, kind, "{ctx}: refund's outcome");
    assert_eq!(got.flow_id, plan.flow_id, "{ctx}: the request it settled");
    let after = assert_appended(store, &before, &want, ctx).await;
    let listed = after
        .refunds
        .iter()
        .find(|r| r.flow_id == got.flow_id)
        .unwrap_or_else(|| panic!("{ctx}: the settled request is listed"));
    assert_eq!(&got, listed, "{ctx}: refund answers the request as stored");
    if kind != OutcomeKind::Applied {
        assert_eq!(
            (&after.order, &after.vouchers, &after.refunds),
            (&before.order, &before.vouchers, &before.refunds),
            "{ctx}: a replayed notification changes nothing"
        );
    }
    (got, after)
}

/// Asserts a refund notification is refused with `expected`, changes nothing, and leaves
/// exactly the anomaly [`refusal_anomaly`] names for it (if any).
pub(super) async fn refund_refused(
    store: &dyn LedgerStore,
    cmd: RefundCommand,
    expected: &LedgerError,
    ctx: &str,
) {
    let id = cmd.order_id.get();
    let app = cmd.app_key.as_str().to_owned();
    let anomaly = refusal_anomaly(expected, Some(cmd.order_id), Some(&cmd.app_key), &cmd.meta);
    let before = ledger(store, id, &app, ctx).await;
    assert_refusal(store.refund(cmd).await, expected, ctx);
    let mut after = ledger(store, id, &app, ctx).await;
    if let Some(want) = &anomaly {
        assert_eq!(
            after.anomalies.len(),
            before.anomalies.len() + 1,
            "{ctx}: the refusal {expected:?} stores one anomaly"
        );
        let new = after.anomalies.remove(0);
        assert_open_anomaly(&new, want, ctx);
    }
    assert_eq!(
        after, before,
        "{ctx}: a refused notification writes nothing else (order, events, anomalies)"
    );
}
