//! Every admin answer is bounded: an order's view carries its latest 100 events and their
//! count, `GET /admin/orders/{id}/events` walks the whole history page by page (also while it
//! grows), and the list answers (`/admin/audit`, `/admin/anomalies`, events) hold at most 1000
//! entries and [`MAX_ANSWER_BYTES`] of JSON, with `next` to continue.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::{json, Value};
use ticketd::paging::MAX_ANSWER_BYTES;
use top_protocol::timestamp::format_beijing;

use crate::helpers::{
    assert_success_body, audit_entries, spawn_app, TestApp, TopCall, ADMIN_TOKEN,
};

const KEY: &str = "bounded-vendor";
const SECRET: &str = "bounded-secret-0123456789";

/// `n` accepted verifies of one use each of `code`, each with its own gate time (so none is a
/// retry of another), 16 at a time.
async fn verifies(app: &TestApp, order_id: i64, code: &str, n: usize) {
    let base = chrono::Utc::now() - chrono::Duration::hours(2);
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| async move {
            let date = format_beijing(base + chrono::Duration::seconds(i as i64));
            let call = TopCall::verify(KEY, SECRET).set("order_id", order_id).set(
                "voucher_infos",
                json!([{"confirm_code": code, "used_quantity": 1, "used_date": date}]),
            );
            assert_success_body(&app.call(&call).await);
        })
        .await;
}

/// `GET path` with the token: status, the body's length in bytes, and the body.
async fn get_sized(app: &TestApp, path: &str) -> (u16, usize, Value) {
    let r = app
        .http
        .get(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}), {} bytes", bytes.len()));
    (status, bytes.len(), body)
}

/// `seq` of each entry.
fn seqs(entries: &[Value]) -> Vec<i64> {
    entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

/// Walks `/admin/orders/{id}/events` from the start with `limit`, following `next`; asserts
/// every page's bounds and returns every event.
async fn walk_events(app: &TestApp, order_id: i64, limit: usize) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/admin/orders/{order_id}/events?after={after}&limit={limit}");
        let (status, bytes, page) = get_sized(app, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(bytes <= MAX_ANSWER_BYTES, "{path}: {bytes} bytes");
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= limit, "{path}: {} events", events.len());
        all.extend(events.iter().cloned());
        match page.get("next") {
            Some(Value::Null) => return all,
            Some(next) => {
                let next = next.as_i64().unwrap();
                assert_eq!(
                    Some(next),
                    events.last().map(|e| e["seq"].as_i64().unwrap()),
                    "{path}: next is the last seq of the page"
                );
                after = next;
            }
            None => panic!("{path}: the page has no next: {page}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_view_holds_its_latest_100_events_and_the_events_route_walks_them_all() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(71, KEY, &[("LONG-CODE-1", 1000)]).await;
    app.create_order(72, KEY, &[("SHORT-CODE-1", 1)]).await;
    // Creation, 248 verifies and the first one's issued -> partly_used: 250 events.
    verifies(&app, 71, "LONG-CODE-1", 248).await;

    let full = audit_entries(&app, "order_id=71&limit=1000").await;
    assert_eq!(full.len(), 250, "the order's whole trail");
    let full_seqs = seqs(&full);

    let order = app.order(71).await;
    let events = order["events"].as_array().unwrap();
    assert_eq!(events.len(), 100, "the view carries 100 events");
    assert_eq!(
        seqs(events),
        full_seqs[150..],
        "the latest 100, oldest first"
    );
    assert_eq!(events[..], full[150..], "as the trail has them");
    assert_eq!(order["events_total"], 250);
    assert_eq!(
        order.get("events_next"),
        Some(&json!(0)),
        "0 walks the complete history"
    );
    assert_eq!(order["used"], 248, "the rest of the view is unchanged");

    let short = app.order(72).await;
    assert_eq!(short["events"].as_array().unwrap().len(), 1);
    assert_eq!(short["events_total"], 1);
    assert_eq!(
        short.get("events_next"),
        Some(&Value::Null),
        "a complete history has no next"
    );

    let walked = walk_events(&app, 71, 7).await;
    let walked_seqs = seqs(&walked);
    assert_eq!(walked_seqs, full_seqs, "every event once, ascending");
    assert_eq!(walked, full, "each event as the trail has it");
    let unique: HashSet<i64> = walked_seqs.iter().copied().collect();
    assert_eq!(unique.len(), 250);

    // Without a limit: 100 a page, and `next` only while events remain.
    let (_, _, first) = get_sized(&app, "/admin/orders/71/events").await;
    assert_eq!(first["events"].as_array().unwrap().len(), 100);
    assert_eq!(first["next"], full_seqs[99]);
    let last = format!("/admin/orders/71/events?after={}", full_seqs[199]);
    let (_, _, last) = get_sized(&app, &last).await;
    assert_eq!(seqs(last["events"].as_array().unwrap()), full_seqs[200..]);
    assert_eq!(last.get("next"), Some(&Value::Null));

    let (status, _, body) = get_sized(&app, "/admin/orders/79/events").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _, body) = get_sized(&app, "/admin/orders/71/events?after=x").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("after")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn walking_events_while_verifies_write_to_the_order_sees_each_event_once() {
    let app = Arc::new(spawn_app().await);
    app.create_app(KEY, SECRET).await;
    app.create_order(81, KEY, &[("LIVE-CODE-1", 1000)]).await;

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app, done) = (Arc::clone(&app), Arc::clone(&done));
        tokio::spawn(async move {
            verifies(&app, 81, "LIVE-CODE-1", 300).await;
            done.store(true, Ordering::SeqCst);
        })
    };
    // A tail that keeps its own cursor: `next` null means "the end, for now".
    let mut walked: Vec<Value> = Vec::new();
    let mut pages_while_writing = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let after = walked.last().map_or(0, |e| e["seq"].as_i64().unwrap());
        let path = format!("/admin/orders/81/events?after={after}&limit=7");
        let (status, _, page) = get_sized(&app, &path).await;
        assert_eq!(status, 200, "{page}");
        if !finished {
            pages_while_writing += 1;
        }
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 7);
        walked.extend(events.iter().cloned());
        if page["next"].is_null() && finished {
            break;
        }
    }
    writer.await.unwrap();

    let walked_seqs = seqs(&walked);
    assert!(
        walked_seqs.windows(2).all(|w| w[0] < w[1]),
        "ascending, no repeats: {walked_seqs:?}"
    );
    let full = walk_events(&app, 81, 1000).await;
    assert_eq!(full.len(), 302, "creation, 300 verifies, one transition");
    assert_eq!(walked_seqs, seqs(&full), "the tail saw every event once");
    assert_eq!(walked, full);
    assert!(
        pages_while_writing > 1,
        "the walk ran beside the writes ({pages_while_writing} pages)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_above_1000_is_clamped_to_1000_with_next_to_continue() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(91, KEY, &[("MANY-CODE-1", 2000)]).await;
    verifies(&app, 91, "MANY-CODE-1", 1100).await;

    let (status, _, page) = get_sized(&app, "/admin/orders/91/events?limit=5000").await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1000, "clamped to 1000");
    assert_eq!(page["next"], events[999]["seq"]);
    let rest = format!("/admin/orders/91/events?after={}&limit=5000", page["next"]);
    let (_, _, rest) = get_sized(&app, &rest).await;
    assert_eq!(
        rest["events"].as_array().unwrap().len(),
        102,
        "the other 102"
    );
    assert_eq!(rest.get("next"), Some(&Value::Null));

    let (status, _, audit) = get_sized(&app, "/admin/audit?limit=5000").await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1000, "clamped to 1000");
    assert_eq!(
        audit["next"], entries[999]["seq"],
        "more entries follow: next names the last seq shown"
    );
    // 0 is clamped up to 1 entry, so a walker following `next` always moves on.
    let (_, _, one) = get_sized(&app, "/admin/audit?limit=0").await;
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);
    assert_eq!(one["next"], one["entries"][0]["seq"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_large_entries_stop_under_the_answer_cap_and_continue_at_next() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    // The largest entries the trail holds: accepted verifies of 999 codes each, which keep
    // every entry they applied (the evidence). Enough of them to pass the answer cap.
    let codes: Vec<String> = (0..999).map(|i| format!("BIG-{i:0>124}")).collect();
    // 999 tickets of a code each, each code good for 1000 uses (a season pass).
    let created = format_beijing(chrono::Utc::now() - chrono::Duration::days(1));
    let (status, body) = app
        .admin_post(
            "/admin/orders",
            json!({
                "order_id": 61, "app_key": KEY, "quantity": 999, "created_at": created,
                "vouchers": codes.iter()
                    .map(|c| json!({"confirm_code": c, "quantity": 1000}))
                    .collect::<Vec<_>>(),
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let base = chrono::Utc::now() - chrono::Duration::hours(2);
    let report = |i: usize| {
        let date = format_beijing(base + chrono::Duration::seconds(i as i64));
        let list: Vec<Value> = codes
            .iter()
            .map(|c| json!({"confirm_code": c, "used_quantity": 1, "used_date": date}))
            .collect();
        TopCall::verify(KEY, SECRET)
            .set("order_id", 61)
            .set("voucher_infos", Value::Array(list).to_string())
    };
    assert_success_body(&app.call(&report(0)).await);
    let one = audit_entries(&app, "order_id=61&outcome=accepted").await;
    // The verify's own entry, not the status event that follows it.
    let entry_bytes = one.iter().map(|e| e.to_string().len()).max().unwrap();
    let n = MAX_ANSWER_BYTES / entry_bytes + 8;
    futures::stream::iter(1..n)
        .for_each_concurrent(4, |i| {
            let call = report(i);
            let app = &app;
            async move {
                assert_success_body(&app.call(&call).await);
            }
        })
        .await;

    // The audit trail: the first page stops under the cap and says where to go on.
    let (status, bytes, first) = get_sized(&app, "/admin/audit?order_id=61&limit=1000").await;
    assert_eq!(status, 200);
    assert!(bytes <= MAX_ANSWER_BYTES, "{bytes} bytes");
    let shown = first["entries"].as_array().unwrap();
    assert!(
        shown.len() < n,
        "{} of more than {n} entries fit",
        shown.len()
    );
    assert_eq!(first["next"], shown.last().unwrap()["seq"]);
    let mut all = shown.clone();
    let mut next = first["next"].clone();
    while let Some(after) = next.as_i64() {
        let path = format!("/admin/audit?order_id=61&limit=1000&after={after}");
        let (_, bytes, page) = get_sized(&app, &path).await;
        assert!(bytes <= MAX_ANSWER_BYTES, "{path}: {bytes} bytes");
        all.extend(page["entries"].as_array().unwrap().iter().cloned());
        next = page["next"].clone();
    }
    let accepted = all.iter().filter(|e| e["outcome"] == "accepted").count();
    // Creation and its status events are accepted entries too.
    assert!(accepted >= n, "every verify once: {accepted} of {n}");
    let unique: HashSet<i64> = seqs(&all).into_iter().collect();
    assert_eq!(unique.len(), all.len(), "no entry twice");

    // The order's view: its latest events within the cap, the rest one walk away.
    let (status, bytes, order) = get_sized(&app, "/admin/orders/61").await;
    assert_eq!(status, 200);
    assert!(bytes <= MAX_ANSWER_BYTES, "{bytes} bytes");
    let events = order["events"].as_array().unwrap();
    assert!(
        (1..all.len()).contains(&events.len()),
        "{} events",
        events.len()
    );
    assert_eq!(
        seqs(events),
        seqs(&all[all.len() - events.len()..]),
        "the latest"
    );
    assert_eq!(order["events_total"], all.len());
    assert_eq!(order.get("events_next"), Some(&json!(0)));

    // The events route pages the same way.
    let walked = walk_events(&app, 61, 1000).await;
    assert_eq!(seqs(&walked), seqs(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_page_newest_first_below_the_last_id_shown() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(51, KEY, &[("ANOM-CODE-1", 20)]).await;
    // A legacy report with a return_num the ledger does not know: accepted, and an anomaly.
    for _ in 0..12 {
        let call = TopCall::verify(KEY, SECRET)
            .set("order_id", 51)
            .set("confirm_code", "ANOM-CODE-1")
            .set("check_num", 1)
            .set("return_num", 1);
        assert_success_body(&app.call(&call).await);
    }
    let (status, _, all) = get_sized(&app, "/admin/anomalies?order_id=51&limit=1000").await;
    assert_eq!(status, 200, "{all}");
    let all = all["anomalies"].as_array().unwrap().clone();
    assert!(all.len() >= 12, "{all:?}");
    let ids: Vec<i64> = all.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let mut walked: Vec<i64> = Vec::new();
    let mut path = "/admin/anomalies?order_id=51&limit=5".to_owned();
    loop {
        let (status, _, page) = get_sized(&app, &path).await;
        assert_eq!(status, 200, "{page}");
        let list = page["anomalies"].as_array().unwrap();
        assert!(list.len() <= 5);
        walked.extend(list.iter().map(|a| a["id"].as_i64().unwrap()));
        match page.get("next") {
            Some(Value::Null) => break,
            Some(next) => path = format!("/admin/anomalies?order_id=51&limit=5&before={next}"),
            None => panic!("no next: {page}"),
        }
    }
    assert_eq!(walked, ids, "every anomaly once, newest first");
}
