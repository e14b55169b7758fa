//! The vendor's refund notifications: which pending request they settle, idempotence on
//! `batch_no` and `flow_id`, failed refunds, and the order status refunds lead to.

use std::sync::Arc;

use chrono::Duration;

use ticket_ledger::OutcomeKind;
use ticket_ledger::{AnomalyFilter, AnomalyKind, RefundRequest, RefundState};
use ticket_ledger::{AuditOutcome, OrderStatus};
use ticket_ledger::{LedgerError, LedgerStore};

use crate::build::{received_at, refund_cmd, refund_request, verify_cmd, Fresh};
use crate::check::{applied, refused, transitions, verify_expect, view};

use super::{after_ask, asked_at, given, pair, refund_ok, refund_refused, request_ok};

cases! {
    refund_notification_with_its_flow_id_settles_that_request,
    refund_notification_without_flow_id_settles_the_oldest_pending,
    refund_notification_with_nothing_pending_is_refused_and_stored_as_an_anomaly,
    refund_notification_is_idempotent_on_batch_no_and_flow_id,
    failed_refund_releases_its_tickets,
    refund_num_beyond_the_request_is_refused,
    refund_results_move_the_order_to_partly_refunded_refunded_or_closed,
}

/// A refund notification naming its request's flow id settles that request — state
/// `succeeded`, the tickets refunded, the batch number and settlement time recorded — and the
/// order counts the refunded tickets; another pending request stays pending (and the order
/// `refunding`) until its own notification.
async fn refund_notification_with_its_flow_id_settles_that_request(store: Arc<dyn LedgerStore>) {
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
async fn refund_notification_without_flow_id_settles_the_oldest_pending(
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
async fn refund_notification_with_nothing_pending_is_refused_and_stored_as_an_anomaly(
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
async fn refund_notification_is_idempotent_on_batch_no_and_flow_id(store: Arc<dyn LedgerStore>) {
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
    again.meta = crate::build::meta_at(
        first.meta.received_at + Duration::minutes(1),
        first.meta.summary.value().clone(),
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
async fn failed_refund_releases_its_tickets(store: Arc<dyn LedgerStore>) {
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
async fn refund_num_beyond_the_request_is_refused(store: Arc<dyn LedgerStore>) {
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
async fn refund_results_move_the_order_to_partly_refunded_refunded_or_closed(
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
