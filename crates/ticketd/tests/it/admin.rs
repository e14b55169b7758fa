//! The operator's API (`/admin/...`, bearer token) and the health endpoints: status codes,
//! field names and what each call leaves behind.

use serde_json::{json, Value};
use ticketd::admin::{AppAnswer, AuditEntryAnswer, OrderAnswer};
use top_protocol::timestamp::{format_beijing, parse_beijing};

use crate::helpers::{
    answer, assert_success_body, audit_entries, refusal, spawn_app, TestApp, TopCall, ADMIN_TOKEN,
};

const KEY: &str = "admin-vendor";
const SECRET: &str = "admin-secret-0123456789";

/// Sends `body` (raw bytes) to `path` with an optional `Authorization` header value.
async fn raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (u16, String, Value) {
    let mut req = app.http.request(method, app.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    let v =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text:?}"));
    (status, ct, v)
}

fn bearer() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

fn is_beijing_datetime(v: &Value) -> bool {
    v.as_str().and_then(parse_beijing).is_some()
}

/// Asserts a JSON admin refusal: status, `error` kind, a `message`, and the `field` if given.
fn assert_refusal(
    what: &str,
    got: (u16, String, Value),
    status: u16,
    kind: &str,
    field: Option<&str>,
) {
    let (s, ct, body) = got;
    assert_eq!(s, status, "{what}: {body}");
    assert!(
        ct.starts_with("application/json"),
        "{what}: content-type {ct}"
    );
    let refused = refusal(&body);
    assert_eq!(refused.error, kind, "{what}: {body}");
    assert!(!refused.message.is_empty(), "{what}: {body}");
    match field {
        Some(f) => assert_eq!(refused.field.as_deref(), Some(f), "{what}: {body}"),
        // Absent, not null: read on the raw body.
        None => assert!(body.get("field").is_none(), "{what}: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_created_with_a_given_or_a_generated_secret() {
    let app = spawn_app().await;

    let (status, body) = app
        .admin_post(
            "/admin/apps",
            json!({"app_key": KEY, "app_secret": SECRET, "name": "Gate system A"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let body: AppAnswer = answer(&body);
    assert_eq!(body.app_key, KEY);
    assert_eq!(body.app_secret.as_deref(), Some(SECRET));
    assert_eq!(body.name, "Gate system A");
    assert!(is_beijing_datetime(&json!(body.created_at)), "{body:?}");

    // No secret: one is generated, returned once, and works for signing.
    let (status, gen1) = app
        .admin_post("/admin/apps", json!({"app_key": "gen-1"}))
        .await;
    assert_eq!(status, 201, "{gen1}");
    let gen1: AppAnswer = answer(&gen1);
    let secret1 = gen1.app_secret.clone().unwrap();
    assert!(secret1.len() >= 32, "weak generated secret {secret1:?}");
    assert_eq!(gen1.name, "gen-1", "name defaults to the key");
    let gen2: AppAnswer = app
        .admin_post_ok("/admin/apps", json!({"app_key": "gen-2"}), 201)
        .await;
    assert_ne!(gen2.app_secret, gen1.app_secret);
    app.create_order(501, "gen-1", &[("GEN-CODE-1", 1)]).await;
    let call = TopCall::verify("gen-1", &secret1)
        .set("order_id", 501)
        .set("confirm_code", "GEN-CODE-1")
        .set("check_num", 1);
    assert_success_body(&app.call(&call).await);

    // The secret is never shown again.
    let (status, shown) = app.admin_get("/admin/apps/gen-1").await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(answer::<AppAnswer>(&shown).app_key, "gen-1");
    // Absent, not null: read on the raw body.
    assert!(shown.get("app_secret").is_none(), "secret leaked: {shown}");
    let (status, _) = app.admin_get("/admin/apps/nobody").await;
    assert_eq!(status, 404);

    // Duplicate key: 409, and the first registration stands.
    let dup = raw(
        &app,
        reqwest::Method::POST,
        "/admin/apps",
        Some(&bearer()),
        Some(&json!({"app_key": KEY, "app_secret": "other"}).to_string()),
    )
    .await;
    assert_refusal("duplicate app", dup, 409, "app_exists", None);
    app.create_order(502, KEY, &[("KEY-CODE-1", 1)]).await;
    let call = TopCall::verify(KEY, SECRET)
        .set("order_id", 502)
        .set("confirm_code", "KEY-CODE-1")
        .set("check_num", 1);
    assert_success_body(&app.call(&call).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_created_shown_and_refused_with_exact_statuses() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;

    // Beyond 2^53, so a float anywhere on the way would show.
    let big: i64 = 9_007_199_254_740_993;
    let (status, created) = app
        .admin_post(
            "/admin/orders",
            json!({
                "order_id": big, "app_key": KEY, "quantity": 3, "out_order_id": "OUT-ADMIN-1",
                "valid_from": "2024-05-01", "valid_until": "2024-05-02",
                "created_at": "2024-04-30 09:15:00",
                "vouchers": [{"confirm_code": "ADM-CODE-1", "quantity": 2}, {"confirm_code": "ADM-CODE-2", "quantity": 1}],
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let created: OrderAnswer = answer(&created);
    assert_eq!(created.order_id, big, "{created:?}");
    assert_eq!(created.app_key, KEY);
    assert_eq!(created.out_order_id.as_deref(), Some("OUT-ADMIN-1"));
    assert_eq!(created.status, "issued");
    assert_eq!(
        created.valid_from.as_deref(),
        Some("2024-05-01 00:00:00"),
        "a bare date starts at midnight UTC+8"
    );
    assert_eq!(
        created.valid_until.as_deref(),
        Some("2024-05-02 23:59:59"),
        "a bare end date covers the whole day"
    );
    assert_eq!(created.created_at, "2024-04-30 09:15:00");
    let vouchers = &created.vouchers;
    assert_eq!(vouchers.len(), 2);
    for (v, (code, cap)) in vouchers.iter().zip([("ADM-CODE-1", 2), ("ADM-CODE-2", 1)]) {
        assert_eq!(v.confirm_code, code, "issuance order kept: {created:?}");
        assert_eq!(v.capacity, cap);
        assert_eq!(v.used, 0);
    }
    // The lifecycle fields: counters, refunds and nothing refunded yet.
    assert_eq!(created.quantity, 3);
    assert_eq!(created.capacity, 3);
    assert_eq!(created.used, 0);
    assert_eq!(created.refunded_tickets, 0);
    assert_eq!(created.refundable_tickets, 3);
    assert_eq!(created.issue_describe, None);
    assert_eq!(created.refunds, []);
    // Created with its codes, the order starts issued: its creation is its only event (no
    // `order.status` entry, there is no status before it).
    let events = &created.events;
    assert_eq!(events.len(), 1, "{created:?}");
    assert_eq!(events[0].action, "admin.create_order");
    assert_eq!(events[0].outcome, "accepted");
    assert_eq!(events[0].reason, "created_issued");
    assert_eq!(events[0].order_id, Some(big));

    // GET shows the same order.
    let shown = app.order(big).await;
    assert_eq!(shown, created);

    // Date-times are taken as UTC+8 wall clock, to the second.
    let (status, o) = app
        .admin_post(
            "/admin/orders",
            json!({"order_id": 2, "app_key": KEY, "quantity": 1, "valid_from": "2024-05-01 08:30:00",
                   "valid_until": "2024-05-01 18:00:00", "vouchers": [{"confirm_code": "ADM-CODE-3", "quantity": 1}]}),
        )
        .await;
    assert_eq!(status, 201, "{o}");
    let o: OrderAnswer = answer(&o);
    assert_eq!(o.valid_from.as_deref(), Some("2024-05-01 08:30:00"));
    assert_eq!(o.valid_until.as_deref(), Some("2024-05-01 18:00:00"));
    assert_eq!(o.out_order_id, None);
    let created_at = parse_beijing(o.created_at.as_str()).unwrap();
    assert!(
        (chrono::Utc::now() - created_at).num_seconds().abs() < 60,
        "created_at defaults to now: {o:?}"
    );

    // Without vouchers the order awaits issuance.
    let (status, o) = app
        .admin_post(
            "/admin/orders",
            json!({"order_id": 3, "app_key": KEY, "quantity": 2}),
        )
        .await;
    assert_eq!(status, 201, "{o}");
    assert_eq!(o["status"], "awaiting_issuance");
    assert_eq!(o["vouchers"], json!([]));
    assert_eq!(
        (o["capacity"].as_i64(), o["used"].as_i64()),
        (Some(0), Some(0))
    );
    let events = o["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{o}");
    assert_eq!(events[0]["action"], "admin.create_order");
    assert_eq!(events[0]["reason"], "created_awaiting_issuance");

    // Duplicate order id: 409, the first order untouched.
    let dup = raw(
        &app,
        reqwest::Method::POST,
        "/admin/orders",
        Some(&bearer()),
        Some(&json!({"order_id": big, "app_key": KEY, "quantity": 9, "vouchers": [{"confirm_code": "OTHER", "quantity": 9}]}).to_string()),
    )
    .await;
    assert_refusal("duplicate order", dup, 409, "order_exists", None);
    assert_eq!(app.order(big).await, created);

    // Unknown app: 422, nothing created.
    let unknown = raw(
        &app,
        reqwest::Method::POST,
        "/admin/orders",
        Some(&bearer()),
        Some(&json!({"order_id": 4, "app_key": "nobody", "quantity": 1}).to_string()),
    )
    .await;
    assert_refusal("unknown app", unknown, 422, "unknown_app", None);
    let missing = raw(
        &app,
        reqwest::Method::GET,
        "/admin/orders/4",
        Some(&bearer()),
        None,
    )
    .await;
    assert_refusal("order 4", missing, 404, "not_found", None);
    let missing = raw(
        &app,
        reqwest::Method::GET,
        "/admin/orders/abc",
        Some(&bearer()),
        None,
    )
    .await;
    assert_refusal("order abc", missing, 404, "not_found", None);

    // A verify shows up in the order's counters, status and events.
    // (Order 2 was created just now, so the legacy form: the gate time is the receive time.)
    let call = TopCall::verify(KEY, SECRET)
        .set("order_id", 2)
        .set("confirm_code", "ADM-CODE-3")
        .set("check_num", 1);
    let rid = assert_success_body(&app.call(&call).await);
    let o = app.order(2).await;
    assert_eq!(o.status, "used");
    assert_eq!(o.vouchers[0].used, 1);
    assert_eq!(o.used, 1);
    // The verify, then the transition it caused, both under the verify's request_id.
    let events = &o.events;
    assert_eq!(events.len(), 3, "{o:?}");
    let verify = &events[1];
    assert_eq!(verify.request_id, rid.as_str());
    assert_eq!(verify.action, "taobao.travel.ticket.order.verify");
    assert_eq!(verify.outcome, "accepted");
    assert_eq!(verify.reason, "applied");
    let status = &events[2];
    assert_eq!(status.request_id, rid.as_str());
    assert_eq!(status.action, "order.status");
    assert_eq!(status.outcome, "accepted");
    assert_eq!(status.reason, "used");
    assert_eq!(status.order_id, Some(2));
    assert_eq!(status.app_key.as_deref(), Some(KEY));
    assert_eq!(
        status.detail,
        json!({"from": "issued", "to": "used", "cause": "taobao.travel.ticket.order.verify"})
    );
    assert!(status.seq > verify.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_needs_the_token_and_health_does_not() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(11, KEY, &[("TOK-CODE-1", 1)]).await;
    let routes: [(reqwest::Method, &str, Option<Value>); 10] = [
        (
            reqwest::Method::POST,
            "/admin/apps",
            Some(json!({"app_key": "sneaky"})),
        ),
        (reqwest::Method::GET, "/admin/apps/admin-vendor", None),
        (
            reqwest::Method::POST,
            "/admin/orders",
            Some(json!({"order_id": 12, "app_key": KEY, "quantity": 1})),
        ),
        (reqwest::Method::GET, "/admin/orders/11", None),
        (
            reqwest::Method::POST,
            "/admin/orders/11/refunds",
            Some(json!({"quantity": 1})),
        ),
        (
            reqwest::Method::POST,
            "/admin/orders/11/reversals",
            Some(json!({"confirm_code": "TOK-CODE-1", "quantity": 1, "reason": "x"})),
        ),
        (
            reqwest::Method::POST,
            "/admin/orders/11/reconcile",
            Some(json!({"vouchers": [{"confirm_code": "TOK-CODE-1", "used": 1}], "apply": true})),
        ),
        (reqwest::Method::GET, "/admin/anomalies", None),
        (
            reqwest::Method::POST,
            "/admin/anomalies/1/resolve",
            Some(json!({"resolution": "dismissed"})),
        ),
        (reqwest::Method::GET, "/admin/audit", None),
    ];
    let wrong = [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])),
        Some(format!("Basic {ADMIN_TOKEN}")),
        Some(ADMIN_TOKEN.to_owned()),
        Some("Bearer ".to_owned()),
    ];
    for (method, path, body) in &routes {
        for auth in &wrong {
            let body = body.as_ref().map(Value::to_string);
            let got = raw(&app, method.clone(), path, auth.as_deref(), body.as_deref()).await;
            assert_refusal(
                &format!("{method} {path} with {auth:?}"),
                got,
                401,
                "unauthorized",
                None,
            );
        }
    }
    // Nothing was created by the refused calls.
    let (status, _) = app.admin_get("/admin/apps/sneaky").await;
    assert_eq!(status, 404);
    let (status, _) = app.admin_get("/admin/orders/12").await;
    assert_eq!(status, 404);
    let o = app.order(11).await;
    assert_eq!(o.refunds, [], "{o:?}");
    assert_eq!(o.used, 0, "{o:?}");
    assert_eq!(o.events.len(), 1, "{o:?}");

    for (path, want) in [
        ("/healthz", json!({"status": "ok"})),
        ("/readyz", json!({"status": "ready"})),
    ] {
        let (status, _, body) = raw(&app, reqwest::Method::GET, path, None, None).await;
        assert_eq!((status, body), (200, want), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_naming_the_field() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    let apps: &[(&str, &str)] = &[
        (r#"{"app_key": 5}"#, "app_key"),
        (r#"{}"#, "app_key"),
        (r#"{"app_key": ""}"#, "app_key"),
        (r#"{"app_key": "has space"}"#, "app_key"),
        (r#"{"app_key": "k1", "app_secret": ""}"#, "app_secret"),
        (r#"{"app_key": "k1", "app_secret": 7}"#, "app_secret"),
        (r#"{"app_key": "k1", "name": ["x"]}"#, "name"),
        (r#"{"app_key": "k1", "secret": "typo"}"#, "secret"),
    ];
    for (body, field) in apps {
        let got = raw(
            &app,
            reqwest::Method::POST,
            "/admin/apps",
            Some(&bearer()),
            Some(body),
        )
        .await;
        assert_refusal(body, got, 400, "invalid_request", Some(field));
    }
    let (status, _) = app.admin_get("/admin/apps/k1").await;
    assert_eq!(status, 404, "a refused app was created");

    let order = |patch: Value| {
        let mut o = json!({"order_id": 21, "app_key": KEY, "quantity": 2,
                           "vouchers": [{"confirm_code": "MAL-CODE-1", "quantity": 1}, {"confirm_code": "MAL-CODE-2", "quantity": 1}]});
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                o.as_object_mut().unwrap().remove(k);
            } else {
                o[k] = v.clone();
            }
        }
        o.to_string()
    };
    let orders: Vec<(String, &str)> = vec![
        (order(json!({"order_id": "abc"})), "order_id"),
        (order(json!({"order_id": 0})), "order_id"),
        (order(json!({"order_id": -5})), "order_id"),
        (order(json!({"order_id": 1.5})), "order_id"),
        (order(json!({"order_id": null})), "order_id"),
        (order(json!({"app_key": null})), "app_key"),
        (order(json!({"quantity": null})), "quantity"),
        (order(json!({"quantity": "two"})), "quantity"),
        (order(json!({"out_order_id": ""})), "out_order_id"),
        (order(json!({"valid_from": "2024/05/01"})), "valid_from"),
        (order(json!({"valid_until": "tomorrow"})), "valid_until"),
        (
            order(json!({"created_at": "2024-05-01T10:00:00"})),
            "created_at",
        ),
        (
            order(json!({"vouchers": {"confirm_code": "X"}})),
            "vouchers",
        ),
        (
            order(
                json!({"vouchers": [{"confirm_code": "MAL-CODE-1", "quantity": 1}, {"confirm_code": "MAL-CODE-2", "quantity": "x"}]}),
            ),
            "vouchers[1].quantity",
        ),
        (
            order(json!({"vouchers": [{"confirm_code": "", "quantity": 1}]})),
            "vouchers[0].confirm_code",
        ),
        (order(json!({"bogus": 1})), "bogus"),
    ];
    for (body, field) in &orders {
        let got = raw(
            &app,
            reqwest::Method::POST,
            "/admin/orders",
            Some(&bearer()),
            Some(body),
        )
        .await;
        assert_refusal(body, got, 400, "invalid_request", Some(field));
    }
    // Not JSON at all: still a 400 JSON answer with a `field`.
    for body in ["{not json", "", "[]"] {
        let (status, ct, v) = raw(
            &app,
            reqwest::Method::POST,
            "/admin/orders",
            Some(&bearer()),
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{body:?}: {v}");
        assert!(ct.starts_with("application/json"));
        assert_eq!(v["error"], "invalid_request", "{v}");
        assert!(v["field"].is_string(), "{body:?}: {v}");
    }
    let (status, _) = app.admin_get("/admin/orders/21").await;
    assert_eq!(status, 404, "a refused order was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_every_attempt_and_filters() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_app("audit-other", "other-secret").await;
    app.create_order(31, KEY, &[("AUD-CODE-1", 5)]).await;
    app.create_order(32, KEY, &[("AUD-CODE-2", 1)]).await;
    app.create_order(33, "audit-other", &[("AUD-CODE-3", 1)])
        .await;
    let date = format_beijing(chrono::Utc::now() - chrono::Duration::minutes(5));
    let v1 = TopCall::verify(KEY, SECRET).set("order_id", 31).set(
        "voucher_infos",
        json!([{"confirm_code": "AUD-CODE-1", "used_quantity": 1, "used_date": date}]),
    );
    let accepted = assert_success_body(&app.call(&v1).await);
    let replayed = assert_success_body(&app.call(&v1).await);
    let over = TopCall::verify(KEY, SECRET)
        .set("order_id", 32)
        .set("confirm_code", "AUD-CODE-2")
        .set("check_num", 2);
    let rejected = crate::helpers::request_id_of(&app.call(&over).await);

    let all = audit_entries(&app, "limit=1000").await;
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    // Every field is on the wire, null or not (the typed entries cannot tell absent from null).
    let (status, on_wire) = app.admin_get("/admin/audit?limit=1000").await;
    assert_eq!(status, 200, "{on_wire}");
    for e in on_wire["entries"].as_array().unwrap() {
        for field in [
            "seq",
            "at",
            "request_id",
            "action",
            "app_key",
            "order_id",
            "outcome",
            "reason",
            "detail",
            "client_ip",
        ] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "admin.create_app").count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "admin.create_order")
            .count(),
        3,
        "{actions:?}"
    );

    // The accepted verify left two entries: the verify, then the transition it caused.
    let mine: Vec<&AuditEntryAnswer> = all
        .iter()
        .filter(|e| e.request_id == accepted.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "{mine:?}");
    let status = mine[1];
    assert_eq!(status.action, "order.status");
    assert_eq!(
        (status.outcome.as_str(), status.reason.as_str()),
        ("accepted", "partly_used")
    );
    assert_eq!(
        status.detail,
        json!({"from": "issued", "to": "partly_used", "cause": "taobao.travel.ticket.order.verify"})
    );
    assert_eq!(status.order_id, Some(31));
    let e = mine[0];
    assert_eq!(e.action, "taobao.travel.ticket.order.verify");
    assert_eq!(
        (e.outcome.as_str(), e.reason.as_str()),
        ("accepted", "applied")
    );
    assert_eq!(e.client_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        e.detail["request"]["voucher_infos"][0]["confirm_code"], "****DE-1",
        "codes are masked: {e:?}"
    );
    let e = &crate::helpers::entry_for(&all, &replayed);
    assert_eq!(
        (e.outcome.as_str(), e.reason.as_str()),
        ("replayed", "replayed")
    );
    let e = &crate::helpers::entry_for(&all, &rejected);
    assert_eq!(
        (e.outcome.as_str(), e.reason.as_str()),
        ("rejected", "isv.verify-num-exceed")
    );
    assert_eq!(e.order_id, Some(32));

    let by_order = audit_entries(&app, "order_id=31").await;
    let outcomes: Vec<(&str, &str)> = by_order
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("admin.create_order", "accepted"),
            ("taobao.travel.ticket.order.verify", "accepted"),
            ("order.status", "accepted"),
            ("taobao.travel.ticket.order.verify", "replayed"),
        ],
        "{by_order:?}"
    );
    let ids: Vec<&str> = by_order[1..]
        .iter()
        .map(|e| e.request_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [accepted.as_str(), accepted.as_str(), replayed.as_str()]
    );
    assert!(by_order.iter().all(|e| e.order_id == Some(31)));

    let by_outcome = audit_entries(&app, "outcome=rejected").await;
    assert_eq!(by_outcome.len(), 1, "{by_outcome:?}");
    assert_eq!(by_outcome[0].request_id, rejected.as_str());

    let by_app = audit_entries(&app, "app_key=audit-other").await;
    assert!(
        !by_app.is_empty()
            && by_app
                .iter()
                .all(|e| e.app_key.as_deref() == Some("audit-other")),
        "{by_app:?}"
    );
    assert_eq!(by_app.len(), 2, "create_app and create_order: {by_app:?}");

    let combined =
        audit_entries(&app, &format!("app_key={KEY}&outcome=replayed&order_id=31")).await;
    assert_eq!(combined.len(), 1);
    assert_eq!(combined[0].request_id, replayed.as_str());

    let first_two = audit_entries(&app, "limit=2").await;
    assert_eq!(first_two, all[..2].to_vec());
    let after = audit_entries(&app, &format!("after={}", seqs[2])).await;
    assert_eq!(after, all[3..].to_vec());
    let page = audit_entries(&app, &format!("after={}&limit=1", seqs[0])).await;
    assert_eq!(page, all[1..2].to_vec());

    let bad = raw(
        &app,
        reqwest::Method::GET,
        "/admin/audit?outcome=maybe",
        Some(&bearer()),
        None,
    )
    .await;
    assert_refusal("bad outcome", bad, 400, "invalid_request", Some("outcome"));
}

/// A missing field inside a voucher is named by its full path, like every other bad field
/// (`vouchers[1].quantity`), not by the object that lacks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_nested_field_is_named_by_its_path() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    for (vouchers, field) in [
        (json!([{"quantity": 1}]), "vouchers[0].confirm_code"),
        (
            json!([{"confirm_code": "NEST-1", "quantity": 1}, {"confirm_code": "NEST-2"}]),
            "vouchers[1].quantity",
        ),
    ] {
        let body = json!({"order_id": 41, "app_key": KEY, "quantity": 2, "vouchers": vouchers})
            .to_string();
        let got = raw(
            &app,
            reqwest::Method::POST,
            "/admin/orders",
            Some(&bearer()),
            Some(&body),
        )
        .await;
        assert_refusal(&body, got, 400, "invalid_request", Some(field));
    }
}

/// A malformed audit query is refused like every other admin input: 400, a JSON body naming
/// the parameter (the admin API answers JSON, admin.rs module doc).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_audit_queries_are_400_json_naming_the_field() {
    let app = spawn_app().await;
    for (query, field) in [
        ("order_id=abc", "order_id"),
        ("after=x", "after"),
        ("limit=-1", "limit"),
        ("outcome=maybe", "outcome"),
    ] {
        let r = app
            .http
            .get(app.url(&format!("/admin/audit?{query}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 400, "{query}: {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{query}: answered 400 but not JSON: {text:?}"));
        assert_eq!(v["error"], "invalid_request", "{query}: {v}");
        assert_eq!(v["field"], field, "{query}: {v}");
    }
}

/// Issue #12: the audit trail keeps no whole code, whatever shape the request gave it — a
/// `confirm_code` sent as a JSON number, an issuance's `assist_code`, refused requests whose
/// `voucher_infos` is kept as sent — and a short code shows at most half of itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_sent_as_numbers_and_assist_codes_never_stay_whole_in_the_audit_trail() {
    const NUMERIC: &str = "12345678";
    const ASSIST: &str = "ASSIST-77665544";
    const ISSUED_NUMERIC: &str = "87654321";
    const ISSUED_ASSIST: &str = "ASSIST-11223344";
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(51, KEY, &[(NUMERIC, 3), ("AB-12", 2)])
        .await;
    crate::helpers::create_order_with(&app, 52, KEY, &[], json!({"quantity": 1})).await;
    let date = format_beijing(chrono::Utc::now() - chrono::Duration::minutes(5));
    let verify = |list: Value| {
        TopCall::verify(KEY, SECRET)
            .set("order_id", 51)
            .set("voucher_infos", list)
    };

    // Accepted: the number is read as the code "12345678".
    let accepted = assert_success_body(
        &app.call(&verify(json!([
            {"confirm_code": 12345678, "used_quantity": 1, "used_date": date},
            {"confirm_code": "AB-12", "used_quantity": 1, "used_date": date, "assist_code": ASSIST},
        ])))
        .await,
    );
    assert_eq!(app.used(51, NUMERIC).await, 1);
    // Refused before the ledger (41): the summary is the request as sent, masked.
    let refused = app
        .call(&verify(json!([
            {"confirm_code": 12345678, "used_quantity": 0, "assist_code": ASSIST},
        ])))
        .await;
    assert_eq!(
        refused.error(),
        (41, "isv.invalid-parameter:voucher_infos".to_owned())
    );
    let refused = crate::helpers::request_id_of(&refused);
    // An issuance keeps extras such as assist_code with each code; its summary masks them.
    let issued = crate::helpers::request_id_of(
        &app.call(
            &TopCall::method(crate::helpers::ISSUE, KEY, SECRET)
                .set("order_id", 52)
                .set("out_order_id", "OUT-52")
                .set("issue_type", 1)
                .set(
                    "voucher_infos",
                    json!([{"confirm_code": 87654321, "type": 1, "quantity": 1,
                            "assist_code": ISSUED_ASSIST}]),
                ),
        )
        .await,
    );
    assert_eq!(app.order(52).await.status, "issued");

    let all = audit_entries(&app, "limit=1000").await;
    let text = serde_json::to_string(&all).unwrap();
    for whole in [
        NUMERIC,
        ASSIST,
        ISSUED_NUMERIC,
        ISSUED_ASSIST,
        "AB-12",
        "B-12",
    ] {
        assert!(
            !text.contains(whole),
            "{whole} is in the audit trail: {text}"
        );
    }
    // The call's own entry (an accepted call is followed by its order.status entry).
    let request = |id: &str| {
        let calls: Vec<AuditEntryAnswer> = all
            .iter()
            .filter(|e| e.action != "order.status")
            .cloned()
            .collect();
        crate::helpers::entry_for(&calls, id).detail["request"]["voucher_infos"].clone()
    };
    assert_eq!(
        request(&accepted),
        json!([
            {"confirm_code": "****5678", "used_quantity": 1, "used_date": date},
            {"confirm_code": "****12", "used_quantity": 1, "used_date": date},
        ])
    );
    assert_eq!(
        request(&refused),
        // Only the known fields: `assist_code` is not evidence of a use and is not kept.
        json!([{"confirm_code": "****5678", "used_quantity": 0}])
    );
    assert_eq!(
        request(&issued),
        json!([{"confirm_code": "****4321", "type": 1, "quantity": 1}])
    );
}
