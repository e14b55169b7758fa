//! Refunds (退票): requests settled by the vendor's notification, and the tickets a pending
//! request holds against later uses.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_requests_are_settled_by_the_vendors_notification() {
    let life = Life::new().await;
    let o = 74_001;
    life.issued(o, 3, &[("RF-1", 1), ("RF-2", 1), ("RF-3", 1)])
        .await;
    let t0 = format_beijing(life.now());

    // A request: 201 with the flow id the vendor will name.
    let (status, first) = life.request_refund(o, 1).await;
    assert_eq!(status, 201, "{first}");
    let flow1 = format!("RF{o}001");
    assert_eq!(
        first,
        json!({"fliggy_refund_flow_id": flow1, "quantity": 1, "state": "pending",
               "refunded_tickets": 0, "requested_at": t0, "settled_at": null,
               "refund_batch_no": null, "refund_failure_reason": null, "needs_review": false})
    );
    let order = life.order(o).await;
    assert_eq!(order.status, "refunding");
    assert_eq!(json!(order.refunds), json!([first]));
    assert_eq!(order.refundable_tickets, 2);
    let rid = last_of(&order, REQUEST_ACTION);
    let e = order
        .events
        .iter()
        .find(|e| e.request_id == rid.as_str() && e.action == REQUEST_ACTION)
        .unwrap()
        .clone();
    assert_eq!(
        (e.reason.as_str(), &e.detail),
        (
            "refund_requested",
            &json!({"fliggy_refund_flow_id": flow1, "quantity": 1})
        )
    );
    assert_transition(&order, &rid, "issued", "refunding", REQUEST_ACTION);

    // More than remain unused and unrequested: 409, nothing recorded. Bad input: 400 / 404.
    let snap = ledger_snapshot(&life.app, o).await;
    let (status, body) = life.request_refund(o, 3).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("refund_exceeds_unused")),
        "{body}"
    );
    let (status, body) = life.request_refund(o, 0).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("quantity")),
        "{body}"
    );
    let (status, body) = life
        .app
        .admin_post(&format!("/admin/orders/{o}/refunds"), json!({"tickets": 1}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = life.request_refund(74_999, 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // A second request, a second later.
    life.clock.advance(Duration::seconds(1));
    let flow2 = life.request_ok(o, 1).await;
    assert_eq!(flow2, format!("RF{o}002"));
    assert_eq!(life.order(o).await.refundable_tickets, 1);

    // Without a flow id the notification settles the oldest pending request.
    life.clock.advance(Duration::seconds(1));
    let settled_at = format_beijing(life.now());
    let rid = life
        .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
        .await;
    let order = life.order(o).await;
    assert_eq!(order.refunds[0].state, "succeeded", "{order:?}");
    assert_eq!(order.refunds[0].refunded_tickets, 1);
    assert_eq!(order.refunds[0].refund_batch_no.as_deref(), Some("RB-1"));
    assert_eq!(
        order.refunds[0].settled_at.as_deref(),
        Some(settled_at.as_str())
    );
    assert_eq!(order.refunds[1].state, "pending");
    assert_eq!(order.refunded_tickets, 1);
    assert_eq!(
        order.status, "refunding",
        "another request is still pending"
    );
    assert_no_transition(&order, &rid);
    let e = order
        .events
        .iter()
        .find(|e| e.request_id == rid.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (e.action.as_str(), e.outcome.as_str(), e.reason.as_str()),
        (REFUND, "accepted", "refunded")
    );
    assert_eq!(e.detail["fliggy_refund_flow_id"], flow1.as_str());
    assert_eq!(e.detail["refunded_tickets"], 1);

    // The same notification again (same refund_batch_no) changes nothing.
    let snap = ledger_snapshot(&life.app, o).await;
    let again = life
        .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
        .await;
    let order = life.order(o).await;
    assert_eq!(
        events_of(&order, &again),
        [(
            REFUND.to_owned(),
            "replayed".to_owned(),
            "replayed".to_owned()
        )]
    );
    let mut now = ledger_snapshot(&life.app, o).await;
    now.events.pop();
    assert_eq!(now, snap);
    let now = ledger_snapshot(&life.app, o).await;

    // A partial refund (refund_type 3) names its request; without a flow id it is refused.
    let reply = life
        .send(life.notify_call(o, &[("refund_status", "1"), ("refund_type", "3")]))
        .await;
    let id = assert_top_envelope(&reply);
    assert_eq!(
        reply.text(),
        error_json(
            40,
            "Missing required arguments:fliggy_refund_flow_id",
            Some((
                "isv.missing-parameter:fliggy_refund_flow_id",
                "缺少必选参数:fliggy_refund_flow_id"
            )),
            &id
        )
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, now);
    let rid = life
        .notify_ok(
            o,
            &[
                ("refund_status", "1"),
                ("refund_type", "3"),
                ("refund_num", "1"),
                ("fliggy_refund_flow_id", &flow2),
                ("refund_batch_no", "RB-2"),
            ],
        )
        .await;
    let order = life.order(o).await;
    assert_eq!(order.refunds[1].state, "succeeded");
    assert_eq!(order.refunds[1].refund_batch_no.as_deref(), Some("RB-2"));
    assert_eq!(order.refunded_tickets, 2);
    assert_eq!(order.refundable_tickets, 1);
    assert_transition(&order, &rid, "refunding", "partly_refunded", REFUND);

    // The same result again, by flow id alone: a replay.
    let snap = ledger_snapshot(&life.app, o).await;
    let again = life
        .notify_ok(
            o,
            &[("refund_status", "1"), ("fliggy_refund_flow_id", &flow2)],
        )
        .await;
    assert_eq!(
        events_of(&life.order(o).await, &again),
        [(
            REFUND.to_owned(),
            "replayed".to_owned(),
            "replayed".to_owned()
        )]
    );
    let mut now = ledger_snapshot(&life.app, o).await;
    now.events.pop();
    assert_eq!(now, snap);
    let now = ledger_snapshot(&life.app, o).await;

    // Nothing pending: refused, and recorded as an anomaly.
    let reply = life
        .send(life.notify_call(o, &[("refund_status", "1"), ("refund_batch_no", "RB-3")]))
        .await;
    let rid = assert_business(&reply, "isv.refund-not-requested", "没有对应的退票申请");
    let found = life
        .anomalies(&format!("order_id={o}&kind=refund_not_requested"))
        .await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].request_id, rid.as_str());
    assert_eq!(ledger_snapshot(&life.app, o).await, now);

    // Two tickets are refunded: one use is left for three codes. Two uses are refused as
    // refunded tickets (and recorded), one is accepted and closes the order.
    let reply = life
        .send(life.verify_call(o, &[("RF-1", 1, life.gate()), ("RF-2", 1, life.gate())]))
        .await;
    let rid = assert_business(
        &reply,
        "isv.ticket-refunded",
        "门票已退票，不可核销: 本次核销2次, 未退票的剩余可核销1次",
    );
    let found = life
        .anomalies(&format!("order_id={o}&kind=verify_after_refund"))
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].request_id, rid.as_str());
    assert_eq!(
        found[0].detail,
        json!({"requested": 2, "remaining": 1, "refund_pending": false})
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, now);
    let rid = life.verify_ok(o, "RF-3", 1).await;
    let order = life.order(o).await;
    assert_transition(&order, &rid, "partly_refunded", "closed", VERIFY);
    assert_eq!(order.refundable_tickets, 0);
    let reply = life
        .send(life.verify_call(o, &[("RF-1", 1, life.gate())]))
        .await;
    assert_business(
        &reply,
        "isv.ticket-refunded",
        "门票已退票，不可核销: 本次核销1次, 未退票的剩余可核销0次",
    );
    assert_eq!(
        life.anomalies(&format!("order_id={o}&kind=verify_after_refund"))
            .await
            .len(),
        2
    );

    // A refund that fails releases its tickets, with the vendor's reason kept.
    let o2 = 74_002;
    life.issued(o2, 2, &[("RF-F", 2)]).await;
    let flow = life.request_ok(o2, 2).await;
    life.notify_ok(
        o2,
        &[
            ("refund_status", "2"),
            ("fliggy_refund_flow_id", &flow),
            ("refund_failure_reason", "已过退票期"),
        ],
    )
    .await;
    let order = life.order(o2).await;
    assert_eq!(order.refunds[0].state, "failed");
    assert_eq!(
        order.refunds[0].refund_failure_reason.as_deref(),
        Some("已过退票期")
    );
    assert_eq!(order.refunds[0].refunded_tickets, 0);
    assert_eq!((order.refunded_tickets, order.refundable_tickets), (0, 2));
    assert_eq!(
        order.status, "issued",
        "the status before the request returns"
    );
    life.verify_ok(o2, "RF-F", 2).await;

    // A full refund: every ticket; a verify is refused as refunded.
    let o3 = 74_003;
    life.issued(o3, 2, &[("RF-ALL", 2)]).await;
    life.request_ok(o3, 2).await;
    life.notify_ok(
        o3,
        &[
            ("refund_status", "1"),
            ("refund_num", "2"),
            ("refund_batch_no", "RB-ALL"),
        ],
    )
    .await;
    let order = life.order(o3).await;
    assert_eq!(
        (order.status.as_str(), order.refunded_tickets),
        ("refunded", 2)
    );
    assert_business(
        &life
            .send(life.verify_call(o3, &[("RF-ALL", 1, life.gate())]))
            .await,
        "isv.ticket-refunded",
        "门票已退票，不可核销: 订单门票已全部退票",
    );
}

/// DOMAIN.md R9 exactly as docs/LIFECYCLE.md says: a pending request holds its tickets' uses;
/// uses dated before the request may still take them (accepted, the request needs review, a
/// `verify_during_refund` anomaly); uses dated at or after it may not (refused
/// `isv.ticket-refunded`, a `verify_after_refund` anomaly); a notification for more tickets
/// than remain unused is refused with a `refund_exceeds_unused` anomaly; a failed refund
/// releases what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_refund_holds_its_tickets_against_later_uses() {
    let life = Life::new().await;
    let o = 75_001;
    life.issued(o, 2, &[("R9-A", 2)]).await;
    let requested = life.now();
    let flow = life.request_ok(o, 1).await;

    // After the request: the unheld use may be taken…
    let rid = assert_success_for(
        &life
            .send(life.verify_call(o, &[("R9-A", 1, Some(requested + Duration::minutes(1)))]))
            .await,
        VERIFY,
    );
    let order = life.order(o).await;
    assert!(!order.refunds[0].needs_review);
    assert_eq!(
        order.status, "refunding",
        "a pending request wins over partly_used"
    );
    assert_no_transition(&order, &rid);
    assert!(life.anomalies(&format!("order_id={o}")).await.is_empty());

    // …the held one may not: dated after, or at the request's instant (no used_date: the
    // receive time, which the clock keeps at the request's instant).
    let held = "门票已退票，不可核销: 本次核销1次, 未退票的剩余可核销0次 (有退票处理中)";
    let snap = ledger_snapshot(&life.app, o).await;
    let mut refused = Vec::new();
    for at in [
        Some(requested + Duration::minutes(2)),
        None,
        Some(requested),
    ] {
        let reply = life.send(life.verify_call(o, &[("R9-A", 1, at)])).await;
        refused.push(assert_business(&reply, "isv.ticket-refunded", held));
    }
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);
    let found = life
        .anomalies(&format!("order_id={o}&kind=verify_after_refund"))
        .await;
    let mut ids: Vec<&str> = found.iter().map(|a| a.request_id.as_str()).collect();
    ids.reverse(); // newest first
    assert_eq!(ids, refused.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        found[0].detail,
        json!({"requested": 1, "remaining": 0, "refund_pending": true})
    );

    // Dated before the request: the visitor was admitted first. Accepted; the request needs
    // review, and the fact is an anomaly.
    let before = requested - Duration::minutes(10);
    let rid = assert_success_for(
        &life
            .send(life.verify_call(o, &[("R9-A", 1, Some(before))]))
            .await,
        VERIFY,
    );
    let order = life.order(o).await;
    assert_eq!(life.used(o, "R9-A").await, 2);
    assert!(order.refunds[0].needs_review, "{order:?}");
    assert_eq!(order.refunds[0].state, "pending");
    assert_eq!(order.status, "refunding");
    assert_no_transition(&order, &rid);
    let during = life
        .anomalies(&format!("order_id={o}&kind=verify_during_refund"))
        .await;
    assert_eq!(during.len(), 1, "{during:#?}");
    assert_eq!(during[0].request_id, rid.as_str());
    assert_eq!(during[0].status, "open");
    assert_eq!(
        during[0].detail,
        json!({"kind": "verify_during_refund", "fliggy_refund_flow_ids": [flow]})
    );

    // The vendor reports the ticket refunded although it was used: refused, an anomaly.
    let snap = ledger_snapshot(&life.app, o).await;
    let reply = life
        .send(life.notify_call(
            o,
            &[("refund_status", "1"), ("fliggy_refund_flow_id", &flow)],
        ))
        .await;
    let rid = assert_business(
        &reply,
        "isv.refund-num-exceed",
        "退票数量超过可退数量: 退票1张, 未使用可退0张",
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);
    let exceeds = life
        .anomalies(&format!("order_id={o}&kind=refund_exceeds_unused"))
        .await;
    assert_eq!(exceeds.len(), 1);
    assert_eq!(exceeds[0].request_id, rid.as_str());
    assert_eq!(exceeds[0].detail, json!({"requested": 1, "refundable": 0}));

    // The vendor then reports the refund failed: the hold is released, the order is used.
    life.notify_ok(
        o,
        &[
            ("refund_status", "2"),
            ("fliggy_refund_flow_id", &flow),
            ("refund_failure_reason", "门票已使用"),
        ],
    )
    .await;
    let order = life.order(o).await;
    assert_eq!(order.refunds[0].state, "failed");
    assert_eq!(order.status, "used");

    // With tickets to spare, a reviewed request is still settled for what remains unused.
    let o2 = 75_002;
    life.issued(o2, 3, &[("R9-1", 1), ("R9-2", 1), ("R9-3", 1)])
        .await;
    let flow = life.request_ok(o2, 2).await;
    life.verify_ok(o2, "R9-1", 1).await; // the unheld ticket
    assert!(!life.order(o2).await.refunds[0].needs_review);
    life.verify_ok(o2, "R9-2", 1).await; // a held one, dated before the request
    assert!(life.order(o2).await.refunds[0].needs_review);
    let rid = life
        .notify_ok(
            o2,
            &[
                ("refund_status", "1"),
                ("refund_type", "3"),
                ("refund_num", "1"),
                ("fliggy_refund_flow_id", &flow),
            ],
        )
        .await;
    let order = life.order(o2).await;
    assert_eq!(order.refunded_tickets, 1);
    assert_eq!(order.refunds[0].refunded_tickets, 1);
    assert_transition(&order, &rid, "refunding", "closed", REFUND);
}
