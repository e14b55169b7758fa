//! Every admin answer is bounded: an order's view carries its latest 100 events and their
//! count, `GET /admin/orders/{id}/events` walks the whole history page by page (also while it
//! grows), and the list answers (`/admin/audit`, `/admin/anomalies`, events) hold at most 1000
//! entries and [`MAX_ANSWER_BYTES`] of JSON, with `next` to continue.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::{json, Value};
use ticketd::admin::{AnomaliesPage, AuditEntryAnswer, AuditPage, EventsPage, OrderAnswer};
use ticketd::paging::MAX_ANSWER_BYTES;
use top_protocol::timestamp::format_beijing;

use crate::helpers::{
    answer, assert_success_body, audit_entries, refusal, spawn_app, TestApp, TopCall, ADMIN_TOKEN,
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

/// A list answer read into its type, after checking that `next` is on the wire, null or a
/// cursor (the typed page cannot tell an absent `next` from a null one).
fn page_of<T: serde::de::DeserializeOwned>(raw: &Value) -> T {
    assert!(raw.get("next").is_some(), "the page has no next: {raw}");
    answer(raw)
}

/// `seq` of each entry.
fn seqs(entries: &[AuditEntryAnswer]) -> Vec<i64> {
    entries.iter().map(|e| e.seq).collect()
}

/// Walks `/admin/orders/{id}/events` from the start with `limit`, following `next`; asserts
/// every page's bounds and returns every event.
async fn walk_events(app: &TestApp, order_id: i64, limit: usize) -> Vec<AuditEntryAnswer> {
    let mut all: Vec<AuditEntryAnswer> = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/admin/orders/{order_id}/events?after={after}&limit={limit}");
        let (status, bytes, page) = get_sized(app, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(bytes <= MAX_ANSWER_BYTES, "{path}: {bytes} bytes");
        let page: EventsPage = page_of(&page);
        let events = page.events;
        assert!(events.len() <= limit, "{path}: {} events", events.len());
        all.extend(events.iter().cloned());
        match page.next {
            None => return all,
            Some(next) => {
                assert_eq!(
                    Some(next),
                    events.last().map(|e| e.seq),
                    "{path}: next is the last seq of the page"
                );
                after = next;
            }
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
    let events = order.events;
    assert_eq!(events.len(), 100, "the view carries 100 events");
    assert_eq!(
        seqs(&events),
        full_seqs[150..],
        "the latest 100, oldest first"
    );
    assert_eq!(events[..], full[150..], "as the trail has them");
    assert_eq!(order.events_total, 250);
    assert_eq!(order.events_next, Some(0), "0 walks the complete history");
    assert_eq!(order.used, 248, "the rest of the view is unchanged");

    let short = app.order(72).await;
    assert_eq!(short.events.len(), 1);
    assert_eq!(short.events_total, 1);
    assert_eq!(short.events_next, None, "a complete history has no next");

    let walked = walk_events(&app, 71, 7).await;
    let walked_seqs = seqs(&walked);
    assert_eq!(walked_seqs, full_seqs, "every event once, ascending");
    assert_eq!(walked, full, "each event as the trail has it");
    let unique: HashSet<i64> = walked_seqs.iter().copied().collect();
    assert_eq!(unique.len(), 250);

    // Without a limit: 100 a page, and `next` only while events remain.
    let (_, _, first) = get_sized(&app, "/admin/orders/71/events").await;
    let first: EventsPage = page_of(&first);
    assert_eq!(first.events.len(), 100);
    assert_eq!(first.next, Some(full_seqs[99]));
    let last = format!("/admin/orders/71/events?after={}", full_seqs[199]);
    let (_, _, last) = get_sized(&app, &last).await;
    let last: EventsPage = page_of(&last);
    assert_eq!(seqs(&last.events), full_seqs[200..]);
    assert_eq!(last.next, None);

    let (status, _, body) = get_sized(&app, "/admin/orders/79/events").await;
    assert_eq!((status, refusal(&body).error.as_str()), (404, "not_found"));
    let (status, _, body) = get_sized(&app, "/admin/orders/71/events?after=x").await;
    assert_eq!(
        (status, refusal(&body).field.as_deref()),
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
    let mut walked: Vec<AuditEntryAnswer> = Vec::new();
    let mut pages_while_writing = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let after = walked.last().map_or(0, |e| e.seq);
        let path = format!("/admin/orders/81/events?after={after}&limit=7");
        let (status, _, page) = get_sized(&app, &path).await;
        assert_eq!(status, 200, "{page}");
        if !finished {
            pages_while_writing += 1;
        }
        let page: EventsPage = page_of(&page);
        assert!(page.events.len() <= 7);
        walked.extend(page.events);
        if page.next.is_none() && finished {
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
    let page: EventsPage = page_of(&page);
    assert_eq!(page.events.len(), 1000, "clamped to 1000");
    assert_eq!(page.next, Some(page.events[999].seq));
    let rest = format!(
        "/admin/orders/91/events?after={}&limit=5000",
        page.next.unwrap()
    );
    let (_, _, rest) = get_sized(&app, &rest).await;
    let rest: EventsPage = page_of(&rest);
    assert_eq!(rest.events.len(), 102, "the other 102");
    assert_eq!(rest.next, None);

    let (status, _, audit) = get_sized(&app, "/admin/audit?limit=5000").await;
    assert_eq!(status, 200, "{audit}");
    let audit: AuditPage = page_of(&audit);
    assert_eq!(audit.entries.len(), 1000, "clamped to 1000");
    assert_eq!(
        audit.next,
        Some(audit.entries[999].seq),
        "more entries follow: next names the last seq shown"
    );
    // 0 is clamped up to 1 entry, so a walker following `next` always moves on.
    let (_, _, one) = get_sized(&app, "/admin/audit?limit=0").await;
    let one: AuditPage = page_of(&one);
    assert_eq!(one.entries.len(), 1);
    assert_eq!(one.next, Some(one.entries[0].seq));
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
    let entry_bytes = one
        .iter()
        .map(|e| serde_json::to_string(e).unwrap().len())
        .max()
        .unwrap();
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
    let first: AuditPage = page_of(&first);
    let shown = first.entries;
    assert!(
        shown.len() < n,
        "{} of more than {n} entries fit",
        shown.len()
    );
    assert_eq!(first.next, Some(shown.last().unwrap().seq));
    let mut all = shown;
    let mut next = first.next;
    while let Some(after) = next {
        let path = format!("/admin/audit?order_id=61&limit=1000&after={after}");
        let (_, bytes, page) = get_sized(&app, &path).await;
        assert!(bytes <= MAX_ANSWER_BYTES, "{path}: {bytes} bytes");
        let page: AuditPage = page_of(&page);
        all.extend(page.entries);
        next = page.next;
    }
    let accepted = all.iter().filter(|e| e.outcome == "accepted").count();
    // Creation and its status events are accepted entries too.
    assert!(accepted >= n, "every verify once: {accepted} of {n}");
    let unique: HashSet<i64> = seqs(&all).into_iter().collect();
    assert_eq!(unique.len(), all.len(), "no entry twice");

    // The order's view: its latest events within the cap, the rest one walk away.
    let (status, bytes, order) = get_sized(&app, "/admin/orders/61").await;
    assert_eq!(status, 200);
    assert!(bytes <= MAX_ANSWER_BYTES, "{bytes} bytes");
    let order: OrderAnswer = answer(&order);
    let events = order.events;
    assert!(
        (1..all.len()).contains(&events.len()),
        "{} events",
        events.len()
    );
    assert_eq!(
        seqs(&events),
        seqs(&all[all.len() - events.len()..]),
        "the latest"
    );
    assert_eq!(order.events_total, all.len() as i64);
    assert_eq!(order.events_next, Some(0));

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
    let all = page_of::<AnomaliesPage>(&all).anomalies;
    assert!(all.len() >= 12, "{all:?}");
    let ids: Vec<i64> = all.iter().map(|a| a.id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let mut walked: Vec<i64> = Vec::new();
    let mut path = "/admin/anomalies?order_id=51&limit=5".to_owned();
    loop {
        let (status, _, page) = get_sized(&app, &path).await;
        assert_eq!(status, 200, "{page}");
        let page: AnomaliesPage = page_of(&page);
        assert!(page.anomalies.len() <= 5);
        walked.extend(page.anomalies.iter().map(|a| a.id));
        match page.next {
            None => break,
            Some(next) => path = format!("/admin/anomalies?order_id=51&limit=5&before={next}"),
        }
    }
    assert_eq!(walked, ids, "every anomaly once, newest first");
}
