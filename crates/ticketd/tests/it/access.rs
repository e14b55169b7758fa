//! Per-app access controls (issue #7 item 4): rate limits (TOP code 7), IP allow-lists (code 11),
//! secret rotation with an overlap window, and the admin API that sets them. Time moves through
//! the injected clock (`StepClock`), never by sleeping.

use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use ticket_ledger::RateLimit;
use ticketd::admin::{AppAnswer, AuditEntryAnswer, ErrorAnswer};
use top_protocol::timestamp::format_beijing;

use crate::helpers::{
    assert_error_body, assert_success_body, audit_entries, entry_for, ledger_snapshot,
    spawn_app_with, StepClock, TestApp, TopCall, ADMIN_TOKEN,
};

const KEY: &str = "access-vendor";
const SECRET: &str = "access-secret-0123456789";
const LIMITED: &str = "App Call Limited";
const RATE_SUB: &str = "accesscontrol.limited-by-api-access-count";
const NO_PERMISSION: &str = "Insufficient isv permissions";
const IP_SUB: &str = "isv.permission-ip-whitelist-limit";

/// A server on 127.0.0.1 whose clock the test moves, with `settings` adjusted.
async fn server(
    adjust: impl FnOnce(&mut ticketd::settings::Settings),
) -> (TestApp, Arc<StepClock>) {
    let clock = StepClock::at(Utc::now());
    let app = spawn_app_with(adjust, clock.clone()).await;
    (app, clock)
}

/// Sends an admin request with the token and a raw body; returns status and JSON body.
async fn admin(app: &TestApp, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
    let r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    (status, v)
}

/// An app answer read into the server's own type.
fn app_answer(body: &Value) -> AppAnswer {
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not an app answer ({e}): {body}"))
}

/// An admin refusal read into the server's own type.
fn error_answer(body: &Value) -> ErrorAnswer {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("not a refusal ({e}): {body}"))
}

async fn patch(app: &TestApp, body: Value) -> (u16, Value) {
    admin(
        app,
        reqwest::Method::PATCH,
        &format!("/admin/apps/{KEY}"),
        &body.to_string(),
    )
    .await
}

async fn rotate(app: &TestApp, body: Value) -> (u16, Value) {
    admin(
        app,
        reqwest::Method::POST,
        &format!("/admin/apps/{KEY}/secret-rotations"),
        &body.to_string(),
    )
    .await
}

/// Registers [`KEY`] with `extra` fields and an order of one code with `uses` uses.
async fn vendor(app: &TestApp, extra: Value, order_id: i64, uses: i64) {
    let mut body = json!({"app_key": KEY, "app_secret": SECRET});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, created) = app.admin_post("/admin/apps", body).await;
    assert_eq!(status, 201, "{created}");
    app.create_order(order_id, KEY, &[(&code(order_id), uses)])
        .await;
}

fn code(order_id: i64) -> String {
    format!("ACCESS-CODE-{order_id}")
}

/// One use of the order's code, signed with `secret`, timestamped by the server's clock.
fn use_one(order_id: i64, secret: &str, clock: &StepClock) -> TopCall {
    TopCall::verify(KEY, secret)
        .set(
            "timestamp",
            format_beijing(ticketd::clock::Clock::now(clock)),
        )
        .set("order_id", order_id)
        .set("confirm_code", code(order_id))
        .set("check_num", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_rate_limit_are_refused_with_7_and_the_bucket_refills_over_time() {
    let (app, clock) = server(|_| {}).await;
    vendor(&app, json!({"rate_limit": "2/s", "burst": 2}), 701, 10).await;

    // The burst: two calls at once.
    assert_success_body(&app.call(&use_one(701, SECRET, &clock)).await);
    assert_success_body(&app.call(&use_one(701, SECRET, &clock)).await);
    let before = ledger_snapshot(&app, 701).await;

    // The third at the same instant is refused, exactly, and changes nothing.
    let reply = app.call(&use_one(701, SECRET, &clock)).await;
    let id = assert_error_body(
        &reply,
        7,
        LIMITED,
        Some((RATE_SUB, "调用频率超过该应用的限制 2/s")),
    );
    assert_eq!(ledger_snapshot(&app, 701).await, before, "nothing applied");
    assert_eq!(app.used(701, &code(701)).await, 2);
    let entries = audit_entries(&app, "outcome=rejected").await;
    let entry = entry_for(&entries, &id);
    assert_eq!(entry.reason, RATE_SUB, "{entry:?}");
    assert_eq!(entry.app_key.as_deref(), Some(KEY), "{entry:?}");
    assert_eq!(entry.detail["code"], 7, "{entry:?}");

    // 2/s: one call back after half a second, not before.
    clock.advance(Duration::milliseconds(499));
    let (code_, sub) = app.call(&use_one(701, SECRET, &clock)).await.error();
    assert_eq!((code_, sub.as_str()), (7, RATE_SUB));
    clock.advance(Duration::milliseconds(1));
    assert_success_body(&app.call(&use_one(701, SECRET, &clock)).await);
    let (code_, _) = app.call(&use_one(701, SECRET, &clock)).await.error();
    assert_eq!(code_, 7);

    // A long pause refills the burst, and no more.
    clock.advance(Duration::minutes(5));
    assert_success_body(&app.call(&use_one(701, SECRET, &clock)).await);
    assert_success_body(&app.call(&use_one(701, SECRET, &clock)).await);
    let (code_, _) = app.call(&use_one(701, SECRET, &clock)).await.error();
    assert_eq!(code_, 7);
    assert_eq!(
        app.used(701, &code(701)).await,
        5,
        "only accepted calls count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_default_rate_limits_apps_without_their_own_until_they_set_one() {
    let (app, clock) = server(|s| {
        s.default_rate_limit = RateLimit::parse("1/m", None).unwrap();
    })
    .await;
    vendor(&app, json!({}), 702, 10).await;
    let (status, shown) = app.admin_get(&format!("/admin/apps/{KEY}")).await;
    assert_eq!(status, 200, "{shown}");
    let shown = app_answer(&shown);
    assert_eq!(shown.rate_limit, None, "{shown:?}");
    assert_eq!(shown.effective_rate_limit, "1/m", "{shown:?}");
    assert_eq!(shown.effective_burst, Some(1), "{shown:?}");

    assert_success_body(&app.call(&use_one(702, SECRET, &clock)).await);
    let reply = app.call(&use_one(702, SECRET, &clock)).await;
    assert_error_body(
        &reply,
        7,
        LIMITED,
        Some((RATE_SUB, "调用频率超过该应用的限制 1/m")),
    );

    // The app's own `unlimited` overrides the default; `null` goes back to it.
    let (status, body) = patch(&app, json!({"rate_limit": "unlimited"})).await;
    assert_eq!(status, 200, "{body}");
    let answer = app_answer(&body);
    assert_eq!(answer.rate_limit.as_deref(), Some("unlimited"), "{body}");
    assert_eq!(answer.effective_burst, None, "{body}");
    for _ in 0..5 {
        assert_success_body(&app.call(&use_one(702, SECRET, &clock)).await);
    }
    let (status, body) = patch(&app, json!({"rate_limit": null})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app_answer(&body).effective_rate_limit, "1/m", "{body}");
    let (code_, _) = app.call(&use_one(702, SECRET, &clock)).await.error();
    assert_eq!(code_, 7, "the bucket remembers the calls made before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_outside_the_allow_list_are_refused_with_11_after_authentication() {
    // The test server listens on 127.0.0.1, so every call comes from 127.0.0.1.
    let (app, clock) = server(|_| {}).await;
    vendor(
        &app,
        json!({"ip_allowlist": ["10.0.0.0/8"], "rate_limit": "1/h"}),
        703,
        5,
    )
    .await;
    let before = ledger_snapshot(&app, 703).await;
    for _ in 0..3 {
        let reply = app.call(&use_one(703, SECRET, &clock)).await;
        let id = assert_error_body(
            &reply,
            11,
            NO_PERMISSION,
            Some((IP_SUB, "调用方IP 127.0.0.1 不在该应用的IP白名单内")),
        );
        let entries = audit_entries(&app, "outcome=rejected").await;
        let entry = entry_for(&entries, &id);
        assert_eq!(entry.reason, IP_SUB, "{entry:?}");
        assert_eq!(entry.client_ip.as_deref(), Some("127.0.0.1"), "{entry:?}");
    }
    assert_eq!(ledger_snapshot(&app, 703).await, before, "nothing applied");

    // A forger is told only that the signature is wrong, whatever its address.
    let forged = app.call(&use_one(703, "not-the-secret", &clock)).await;
    assert_error_body(&forged, 25, "Invalid signature", None);

    // Allowing loopback lets the vendor in; refused calls spent none of its 1/h.
    let (status, body) = patch(&app, json!({"ip_allowlist": ["127.0.0.0/8", "::1"]})).await;
    assert_eq!(status, 200, "{body}");
    let answer = app_answer(&body);
    assert_eq!(answer.ip_allowlist, ["127.0.0.0/8", "::1"], "{body}");
    assert_eq!(
        answer.rate_limit.as_deref(),
        Some("1/h"),
        "fields not given are kept: {body}"
    );
    assert_success_body(&app.call(&use_one(703, SECRET, &clock)).await);
    let (code_, _) = app.call(&use_one(703, SECRET, &clock)).await.error();
    assert_eq!(code_, 7);

    // An empty list allows any address again.
    let (status, body) = patch(
        &app,
        json!({"ip_allowlist": ["10.0.0.0/8"], "rate_limit": "unlimited"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (code_, _) = app.call(&use_one(703, SECRET, &clock)).await.error();
    assert_eq!(code_, 11);
    let (status, body) = patch(&app, json!({"ip_allowlist": []})).await;
    assert_eq!(status, 200, "{body}");
    assert_success_body(&app.call(&use_one(703, SECRET, &clock)).await);

    let admin_entries = audit_entries(&app, &format!("app_key={KEY}&outcome=accepted")).await;
    assert!(
        admin_entries
            .iter()
            .any(|e| e.action == "admin.set_app_access"
                && e.detail["ip_allowlist"] == json!(["127.0.0.0/8", "::1"])),
        "each change is audited: {admin_entries:?}"
    );
}

/// Issue #12: a range written in IPv6 as IPv4-mapped addresses (`::ffff:127.0.0.0/104`, how a
/// dual-stack system logs IPv4 callers) admits the IPv4 peers it names, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_mapped_ipv6_range_admits_the_ipv4_callers_it_names() {
    // The test server listens on 127.0.0.1, so every call comes from the IPv4 peer 127.0.0.1.
    let (app, clock) = server(|_| {}).await;
    vendor(
        &app,
        json!({"ip_allowlist": ["::ffff:127.0.0.0/104"]}),
        705,
        5,
    )
    .await;
    let (status, shown) = app.admin_get(&format!("/admin/apps/{KEY}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(app_answer(&shown).ip_allowlist, ["::ffff:127.0.0.0/104"]);
    assert_success_body(&app.call(&use_one(705, SECRET, &clock)).await);
    assert_eq!(app.used(705, &code(705)).await, 1);

    // Another mapped range does not: 11, as for an IPv4 range that misses.
    let (status, body) = patch(&app, json!({"ip_allowlist": ["::ffff:10.0.0.0/104"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_error_body(
        &app.call(&use_one(705, SECRET, &clock)).await,
        11,
        NO_PERMISSION,
        Some((IP_SUB, "调用方IP 127.0.0.1 不在该应用的IP白名单内")),
    );
    // A mapped range with host bits set is refused like any other, naming the range meant.
    let (status, body) = patch(&app, json!({"ip_allowlist": ["::ffff:127.0.0.1/104"]})).await;
    assert_eq!(status, 400, "{body}");
    let refusal = error_answer(&body);
    assert_eq!(refusal.field.as_deref(), Some("ip_allowlist[0]"), "{body}");
    assert!(
        refusal
            .message
            .contains("did you mean ::ffff:127.0.0.0/104?"),
        "{body}"
    );
    assert_eq!(app.used(705, &code(705)).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_keeps_working_until_its_overlap_ends() {
    let (app, clock) = server(|_| {}).await;
    vendor(&app, json!({}), 704, 20).await;
    let start = ticketd::clock::Clock::now(&*clock);

    let (status, rotated) = rotate(&app, json!({"overlap": "1h"})).await;
    assert_eq!(status, 201, "{rotated}");
    let rotated_app = app_answer(&rotated);
    let new_secret = rotated_app
        .app_secret
        .clone()
        .expect("the new secret, shown once");
    assert!(
        new_secret.len() >= 32,
        "weak generated secret {new_secret:?}"
    );
    assert_ne!(new_secret, SECRET);
    assert_eq!(
        rotated_app.previous_secret_expires_at,
        Some(format_beijing(start + Duration::hours(1))),
        "{rotated}"
    );
    let (status, shown) = app.admin_get(&format!("/admin/apps/{KEY}")).await;
    assert_eq!(status, 200, "{shown}");
    assert!(shown.get("app_secret").is_none(), "secret leaked: {shown}");
    assert_eq!(
        app_answer(&shown).previous_secret_expires_at,
        rotated_app.previous_secret_expires_at
    );
    assert!(
        !shown.to_string().contains(SECRET) && !shown.to_string().contains(&new_secret),
        "no secret in {shown}"
    );

    // During the overlap both secrets work.
    assert_success_body(&app.call(&use_one(704, SECRET, &clock)).await);
    assert_success_body(&app.call(&use_one(704, &new_secret, &clock)).await);
    clock.advance(Duration::hours(1) - Duration::seconds(1));
    assert_success_body(&app.call(&use_one(704, SECRET, &clock)).await);

    // From the expiry on, only the new one.
    clock.advance(Duration::seconds(1));
    let before = ledger_snapshot(&app, 704).await;
    let old = app.call(&use_one(704, SECRET, &clock)).await;
    assert_error_body(&old, 25, "Invalid signature", None);
    assert_eq!(ledger_snapshot(&app, 704).await, before, "nothing applied");
    assert_success_body(&app.call(&use_one(704, &new_secret, &clock)).await);

    // A leaked secret is cut off at once with a zero overlap, and the operator may choose the
    // new secret; the secret before the last one is forgotten.
    let (status, again) = rotate(
        &app,
        json!({"overlap": "0s", "app_secret": "chosen-secret-0123456789"}),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(
        app_answer(&again).app_secret.as_deref(),
        Some("chosen-secret-0123456789")
    );
    let (code_, _) = app.call(&use_one(704, &new_secret, &clock)).await.error();
    assert_eq!(code_, 25, "a zero overlap ends the old secret at once");
    let (code_, _) = app.call(&use_one(704, SECRET, &clock)).await.error();
    assert_eq!(code_, 25);
    assert_success_body(
        &app.call(&use_one(704, "chosen-secret-0123456789", &clock))
            .await,
    );

    let entries = audit_entries(&app, &format!("app_key={KEY}&outcome=accepted")).await;
    let rotations: Vec<&AuditEntryAnswer> = entries
        .iter()
        .filter(|e| e.action == "admin.rotate_app_secret")
        .collect();
    assert_eq!(rotations.len(), 2, "{entries:?}");
    let trail = serde_json::to_string(&entries).unwrap();
    assert!(
        !trail.contains(&new_secret) && !trail.contains("chosen-secret"),
        "no secret in the audit trail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_settings_are_shown_and_bad_values_refused_naming_the_field() {
    let (app, _clock) = server(|_| {}).await;
    vendor(
        &app,
        json!({"rate_limit": "20/s", "burst": 40, "ip_allowlist": ["203.0.113.0/24", "::1"]}),
        705,
        1,
    )
    .await;
    let (status, shown) = app.admin_get(&format!("/admin/apps/{KEY}")).await;
    assert_eq!(status, 200, "{shown}");
    let shown = app_answer(&shown);
    assert_eq!(
        shown,
        AppAnswer {
            app_key: KEY.to_owned(),
            app_secret: None,
            burst: Some(40),
            created_at: shown.created_at.clone(),
            effective_burst: Some(40),
            effective_rate_limit: "20/s".to_owned(),
            ip_allowlist: vec!["203.0.113.0/24".to_owned(), "::1".to_owned()],
            name: KEY.to_owned(),
            previous_secret_expires_at: None,
            rate_limit: Some("20/s".to_owned()),
        }
    );

    // A burst alone changes the burst of the app's own rate.
    let (status, body) = patch(&app, json!({"burst": 5})).await;
    assert_eq!(status, 200, "{body}");
    let answer = app_answer(&body);
    assert_eq!(
        (answer.rate_limit.as_deref(), answer.burst),
        (Some("20/s"), Some(5))
    );

    let many: Vec<String> = (0..257)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    let bad_patches = [
        (json!({"rate_limit": "fast"}), "rate_limit"),
        (json!({"rate_limit": "0/s"}), "rate_limit"),
        (json!({"rate_limit": "5/d"}), "rate_limit"),
        (json!({"rate_limit": 5}), "rate_limit"),
        (json!({"rate_limit": "5/s", "burst": 0}), "burst"),
        (json!({"rate_limit": "5/s", "burst": -1}), "burst"),
        (json!({"rate_limit": "5/s", "burst": 2_000_000}), "burst"),
        (json!({"rate_limit": null, "burst": 3}), "burst"),
        (json!({"rate_limit": "unlimited", "burst": 3}), "burst"),
        (json!({"ip_allowlist": ["10.0.0.1/8"]}), "ip_allowlist[0]"),
        (
            json!({"ip_allowlist": ["::1", "localhost"]}),
            "ip_allowlist[1]",
        ),
        (json!({"ip_allowlist": ["10.0.0.0/33"]}), "ip_allowlist[0]"),
        (json!({"ip_allowlist": "10.0.0.0/8"}), "ip_allowlist"),
        (json!({"ip_allowlist": many}), "ip_allowlist"),
        (json!({"rate": "5/s"}), "rate"),
    ];
    for (body, field) in bad_patches {
        let (status, refusal) = patch(&app, body.clone()).await;
        assert_eq!(status, 400, "{body}: {refusal}");
        assert_eq!(refusal["error"], "invalid_request", "{body}: {refusal}");
        assert_eq!(refusal["field"], field, "{body}: {refusal}");
    }
    let (status, refusal) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/admin/apps/{KEY}"),
        "42",
    )
    .await;
    assert_eq!(
        (status, refusal["field"].as_str()),
        (400, Some("body")),
        "{refusal}"
    );

    // With no rate of its own, a burst alone has nothing to apply to.
    let (status, _) = patch(&app, json!({"rate_limit": null})).await;
    assert_eq!(status, 200);
    let (status, refusal) = patch(&app, json!({"burst": 3})).await;
    assert_eq!(
        (status, error_answer(&refusal).field.as_deref()),
        (400, Some("burst")),
        "{refusal}"
    );
    // Nothing refused changed anything.
    let (_, now) = app.admin_get(&format!("/admin/apps/{KEY}")).await;
    let now = app_answer(&now);
    assert_eq!(now.rate_limit, None, "{now:?}");
    assert_eq!(now.ip_allowlist, shown.ip_allowlist, "{now:?}");

    let bad_rotations = [
        (json!({"overlap": "forever"}), "overlap"),
        (json!({"overlap": "31d"}), "overlap"),
        (json!({"overlap": 3600}), "overlap"),
        (json!({"app_secret": ""}), "app_secret"),
        (json!({"app_secret": SECRET}), "app_secret"),
        (json!({"overlp": "1h"}), "overlp"),
    ];
    for (body, field) in bad_rotations {
        let (status, refusal) = rotate(&app, body.clone()).await;
        assert_eq!(status, 400, "{body}: {refusal}");
        assert_eq!(refusal["field"], field, "{body}: {refusal}");
    }
    let (_, after) = app.admin_get(&format!("/admin/apps/{KEY}")).await;
    assert_eq!(
        after["previous_secret_expires_at"],
        Value::Null,
        "no rotation happened"
    );

    let bad_creates = [
        (json!({"app_key": "k2", "rate_limit": "x"}), "rate_limit"),
        (json!({"app_key": "k2", "burst": 5}), "burst"),
        (
            json!({"app_key": "k2", "ip_allowlist": ["300.1.1.1"]}),
            "ip_allowlist[0]",
        ),
    ];
    for (body, field) in bad_creates {
        let (status, refusal) = app.admin_post("/admin/apps", body.clone()).await;
        assert_eq!(status, 400, "{body}: {refusal}");
        assert_eq!(refusal["field"], field, "{body}: {refusal}");
    }
    let (status, _) = app.admin_get("/admin/apps/k2").await;
    assert_eq!(status, 404, "a refused app was created");

    // Unknown apps are 404; without the token, 401.
    let (status, _) = admin(&app, reqwest::Method::PATCH, "/admin/apps/nobody", "{}").await;
    assert_eq!(status, 404);
    let (status, _) = admin(
        &app,
        reqwest::Method::POST,
        "/admin/apps/nobody/secret-rotations",
        "{}",
    )
    .await;
    assert_eq!(status, 404);
    let r = app
        .http
        .patch(app.url(&format!("/admin/apps/{KEY}")))
        .json(&json!({"rate_limit": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
