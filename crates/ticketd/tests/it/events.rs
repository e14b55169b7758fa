//! The change feed (`GET /admin/events`): CloudEvents with a gap-free `seq`, paged with
//! `after`/`next`, held with `wait`, bounded in what a caller can ask.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ticketd::admin::{FeedPage, MAX_WAITING};
use top_protocol::timestamp::format_beijing;

use crate::helpers::{assert_success_body, spawn_app, TestApp, TopCall, ADMIN_TOKEN};

const KEY: &str = "feed-vendor";
const SECRET: &str = "feed-secret-0123456789";

async fn feed(app: &TestApp, query: &str) -> (u16, Value) {
    app.admin_get(&format!("/admin/events{query}")).await
}

async fn page(app: &TestApp, query: &str) -> FeedPage {
    let (status, body) = feed(app, query).await;
    assert_eq!(status, 200, "{query}: {body}");
    serde_json::from_value(body).expect("a feed page")
}

/// Sends `GET path` with the admin token on a task of its own (a held request).
fn spawn_get(app: &TestApp, path: &str) -> tokio::task::JoinHandle<reqwest::Response> {
    let request = app.http.get(app.url(path)).bearer_auth(ADMIN_TOKEN);
    tokio::spawn(async move { request.send().await.unwrap() })
}

fn verify(order_id: i64, code: &str, n: i64) -> TopCall {
    TopCall::verify(KEY, SECRET)
        .set("order_id", order_id)
        .set("confirm_code", code)
        .set("check_num", n)
}

#[tokio::test]
async fn every_change_is_a_cloud_event_once_in_seq_order() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(9001, KEY, &[("FEED-CODE-0001", 5)]).await;
    // A report with its gate time, so that sending it again is a retry.
    let used_date = format_beijing(chrono::Utc::now() - chrono::Duration::minutes(1));
    let uses =
        json!([{"confirm_code": "FEED-CODE-0001", "used_quantity": 2, "used_date": used_date}]);
    let call = TopCall::verify(KEY, SECRET)
        .set("order_id", 9001)
        .set("voucher_infos", uses.to_string());
    assert_success_body(&app.call(&call).await);
    // The same call again is a retry: answered, no event.
    assert_success_body(&app.call(&call).await);
    // Over capacity: refused, no use event.
    let refused = app.call(&verify(9001, "FEED-CODE-0001", 9)).await;
    assert!(
        refused.text().contains("error_response"),
        "{}",
        refused.text()
    );

    let all = page(&app, "?after=0&limit=1000").await;
    let types: Vec<&str> = all
        .events
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .filter(|t| !t.starts_with("ticketd.anomaly."))
        .collect();
    assert_eq!(
        types,
        [
            "ticketd.order.created",
            "ticketd.voucher.used",
            "ticketd.order.status_changed"
        ]
    );
    for (i, event) in all.events.iter().enumerate() {
        assert_eq!(event["seq"], i64::try_from(i).unwrap() + 1, "{event}");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["subject"], "9001");
        let id = event["id"].as_str().unwrap();
        let source = event["source"].as_str().unwrap();
        assert!(source.starts_with("/ticketd/"), "{source}");
        assert_eq!(
            id,
            format!("{}-{}", &source["/ticketd/".len()..], event["seq"])
        );
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
    }
    let used = &all.events[1];
    assert_eq!(used["data"]["app_key"], KEY);
    assert_eq!(used["data"]["detail"]["changes"][0]["used"], 2);
    assert!(
        !used.to_string().contains("FEED-CODE-0001"),
        "codes are masked: {used}"
    );
    assert_eq!(
        all.next,
        all.events.last().unwrap()["seq"].as_i64().unwrap()
    );

    // Paging one at a time gives the same events; past the end, `next` stays.
    let mut walked = Vec::new();
    let mut next = 0;
    loop {
        let p = page(&app, &format!("?after={next}&limit=1")).await;
        if p.events.is_empty() {
            assert_eq!(p.next, next);
            break;
        }
        assert_eq!(p.events.len(), 1);
        next = p.next;
        walked.extend(p.events);
    }
    assert_eq!(walked, all.events);
}

#[tokio::test]
async fn a_held_request_answers_when_the_next_event_is_written() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(9002, KEY, &[("FEED-CODE-0002", 5)]).await;
    let now = page(&app, "").await.next;
    let started = Instant::now();
    let waiting = spawn_get(&app, &format!("/admin/events?after={now}&wait=20"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished(), "nothing new: the request is held");
    assert_success_body(&app.call(&verify(9002, "FEED-CODE-0002", 1)).await);
    let got: FeedPage = waiting.await.unwrap().json().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(got.events[0]["seq"], now + 1);
    assert_eq!(got.events[0]["type"], "ticketd.voucher.used");

    // Nothing arrives: an empty page after the wait, `next` unchanged.
    let after = got.next + 100;
    let started = Instant::now();
    let empty = page(&app, &format!("?after={}&wait=1", got.next + 100)).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(empty.events.is_empty());
    assert_eq!(empty.next, after);
}

#[tokio::test]
async fn what_a_caller_can_ask_is_bounded() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    // 1,005 events: 1,005 orders created.
    for n in 0..1005 {
        app.create_order(10_000 + n, KEY, &[("FEED-CODE-0003", 1)])
            .await;
    }
    let capped = page(&app, "?limit=100000").await;
    assert_eq!(capped.events.len(), 1000, "at most 1000 events a page");
    let default = page(&app, "").await;
    assert_eq!(default.events.len(), 100, "100 by default");

    for (query, field) in [
        ("?wait=61", "wait"),
        ("?wait=100000000000000000000", "wait"),
        ("?after=-1", "after"),
        ("?limit=-5", "limit"),
        ("?after=abc", "after"),
    ] {
        let (status, body) = feed(&app, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let stranger = app.http.get(app.url("/admin/events")).send().await.unwrap();
    assert_eq!(stranger.status().as_u16(), 401);

    // Held requests are bounded: past MAX_WAITING, one more is answered 503 at once.
    let end = capped.next + 10_000;
    let held: Vec<_> = (0..MAX_WAITING)
        .map(|_| spawn_get(&app, &format!("/admin/events?after={end}&wait=3")))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (status, body) = feed(&app, &format!("?after={end}&wait=3")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "busy");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    for h in held {
        assert_eq!(h.await.unwrap().status().as_u16(), 200);
    }
}
