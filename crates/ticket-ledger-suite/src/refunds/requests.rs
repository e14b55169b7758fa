//! Refund requests (退票申请) opened on the platform side: within the unused tickets they are
//! pending and hold their tickets; beyond them they are refused.

use std::sync::Arc;

use chrono::Duration;

use ticket_ledger::{AuditOutcome, OrderStatus};
use ticket_ledger::{LedgerError, LedgerStore};

use crate::build::{received_at, refund_request, verify_cmd, Fresh};
use crate::check::{applied, assert_refusal, transitions, verify_expect};

use super::{given, pair, request_ok, request_refused};

cases! {
    refund_request_within_refundable_tickets_is_pending_and_the_order_refunding,
    refund_request_beyond_the_unused_tickets_is_refused,
}

/// A refund request within the refundable tickets (neither used, refunded nor reserved) opens
/// a pending request with a flow id, lists it on the order, moves the status to `refunding`
/// and records both as events of the request; asking for one more ticket than then remains is
/// refused with `RefundExceedsUnused`.
async fn refund_request_within_refundable_tickets_is_pending_and_the_order_refunding(
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
async fn refund_request_beyond_the_unused_tickets_is_refused(store: Arc<dyn LedgerStore>) {
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
