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
    let events = app.order(5001).await["events"].clone();
    let outcomes: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["accepted", "accepted", "replayed"], "{events}");
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
