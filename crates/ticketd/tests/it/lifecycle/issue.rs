//! Issuance (发码): the vendor's report fills the ledger once and contradictions are refused.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_fills_the_ledger_once_and_refuses_contradictions() {
    let life = Life::new().await;
    let o = 73_001;
    let created = life.awaiting(o, 3).await;
    assert_eq!(created.status, "awaiting_issuance");
    assert_eq!(created.out_order_id, None);
    assert_business(
        &life
            .send(life.verify_call(o, &[("ISS-1", 1, life.gate())]))
            .await,
        "isv.order-status-invalid",
        "订单状态不允许核销: 订单尚未发码",
    );

    // The report with extras and types: recorded, the order becomes verifiable.
    let vouchers = json!([
        {"confirm_code": "ISS-1", "type": 1, "quantity": 1, "assist_code": "AC-1", "url": "https://v.example/ISS-1"},
        {"confirm_code": "ISS-2", "type": 1, "quantity": 1, "pdf_url": "https://v.example/2.pdf", "img": "https://v.example/2.png"},
        {"confirm_code": "ISS-3", "type": 2, "quantity": 1},
    ]);
    let rid = assert_success_for(
        &life
            .send(
                life.issue_call(o, "OUT-73001", &vouchers)
                    .set("attribute_map", r#"{"channel":"gate-7"}"#),
            )
            .await,
        ISSUE,
    );
    let order = life.order(o).await;
    assert_eq!(order.status, "issued", "{order:?}");
    assert_eq!(
        order.out_order_id.as_deref(),
        Some("OUT-73001"),
        "issuance sets out_order_id"
    );
    assert_eq!(
        json!(order.vouchers),
        json!([
            {"confirm_code": "ISS-1", "capacity": 1, "used": 0, "remaining": 1},
            {"confirm_code": "ISS-2", "capacity": 1, "used": 0, "remaining": 1},
            {"confirm_code": "ISS-3", "capacity": 1, "used": 0, "remaining": 1},
        ])
    );
    assert_eq!((order.capacity, order.refundable_tickets), (3, 3));
    let issue_event = order
        .events
        .iter()
        .find(|e| e.request_id == rid.as_str() && e.action == ISSUE)
        .unwrap()
        .clone();
    assert_eq!(
        (issue_event.outcome.as_str(), issue_event.reason.as_str()),
        ("accepted", "issued")
    );
    assert_eq!(
        issue_event.detail["vouchers"],
        json!([
            {"confirm_code": "****-1", "capacity": 1, "type": 1},
            {"confirm_code": "****-2", "capacity": 1, "type": 1},
            {"confirm_code": "****-3", "capacity": 1, "type": 2},
        ]),
        "codes masked, types kept: {issue_event:?}"
    );
    assert_transition(&order, &rid, "awaiting_issuance", "issued", ISSUE);

    // The same report again — also with its codes in another order — changes nothing.
    let same = without_events(ledger_snapshot(&life.app, o).await);
    let reordered = json!([
        {"confirm_code": "ISS-3", "type": 2, "quantity": 1},
        {"confirm_code": "ISS-1", "type": 1, "quantity": 1, "assist_code": "AC-1", "url": "https://v.example/ISS-1"},
        {"confirm_code": "ISS-2", "type": 1, "quantity": 1},
    ]);
    for report in [&vouchers, &reordered] {
        let rid = assert_success_for(
            &life.send(life.issue_call(o, "OUT-73001", report)).await,
            ISSUE,
        );
        let order = life.order(o).await;
        assert_eq!(
            events_of(&order, &rid),
            [(
                ISSUE.to_owned(),
                "replayed".to_owned(),
                "replayed".to_owned()
            )]
        );
        assert_eq!(without_events(ledger_snapshot(&life.app, o).await), same);
    }

    // Contradictions are refused precisely and change nothing.
    let conflict = |why: &str| format!("发码结果与已记录的不一致: {why}");
    let before = ledger_snapshot(&life.app, o).await;
    for (report, why) in [
        (
            json!([{"confirm_code": "ISS-1", "quantity": 2}, {"confirm_code": "ISS-2", "quantity": 1}, {"confirm_code": "ISS-3", "quantity": 1}]),
            "the order was already issued with other codes",
        ),
        (
            json!([{"confirm_code": "ISS-1", "quantity": 1}]),
            "the order was already issued with other codes",
        ),
    ] {
        assert_business(
            &life.send(life.issue_call(o, "OUT-73001", &report)).await,
            "isv.issue-conflict",
            &conflict(why),
        );
    }
    assert_business(
        &life.send(life.fail_call(o, "OUT-73001", "库存不足")).await,
        "isv.issue-conflict",
        &conflict("the order was already issued; a failure cannot follow"),
    );
    assert_business(
        &life.send(life.issue_call(o, "OUT-OTHER", &vouchers)).await,
        "isv.out-order-id-mismatch",
        "外部订单号与订单不匹配",
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, before);

    // The codes now verify, also by the out_order_id issuance set.
    life.verify_ok(o, "ISS-1", 1).await;
    let by_out = life.call(VERIFY).set("out_order_id", "OUT-73001").set(
        "voucher_infos",
        json!([{"confirm_code": "ISS-2", "used_quantity": 1, "used_date": format_beijing(life.gate().unwrap())}]),
    );
    assert_success_for(&life.send(by_out).await, VERIFY);
    assert_eq!(
        (life.used(o, "ISS-1").await, life.used(o, "ISS-2").await),
        (1, 1)
    );
    assert_eq!(life.status(o).await, "partly_used");

    // A failure, its retry, then the vendor's successful retry of issuing.
    let o2 = 73_002;
    life.awaiting(o2, 2).await;
    let failed = assert_success_for(
        &life.send(life.fail_call(o2, "OUT-73002", "库存不足")).await,
        ISSUE,
    );
    let order = life.order(o2).await;
    assert_eq!(order.status, "issue_failed");
    assert_eq!(order.issue_describe.as_deref(), Some("库存不足"));
    assert_eq!(order.out_order_id.as_deref(), Some("OUT-73002"));
    assert_eq!(order.vouchers, []);
    assert_eq!(
        events_of(&order, &failed)[0],
        (
            ISSUE.to_owned(),
            "accepted".to_owned(),
            "issue_failed".to_owned()
        )
    );
    assert_transition(&order, &failed, "awaiting_issuance", "issue_failed", ISSUE);
    let again = assert_success_for(
        &life.send(life.fail_call(o2, "OUT-73002", "库存不足")).await,
        ISSUE,
    );
    let order = life.order(o2).await;
    assert_eq!(
        events_of(&order, &again),
        [(
            ISSUE.to_owned(),
            "replayed".to_owned(),
            "replayed".to_owned()
        )]
    );
    assert_business(
        &life
            .send(life.verify_call(o2, &[("RETRY-1", 1, life.gate())]))
            .await,
        "isv.order-status-invalid",
        "订单状态不允许核销: 订单尚未发码",
    );
    let ok = life.issue_ok(o2, &[("RETRY-1", 1), ("RETRY-2", 1)]).await;
    let order = life.order(o2).await;
    assert_eq!(order.status, "issued");
    assert_transition(&order, &ok, "issue_failed", "issued", ISSUE);
    assert_eq!(
        status_events(&order)
            .into_iter()
            .map(|(_, f, t, _)| (f, t))
            .collect::<Vec<_>>(),
        [
            ("awaiting_issuance".to_owned(), "issue_failed".to_owned()),
            ("issue_failed".to_owned(), "issued".to_owned())
        ]
    );
    life.verify_ok(o2, "RETRY-2", 1).await;

    // An order the operator created with its codes: the vendor's report of the same codes is
    // a replay, and records the vendor's order id.
    let o3 = 73_003;
    life.issued(o3, 2, &[("ADM-1", 1), ("ADM-2", 1)]).await;
    let rid = assert_success_for(
        &life
            .send(life.issue_call(
                o3,
                "OUT-73003",
                &json!([{"confirm_code": "ADM-1", "quantity": 1}, {"confirm_code": "ADM-2", "quantity": 1}]),
            ))
            .await,
        ISSUE,
    );
    let order = life.order(o3).await;
    assert_eq!(order.out_order_id.as_deref(), Some("OUT-73003"));
    assert_eq!(order.status, "issued");
    assert_no_transition(&order, &rid);

    // Another order of the same app cannot take an out_order_id already in use.
    let o4 = 73_004;
    life.awaiting(o4, 1).await;
    assert_business(
        &life
            .send(life.issue_call(
                o4,
                "OUT-73001",
                &json!([{"confirm_code": "DUP-1", "quantity": 1}]),
            ))
            .await,
        "isv.out-order-id-duplicate",
        "外部订单号已被其他订单使用",
    );
    assert_eq!(life.status(o4).await, "awaiting_issuance");

    // Unknown orders and other vendors' orders do not exist for the caller.
    create_order_with(&life.app, 73_005, OTHER, &[], json!({"quantity": 1})).await;
    for id in [73_005, 73_999] {
        assert_business(
            &life
                .send(life.issue_call(
                    id,
                    "OUT-X",
                    &json!([{"confirm_code": "X-1", "quantity": 1}]),
                ))
                .await,
            "isv.order-not-exist",
            "订单不存在",
        );
    }
    assert_eq!(life.status(73_005).await, "awaiting_issuance");

    // Shape rules through the gateway.
    let missing = life
        .send(
            life.call(ISSUE)
                .set("order_id", o4)
                .set("out_order_id", "OUT-73004")
                .set("issue_type", 1),
        )
        .await;
    let id = assert_top_envelope(&missing);
    assert_eq!(
        missing.text(),
        error_json(
            40,
            "Missing required arguments:voucher_infos",
            Some((
                "isv.missing-parameter:voucher_infos",
                "缺少必选参数:voucher_infos"
            )),
            &id
        )
    );
    let no_describe = life
        .send(
            life.call(ISSUE)
                .set("order_id", o4)
                .set("out_order_id", "OUT-73004")
                .set("issue_type", 2),
        )
        .await;
    let (code, sub) = no_describe.error();
    assert_eq!((code, sub.as_str()), (40, "isv.missing-parameter:describe"));
    let zero = life
        .send(life.issue_call(
            o4,
            "OUT-73004",
            &json!([{"confirm_code": "Z-1", "quantity": 0}]),
        ))
        .await;
    let (code, sub) = zero.error();
    assert_eq!(
        (code, sub.as_str()),
        (41, "isv.invalid-parameter:voucher_infos")
    );
    assert_eq!(life.status(o4).await, "awaiting_issuance");
}
