//! Refunds (退票): requests opened on the platform side, the vendor's notification settling
//! them, and what refunded or reserved tickets do to verify (R8, R9).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::{
    plan_refund, plan_refund_request, refusal_anomaly, AnomalyFilter, AnomalyKind, RefundCommand,
    RefundRequest, RefundRequestCommand, RefundState,
};
use crate::{plan_verify, Flag, OutcomeKind};
use crate::{AuditOutcome, OrderStatus, OrderView};
use crate::{LedgerError, LedgerStore};

use super::build::{gate_time, order, received_at, refund_cmd, refund_request, verify_cmd, Fresh};
use super::check::{
    anomalies_of, applied, assert_appended, assert_open_anomaly, assert_refusal, assert_used,
    given_app, given_order, ledger, refused, snapshot_of, transitions, verify_expect, view,
};

/// When the cases' R9 refunds are asked: half an hour before [`received_at`], so the default
/// gate time ([`gate_time`], an hour before) is before it and [`after_ask`] after it.
fn asked_at() -> DateTime<Utc> {
    received_at() - Duration::minutes(30)
}

/// A gate time after [`asked_at`] (and before [`received_at`]), `n` seconds apart.
fn after_ask(n: i64) -> DateTime<Utc> {
    asked_at() + Duration::minutes(10) + Duration::seconds(n)
}

/// Registers an app and creates order `f.id(n)` with `vouchers` and `quantity` tickets;
/// returns the app key.
async fn given(
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

fn pair(from: &str, to: &str) -> (String, String) {
    (from.to_owned(), to.to_owned())
}

/// Opens a refund request the case expects to be accepted: the store answers the plan's
/// request, lists it among the order's refunds, and appends exactly the plan's events.
async fn request_ok(
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
async fn request_refused(
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
async fn refund_ok(
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
async fn refund_refused(
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

/// A refund request within the refundable tickets (neither used, refunded nor reserved) opens
/// a pending request with a flow id, lists it on the order, moves the status to `refunding`
/// and records both as events of the request; asking for one more ticket than then remains is
/// refused with `RefundExceedsUnused`.
pub async fn refund_request_within_refundable_tickets_is_pending_and_the_order_refunding(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 2), ("RB-0002", 2)], 4).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).entry("RA-0001", 1).build(),
        &applied(f.id(1), 1, vec![]),
        "one use touches one ticket",
    )
    .await;
    let at = received_at() + Duration::hours(1);
    let (req, after) = request_ok(&*store, refund_request(f.id(1), 3, at), "request 3 of 4").await;
    assert_eq!(after.status(), OrderStatus::Refunding, "status");
    assert_eq!(
        transitions(&after),
        [
            pair("issued", "partly_used"),
            pair("partly_used", "refunding")
        ],
        "status transitions"
    );
    let event = &after.events[after.events.len() - 2];
    assert_eq!(
        (
            event.action.as_str(),
            event.outcome,
            event.detail["fliggy_refund_flow_id"].as_str()
        ),
        (
            "admin.request_refund",
            AuditOutcome::Accepted,
            Some(req.flow_id.as_str())
        ),
        "the request's event names its flow id"
    );
    request_refused(
        &*store,
        refund_request(f.id(1), 1, at + Duration::minutes(1)),
        &a,
        &LedgerError::RefundExceedsUnused {
            requested: 1,
            refundable: 0,
        },
        "every unused ticket is reserved",
    )
    .await;
}

/// A refund request for more tickets than are unused — counting a partly used multi-use
/// ticket as used — or for none is refused with `RefundExceedsUnused { requested, refundable }`;
/// an order not issued is refused with `OrderNotIssued`, an unknown one with `OrderNotFound`.
pub async fn refund_request_beyond_the_unused_tickets_is_refused(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 2), ("RB-0002", 2)], 4).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).entry("RA-0001", 2).build(),
        &applied(f.id(1), 2, vec![]),
        "two uses touch two tickets",
    )
    .await;
    let at = received_at() + Duration::hours(1);
    for (what, n) in [("3 of 2 unused", 3), ("none", 0)] {
        request_refused(
            &*store,
            refund_request(f.id(1), n, at),
            &a,
            &LedgerError::RefundExceedsUnused {
                requested: n,
                refundable: 2,
            },
            what,
        )
        .await;
    }

    // Two tickets sharing one code of 4 uses: one use touches one ticket.
    given(&*store, &f, 2, &[("PASS-0001", 4)], 2).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(2)).entry("PASS-0001", 1).build(),
        &applied(f.id(2), 1, vec![]),
        "one use of a two-ticket pass",
    )
    .await;
    request_refused(
        &*store,
        refund_request(f.id(2), 2, at),
        &a,
        &LedgerError::RefundExceedsUnused {
            requested: 2,
            refundable: 1,
        },
        "a partly used ticket cannot be refunded",
    )
    .await;
    request_ok(
        &*store,
        refund_request(f.id(2), 1, at),
        "the untouched ticket",
    )
    .await;

    given(&*store, &f, 3, &[], 1).await;
    request_refused(
        &*store,
        refund_request(f.id(3), 1, at),
        &a,
        &LedgerError::OrderNotIssued,
        "an order awaiting issuance",
    )
    .await;
    assert_refusal(
        store.request_refund(refund_request(f.id(9), 1, at)).await,
        &LedgerError::OrderNotFound,
        "an unknown order",
    );
}

/// A refund notification naming its request's flow id settles that request — state
/// `succeeded`, the tickets refunded, the batch number and settlement time recorded — and the
/// order counts the refunded tickets; another pending request stays pending (and the order
/// `refunding`) until its own notification.
pub async fn refund_notification_with_its_flow_id_settles_that_request(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 2), ("RB-0002", 2)], 4).await;
    let t1 = received_at() - Duration::hours(3);
    let (r1, _) = request_ok(&*store, refund_request(f.id(1), 1, t1), "first request").await;
    let (r2, _) = request_ok(
        &*store,
        refund_request(f.id(1), 2, t1 + Duration::hours(1)),
        "second request",
    )
    .await;
    assert_ne!(r1.flow_id, r2.flow_id, "each request has its own flow id");

    let cmd = refund_cmd(&a, f.id(1))
        .flow(&r2.flow_id)
        .refund_num(2)
        .batch("BATCH-2")
        .partial()
        .build();
    let at = cmd.meta.received_at;
    let (settled, after) =
        refund_ok(&*store, cmd, OutcomeKind::Applied, "the second request").await;
    assert_eq!(
        settled,
        RefundRequest {
            state: RefundState::Succeeded,
            refunded_tickets: 2,
            batch_no: Some("BATCH-2".to_owned()),
            settled_at: Some(at),
            ..r2.clone()
        },
        "the settled request"
    );
    assert_eq!(after.refunds[0], r1, "the first request is still pending");
    assert_eq!(after.order.refunded_tickets, 2, "tickets refunded");
    assert_eq!(
        after.status(),
        OrderStatus::Refunding,
        "a request is pending"
    );

    let (first, after) = refund_ok(
        &*store,
        refund_cmd(&a, f.id(1)).flow(&r1.flow_id).build(),
        OutcomeKind::Applied,
        "the first request, refund_num defaulting to its quantity",
    )
    .await;
    assert_eq!(
        (first.state, first.refunded_tickets),
        (RefundState::Succeeded, 1),
        "the first request settled"
    );
    assert_eq!(after.order.refunded_tickets, 3, "tickets refunded");
    assert_eq!(after.status(), OrderStatus::PartlyRefunded, "status");
    assert_eq!(
        transitions(&after),
        [
            pair("issued", "refunding"),
            pair("refunding", "partly_refunded")
        ],
        "status transitions"
    );
}

/// A refund notification without a flow id settles the oldest pending request; with none
/// pending it is refused (see
/// `refund_notification_with_nothing_pending_is_refused_and_stored_as_an_anomaly`).
pub async fn refund_notification_without_flow_id_settles_the_oldest_pending(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 1), ("RB-0002", 1)], 2).await;
    let t1 = received_at() - Duration::hours(3);
    let (r1, _) = request_ok(&*store, refund_request(f.id(1), 1, t1), "older").await;
    let (r2, _) = request_ok(
        &*store,
        refund_request(f.id(1), 1, t1 + Duration::hours(1)),
        "newer",
    )
    .await;
    let (got, _) = refund_ok(
        &*store,
        refund_cmd(&a, f.id(1)).batch("X-1").build(),
        OutcomeKind::Applied,
        "first notification without flow id",
    )
    .await;
    assert_eq!(got.flow_id, r1.flow_id, "the oldest pending request");
    let (got, after) = refund_ok(
        &*store,
        refund_cmd(&a, f.id(1)).batch("X-2").build(),
        OutcomeKind::Applied,
        "second notification without flow id",
    )
    .await;
    assert_eq!(got.flow_id, r2.flow_id, "then the next one");
    assert_eq!(
        (after.order.refunded_tickets, after.status()),
        (2, OrderStatus::Refunded),
        "every ticket refunded"
    );
    refund_refused(
        &*store,
        refund_cmd(&a, f.id(1)).batch("X-3").build(),
        &LedgerError::RefundNotRequested,
        "nothing left pending",
    )
    .await;
}

/// A refund notification when nothing is pending — no request at all, an unknown flow id — is
/// refused with `RefundNotRequested`, leaves the ledger unchanged, and is stored as an open
/// `refund_not_requested` anomaly with the raw request, listed by `anomalies` for the order and
/// kind.
pub async fn refund_notification_with_nothing_pending_is_refused_and_stored_as_an_anomaly(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 1), ("RB-0002", 1)], 2).await;
    refund_refused(
        &*store,
        refund_cmd(&a, f.id(1)).batch("NOBODY-1").build(),
        &LedgerError::RefundNotRequested,
        "no request at all",
    )
    .await;
    let (req, _) = request_ok(
        &*store,
        refund_request(f.id(1), 1, received_at() - Duration::hours(2)),
        "a request",
    )
    .await;
    refund_refused(
        &*store,
        refund_cmd(&a, f.id(1))
            .flow(&format!("{}-NOT", req.flow_id))
            .build(),
        &LedgerError::RefundNotRequested,
        "an unknown flow id",
    )
    .await;
    let after = view(&*store, f.id(1), "after").await;
    assert_eq!(after.refunds, [req], "the real request is still pending");

    let listed = store
        .anomalies(AnomalyFilter {
            order_id: Some(f.id(1)),
            kind: Some(AnomalyKind::RefundNotRequested),
            ..AnomalyFilter::default()
        })
        .await
        .expect("anomalies() should answer");
    assert_eq!(listed.len(), 2, "both refusals are anomalies: {listed:?}");
    assert!(
        listed[0].id > listed[1].id,
        "newest first: {:?}",
        listed.iter().map(|x| x.id).collect::<Vec<_>>()
    );
    assert_eq!(
        listed[1].anomaly.request["refund_batch_no"], "NOBODY-1",
        "the raw request is kept"
    );
}

/// Refund notifications are idempotent: the same notification again (by `refund_batch_no` or by
/// flow id) is `Replayed` and changes nothing; one that contradicts how the request was settled
/// (another status, another `refund_num`) is refused with `RefundConflict`; a batch number
/// already used settles no other request.
pub async fn refund_notification_is_idempotent_on_batch_no_and_flow_id(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 2), ("RB-0002", 2)], 4).await;
    let (req, _) = request_ok(
        &*store,
        refund_request(f.id(1), 2, received_at() - Duration::hours(2)),
        "request",
    )
    .await;
    let first = refund_cmd(&a, f.id(1))
        .flow(&req.flow_id)
        .refund_num(2)
        .batch("BATCH-1")
        .build();
    let (settled, _) = refund_ok(&*store, first.clone(), OutcomeKind::Applied, "first").await;

    let mut again = first.clone();
    again.meta = super::build::meta_at(
        first.meta.received_at + Duration::minutes(1),
        first.meta.summary.clone(),
    );
    for (what, cmd) in [
        ("the same notification again", again),
        (
            "the same batch without flow id",
            refund_cmd(&a, f.id(1)).batch("BATCH-1").build(),
        ),
        (
            "the same flow id with another batch",
            refund_cmd(&a, f.id(1))
                .flow(&req.flow_id)
                .batch("BATCH-9")
                .build(),
        ),
    ] {
        let (got, after) = refund_ok(&*store, cmd, OutcomeKind::Replayed, what).await;
        assert_eq!(got, settled, "{what}: the request as first settled");
        assert_eq!(
            after.events.last().map(|e| (e.outcome, e.reason.as_str())),
            Some((AuditOutcome::Replayed, "replayed")),
            "{what}: recorded as a replay"
        );
    }
    for (what, cmd) in [
        (
            "the same batch, failed",
            refund_cmd(&a, f.id(1))
                .batch("BATCH-1")
                .failed("no")
                .build(),
        ),
        (
            "the same flow id, another refund_num",
            refund_cmd(&a, f.id(1))
                .flow(&req.flow_id)
                .refund_num(1)
                .build(),
        ),
    ] {
        refund_refused(&*store, cmd, &LedgerError::RefundConflict, what).await;
    }

    let (newer, _) = request_ok(
        &*store,
        refund_request(f.id(1), 1, received_at() - Duration::hours(1)),
        "a second request",
    )
    .await;
    let (got, after) = refund_ok(
        &*store,
        refund_cmd(&a, f.id(1)).batch("BATCH-1").build(),
        OutcomeKind::Replayed,
        "the used batch number again",
    )
    .await;
    assert_eq!(
        got.flow_id, req.flow_id,
        "the batch names the first request"
    );
    assert_eq!(
        after.refunds.last(),
        Some(&newer),
        "the second request is still pending"
    );
}

/// A failed refund (`refund_status` 2) settles its request as `failed` with the vendor's
/// reason, refunds nothing, and releases the tickets it reserved: the status leaves
/// `refunding`, verifies dated after the request use them again, and they can be asked for
/// again.
pub async fn failed_refund_releases_its_tickets(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 1), ("RB-0002", 1)], 2).await;
    let (req, _) = request_ok(
        &*store,
        refund_request(f.id(1), 2, asked_at()),
        "request both",
    )
    .await;
    refused(
        &*store,
        Some(f.id(1)),
        verify_cmd(&a, f.id(1))
            .entry_at("RA-0001", 1, Some(after_ask(0)))
            .build(),
        &LedgerError::RefundedUsesExceeded {
            requested: 1,
            remaining: 0,
            refund_pending: true,
        },
        "reserved while pending",
    )
    .await;
    let cmd = refund_cmd(&a, f.id(1))
        .flow(&req.flow_id)
        .failed("已入园")
        .build();
    let at = cmd.meta.received_at;
    let (got, after) = refund_ok(&*store, cmd, OutcomeKind::Applied, "refund failed").await;
    assert_eq!(
        got,
        RefundRequest {
            state: RefundState::Failed,
            failure_reason: Some("已入园".to_owned()),
            settled_at: Some(at),
            ..req.clone()
        },
        "the failed request"
    );
    assert_eq!(
        (after.order.refunded_tickets, after.status()),
        (0, OrderStatus::Issued),
        "nothing refunded; the order is issued again"
    );
    assert_eq!(
        transitions(&after),
        [pair("issued", "refunding"), pair("refunding", "issued")],
        "status transitions"
    );
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1))
            .entry_at("RA-0001", 1, Some(after_ask(0)))
            .build(),
        &applied(f.id(1), 1, vec![]),
        "the released ticket is usable",
    )
    .await;
    let (again, _) = request_ok(
        &*store,
        refund_request(f.id(1), 1, received_at() + Duration::hours(1)),
        "the unused ticket can be asked for again",
    )
    .await;
    assert_ne!(again.flow_id, req.flow_id, "a new request");
}

/// A `refund_num` above the tickets the request asked for (or below one) is refused with
/// `RefundNumExceeds { requested, pending }` and writes nothing; a partial refund of fewer
/// tickets settles the request with what was refunded.
pub async fn refund_num_beyond_the_request_is_refused(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 2), ("RB-0002", 2)], 4).await;
    let (req, _) = request_ok(
        &*store,
        refund_request(f.id(1), 2, received_at() - Duration::hours(2)),
        "request 2",
    )
    .await;
    for n in [3, 0] {
        refund_refused(
            &*store,
            refund_cmd(&a, f.id(1))
                .flow(&req.flow_id)
                .refund_num(n)
                .build(),
            &LedgerError::RefundNumExceeds {
                requested: n,
                pending: 2,
            },
            &format!("refund_num {n} of 2"),
        )
        .await;
    }
    let (got, after) = refund_ok(
        &*store,
        refund_cmd(&a, f.id(1))
            .flow(&req.flow_id)
            .refund_num(1)
            .partial()
            .build(),
        OutcomeKind::Applied,
        "partial refund of 1",
    )
    .await;
    assert_eq!(
        (got.state, got.refunded_tickets),
        (RefundState::Succeeded, 1),
        "settled with what was refunded"
    );
    assert_eq!(
        (after.order.refunded_tickets, after.status()),
        (1, OrderStatus::PartlyRefunded),
        "(refunded tickets, status)"
    );
}

/// The status follows refunds: some tickets refunded and uses left → `partly_refunded`; every
/// ticket refunded → `refunded`; nothing left, some used and some refunded → `closed` — each
/// move an `order.status` event.
pub async fn refund_results_move_the_order_to_partly_refunded_refunded_or_closed(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 1), ("RB-0002", 1)], 2).await;
    let t = received_at() + Duration::hours(1);
    for n in 0..2 {
        request_ok(
            &*store,
            refund_request(f.id(1), 1, t + Duration::minutes(n)),
            "refund one",
        )
        .await;
        refund_ok(
            &*store,
            refund_cmd(&a, f.id(1))
                .received_at(t + Duration::minutes(n) + Duration::seconds(30))
                .build(),
            OutcomeKind::Applied,
            "refunded",
        )
        .await;
    }
    let refunded = view(&*store, f.id(1), "refunded").await;
    assert_eq!(refunded.status(), OrderStatus::Refunded, "all refunded");
    assert_eq!(
        transitions(&refunded),
        [
            pair("issued", "refunding"),
            pair("refunding", "partly_refunded"),
            pair("partly_refunded", "refunding"),
            pair("refunding", "refunded")
        ],
        "refunded order's transitions"
    );

    given(&*store, &f, 2, &[("RA-0001", 1), ("RB-0002", 1)], 2).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(2)).entry("RA-0001", 1).build(),
        &applied(f.id(2), 1, vec![]),
        "use one",
    )
    .await;
    request_ok(&*store, refund_request(f.id(2), 1, t), "refund the other").await;
    let (_, closed) = refund_ok(
        &*store,
        refund_cmd(&a, f.id(2)).received_at(t).build(),
        OutcomeKind::Applied,
        "refunded",
    )
    .await;
    assert_eq!(closed.status(), OrderStatus::Closed, "used + refunded");
    assert_eq!(
        transitions(&closed),
        [
            pair("issued", "partly_used"),
            pair("partly_used", "refunding"),
            pair("refunding", "closed")
        ],
        "closed order's transitions"
    );

    given(
        &*store,
        &f,
        3,
        &[("RA-0001", 1), ("RB-0002", 1), ("RC-0003", 1)],
        3,
    )
    .await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(3)).entry("RA-0001", 1).build(),
        &applied(f.id(3), 1, vec![]),
        "use one of three",
    )
    .await;
    request_ok(
        &*store,
        refund_request(f.id(3), 1, t),
        "refund one of three",
    )
    .await;
    let (_, partly) = refund_ok(
        &*store,
        refund_cmd(&a, f.id(3)).received_at(t).build(),
        OutcomeKind::Applied,
        "refunded",
    )
    .await;
    assert_eq!(
        partly.status(),
        OrderStatus::PartlyRefunded,
        "one used, one refunded, one left"
    );
}

/// R8: a verify of an order whose every ticket is refunded is refused with `OrderRefunded` in
/// any form, changes nothing, and is stored as a `verify_after_refund` anomaly.
pub async fn verify_of_a_fully_refunded_order_is_refused_and_stored_as_an_anomaly(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 1), ("RB-0002", 1)], 2).await;
    let t = received_at() - Duration::hours(3);
    request_ok(&*store, refund_request(f.id(1), 2, t), "refund both").await;
    refund_ok(
        &*store,
        refund_cmd(&a, f.id(1)).received_at(t).build(),
        OutcomeKind::Applied,
        "refunded",
    )
    .await;
    for (what, cmd) in [
        (
            "voucher_infos",
            verify_cmd(&a, f.id(1)).entry("RA-0001", 1).build(),
        ),
        (
            "order-level",
            verify_cmd(&a, f.id(1)).order_level(1).build(),
        ),
    ] {
        refused(
            &*store,
            Some(f.id(1)),
            cmd,
            &LedgerError::OrderRefunded,
            &format!("R8 {what}"),
        )
        .await;
    }
    let stored = anomalies_of(&*store, f.id(1), "R8").await;
    assert_eq!(
        stored.iter().map(|x| x.anomaly.kind).collect::<Vec<_>>(),
        [AnomalyKind::VerifyAfterRefund; 2],
        "both refusals are verify_after_refund anomalies"
    );
    assert_used(&*store, f.id(1), &[("RA-0001", 0), ("RB-0002", 0)], "R8").await;
}

/// R9/R13: refunded tickets take their uses out of the order, so a verify that needs uses
/// held by refunded tickets — though its codes have capacity left — is refused with
/// `RefundedUsesExceeded { refund_pending: false }`, applies nothing, and is stored as a
/// `verify_after_refund` anomaly; what remains can still be used.
pub async fn verify_needing_uses_held_by_refunded_tickets_is_refused_and_stored_as_an_anomaly(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    // Two tickets sharing a pass of 4 uses: each ticket carries 2.
    let a = given(&*store, &f, 1, &[("PASS-0001", 4)], 2).await;
    let t = received_at() - Duration::hours(3);
    request_ok(&*store, refund_request(f.id(1), 1, t), "refund one ticket").await;
    refund_ok(
        &*store,
        refund_cmd(&a, f.id(1)).received_at(t).build(),
        OutcomeKind::Applied,
        "refunded",
    )
    .await;
    refused(
        &*store,
        Some(f.id(1)),
        verify_cmd(&a, f.id(1)).entry("PASS-0001", 3).build(),
        &LedgerError::RefundedUsesExceeded {
            requested: 3,
            remaining: 2,
            refund_pending: false,
        },
        "3 uses, 2 not refunded",
    )
    .await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).entry("PASS-0001", 2).build(),
        &applied(f.id(1), 2, vec![]),
        "the 2 uses left",
    )
    .await;
    assert_eq!(
        view(&*store, f.id(1), "closed").await.status(),
        OrderStatus::Closed,
        "one ticket used, one refunded"
    );
    refused(
        &*store,
        Some(f.id(1)),
        verify_cmd(&a, f.id(1))
            .entry_at("PASS-0001", 1, Some(gate_time() + Duration::seconds(1)))
            .build(),
        &LedgerError::RefundedUsesExceeded {
            requested: 1,
            remaining: 0,
            refund_pending: false,
        },
        "the pass has capacity left, the order has not",
    )
    .await;
    assert_used(&*store, f.id(1), &[("PASS-0001", 2)], "after the refusals").await;

    // One code per ticket: the refunded ticket's code is as good as gone, whichever it was.
    given(&*store, &f, 2, &[("RA-0001", 1), ("RB-0002", 1)], 2).await;
    request_ok(&*store, refund_request(f.id(2), 1, t), "refund one of two").await;
    refund_ok(
        &*store,
        refund_cmd(&a, f.id(2)).received_at(t).build(),
        OutcomeKind::Applied,
        "refunded",
    )
    .await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(2)).entry("RB-0002", 1).build(),
        &applied(f.id(2), 1, vec![]),
        "one code",
    )
    .await;
    refused(
        &*store,
        Some(f.id(2)),
        verify_cmd(&a, f.id(2)).entry("RA-0001", 1).build(),
        &LedgerError::RefundedUsesExceeded {
            requested: 1,
            remaining: 0,
            refund_pending: false,
        },
        "the other code",
    )
    .await;
}

/// R9: while a refund is pending, a use dated before the request may take the uses it
/// reserved: accepted with `VerifyDuringRefund` naming the request, which is marked
/// `needs_review`, and stored as a `verify_during_refund` anomaly; a use that fits the
/// unreserved uses is not flagged. The refund then cannot be paid in full: its notification is
/// refused with `RefundExceedsUnused` and stored as a `refund_exceeds_unused` anomaly.
pub async fn verify_dated_before_a_pending_refund_may_take_its_reserved_uses(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 1), ("RB-0002", 1)], 2).await;
    let (req, _) = request_ok(
        &*store,
        refund_request(f.id(1), 1, asked_at()),
        "refund one",
    )
    .await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).entry("RA-0001", 1).build(),
        &applied(f.id(1), 1, vec![]),
        "a use before the request that leaves the reserved ticket alone",
    )
    .await;
    assert!(
        !view(&*store, f.id(1), "unflagged").await.refunds[0].needs_review,
        "nothing to review yet"
    );

    let cmd = verify_cmd(&a, f.id(1))
        .entry_at("RB-0002", 1, Some(gate_time() + Duration::seconds(1)))
        .build();
    let before = view(&*store, f.id(1), "before").await;
    let snapshot = snapshot_of(&before);
    let plan = plan_verify(&snapshot, &cmd).expect("the rules accept it");
    let flag = Flag::VerifyDuringRefund {
        flow_ids: vec![req.flow_id.clone()],
    };
    verify_expect(
        &*store,
        cmd.clone(),
        &applied(f.id(1), 1, vec![flag.clone()]),
        "a use before the request taking the reserved ticket",
    )
    .await;
    let after = assert_appended(
        &*store,
        &before,
        &plan.audit_entries(&snapshot, &cmd),
        "events",
    )
    .await;
    assert_eq!(after.status(), OrderStatus::Refunding, "still refunding");
    assert_eq!(
        after.refunds,
        [RefundRequest {
            needs_review: true,
            ..req.clone()
        }],
        "the request needs review"
    );
    let stored = anomalies_of(&*store, f.id(1), "R9").await;
    assert_eq!(stored.len(), 1, "one anomaly: {stored:?}");
    assert_open_anomaly(&stored[0], &plan.anomalies(&cmd)[0], "verify_during_refund");
    assert_eq!(
        stored[0].anomaly.kind,
        AnomalyKind::VerifyDuringRefund,
        "kind"
    );

    refund_refused(
        &*store,
        refund_cmd(&a, f.id(1)).flow(&req.flow_id).build(),
        &LedgerError::RefundExceedsUnused {
            requested: 1,
            refundable: 0,
        },
        "the refund of a ticket used meanwhile",
    )
    .await;
    assert_eq!(
        anomalies_of(&*store, f.id(1), "R9").await[0].anomaly.kind,
        AnomalyKind::RefundExceedsUnused,
        "the refused refund's anomaly"
    );
}

/// R9: while a refund is pending, a use dated after the request cannot take the uses it
/// reserved: refused with `RefundedUsesExceeded { refund_pending: true }` and stored as a
/// `verify_after_refund` anomaly; uses dated after it that fit the unreserved uses are accepted
/// without a flag.
pub async fn verify_dated_after_a_pending_refund_cannot_take_its_reserved_uses(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(&*store, &f, 1, &[("RA-0001", 1), ("RB-0002", 1)], 2).await;
    request_ok(
        &*store,
        refund_request(f.id(1), 1, asked_at()),
        "refund one",
    )
    .await;
    refused(
        &*store,
        Some(f.id(1)),
        verify_cmd(&a, f.id(1))
            .entry_at("RA-0001", 1, Some(after_ask(0)))
            .entry_at("RB-0002", 1, Some(after_ask(0)))
            .build(),
        &LedgerError::RefundedUsesExceeded {
            requested: 2,
            remaining: 1,
            refund_pending: true,
        },
        "two uses after the request, one unreserved",
    )
    .await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1))
            .entry_at("RA-0001", 1, Some(after_ask(1)))
            .build(),
        &applied(f.id(1), 1, vec![]),
        "the unreserved use",
    )
    .await;
    refused(
        &*store,
        Some(f.id(1)),
        verify_cmd(&a, f.id(1))
            .entry_at("RB-0002", 1, Some(after_ask(2)))
            .build(),
        &LedgerError::RefundedUsesExceeded {
            requested: 1,
            remaining: 0,
            refund_pending: true,
        },
        "the reserved use",
    )
    .await;
    let v = view(&*store, f.id(1), "after").await;
    assert!(!v.refunds[0].needs_review, "nothing to review");
    assert_used(&*store, f.id(1), &[("RA-0001", 1), ("RB-0002", 0)], "final").await;
}

/// R9 with two pending refunds: each holds its tickets only against uses dated after *it* was
/// requested. Uses dated after the first request but before the second may take the tickets
/// the second reserved (accepted, the second marked for review), not those of the first.
pub async fn each_pending_refund_holds_its_tickets_from_its_own_request(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = given(
        &*store,
        &f,
        1,
        &[("RA-0001", 1), ("RB-0002", 1), ("RC-0003", 1)],
        3,
    )
    .await;
    let (first, _) = request_ok(
        &*store,
        refund_request(f.id(1), 1, received_at() - Duration::hours(2)),
        "first request",
    )
    .await;
    let (second, _) = request_ok(
        &*store,
        refund_request(f.id(1), 1, asked_at()),
        "second request",
    )
    .await;
    // Dated between the two requests: one unreserved ticket plus the second request's.
    let between = asked_at() - Duration::minutes(10);
    let got = store
        .verify(
            verify_cmd(&a, f.id(1))
                .entry_at("RA-0001", 1, Some(between))
                .entry_at("RB-0002", 1, Some(between))
                .build(),
        )
        .await;
    let outcome = got.unwrap_or_else(|e| {
        panic!("uses dated before the second request may take its tickets, got Err({e:?})")
    });
    assert_eq!(outcome.applied_uses, 2, "both uses applied");
    let v = view(&*store, f.id(1), "after").await;
    let review: Vec<(&str, bool)> = v
        .refunds
        .iter()
        .map(|r| (r.flow_id.as_str(), r.needs_review))
        .collect();
    assert_eq!(
        review,
        [
            (first.flow_id.as_str(), false),
            (second.flow_id.as_str(), true)
        ],
        "only the second request's tickets were taken"
    );
}
