//! The documented starts and transitions (`STARTS`, `TRANSITIONS`), walked row by row
//! against the real server, and the check that every transition the server writes is one of
//! them.

use super::*;

/// Every row of `TRANSITIONS`: build `from` through the API, perform `call` as `when` says,
/// and check the status becomes `to` with an `order.status` event of the causing request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_transition_happens_and_is_recorded() {
    let life = Life::new().await;
    assert!(TRANSITIONS.len() >= 16, "the transition table shrank");
    for (i, t) in TRANSITIONS.iter().enumerate() {
        walk_transition(&life, 71_000 + i as i64, t).await;
    }
}

/// Every row of `STARTS`: the order begins in the documented status, with its creation event
/// and no `order.status` entry (there is no status before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_start_creates_the_order_in_its_status() {
    let life = Life::new().await;
    for (i, start) in STARTS.iter().enumerate() {
        let o = 70_000 + i as i64;
        let ctx = format!(
            "{} starts {} ({})",
            start.call.name(),
            start.status.as_str(),
            start.when
        );
        let (created, reason) = match (start.call, start.status) {
            (Call::CreateOrder, S::AwaitingIssuance) => {
                (life.awaiting(o, 2).await, "created_awaiting_issuance")
            }
            (Call::CreateOrder, S::Issued) => {
                (life.issued(o, 2, &[("T-A", 2)]).await, "created_issued")
            }
            _ => panic!("STARTS row not walked by lifecycle.rs: {start:?}"),
        };
        assert_eq!(created.status, start.status.as_str(), "{ctx}: {created:?}");
        let rid = last_of(&created, CREATE_ACTION);
        assert_eq!(
            events_of(&created, &rid),
            [(
                CREATE_ACTION.to_owned(),
                "accepted".to_owned(),
                reason.to_owned()
            )],
            "{ctx}"
        );
        assert_eq!(status_events(&created), [], "{ctx}");
    }
}

async fn walk_transition(life: &Life, o: i64, t: &Transition) {
    let (from, to) = (t.from.as_str(), t.to.as_str());
    let ctx = format!("{} {from} -> {to} ({})", t.call.name(), t.when);
    let (rid, cause) = match (t.call, t.from, t.to) {
        (Call::Issue, S::AwaitingIssuance, S::Issued) => {
            life.awaiting(o, 2).await;
            life.assert_status(o, from, &ctx).await;
            (life.issue_ok(o, &[("T-A", 1), ("T-B", 1)]).await, ISSUE)
        }
        (Call::Issue, S::AwaitingIssuance, S::IssueFailed) => {
            life.awaiting(o, 2).await;
            life.assert_status(o, from, &ctx).await;
            let call = life.fail_call(o, &format!("OUT-{o}"), "库存不足");
            (assert_success_for(&life.send(call).await, ISSUE), ISSUE)
        }
        (Call::Issue, S::IssueFailed, S::Issued) => {
            life.awaiting(o, 2).await;
            let call = life.fail_call(o, &format!("OUT-{o}"), "供应商系统超时");
            assert_success_for(&life.send(call).await, ISSUE);
            life.assert_status(o, from, &ctx).await;
            (life.issue_ok(o, &[("T-A", 2)]).await, ISSUE)
        }
        (Call::Verify, S::Issued, S::PartlyUsed) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.assert_status(o, from, &ctx).await;
            (life.verify_ok(o, "T-A", 1).await, VERIFY)
        }
        (Call::Verify, S::PartlyUsed, S::Used) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.assert_status(o, from, &ctx).await;
            (life.verify_ok(o, "T-A", 1).await, VERIFY)
        }
        (Call::Verify, S::PartlyRefunded, S::Closed) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            life.assert_status(o, from, &ctx).await;
            (life.verify_ok(o, "T-A", 1).await, VERIFY)
        }
        (Call::RequestRefund, S::Issued, S::Refunding) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.assert_status(o, from, &ctx).await;
            life.request_ok(o, 2).await;
            (last_of(&life.order(o).await, REQUEST_ACTION), REQUEST_ACTION)
        }
        (Call::RequestRefund, S::PartlyUsed, S::Refunding) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.assert_status(o, from, &ctx).await;
            life.request_ok(o, 1).await;
            (last_of(&life.order(o).await, REQUEST_ACTION), REQUEST_ACTION)
        }
        (Call::Refund, S::Refunding, S::Refunded) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 2).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (Call::Refund, S::Refunding, S::PartlyRefunded) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (Call::Refund, S::Refunding, S::Closed) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.request_ok(o, 1).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (Call::Refund, S::Refunding, S::PartlyUsed) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.request_ok(o, 1).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(
                    o,
                    &[
                        ("refund_status", "2"),
                        ("refund_batch_no", "RB-1"),
                        ("refund_failure_reason", "门票已过退票期"),
                    ],
                )
                .await;
            (rid, REFUND)
        }
        (Call::Reverse, S::Used, S::PartlyUsed) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 2).await;
            life.assert_status(o, from, &ctx).await;
            life.reverse_ok(o, "T-A", 1).await;
            (last_of(&life.order(o).await, REVERSE_ACTION), REVERSE_ACTION)
        }
        (Call::Reverse, S::PartlyUsed, S::Issued) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.assert_status(o, from, &ctx).await;
            life.reverse_ok(o, "T-A", 1).await;
            (last_of(&life.order(o).await, REVERSE_ACTION), REVERSE_ACTION)
        }
        (Call::Verify, S::Issued, S::Used) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.assert_status(o, from, &ctx).await;
            (life.verify_ok(o, "T-A", 2).await, VERIFY)
        }
        (Call::RequestRefund, S::PartlyRefunded, S::Refunding) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            life.assert_status(o, from, &ctx).await;
            life.request_ok(o, 1).await;
            (last_of(&life.order(o).await, REQUEST_ACTION), REQUEST_ACTION)
        }
        (Call::Refund, S::Refunding, S::Issued) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "2"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (Call::Refund, S::Refunding, S::Used) => {
            // The request holds the only ticket; a use dated before it takes it (R9).
            life.issued(o, 1, &[("T-A", 1)]).await;
            life.request_ok(o, 1).await;
            let before = life.now() - chrono::Duration::seconds(30);
            let call = life.verify_call(o, &[("T-A", 1, Some(before))]);
            assert_success_for(&life.send(call).await, VERIFY);
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "2"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (Call::Reverse, S::Used, S::Issued) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 2).await;
            life.assert_status(o, from, &ctx).await;
            life.reverse_ok(o, "T-A", 2).await;
            (last_of(&life.order(o).await, REVERSE_ACTION), REVERSE_ACTION)
        }
        (Call::Reverse, S::Closed, S::PartlyRefunded) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            life.verify_ok(o, "T-A", 1).await;
            life.assert_status(o, from, &ctx).await;
            life.reverse_ok(o, "T-A", 1).await;
            (last_of(&life.order(o).await, REVERSE_ACTION), REVERSE_ACTION)
        }
        (Call::Reconcile, S::Issued, S::PartlyUsed) => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.assert_status(o, from, &ctx).await;
            let (status, body) = life.reconcile(o, &[("T-A", 1)], true).await;
            assert_eq!(status, 200, "{ctx}: {body}");
            (last_of(&life.order(o).await, RECONCILE_ACTION), RECONCILE_ACTION)
        }
        _ => panic!(
            "TRANSITIONS row not walked by lifecycle.rs: {t:?}; teach walk_transition how to build it"
        ),
    };
    let order = life.order(o).await;
    assert_eq!(order.status, to, "{ctx}: {order:?}");
    if from == to {
        assert_no_transition(&order, &rid);
    } else {
        assert_transition(&order, &rid, from, to, cause);
    }
}

/// docs/LIFECYCLE.md promises "which call moves which state": every `order.status` event the
/// server writes must be a row of `TRANSITIONS`. Ordinary stories — a one-use code verified,
/// a refund that fails on an issued order, a reversal after a refund, a second request after
/// a partial refund, a reconciliation — each produce one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_the_server_writes_is_documented() {
    let life = Life::new().await;
    // Verify: one code, one use.
    life.issued(79_001, 1, &[("U-1", 1)]).await;
    life.verify_ok(79_001, "U-1", 1).await;
    // …then the use is reversed.
    life.reverse_ok(79_001, "U-1", 1).await;
    // A refund that fails on an issued order.
    life.issued(79_002, 1, &[("U-2", 1)]).await;
    life.request_ok(79_002, 1).await;
    life.notify_ok(79_002, &[("refund_status", "2")]).await;
    // A partial refund, another request, then a use on the remaining ticket is reversed.
    life.issued(79_003, 3, &[("U-3", 3)]).await;
    life.request_ok(79_003, 1).await;
    life.notify_ok(
        79_003,
        &[("refund_status", "1"), ("refund_batch_no", "RB-1")],
    )
    .await;
    life.request_ok(79_003, 1).await;
    life.notify_ok(
        79_003,
        &[("refund_status", "1"), ("refund_batch_no", "RB-2")],
    )
    .await;
    life.verify_ok(79_003, "U-3", 1).await;
    life.reverse_ok(79_003, "U-3", 1).await;
    // A pending refund, a use dated before it, the refund then fails.
    life.issued(79_004, 1, &[("U-4", 1)]).await;
    life.request_ok(79_004, 1).await;
    life.verify_ok(79_004, "U-4", 1).await;
    life.notify_ok(79_004, &[("refund_status", "2")]).await;
    // A reconciliation.
    life.issued(79_005, 2, &[("U-5", 2)]).await;
    let (status, _) = life.reconcile(79_005, &[("U-5", 1)], true).await;
    assert_eq!(status, 200);

    // The `cause` of a status event is the audit action of the call that caused it.
    let call_of = |cause: &str| match cause {
        ISSUE => Some(Call::Issue),
        VERIFY => Some(Call::Verify),
        REQUEST_ACTION => Some(Call::RequestRefund),
        REFUND => Some(Call::Refund),
        REVERSE_ACTION => Some(Call::Reverse),
        CREATE_ACTION => Some(Call::CreateOrder),
        RECONCILE_ACTION => Some(Call::Reconcile),
        _ => None,
    };
    let mut undocumented = std::collections::BTreeSet::new();
    for e in audit_entries(&life.app, "limit=1000").await {
        if e.action != "order.status" {
            continue;
        }
        let (cause, from, to) = (
            e.detail["cause"].as_str().unwrap(),
            e.detail["from"].as_str().unwrap(),
            e.detail["to"].as_str().unwrap(),
        );
        let call = call_of(cause);
        if !TRANSITIONS
            .iter()
            .any(|t| Some(t.call) == call && t.from.as_str() == from && t.to.as_str() == to)
        {
            let call = call.map_or("a call the table does not name", Call::name);
            undocumented.insert(format!("{cause} ({call}): {from} -> {to}"));
        }
    }
    assert!(
        undocumented.is_empty(),
        "status transitions the server writes but docs/LIFECYCLE.md does not list:\n  {}",
        undocumented.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}
