//! What refunded or reserved tickets do to verify (R8, R9): a pending request holds its tickets
//! from its own request time, and uses held by refunded tickets are refused as anomalies.

use std::sync::Arc;

use chrono::Duration;

use ticket_ledger::OrderStatus;
use ticket_ledger::{plan_verify, Flag, OutcomeKind};
use ticket_ledger::{AnomalyKind, RefundRequest};
use ticket_ledger::{LedgerError, LedgerStore};

use crate::build::{gate_time, received_at, refund_cmd, refund_request, verify_cmd, Fresh};
use crate::check::{
    anomalies_of, applied, assert_appended, assert_open_anomaly, assert_used, refused, snapshot_of,
    verify_expect, view,
};

use super::{after_ask, asked_at, given, refund_ok, refund_refused, request_ok};

cases! {
    each_pending_refund_holds_its_tickets_from_its_own_request,
    verify_of_a_fully_refunded_order_is_refused_and_stored_as_an_anomaly,
    verify_needing_uses_held_by_refunded_tickets_is_refused_and_stored_as_an_anomaly,
    verify_dated_before_a_pending_refund_may_take_its_reserved_uses,
    verify_dated_after_a_pending_refund_cannot_take_its_reserved_uses,
}

/// R8: a verify of an order whose every ticket is refunded is refused with `OrderRefunded` in
/// any form, changes nothing, and is stored as a `verify_after_refund` anomaly.
async fn verify_of_a_fully_refunded_order_is_refused_and_stored_as_an_anomaly(
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
async fn verify_needing_uses_held_by_refunded_tickets_is_refused_and_stored_as_an_anomaly(
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
async fn verify_dated_before_a_pending_refund_may_take_its_reserved_uses(
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
async fn verify_dated_after_a_pending_refund_cannot_take_its_reserved_uses(
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
async fn each_pending_refund_holds_its_tickets_from_its_own_request(store: Arc<dyn LedgerStore>) {
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
