//! Real public TOP SDKs, unchanged, against the real server: PyPI `py-taobao-open` (system
//! params in the query, epoch-millisecond timestamps, md5) and npm `node-taobao-topclient`
//! (everything in a POST body or a GET query, local-time timestamps, md5, wrapped JSON).
//!
//! The SDKs are installed by `../shared/interop/setup.sh` (idempotent; CI runs it first, and
//! these tests run it themselves when the SDKs are missing).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::helpers::{minutes_ago, spawn_app, TestApp};

const KEY: &str = "sdk-vendor";
const SECRET: &str = "sdk-secret-0123456789";

fn shared_interop() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop")
}

/// Where the SDKs live; installs them on first use.
fn sdk_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::var_os("TOP_SDK_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/top-sdk")
            });
        let status = std::process::Command::new("bash")
            .arg(shared_interop().join("setup.sh"))
            .env("TOP_SDK_ROOT", &root)
            .status()
            .expect("run shared/interop/setup.sh");
        assert!(status.success(), "installing the TOP SDKs failed");
        root
    })
}

/// Runs one SDK script; returns its exit code and its JSON line.
async fn run_sdk(mut cmd: tokio::process::Command) -> (i32, Value) {
    let out = cmd.output().await.expect("spawn SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "SDK printed no JSON ({e}); stdout={stdout} stderr={}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

/// Calls through PyPI `py-taobao-open`.
async fn py(app: &TestApp, secret: &str, method: &str, params: Value) -> (i32, Value) {
    let root = sdk_root();
    let mut cmd = tokio::process::Command::new(root.join("venv-py-taobao-open/bin/python"));
    cmd.arg(shared_interop().join("py_taobao_open_call.py"))
        .arg(method)
        .arg(params.to_string())
        .env("TOP_URL", app.gateway())
        .env("APP_KEY", KEY)
        .env("APP_SECRET", secret);
    run_sdk(cmd).await
}

/// Calls through npm `node-taobao-topclient` (`verb` POST or GET).
async fn node(app: &TestApp, verb: &str, method: &str, params: Value) -> (i32, Value) {
    let root = sdk_root();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(shared_interop().join("node_topclient_call.js"))
        .arg(method)
        .arg(params.to_string())
        .env("TZ", "CST-8")
        .env("NODE_PATH", root.join("npm/node_modules"))
        .env("TOP_URL", app.gateway())
        .env("APP_KEY", KEY)
        .env("APP_SECRET", SECRET)
        .env("HTTP_METHOD", verb);
    run_sdk(cmd).await
}

async fn app_with_orders() -> TestApp {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(2983749123412345, KEY, &[("A1B2C3D4", 2)])
        .await;
    app.create_order(5001, KEY, &[("CODE-001", 1), ("CODE-002", 3)])
        .await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_legacy_verify_is_recorded() {
    let app = app_with_orders().await;
    let (code, out) = py(
        &app,
        SECRET,
        "taobao.travel.ticket.order.verify",
        json!({"order_id": 2983749123412345_i64, "confirm_code": "A1B2C3D4", "check_num": 1}),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let resp = &out["response"]["travel_ticket_order_verify_response"];
    assert_eq!(resp["is_success"], json!(true), "{out}");
    assert!(resp["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(app.used(2983749123412345, "A1B2C3D4").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_voucher_infos_retry_is_counted_once() {
    let app = app_with_orders().await;
    let date = minutes_ago(5);
    let params = json!({
        "order_id": 5001, "out_order_id": null, "write_off_type": 0,
        "voucher_infos": [{"confirm_code": "CODE-002", "used_quantity": 2, "used_date": date}],
    });
    let mut params = params;
    params.as_object_mut().unwrap().remove("out_order_id");
    for _ in 0..2 {
        let (code, out) = py(
            &app,
            SECRET,
            "taobao.travel.ticket.order.verify",
            params.clone(),
        )
        .await;
        assert_eq!(code, 0, "{out}");
    }
    assert_eq!(app.used(5001, "CODE-002").await, 2);
    let events = app.order(5001).await.events.clone();
    let outcomes: Vec<_> = events
        .iter()
        .map(|e| format!("{} {}", e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            "admin.create_order accepted",
            "taobao.travel.ticket.order.verify accepted",
            "order.status accepted",
            "taobao.travel.ticket.order.verify replayed"
        ],
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_sees_precise_business_and_platform_errors() {
    let app = app_with_orders().await;
    let (code, out) = py(
        &app,
        SECRET,
        "taobao.travel.ticket.order.verify",
        json!({"order_id": 5001, "confirm_code": "CODE-001", "check_num": 2}),
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["response"]["errorcode"], json!(50), "{out}");
    assert_eq!(
        out["response"]["subcode"],
        json!("isv.verify-num-exceed"),
        "{out}"
    );
    assert_eq!(app.used(5001, "CODE-001").await, 0);

    let (code, out) = py(
        &app,
        "wrong-secret",
        "taobao.travel.ticket.order.verify",
        json!({"order_id": 5001, "confirm_code": "CODE-001", "check_num": 1}),
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["response"]["errorcode"], json!(25), "{out}");
    assert_eq!(app.used(5001, "CODE-001").await, 0);

    let (code, out) = py(
        &app,
        SECRET,
        "taobao.travel.ticket.order.verify",
        json!({"order_id": 777, "confirm_code": "X", "check_num": 1}),
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out["response"]["subcode"],
        json!("isv.order-not-exist"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_post_and_get_verify() {
    let app = app_with_orders().await;
    let date = minutes_ago(3);
    let (code, out) = node(
        &app,
        "POST",
        "taobao.travel.ticket.order.verify",
        json!({"order_id": "5001", "voucher_infos": [{"confirm_code": "CODE-002", "used_quantity": 1, "used_date": date}]}),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["response"]["is_success"], json!(true), "{out}");

    let (code, out) = node(
        &app,
        "GET",
        "taobao.travel.ticket.order.verify",
        json!({"order_id": "2983749123412345", "confirm_code": "A1B2C3D4", "check_num": "2"}),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["response"]["is_success"], json!(true), "{out}");
    assert_eq!(app.used(5001, "CODE-002").await, 1);
    assert_eq!(app.used(2983749123412345, "A1B2C3D4").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_sees_error_response() {
    let app = app_with_orders().await;
    let (code, out) = node(
        &app,
        "POST",
        "taobao.travel.ticket.order.verify",
        json!({"order_id": "5001", "voucher_infos": [{"confirm_code": "NOPE", "used_quantity": 1}]}),
    )
    .await;
    assert_eq!(code, 1, "{out}");
    // The SDK rejects with the whole body as `data`.
    let e = &out["response"]["error_response"];
    assert_eq!(e["code"], json!(50), "{out}");
    assert_eq!(e["sub_code"], json!("isv.voucher-not-exist"), "{out}");
    assert_eq!(app.used(5001, "CODE-001").await, 0);
}

// ---------------------------------------------------------------------------------------------
// The whole order story (issue 3) through each real SDK: order (admin) → issue (SDK) → partial
// verify (SDK) → refund request (admin) → refund notification (SDK) → verify of a refunded
// ticket refused (SDK) → reversal (admin) → reconcile (admin), checking the ledger and the
// status after every step.
// ---------------------------------------------------------------------------------------------

/// Which real SDK calls the vendor's methods.
#[derive(Clone, Copy, Debug)]
enum Sdk {
    Python,
    Node,
}

/// What an SDK call came to: the inner success object, or the `sub_code` it raised.
#[derive(Debug)]
enum SdkAnswer {
    Success(Value),
    Refused(String),
}

impl Sdk {
    async fn call(self, app: &TestApp, method: &str, params: Value) -> SdkAnswer {
        let root = crate::helpers::success_root(method);
        match self {
            Self::Python => {
                let (code, out) = py(app, SECRET, method, params).await;
                match code {
                    0 => SdkAnswer::Success(out["response"][root.as_str()].clone()),
                    1 => SdkAnswer::Refused(out["response"]["subcode"].as_str().unwrap().into()),
                    _ => panic!("py-taobao-open failed: {out}"),
                }
            }
            Self::Node => {
                let (code, out) = node(app, "POST", method, params).await;
                match code {
                    0 => SdkAnswer::Success(out["response"].clone()),
                    1 => SdkAnswer::Refused(
                        out["response"]["error_response"]["sub_code"]
                            .as_str()
                            .unwrap()
                            .into(),
                    ),
                    _ => panic!("node-taobao-topclient failed: {out}"),
                }
            }
        }
    }

    /// Calls and expects `is_success` true; returns the request_id the SDK was given.
    async fn ok(self, app: &TestApp, method: &str, params: Value) -> String {
        match self.call(app, method, params.clone()).await {
            SdkAnswer::Success(v) => {
                assert_eq!(
                    v["is_success"],
                    json!(true),
                    "{self:?} {method} {params}: {v}"
                );
                v["request_id"].as_str().unwrap().to_owned()
            }
            other => panic!("{self:?} {method} {params}: {other:?}"),
        }
    }
}

/// The order's (status, used per code, refunded tickets).
async fn ledger_of(app: &TestApp, order_id: i64) -> (String, Vec<i64>, i64) {
    let o = app.order(order_id).await;
    (
        o.status.as_str().to_owned(),
        o.vouchers.iter().map(|v| v.used).collect(),
        o.refunded_tickets,
    )
}

/// The last `order.status` event of the order, as (request_id, from, to).
async fn last_transition(app: &TestApp, order_id: i64) -> (String, String, String) {
    let o = app.order(order_id).await;
    let (rid, from, to, _) = crate::helpers::status_events(&o).pop().unwrap();
    (rid, from, to)
}

/// The request_id of the order's last event of `action`.
async fn last_request(app: &TestApp, order_id: i64, action: &str) -> String {
    let o = app.order(order_id).await;
    o.events
        .iter()
        .rev()
        .find(|e| e.action == action)
        .unwrap()
        .request_id
        .as_str()
        .to_owned()
}

async fn whole_story(sdk: Sdk, order_id: i64) {
    const ISSUE: &str = "alitrip.travel.ticket.order.create";
    const VERIFY: &str = "taobao.travel.ticket.order.verify";
    const REFUND: &str = "taobao.travel.ticket.order.refund";
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    let t = |s: &str, from: &str, to: &str| (s.to_owned(), from.to_owned(), to.to_owned());
    let st =
        |status: &str, used: &[i64], refunded: i64| (status.to_owned(), used.to_vec(), refunded);

    // 1. The platform records the paid order: three tickets, no codes yet.
    let (status, body) = app
        .admin_post(
            "/admin/orders",
            json!({"order_id": order_id, "app_key": KEY, "quantity": 3,
                   "created_at": minutes_ago(24 * 60)}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "awaiting_issuance");

    // 2. The vendor issues one code per ticket (voucher_infos as a list), with extras.
    let out = format!("OUT-{order_id}");
    let rid = sdk
        .ok(
            &app,
            ISSUE,
            json!({"order_id": order_id, "out_order_id": out, "issue_type": 1,
            "voucher_infos": [
                {"confirm_code": "STORY-1", "type": 1, "quantity": 1, "assist_code": "AC-1"},
                {"confirm_code": "STORY-2", "type": 1, "quantity": 1, "url": "https://v.example/2"},
                {"confirm_code": "STORY-3", "type": 1, "quantity": 1},
            ]}),
        )
        .await;
    let o = app.order(order_id).await;
    assert_eq!(o.out_order_id.as_deref(), Some(out.as_str()));
    assert_eq!(o.capacity, 3);
    assert_eq!(ledger_of(&app, order_id).await, st("issued", &[0, 0, 0], 0));
    assert_eq!(
        last_transition(&app, order_id).await,
        t(&rid, "awaiting_issuance", "issued")
    );

    // 3. A visitor uses one ticket.
    let rid = sdk
        .ok(
            &app,
            VERIFY,
            json!({"order_id": order_id, "voucher_infos": [
                {"confirm_code": "STORY-1", "used_quantity": 1, "used_date": minutes_ago(30)}]}),
        )
        .await;
    assert_eq!(
        ledger_of(&app, order_id).await,
        st("partly_used", &[1, 0, 0], 0)
    );
    assert_eq!(
        last_transition(&app, order_id).await,
        t(&rid, "issued", "partly_used")
    );

    // 4. The buyer asks for the two unused tickets back.
    let (status, refund) = app
        .admin_post(
            &format!("/admin/orders/{order_id}/refunds"),
            json!({"quantity": 2}),
        )
        .await;
    assert_eq!(status, 201, "{refund}");
    let flow = refund["fliggy_refund_flow_id"].as_str().unwrap().to_owned();
    assert_eq!(refund["state"], "pending");
    assert_eq!(
        ledger_of(&app, order_id).await,
        st("refunding", &[1, 0, 0], 0)
    );
    let rid = last_request(&app, order_id, "admin.request_refund").await;
    assert_eq!(
        last_transition(&app, order_id).await,
        t(&rid, "partly_used", "refunding")
    );

    // 5. The vendor reports the refund done (and retries the report: nothing changes).
    let notification = json!({"order_id": order_id, "refund_status": 1, "refund_num": 2,
                              "refund_type": 1, "refund_batch_no": format!("RB-{order_id}-1"),
                              "fliggy_refund_flow_id": flow});
    let rid = sdk.ok(&app, REFUND, notification.clone()).await;
    assert_eq!(ledger_of(&app, order_id).await, st("closed", &[1, 0, 0], 2));
    assert_eq!(
        last_transition(&app, order_id).await,
        t(&rid, "refunding", "closed")
    );
    let o = app.order(order_id).await;
    assert_eq!(o.refunds[0].state, "succeeded");
    assert_eq!(o.refunds[0].refunded_tickets, 2);
    sdk.ok(&app, REFUND, notification).await;
    assert_eq!(ledger_of(&app, order_id).await, st("closed", &[1, 0, 0], 2));
    assert_eq!(app.order(order_id).await.refunded_tickets, 2);

    // 6. The gate admits a refunded ticket: the SDK sees isv.ticket-refunded, nothing is
    //    recorded but the anomaly.
    match sdk
        .call(
            &app,
            VERIFY,
            json!({"order_id": order_id, "voucher_infos": [
                {"confirm_code": "STORY-2", "used_quantity": 1, "used_date": minutes_ago(5)}]}),
        )
        .await
    {
        SdkAnswer::Refused(sub) => assert_eq!(sub, "isv.ticket-refunded"),
        other => panic!("{sdk:?}: a refunded ticket was verified: {other:?}"),
    }
    assert_eq!(ledger_of(&app, order_id).await, st("closed", &[1, 0, 0], 2));
    let (status, found) = app
        .admin_get(&format!(
            "/admin/anomalies?order_id={order_id}&kind=verify_after_refund"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(found["anomalies"].as_array().unwrap().len(), 1, "{found}");

    // 7. The operator reverses the first use (the gate scanned it by mistake).
    let (status, body) = app
        .admin_post(
            &format!("/admin/orders/{order_id}/reversals"),
            json!({"confirm_code": "STORY-1", "quantity": 1, "reason": "scanned by mistake"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["used"], 0);
    assert_eq!(
        ledger_of(&app, order_id).await,
        st("partly_refunded", &[0, 0, 0], 2)
    );
    let rid = last_request(&app, order_id, "admin.reverse").await;
    assert_eq!(
        last_transition(&app, order_id).await,
        t(&rid, "closed", "partly_refunded")
    );

    // 8. The vendor's own counts say the use did happen: the diff shows it, apply records it.
    let counts = json!({"vouchers": [{"confirm_code": "STORY-1", "used": 1}], "apply": false});
    let (status, diff) = app
        .admin_post(&format!("/admin/orders/{order_id}/reconcile"), counts)
        .await;
    assert_eq!(status, 200, "{diff}");
    assert_eq!(diff["lines"][0]["missing"], 1);
    assert_eq!(diff["applied_uses"], 0);
    assert_eq!(
        ledger_of(&app, order_id).await,
        st("partly_refunded", &[0, 0, 0], 2)
    );
    let counts = json!({"vouchers": [{"confirm_code": "STORY-1", "used": 1}], "apply": true});
    let (status, applied) = app
        .admin_post(&format!("/admin/orders/{order_id}/reconcile"), counts)
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["applied_uses"], 1);
    assert_eq!(ledger_of(&app, order_id).await, st("closed", &[1, 0, 0], 2));
    let rid = last_request(&app, order_id, "admin.reconcile").await;
    assert_eq!(
        last_transition(&app, order_id).await,
        t(&rid, "partly_refunded", "closed")
    );

    // The whole history is there, in order: nothing was rewritten.
    let o = app.order(order_id).await;
    let actions: Vec<&str> = o
        .events
        .iter()
        .filter(|e| e.action != "order.status")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "admin.create_order",
            ISSUE,
            VERIFY,
            "admin.request_refund",
            REFUND,
            REFUND,
            VERIFY,
            "admin.reverse",
            "admin.reconcile",
        ],
        "{o:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_runs_the_whole_order_story() {
    whole_story(Sdk::Python, 6101).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_runs_the_whole_order_story() {
    whole_story(Sdk::Node, 6102).await;
}
