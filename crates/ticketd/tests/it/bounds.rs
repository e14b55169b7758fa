//! Counts cannot overflow or silently fail (issue 12, item 4), through the real server: every
//! count above the ledger's bounds is refused where it enters (41 on the gateway, 422 naming
//! the field on the admin API) and changes nothing; a ledger holding counts from before the
//! bounds is counted exactly; a write that changes no row is refused, never a success; and
//! `/metrics` keeps answering on the largest state the ledger accepts and beyond.

use serde_json::{json, Value};

use crate::helpers::{
    anomalies, assert_success_for, audit_entries, create_order_with, entry_for, ledger_snapshot,
    minutes_ago, request_id_of, spawn_app, voucher_infos, TestApp, TopCall, TopReply, ISSUE,
    REFUND,
};

const KEY: &str = "bounds-vendor";
const SECRET: &str = "bounds-secret";
/// `i64::MAX`, the code quantity the vendor in the issue was answered `is_success` for.
const HUGE: &str = "9223372036854775807";

async fn vendor_app() -> TestApp {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app
}

/// An order of `tickets` tickets awaiting the vendor's codes.
async fn awaiting(app: &TestApp, order_id: i64, tickets: i64) {
    create_order_with(app, order_id, KEY, &[], json!({"quantity": tickets})).await;
}

/// An issuance report of `o` with `voucher_infos` given as JSON text.
fn issue(o: i64, voucher_infos: &str) -> TopCall {
    TopCall::method(ISSUE, KEY, SECRET)
        .set("order_id", o)
        .set("out_order_id", format!("OUT-{o}"))
        .set("issue_type", 1)
        .set("voucher_infos", voucher_infos)
}

/// A refund notification of `o` settling `flow` with `refund_num` tickets.
fn refund(o: i64, flow: &str, refund_num: &str, batch: &str) -> TopCall {
    TopCall::method(REFUND, KEY, SECRET)
        .set("order_id", o)
        .set("refund_status", 1)
        .set("refund_num", refund_num)
        .set("fliggy_refund_flow_id", flow)
        .set("refund_batch_no", batch)
}

/// Asserts `reply` is code 41 naming `param`, with `field` in its `sub_msg`.
fn assert_invalid(reply: &TopReply, param: &str, field: &str) {
    assert_eq!(
        reply.error(),
        (41, format!("isv.invalid-parameter:{param}")),
        "{}",
        reply.text()
    );
    let sub_msg = reply.json()["error_response"]["sub_msg"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(sub_msg.contains(field), "sub_msg names {field}: {sub_msg}");
}

/// Opens an admin refund request; returns its flow id.
async fn request_refund(app: &TestApp, o: i64, quantity: i64) -> String {
    let (status, body) = app
        .admin_post(
            &format!("/admin/orders/{o}/refunds"),
            json!({"quantity": quantity}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["fliggy_refund_flow_id"].as_str().unwrap().to_owned()
}

/// The ledger file of a test server (the default `sqlite://<data-dir>/ticketd.db`), opened
/// behind the server's back as an operator's `sqlite3` shell would.
fn shell(app: &TestApp) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(app.data_dir.path().join("ticketd.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn
}

/// The value of one series in a `/metrics` text.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_code_above_a_million_uses_is_refused_41_and_the_ledger_is_unchanged() {
    let app = vendor_app().await;
    awaiting(&app, 9001, 2).await;
    let before = ledger_snapshot(&app, 9001).await;
    for quantity in [HUGE, "1000001"] {
        let codes = format!(r#"[{{"confirm_code":"BIG-0001","type":2,"quantity":{quantity}}}]"#);
        let reply = app.call(&issue(9001, &codes)).await;
        assert_invalid(&reply, "voucher_infos", "voucher_infos[0].quantity");
        assert_eq!(
            ledger_snapshot(&app, 9001).await,
            before,
            "{quantity}: nothing issued"
        );
    }
    let order = app.order(9001).await;
    assert_eq!(
        (order.status.as_str(), order.capacity),
        ("awaiting_issuance", 0)
    );
    // The bound itself is issued.
    let reply = app
        .call(&issue(
            9001,
            r#"[{"confirm_code":"BIG-0001","type":2,"quantity":1000000}]"#,
        ))
        .await;
    assert_success_for(&reply, ISSUE);
    assert_eq!(app.order(9001).await.capacity, 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_counts_above_their_bounds_are_refused_41_naming_the_parameter() {
    let app = vendor_app().await;
    create_order_with(
        &app,
        9002,
        KEY,
        &[("CNT-0001", 10)],
        json!({"quantity": 10}),
    )
    .await;
    let before = ledger_snapshot(&app, 9002).await;
    let verify = || TopCall::verify(KEY, SECRET).set("order_id", 9002);
    let cases = [
        (
            verify().set(
                "voucher_infos",
                voucher_infos(&[("CNT-0001", 1_000_001, &minutes_ago(1))]),
            ),
            "voucher_infos",
            "voucher_infos[0].used_quantity",
        ),
        (
            verify().set("write_off_type", 1).set(
                "voucher_infos",
                format!(r#"[{{"confirm_code":"CNT-0001","used_quantity":{HUGE}}}]"#),
            ),
            "voucher_infos",
            "voucher_infos[0].used_quantity",
        ),
        (
            verify()
                .set("confirm_code", "CNT-0001")
                .set("check_num", 1_000_001),
            "check_num",
            "check_num",
        ),
        (
            verify().set("check_num", 999_000_001),
            "check_num",
            "check_num",
        ),
        (
            verify().set("check_num", 1).set("total_num", HUGE),
            "total_num",
            "total_num",
        ),
        (
            verify().set("check_num", 1).set("return_num", 100_001),
            "return_num",
            "return_num",
        ),
        (
            refund(9002, "RF-NONE", "100001", "RB-1"),
            "refund_num",
            "refund_num",
        ),
    ];
    for (call, param, field) in cases {
        let reply = app.call(&call).await;
        assert_invalid(&reply, param, field);
    }
    assert_eq!(
        ledger_snapshot(&app, 9002).await,
        before,
        "nothing was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_counts_above_their_bounds_are_422_naming_the_field() {
    let app = vendor_app().await;
    let order = |quantity: i64, capacity: i64| {
        json!({"order_id": 9003, "app_key": KEY, "quantity": quantity,
               "vouchers": [{"confirm_code": "ADM-0001", "quantity": 1},
                            {"confirm_code": "ADM-0002", "quantity": capacity}]})
    };
    for (body, field) in [
        (order(100_001, 1), "quantity"),
        (order(2, 1_000_001), "vouchers[1].quantity"),
        (order(2, i64::MAX), "vouchers[1].quantity"),
    ] {
        let (status, answer) = app.admin_post("/admin/orders", body).await;
        assert_eq!(
            (status, answer["error"].as_str(), answer["field"].as_str()),
            (422, Some("count_too_large"), Some(field)),
            "{answer}"
        );
    }
    let (status, _) = app.admin_get("/admin/orders/9003").await;
    assert_eq!(status, 404, "no order was created");

    create_order_with(&app, 9004, KEY, &[("ADM-0001", 2)], json!({"quantity": 2})).await;
    let before = ledger_snapshot(&app, 9004).await;
    for (path, body, field) in [
        ("refunds", json!({"quantity": 100_001}), "quantity"),
        (
            "reversals",
            json!({"confirm_code": "ADM-0001", "quantity": 1_000_001, "reason": "gate"}),
            "quantity",
        ),
        (
            "reconcile",
            json!({"vouchers": [{"confirm_code": "ADM-0001", "used": 1_000_001}], "apply": true}),
            "vouchers[0].used",
        ),
    ] {
        let (status, answer) = app
            .admin_post(&format!("/admin/orders/9004/{path}"), body)
            .await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (422, Some(field)),
            "{path}: {answer}"
        );
    }
    assert_eq!(ledger_snapshot(&app, 9004).await, before);
}

/// The issue's story: a 2-ticket order, one code of `i64::MAX` uses, one verify, an admin
/// refund request of 3, the vendor's refund of 3. The code is now refused at issuance; and on a
/// ledger that already holds such a code (written before the bounds), every step is counted
/// exactly, so nothing answers success without changing what it says it changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issues_story_no_longer_ends_in_a_success_that_changed_nothing() {
    let app = vendor_app().await;

    // Today: the huge code never enters the ledger, so nothing downstream can succeed.
    awaiting(&app, 9010, 2).await;
    let codes = format!(r#"[{{"confirm_code":"BIG-0001","type":2,"quantity":{HUGE}}}]"#);
    assert_invalid(
        &app.call(&issue(9010, &codes)).await,
        "voucher_infos",
        "voucher_infos[0].quantity",
    );
    let verify = TopCall::verify(KEY, SECRET).set("order_id", 9010).set(
        "voucher_infos",
        voucher_infos(&[("BIG-0001", 1, &minutes_ago(2))]),
    );
    assert_eq!(
        app.call(&verify).await.error(),
        (50, "isv.order-status-invalid".into())
    );
    let (status, _) = app
        .admin_post("/admin/orders/9010/refunds", json!({"quantity": 3}))
        .await;
    assert_eq!(status, 409, "an unissued order has nothing to refund");

    // A ledger from before the bounds: the same order already holds the huge code.
    create_order_with(&app, 9011, KEY, &[("BIG-0001", 1)], json!({"quantity": 2})).await;
    shell(&app)
        .execute_batch(&format!(
            "UPDATE counted_vouchers SET capacity = {HUGE} WHERE order_id = 9011"
        ))
        .unwrap();
    let verify = TopCall::verify(KEY, SECRET).set("order_id", 9011).set(
        "voucher_infos",
        voucher_infos(&[("BIG-0001", 1, &minutes_ago(2))]),
    );
    app.call(&verify).await.assert_success();
    let order = app.order(9011).await;
    assert_eq!(
        (order.used, order.refundable_tickets),
        (1, 1),
        "one use touches one of the 2 tickets: 1 refundable, not 3: {order:?}"
    );
    let (status, answer) = app
        .admin_post("/admin/orders/9011/refunds", json!({"quantity": 3}))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("refund_exceeds_unused")),
        "{answer}"
    );
    let flow = request_refund(&app, 9011, 1).await;
    assert_eq!(
        app.call(&refund(9011, &flow, "3", "RB-9011-3"))
            .await
            .error(),
        (50, "isv.refund-num-exceed".into()),
        "the vendor's refund of 3 on a request of 1"
    );
    assert_success_for(
        &app.call(&refund(9011, &flow, "1", "RB-9011-1")).await,
        REFUND,
    );
    let order = app.order(9011).await;
    assert_eq!(
        (order.refunded_tickets, order.refunds[0].state.as_str()),
        (1, "succeeded"),
        "the success refunded what it said: {order:?}"
    );
}

/// A refund whose guarded count changes no row (a trigger lowers the order's quantity under
/// it, as a direct edit or a bug could): refused with `isp.service-error`, the whole
/// notification rolled back, and a `write_changed_no_row` anomaly naming the request — where
/// the issue saw `is_success`, a succeeded request and 0 refunded tickets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_whose_count_changes_no_row_is_refused_and_recorded_not_answered_success() {
    let app = vendor_app().await;
    create_order_with(&app, 9020, KEY, &[("TMP-0001", 2)], json!({"quantity": 2})).await;
    let flow = request_refund(&app, 9020, 2).await;
    shell(&app)
        .execute_batch(
            "CREATE TRIGGER lower_quantity AFTER UPDATE OF state ON refund_requests \
             WHEN NEW.order_id = 9020 \
             BEGIN UPDATE orders SET quantity = 1 WHERE order_id = 9020; END",
        )
        .unwrap();
    let before = ledger_snapshot(&app, 9020).await;

    let reply = app.call(&refund(9020, &flow, "2", "RB-9020")).await;
    assert_eq!(
        reply.error(),
        (50, "isp.service-error".into()),
        "{}",
        reply.text()
    );
    let request_id = request_id_of(&reply);
    assert_eq!(
        ledger_snapshot(&app, 9020).await,
        before,
        "nothing was applied"
    );
    let order = app.order(9020).await;
    assert_eq!(
        (
            order.quantity,
            order.refunded_tickets,
            order.refunds[0].state.as_str()
        ),
        (2, 0, "pending"),
        "the trigger's change was rolled back with the rest: {order:?}"
    );
    let found = anomalies(&app, "order_id=9020&kind=write_changed_no_row").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0].request_id.as_str(),
            found[0].status.as_str(),
            found[0].detail["write"].as_str()
        ),
        (request_id.as_str(), "open", Some("orders.refunded_tickets"))
    );
    let entries = audit_entries(&app, "order_id=9020").await;
    assert_eq!(
        entry_for(&entries, &request_id).outcome,
        "rejected",
        "the trail records the refusal, no accepted refund"
    );
    assert!(
        !entries
            .iter()
            .any(|e| e.action == REFUND && e.outcome == "accepted"),
        "{entries:?}"
    );
}

/// `/metrics` on the largest state the ledger accepts: an order of 100,000 tickets with 999
/// codes of 1,000,000 uses, issued at the gateway too — and an issuance above the bounds
/// refused rather than let in, which once made the totals overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_up_on_the_largest_state_the_ledger_accepts() {
    let app = vendor_app().await;
    let codes: Vec<(String, i64)> = (0..999)
        .map(|i| (format!("MAX-{i:04}"), 1_000_000))
        .collect();
    let codes: Vec<(&str, i64)> = codes.iter().map(|(c, q)| (c.as_str(), *q)).collect();
    create_order_with(&app, 9030, KEY, &codes, json!({"quantity": 100_000})).await;
    awaiting(&app, 9031, 100_000).await;
    let list: Vec<Value> = codes
        .iter()
        .map(|(c, q)| json!({"confirm_code": c, "type": 2, "quantity": q}))
        .collect();
    assert_success_for(
        &app.call(&issue(9031, &Value::from(list).to_string())).await,
        ISSUE,
    );
    awaiting(&app, 9032, 2).await;
    let huge = format!(r#"[{{"confirm_code":"BIG-0001","type":2,"quantity":{HUGE}}}]"#);
    assert_invalid(
        &app.call(&issue(9032, &huge)).await,
        "voucher_infos",
        "voucher_infos[0].quantity",
    );
    let text = app.metrics().await;
    assert_eq!(series(&text, "ticketd_ledger_up"), 1.0, "{text}");
    assert_eq!(series(&text, "ticketd_ledger_orders"), 3.0);
    assert_eq!(
        series(&text, "ticketd_ledger_capacity_uses"),
        2.0 * 999_000_000.0
    );
}

/// `/metrics` on a ledger from before the bounds whose totals are beyond `i64` (two codes of
/// `i64::MAX` uses, written behind the server's back): still `ticketd_ledger_up 1`, where the
/// integer sum once failed and the gauge read 0 while `/readyz` stayed ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_up_on_a_legacy_ledger_whose_totals_exceed_i64() {
    let app = vendor_app().await;
    create_order_with(
        &app,
        9040,
        KEY,
        &[("OLD-0001", 1), ("OLD-0002", 1)],
        json!({}),
    )
    .await;
    shell(&app)
        .execute_batch(&format!(
            "UPDATE counted_vouchers SET capacity = {HUGE}, used = {HUGE} WHERE order_id = 9040"
        ))
        .unwrap();
    let text = app.metrics().await;
    assert_eq!(series(&text, "ticketd_ledger_up"), 1.0, "{text}");
    assert_eq!(
        series(&text, "ticketd_ledger_capacity_uses"),
        2.0 * i64::MAX as f64
    );
}
