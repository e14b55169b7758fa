//! `ticketd verify`, `ticketd refund` and `ticketd issue`: the real binary against the real
//! server, as a vendor testing an integration runs them.

use std::process::Output;

use serde_json::{json, Value};
use ticket_api::BusinessError;

use crate::helpers::{minutes_ago, spawn_app, TestApp};

const KEY: &str = "cli-vendor";
const SECRET: &str = "cli-secret-0123456789";

/// Runs the `ticketd` binary with `args`, the secret in the environment (never on the command
/// line), the host in a time zone far from Beijing, and no other `TICKETD_` variable.
async fn ticketd(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketd"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TICKETD_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args)
        .env("TICKETD_APP_SECRET", SECRET)
        .env("TZ", "America/Los_Angeles")
        .kill_on_drop(true);
    cmd.output().await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

async fn setup(order_id: i64, vouchers: &[(&str, i64)]) -> TestApp {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(order_id, KEY, vouchers).await;
    app
}

/// The server's bare address: the CLI adds `/router/rest`.
fn base(app: &TestApp) -> String {
    format!("http://{}", app.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_prints_the_response_and_exits_zero() {
    let app = setup(8101, &[("CLI-GROUP", 3)]).await;
    let voucher = format!("CLI-GROUP:2@{}", minutes_ago(1));
    let out = ticketd(&[
        "verify",
        "--url",
        &base(&app),
        "--app-key",
        KEY,
        "--order-id",
        "8101",
        "--voucher",
        &voucher,
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed["is_success"], true, "{printed}");
    assert_eq!(printed["request_id"].as_str().unwrap().len(), 13);
    assert_eq!(app.used(8101, "CLI-GROUP").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_exits_non_zero_with_the_sub_code_and_its_meaning() {
    let app = setup(8102, &[("CLI-ONE", 1)]).await;
    let voucher = format!("CLI-ONE:2@{}", minutes_ago(1));
    let out = ticketd(&[
        "verify",
        "--url",
        &app.gateway(),
        "--app-key",
        KEY,
        "--order-id",
        "8102",
        "--voucher",
        &voucher,
    ])
    .await;
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(err.contains("TOP error 50: Remote service error"), "{err}");
    assert!(err.contains("isv.verify-num-exceed"), "{err}");
    assert!(
        err.contains(BusinessError::VerifyNumExceed.entry().meaning),
        "{err}"
    );
    assert!(err.contains("retry: no"), "{err}");
    assert!(err.contains("request_id"), "{err}");
    assert_eq!(app.used(8102, "CLI-ONE").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_file_gives_the_connection_and_legacy_flags_work_in_xml_and_md5() {
    let app = setup(8103, &[("CLI-LEGACY", 5)]).await;
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("gate.profile");
    std::fs::write(
        &profile,
        format!(
            "# staging gates\nurl = \"{}\"\napp_key = \"{KEY}\"\napp_secret = \"{SECRET}\"\n\
             sign_method = \"md5\"\nformat = \"xml\"\n",
            app.gateway()
        ),
    )
    .unwrap();
    let profile = profile.to_str().unwrap();
    let out = ticketd(&[
        "verify",
        "--profile",
        profile,
        "--order-id",
        "8103",
        "--confirm-code",
        "CLI-LEGACY",
        "--check-num",
        "2",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        printed["is_success"], "true",
        "XML leaves are text: {printed}"
    );
    assert_eq!(app.used(8103, "CLI-LEGACY").await, 2);

    // Flags win over the profile: hmac with JSON, cumulative total 4.
    let out = ticketd(&[
        "verify",
        "--profile",
        profile,
        "--sign-method",
        "hmac",
        "--format",
        "json",
        "--simplify",
        "--order-id",
        "8103",
        "--confirm-code",
        "CLI-LEGACY",
        "--check-num",
        "4",
        "--write-off-type",
        "1",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed["is_success"], true, "{printed}");
    assert_eq!(app.used(8103, "CLI-LEGACY").await, 4);
}

/// Issue #12: the profile is TOML. A section or key the CLI does not know, or a line that is
/// not TOML (the old unquoted `key = value`), stops the call with an error naming the line —
/// rather than being skipped, so a typo cannot silently fall back to a default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_that_is_not_the_expected_toml_stops_the_call_naming_the_line() {
    let app = setup(8105, &[("CLI-TOML", 5)]).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = app.gateway();
    for (name, text, line, what) in [
        (
            "section",
            format!("url = \"{gateway}\"\n[staging]\napp_key = \"{KEY}\"\n"),
            "line 2",
            "unknown field `staging`",
        ),
        (
            "unquoted",
            format!("# old style\nurl = {gateway}\napp_key = {KEY}\n"),
            "line 2",
            "",
        ),
        (
            "typo",
            format!("url = \"{gateway}\"\napp_key = \"{KEY}\"\nsign_mehtod = \"md5\"\n"),
            "line 3",
            "unknown field `sign_mehtod`",
        ),
    ] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, &text).unwrap();
        let out = ticketd(&[
            "verify",
            "--profile",
            path.to_str().unwrap(),
            "--order-id",
            "8105",
            "--confirm-code",
            "CLI-TOML",
            "--check-num",
            "1",
        ])
        .await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("in the profile"), "{name}: {err}");
        assert!(err.contains(line), "{name}: {err}");
        assert!(err.contains(what), "{name}: {err}");
    }
    assert_eq!(app.used(8105, "CLI-TOML").await, 0, "no call was made");

    // The same settings as TOML are read (the section's keys at the top level).
    let path = dir.path().join("good.toml");
    std::fs::write(
        &path,
        format!("url = \"{gateway}\"\napp_key = \"{KEY}\"\nsign_method = \"md5\"\n"),
    )
    .unwrap();
    let out = ticketd(&[
        "verify",
        "--profile",
        path.to_str().unwrap(),
        "--order-id",
        "8105",
        "--confirm-code",
        "CLI-TOML",
        "--check-num",
        "1",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(app.used(8105, "CLI-TOML").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_refusals_and_missing_settings_fail_with_an_explanation() {
    let app = setup(8104, &[("CLI-X", 1)]).await;
    let out = ticketd(&[
        "verify",
        "--url",
        &app.gateway(),
        "--app-key",
        KEY,
        "--app-secret",
        "wrong-secret",
        "--order-id",
        "8104",
        "--confirm-code",
        "CLI-X",
        "--check-num",
        "1",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("TOP error 25: Invalid signature"), "{err}");
    assert!(err.contains("meaning:"), "{err}");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args(["verify", "--url", &app.gateway(), "--order-id", "8104"])
        .env_remove("TICKETD_APP_KEY")
        .env_remove("TICKETD_APP_SECRET")
        .env_remove("TICKETD_PROFILE")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no app key"), "{}", stderr(&out));

    let out = ticketd(&["verify", "--app-key", KEY, "--voucher", "NO-QUANTITY"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses a malformed --voucher"
    );
    assert!(stderr(&out).contains("CODE:QUANTITY"), "{}", stderr(&out));
    assert_eq!(app.used(8104, "CLI-X").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_then_verify_then_refund_through_the_cli() {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    let (status, body) = app
        .admin_post(
            "/admin/orders",
            json!({"order_id": 8105, "app_key": KEY, "quantity": 4, "out_order_id": "OUT-8105",
                   "created_at": minutes_ago(60 * 24)}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let gateway = app.gateway();
    let common = ["--url", gateway.as_str(), "--app-key", KEY];

    let mut args = vec!["issue"];
    args.extend(common);
    args.extend([
        "--order-id",
        "8105",
        "--out-order-id",
        "OUT-8105",
        "--issue-type",
        "1",
        "--voucher",
        "CLI-A:1:1",
        "--voucher",
        "CLI-G:3:2",
    ]);
    let out = ticketd(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).unwrap()["is_success"],
        true
    );
    // The same report again changes nothing and is answered success.
    let out = ticketd(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let voucher = format!("CLI-G:1@{}", minutes_ago(1));
    let mut args = vec!["verify"];
    args.extend(common);
    args.extend(["--order-id", "8105", "--voucher", voucher.as_str()]);
    let out = ticketd(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(app.used(8105, "CLI-G").await, 1);

    let (status, body) = app
        .admin_post("/admin/orders/8105/refunds", json!({"quantity": 1}))
        .await;
    assert_eq!(status, 201, "{body}");
    let mut args = vec!["refund"];
    args.extend(common);
    args.extend([
        "--order-id",
        "8105",
        "--refund-status",
        "1",
        "--refund-num",
        "1",
        "--refund-batch-no",
        "RB-8105-01",
    ]);
    let out = ticketd(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).unwrap()["is_success"],
        true
    );
    let order = app.order(8105).await;
    assert_eq!(order.status, "partly_refunded", "{order:?}");

    // A refund status outside 1/2 is refused by the gateway, with the parameter named.
    let mut args = vec!["refund"];
    args.extend(common);
    args.extend(["--order-id", "8105", "--refund-status", "7"]);
    let out = ticketd(&args).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("isv.invalid-parameter:refund_status"), "{err}");
    assert!(err.contains("`refund_status`"), "{err}");
}

#[test]
fn help_lists_the_client_subcommands() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for sub in ["serve", "verify", "refund", "issue"] {
        assert!(text.contains(sub), "{text}");
    }
}
