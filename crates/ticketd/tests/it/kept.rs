//! What ticketd keeps of a call is bounded by ticketd, not by the caller (issue 12, item 1):
//! calls refused before authentication go to the pruned record of rejected calls, never to
//! the audit trail or an order's history; authenticated calls keep only known fields, clipped.

use serde_json::{json, Value};
use ticketd::admin::{RejectedCallAnswer, RejectedCallsPage};

use crate::helpers::{
    audit_entries, minutes_ago, request_id_of, spawn_app, spawn_app_with, TestApp, TopCall,
};

const KEY: &str = "kept-vendor";
const SECRET: &str = "kept-secret";
const ORDER: i64 = 9_120_001;
const CODE: &str = "KEPT-0001";

async fn rejected_calls(app: &TestApp, query: &str) -> (Vec<RejectedCallAnswer>, Option<i64>) {
    let page: RejectedCallsPage = app
        .admin_get_ok(&format!("/admin/rejected-calls?{query}"))
        .await;
    (page.calls, page.next)
}

/// A verify whose one entry carries an extra field of `n` characters.
fn bloated_infos(n: usize) -> String {
    json!([{
        "confirm_code": CODE,
        "used_quantity": 1,
        "used_date": minutes_ago(1),
        "padding": "x".repeat(n),
    }])
    .to_string()
}

#[tokio::test]
async fn anonymous_refusals_are_kept_clipped_apart_from_the_audit_trail_and_the_order() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(ORDER, KEY, &[(CODE, 2)]).await;
    let events_before = app.order(ORDER).await.events.len();
    let audit_before = audit_entries(&app, "limit=1000").await.len();

    // A forged signature naming the real app and order, with a 900,000-character field.
    for _ in 0..5 {
        let reply = app
            .call(
                &TopCall::verify(KEY, "not-the-secret")
                    .set("order_id", ORDER)
                    .set("voucher_infos", bloated_infos(900_000)),
            )
            .await;
        assert_eq!(reply.error().0, 25, "{}", reply.text());
    }
    // An unknown app key of 100,000 characters, and no app key at all.
    let long_key = "k".repeat(100_000);
    let reply = app
        .call(&TopCall::verify(&long_key, SECRET).set("order_id", ORDER))
        .await;
    assert_eq!(reply.error().0, 29, "{}", reply.text());
    let reply = app
        .call(
            &TopCall::verify(KEY, SECRET)
                .unset("app_key")
                .set("order_id", ORDER),
        )
        .await;
    assert_eq!(reply.error().0, 28, "{}", reply.text());

    let order = app.order(ORDER).await;
    assert_eq!(
        order.events.len(),
        events_before,
        "no anonymous refusal in the order's history: {order:?}"
    );
    assert_eq!(
        audit_entries(&app, "limit=1000").await.len(),
        audit_before,
        "no anonymous refusal in the audit trail"
    );

    let (calls, next) = rejected_calls(&app, "").await;
    assert_eq!(calls.len(), 7, "{calls:?}");
    assert_eq!(next, None, "a short page is the last");
    let codes: Vec<i64> = calls.iter().map(|c| c.code).collect();
    assert_eq!(codes, [28, 29, 25, 25, 25, 25, 25], "newest first");
    assert!(calls.windows(2).all(|w| w[0].seq > w[1].seq), "{calls:?}");
    for call in &calls {
        let bytes = serde_json::to_string(call).unwrap().len();
        assert!(
            bytes <= 1024,
            "a kept call is at most 1 KiB, got {bytes}: {call:?}"
        );
        assert_eq!(call.client_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            call.method.as_deref(),
            Some("taobao.travel.ticket.order.verify")
        );
    }
    assert_eq!(calls[0].app_key, None, "28: no app key claimed");
    assert_eq!(
        calls[1].app_key,
        Some("k".repeat(64)),
        "claimed key clipped"
    );
    assert_eq!(calls[2].app_key.as_deref(), Some(KEY));
    assert_eq!(calls[2].sub_code, None);

    // Paging: newest first, `next` continues below the page.
    let (first, next) = rejected_calls(&app, "limit=4").await;
    assert_eq!(first.len(), 4);
    let next = next.expect("more calls follow the first page");
    let (rest, last) = rejected_calls(&app, &format!("limit=4&after={next}")).await;
    assert_eq!(last, None);
    let walked: Vec<i64> = first.iter().chain(&rest).map(|c| c.seq).collect();
    let all: Vec<i64> = calls.iter().map(|c| c.seq).collect();
    assert_eq!(walked, all, "walking `next` lists every kept call once");

    // The admin token guards the record like the rest of the admin API.
    let status = app
        .http
        .get(app.url("/admin/rejected-calls"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_rejected_call_record_keeps_only_the_newest_configured_number() {
    let app = spawn_app_with(
        |s| s.rejected_calls_keep = 3,
        std::sync::Arc::new(ticketd::clock::SystemClock),
    )
    .await;
    app.create_app(KEY, SECRET).await;
    for i in 0..40 {
        let reply = app
            .call(&TopCall::verify(&format!("nobody-{i}"), SECRET).set("order_id", ORDER))
            .await;
        assert_eq!(reply.error().0, 29);
    }
    let (calls, _) = rejected_calls(&app, "limit=1000").await;
    let keys: Vec<&str> = calls
        .iter()
        .map(|c| c.app_key.as_deref().unwrap())
        .collect();
    assert_eq!(keys, ["nobody-39", "nobody-38", "nobody-37"]);

    // Every one is still counted.
    let metrics = app.metrics().await;
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ticketd_top_calls_total{") && l.contains("code=\"29\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, 40.0, "{metrics}");
}

#[tokio::test]
async fn a_call_with_a_valid_signature_but_a_stale_timestamp_is_audited_as_the_apps() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(ORDER, KEY, &[(CODE, 2)]).await;
    let reply = app
        .call(
            &TopCall::verify(KEY, SECRET)
                .set("timestamp", minutes_ago(60))
                .set("order_id", ORDER)
                .set("voucher_infos", bloated_infos(10)),
        )
        .await;
    assert_eq!(reply.error().0, 31, "{}", reply.text());
    let entries = audit_entries(&app, &format!("order_id={ORDER}&outcome=rejected")).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].request_id, request_id_of(&reply));
    assert_eq!(entries[0].app_key.as_deref(), Some(KEY));
    let (calls, _) = rejected_calls(&app, "").await;
    assert!(calls.is_empty(), "{calls:?}");
}

#[tokio::test]
async fn an_authenticated_refusal_keeps_known_fields_clipped_and_twenty_entries() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(ORDER, KEY, &[(CODE, 2)]).await;
    // 999 entries of an unknown code, each with a junk field; an unknown parameter of 100,000
    // characters; an out_order_id far past any real one.
    let entries: Vec<Value> = (0..999)
        .map(|i| {
            json!({
                "confirm_code": format!("NOPE-{i:04}"),
                "used_quantity": 1,
                "used_date": minutes_ago(1),
                "junk": "j".repeat(500),
            })
        })
        .collect();
    let reply = app
        .call(
            &TopCall::verify(KEY, SECRET)
                .set("order_id", ORDER)
                .set("out_order_id", "o".repeat(2_000))
                .set("K", "v".repeat(100_000))
                .set("voucher_infos", Value::Array(entries).to_string()),
        )
        .await;
    assert_eq!(reply.error().0, 41, "{}", reply.text());

    let found = audit_entries(&app, &format!("order_id={ORDER}&outcome=rejected")).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let entry = &found[0];
    let request = &entry.detail["request"];
    let text = serde_json::to_string(entry).unwrap();
    assert!(text.len() < 8 * 1024, "{} bytes: {text}", text.len());
    assert!(!text.contains("jjjj") && !text.contains("vvvv"), "{text}");
    assert_eq!(request["voucher_infos"].as_array().unwrap().len(), 20);
    assert_eq!(request["voucher_infos_total"], 999);
    assert_eq!(request["unknown_params"], 1);
    assert_eq!(
        request["out_order_id"].as_str().unwrap().chars().count(),
        256
    );
    assert_eq!(
        request["voucher_infos"][0],
        json!({"confirm_code": "****0000", "used_quantity": 1,
               "used_date": request["voucher_infos"][0]["used_date"]}),
        "only confirm_code (masked), used_quantity and used_date"
    );
    assert!(request.get("sign").is_none());
}

#[tokio::test]
async fn an_accepted_999_entry_report_keeps_every_entry_within_256_kib() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    // Codes of the longest accepted length, 128 characters.
    let codes: Vec<String> = (0..999).map(|i| format!("{i:0>128}")).collect();
    let vouchers: Vec<(&str, i64)> = codes.iter().map(|c| (c.as_str(), 1)).collect();
    app.create_order(ORDER, KEY, &vouchers).await;
    let used_date = minutes_ago(1);
    let entries: Vec<Value> = codes
        .iter()
        .map(|c| json!({"confirm_code": c, "used_quantity": 1, "used_date": used_date}))
        .collect();
    let reply = app
        .call(
            &TopCall::verify(KEY, SECRET)
                .set("order_id", ORDER)
                .set("voucher_infos", Value::Array(entries).to_string()),
        )
        .await;
    reply.assert_success();
    let found = audit_entries(&app, &format!("order_id={ORDER}&outcome=accepted")).await;
    let entry = found
        .iter()
        .find(|e| e.request_id == request_id_of(&reply))
        .expect("the accepted verify's entry");
    let request = &entry.detail["request"];
    assert_eq!(request["voucher_infos"].as_array().unwrap().len(), 999);
    let text = serde_json::to_string(entry).unwrap();
    assert!(text.len() <= 256 * 1024, "{} bytes", text.len());
    assert!(!text.contains(&codes[0]), "codes are masked");
}

#[tokio::test]
async fn an_issued_codes_extras_are_bounded_and_a_huge_one_is_refused_with_nothing_kept() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    let created =
        top_protocol::timestamp::format_beijing(chrono::Utc::now() - chrono::Duration::days(1));
    let (status, body) = app
        .admin_post(
            "/admin/orders",
            json!({"order_id": ORDER, "app_key": KEY, "quantity": 1, "created_at": created,
                   "out_order_id": "OUT-KEPT"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let issue = |url: String| {
        TopCall::method("alitrip.travel.ticket.order.create", KEY, SECRET)
            .set("order_id", ORDER)
            .set("out_order_id", "OUT-KEPT")
            .set("issue_type", 1)
            .set(
                "voucher_infos",
                json!([{"confirm_code": CODE, "quantity": 1, "url": url}]).to_string(),
            )
    };
    let reply = app.call(&issue("u".repeat(900_000))).await;
    assert_eq!(
        reply.error(),
        (41, "isv.invalid-parameter:voucher_infos".to_owned()),
        "{}",
        reply.text()
    );
    let order = app.order(ORDER).await;
    assert_eq!(order.vouchers, [], "nothing issued: {order:?}");

    let reply = app.call(&issue("https://example.invalid/v/1".into())).await;
    assert!(
        reply.text().contains("\"is_success\":true"),
        "{}",
        reply.text()
    );
}
