//! The operator's lists: `GET /admin/orders` (newest first, paged by the cursor `next` gives,
//! filtered by search text, status and app) and `GET /admin/apps` (by key, never a secret),
//! called on the real server as an operator calls them, with the bad input a hand-typed query
//! string carries.

use std::collections::HashSet;

use serde_json::{json, Value};
use ticketd::admin::{AppsPage, OrderSummaryAnswer, OrdersPage, MAX_SEARCH_BYTES};

use crate::helpers::{answer, refusal, spawn_app, TestApp, TopCall, ADMIN_TOKEN};

/// `GET path` with the admin token and `params` as the query string: status and JSON body.
async fn get(app: &TestApp, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = app
        .http
        .get(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .query(params)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    (status, body)
}

/// One page of `GET /admin/orders`, which must answer 200.
async fn orders(app: &TestApp, params: &[(&str, &str)]) -> OrdersPage {
    let (status, body) = get(app, "/admin/orders", params).await;
    assert_eq!(status, 200, "{params:?}: {body}");
    answer(&body)
}

/// Every page of `GET /admin/orders` with `params`, following `next`; the order ids in order.
async fn walk_orders(app: &TestApp, params: &[(&str, &str)]) -> (Vec<i64>, usize) {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    for pages in 1..=100 {
        let mut query: Vec<(&str, &str)> = params.to_vec();
        if let Some(a) = after.as_deref() {
            query.push(("after", a));
        }
        let page = orders(app, &query).await;
        ids.extend(page.orders.iter().map(|o| o.order_id));
        match page.next {
            Some(next) => after = Some(next),
            None => return (ids, pages),
        }
    }
    panic!("{params:?}: more than 100 pages");
}

fn ids(page: &OrdersPage) -> Vec<i64> {
    page.orders.iter().map(|o| o.order_id).collect()
}

/// Creates an order through the admin API: `vouchers` (code, capacity), paid at `created_at`
/// (UTC+8 text), with an `out_order_id` when given.
async fn order(
    app: &TestApp,
    order_id: i64,
    app_key: &str,
    created_at: &str,
    out_order_id: Option<&str>,
    vouchers: &[(&str, i64)],
) {
    let quantity: i64 = vouchers.iter().map(|(_, q)| q).sum::<i64>().max(1);
    let vouchers: Vec<Value> = vouchers
        .iter()
        .map(|(c, q)| json!({"confirm_code": c, "quantity": q}))
        .collect();
    let mut body = json!({"order_id": order_id, "app_key": app_key, "quantity": quantity,
        "created_at": created_at, "vouchers": vouchers});
    if let Some(out) = out_order_id {
        body["out_order_id"] = json!(out);
    }
    let (status, reply) = app.admin_post("/admin/orders", body).await;
    assert_eq!(status, 201, "{reply}");
}

/// Asserts a 400 `invalid_request` naming `field`, whose message says something.
fn assert_bad(what: &str, (status, body): (u16, Value), field: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    let refused = refusal(&body);
    assert_eq!(refused.error, "invalid_request", "{what}: {body}");
    assert_eq!(refused.field.as_deref(), Some(field), "{what}: {body}");
    assert!(!refused.message.is_empty(), "{what}: {body}");
}

const VENDOR_A: &str = "lists-vendor-a";
const VENDOR_B: &str = "lists-vendor-b";
const SECRET_A: &str = "lists-secret-a-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_listed_newest_first_and_paged_with_the_cursor_next_gives() {
    let app = spawn_app().await;
    app.create_app(VENDOR_A, SECRET_A).await;
    // Three orders in one second (by decreasing id there), one earlier, two later.
    for (id, at) in [
        (105, "2025-03-01 10:00:00"),
        (102, "2025-03-01 10:00:00"),
        (109, "2025-03-01 10:00:00"),
        (101, "2025-03-01 11:00:00"),
        (107, "2025-03-01 11:00:00"),
        (103, "2025-02-28 09:00:00"),
    ] {
        order(&app, id, VENDOR_A, at, None, &[("LST-CODE-1", 2)]).await;
    }
    let want = vec![107, 101, 109, 105, 102, 103];
    for limit in ["1", "2", "4", "6", "200"] {
        let (seen, pages) = walk_orders(&app, &[("limit", limit)]).await;
        assert_eq!(seen, want, "limit {limit}: every order once, newest first");
        let n: usize = limit.parse().unwrap();
        assert_eq!(
            pages,
            want.len().div_ceil(n),
            "limit {limit}: no empty last page"
        );
    }

    // Field names and values, read as raw JSON: what the console and scripts rely on.
    let (status, body) = get(&app, "/admin/orders", &[("limit", "1")]).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["next", "orders"]);
    let first = &body["orders"][0];
    let fields: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "app_key",
            "capacity",
            "created_at",
            "issue_describe",
            "order_id",
            "out_order_id",
            "quantity",
            "refunded_tickets",
            "status",
            "used",
            "valid_from",
            "valid_until"
        ]
    );
    let summary: OrderSummaryAnswer = answer(first);
    assert_eq!(
        summary,
        OrderSummaryAnswer {
            app_key: VENDOR_A.to_owned(),
            capacity: 2,
            created_at: "2025-03-01 11:00:00".to_owned(),
            issue_describe: None,
            order_id: 107,
            out_order_id: None,
            quantity: 2,
            refunded_tickets: 0,
            status: "issued".to_owned(),
            used: 0,
            valid_from: None,
            valid_until: None,
        }
    );
    let next = body["next"].as_str().expect("a cursor while orders follow");
    let rest = orders(&app, &[("after", next), ("limit", "200")]).await;
    assert_eq!(ids(&rest), want[1..]);
    assert_eq!(rest.next, None);
    // Without a limit: the default page of 50 holds them all.
    let all = orders(&app, &[]).await;
    assert_eq!((ids(&all), all.next), (want, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_found_by_search_text_and_filtered_by_status_and_app() {
    let app = spawn_app().await;
    app.create_app(VENDOR_A, SECRET_A).await;
    app.create_app(VENDOR_B, "lists-secret-b-0123456789").await;
    order(
        &app,
        201,
        VENDOR_A,
        "2025-03-01 10:00:01",
        Some("OUT-201"),
        &[("SRCH-1", 2)],
    )
    .await;
    order(
        &app,
        202,
        VENDOR_B,
        "2025-03-01 10:00:02",
        Some("OUT-2012"),
        &[("SRCH-2", 2)],
    )
    .await;
    // Awaiting issuance: no codes.
    order(&app, 203, VENDOR_A, "2025-03-01 10:00:03", None, &[]).await;
    // Vendor B's order 204, one of its two uses recorded through the gateway.
    order(
        &app,
        204,
        VENDOR_B,
        "2025-03-01 10:00:04",
        None,
        &[("SRCH-4", 2)],
    )
    .await;
    let verify = TopCall::verify(VENDOR_B, "lists-secret-b-0123456789")
        .set("order_id", 204)
        .set(
            "voucher_infos",
            json!([{"confirm_code": "SRCH-4", "used_quantity": 1}]),
        );
    app.call(&verify).await.assert_success();

    for (params, want) in [
        (vec![("q", "201")], vec![201]),
        (vec![("q", " 201 ")], vec![201]),
        (vec![("q", "OUT-201")], vec![201]),
        (vec![("q", "OUT-2012")], vec![202]),
        (vec![("q", "OUT-20")], vec![]),
        (vec![("q", "20")], vec![]),
        (vec![("q", VENDOR_A)], vec![203, 201]),
        (vec![("q", "lists-vendor")], vec![]),
        (vec![("status", "awaiting_issuance")], vec![203]),
        (vec![("status", "partly_used")], vec![204]),
        (vec![("status", "issued")], vec![202, 201]),
        (vec![("status", "refunded")], vec![]),
        (vec![("app_key", VENDOR_A)], vec![203, 201]),
        (vec![("app_key", VENDOR_B)], vec![204, 202]),
        (vec![("app_key", "lists-vendor-c")], vec![]),
        (vec![("app_key", VENDOR_B), ("status", "issued")], vec![202]),
        // Vendor A's key searched within vendor B's orders: nothing of A's shows.
        (vec![("q", VENDOR_A), ("app_key", VENDOR_B)], vec![]),
        (vec![("q", "OUT-201"), ("app_key", VENDOR_B)], vec![]),
        // Blank fields, as a search form sends them, are not filters.
        (
            vec![
                ("q", ""),
                ("status", ""),
                ("app_key", ""),
                ("after", ""),
                ("limit", ""),
            ],
            vec![204, 203, 202, 201],
        ),
    ] {
        let page = orders(&app, &params).await;
        assert_eq!(ids(&page), want, "{params:?}");
        assert_eq!(page.next, None, "{params:?}: one page");
    }
    let used = orders(&app, &[("q", "204")]).await;
    let o = &used.orders[0];
    assert_eq!(
        (o.status.as_str(), o.capacity, o.used),
        ("partly_used", 2, 1),
        "{o:?}"
    );
    // Every order of A, and only A's, through pages of one.
    let (seen, _) = walk_orders(&app, &[("app_key", VENDOR_A), ("limit", "1")]).await;
    assert_eq!(seen, [203, 201]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_parameters_are_400_naming_them_even_far_past_their_bounds() {
    let app = spawn_app().await;
    app.create_app(VENDOR_A, SECRET_A).await;
    order(
        &app,
        301,
        VENDOR_A,
        "2025-03-01 10:00:00",
        None,
        &[("BAD-1", 1)],
    )
    .await;
    let huge = "9".repeat(10_000);
    let long_q = "q".repeat(MAX_SEARCH_BYTES + 1);
    let far_q = "7".repeat(10_000);
    for (params, field) in [
        (vec![("status", "bogus")], "status"),
        (vec![("status", "Issued")], "status"),
        (vec![("status", huge.as_str())], "status"),
        (vec![("after", "garbage")], "after"),
        (vec![("after", "1740794400000")], "after"),
        (vec![("after", "1740794400000.0")], "after"),
        (vec![("after", "01740794400000.301")], "after"),
        (vec![("after", huge.as_str())], "after"),
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "201")], "limit"),
        (vec![("limit", "-1")], "limit"),
        (vec![("limit", "+5")], "limit"),
        (vec![("limit", "ten")], "limit"),
        (vec![("limit", "99999999999999999999")], "limit"),
        (vec![("limit", huge.as_str())], "limit"),
        (vec![("q", long_q.as_str())], "q"),
        (vec![("q", far_q.as_str())], "q"),
        (vec![("app_key", "has space")], "app_key"),
        (vec![("app_key", huge.as_str())], "app_key"),
    ] {
        let what = format!(
            "{:?}",
            params.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
        );
        assert_bad(&what, get(&app, "/admin/orders", &params).await, field);
    }
    // A repeated parameter is refused too (as every admin query: the message names it).
    let (status, body) = get(
        &app,
        "/admin/orders",
        &[("status", "issued"), ("status", "used")],
    )
    .await;
    assert_bad("status twice", (status, body.clone()), "query");
    assert!(refusal(&body).message.contains("status"), "{body}");
    // The longest search text is taken (and finds nothing).
    let longest = "q".repeat(MAX_SEARCH_BYTES);
    let page = orders(&app, &[("q", &longest)]).await;
    assert_eq!((page.orders.len(), page.next), (0, None));
    // A well-formed cursor that names no order still pages: after it, the older orders.
    let page = orders(&app, &[("after", "1740794400001.1")]).await;
    assert_eq!(ids(&page), [301]);
    let page = orders(&app, &[("after", "1740794400000.1")]).await;
    assert_eq!(
        ids(&page),
        Vec::<i64>::new(),
        "order 301 is at that instant, id above 1"
    );

    for (params, field) in [
        (vec![("after", "has space")], "after"),
        (vec![("after", huge.as_str())], "after"),
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "201")], "limit"),
        (vec![("limit", huge.as_str())], "limit"),
    ] {
        assert_bad(
            &format!("apps {params:?}")
                .chars()
                .take(80)
                .collect::<String>(),
            get(&app, "/admin/apps", &params).await,
            field,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_listed_by_key_in_pages_and_never_with_a_secret() {
    let app = spawn_app().await;
    let keys = ["lst-b", "lst-B", "lst-a", "lst-a-1", "lst-a0", "lst-zz"];
    let mut secrets = HashSet::new();
    for (n, key) in keys.iter().enumerate() {
        let secret = format!("lists-app-secret-{n}-0123456789");
        app.create_app(key, &secret).await;
        secrets.insert(secret);
    }
    let (status, rotated) = app
        .admin_post(
            "/admin/apps/lst-a/secret-rotations",
            json!({"overlap": "1h", "app_secret": "lists-rotated-secret-0123456789"}),
        )
        .await;
    assert_eq!(status, 201, "{rotated}");
    secrets.insert("lists-rotated-secret-0123456789".to_owned());

    let mut want: Vec<&str> = keys.to_vec();
    want.sort_unstable();
    assert_eq!(
        want,
        ["lst-B", "lst-a", "lst-a-1", "lst-a0", "lst-b", "lst-zz"]
    );
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "2")];
        if let Some(a) = after.as_deref() {
            query.push(("after", a));
        }
        let (status, body) = get(&app, "/admin/apps", &query).await;
        assert_eq!(status, 200, "{body}");
        let text = body.to_string();
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret in {text}");
        }
        for shown in body["apps"].as_array().unwrap() {
            assert!(shown.get("app_secret").is_none(), "{shown}");
        }
        let page: AppsPage = answer(&body);
        pages += 1;
        seen.extend(page.apps.iter().map(|a| a.app_key.clone()));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), seen.last(), "next is the last key shown");
                after = Some(next);
            }
            None => break,
        }
        assert!(pages < 10, "the walk ends");
    }
    assert_eq!(seen, want, "every app once, in key order");
    assert_eq!(pages, 3, "full pages, the last says it is the last");

    let all: AppsPage = app.admin_get_ok("/admin/apps").await;
    assert_eq!(all.next, None);
    let a = all.apps.iter().find(|a| a.app_key == "lst-a").unwrap();
    assert!(a.previous_secret_expires_at.is_some(), "{a:?}");
    assert_eq!(a.app_secret, None);
    let one: AppsPage = app.admin_get_ok("/admin/apps?after=lst-a0&limit=1").await;
    assert_eq!(
        (
            one.apps.len(),
            one.apps[0].app_key.as_str(),
            one.next.as_deref()
        ),
        (1, "lst-b", Some("lst-b"))
    );
    let none: AppsPage = app.admin_get_ok("/admin/apps?after=lst-zz").await;
    assert_eq!((none.apps.len(), none.next), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lists_need_the_admin_token_and_a_vendor_secret_is_not_one() {
    let app = spawn_app().await;
    app.create_app(VENDOR_A, SECRET_A).await;
    order(
        &app,
        401,
        VENDOR_A,
        "2025-03-01 10:00:00",
        None,
        &[("TOK-1", 1)],
    )
    .await;
    for path in [
        "/admin/orders",
        "/admin/apps",
        "/admin/orders?app_key=lists-vendor-a",
    ] {
        for auth in [
            None,
            Some(format!("Bearer {SECRET_A}")),
            Some(format!("Bearer {VENDOR_A}")),
            Some("Bearer wrong".to_owned()),
        ] {
            let mut req = app.http.get(app.url(path));
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 401, "{path} with {auth:?}: {body}");
            assert_eq!(refusal(&body).error, "unauthorized");
        }
    }
    // The operator sees the vendor's order.
    let page = orders(&app, &[]).await;
    assert_eq!(ids(&page), [401]);
}
