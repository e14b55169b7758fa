//! `ticketd bench` against real servers: bounded runs with replays and refusals mixed in, whose
//! verification pass must find in the ledger exactly what was acknowledged, and whose JSON
//! report carries every field the docs promise.

use clap::Parser;
use serde_json::Value;
use ticketd::bench::{execute, BenchArgs};

use crate::helpers::{spawn_app, ADMIN_TOKEN};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// Parses a `ticketd bench` command line (without the subcommand name).
fn bench_args(list: &[&str]) -> BenchArgs {
    let mut all = vec!["bench"];
    all.extend_from_slice(list);
    Cli::try_parse_from(all)
        .unwrap_or_else(|e| panic!("{e}"))
        .args
}

fn count_of(report: &Value, sub_code: Option<&str>) -> u64 {
    report["result"]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| match sub_code {
            None => a["answer"] == "is_success",
            Some(s) => a["sub_code"] == s,
        })
        .map(|a| a["count"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_against_a_running_server_leaves_exactly_the_acknowledged_uses() {
    let app = spawn_app().await;
    let url = format!("http://{}", app.addr);
    let report = execute(bench_args(&[
        "--url",
        &url,
        "--admin-token",
        ADMIN_TOKEN,
        "--orders",
        "20",
        "--vouchers-per-order",
        "4",
        "--capacity",
        "5",
        "--requests",
        "240",
        "--warmup",
        "0",
        "--concurrency",
        "8",
        "--replay-ratio",
        "0.2",
        "--reject-ratio",
        "0.1",
    ]))
    .await
    .unwrap();
    let r = serde_json::to_value(&report).unwrap();

    let v = &r["verification"];
    assert_eq!(v["ok"], true, "{r:#}");
    assert_eq!(v["orders"], 20);
    assert_eq!(v["unknown_uses"], 0);
    assert_eq!(v["acknowledged_uses"], v["ledger_uses"]);
    let kinds = &r["result"]["kinds"];
    let fresh = kinds["fresh"].as_u64().unwrap();
    let replays = kinds["replay"].as_u64().unwrap();
    let rejects = kinds["reject"].as_u64().unwrap();
    assert_eq!(fresh + replays + rejects, 240);
    assert!(replays > 0 && rejects > 0, "{kinds}");
    // No warm-up: every acknowledged use is a measured fresh request of one voucher.
    assert_eq!(v["acknowledged_uses"].as_u64().unwrap(), fresh);
    assert_eq!(r["result"]["requests"], 240);
    assert_eq!(r["result"]["unexpected"], 0, "{r:#}");
    assert_eq!(count_of(&r, None), fresh + replays);
    assert_eq!(count_of(&r, Some("isv.verify-num-exceed")), rejects);

    for field in ["requests_per_s", "vouchers_per_s", "elapsed_s"] {
        assert!(r["result"][field].as_f64().unwrap() > 0.0, "{field}");
    }
    let lat = &r["result"]["latency_ms"];
    for p in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(lat[p].as_f64().unwrap() > 0.0, "{p}");
    }
    assert!(lat["p50"].as_f64() <= lat["p99"].as_f64());
    assert!(lat["p99"].as_f64() <= lat["max"].as_f64());
    assert_eq!(r["load"]["concurrency"], 8);
    assert_eq!(r["load"]["form"], "vouchers");
    assert_eq!(r["load"]["sign_method"], "md5");
    assert!(r["baseline"].is_null());
    assert!(
        r["server"].is_null(),
        "an external server without --server-pid"
    );
    assert!(r["machine"]["loadavg_before"].is_string());
    assert!(report.to_text().contains("match"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_server_takes_legacy_reports_and_the_baseline_gives_a_ratio() {
    let report = execute(bench_args(&[
        "--spawn",
        "--form",
        "legacy",
        "--sign-method",
        "hmac-sha256",
        "--orders",
        "10",
        "--vouchers-per-order",
        "3",
        "--capacity",
        "10",
        "--requests",
        "150",
        "--warmup",
        "0",
        "--concurrency",
        "4",
        "--reject-ratio",
        "0.1",
        "--baseline",
    ]))
    .await
    .unwrap();
    let r = serde_json::to_value(&report).unwrap();
    assert_eq!(r["verification"]["ok"], true, "{r:#}");
    assert_eq!(
        r["verification"]["acknowledged_uses"],
        r["result"]["kinds"]["fresh"]
    );
    assert_eq!(r["result"]["unexpected"], 0, "{r:#}");
    assert!(r["target"]["startup_ms"].as_f64().unwrap() > 0.0);
    assert!(r["target"]["database_url"]
        .as_str()
        .unwrap()
        .starts_with("sqlite://"));
    let b = &r["baseline"];
    assert_eq!(b["requests"], 150);
    assert!(b["requests_per_s"].as_f64().unwrap() > 0.0);
    assert!(b["ratio"].as_f64().unwrap() > 0.0);
    assert!(r["server"]["rss_end_mb"].as_f64().unwrap() > 0.0);
    assert!(report.to_text().contains("× the HTTP ceiling"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_requests_count_every_voucher() {
    let report = execute(bench_args(&[
        "--spawn",
        "--batch",
        "10",
        "--orders",
        "4",
        "--vouchers-per-order",
        "20",
        "--capacity",
        "3",
        "--requests",
        "20",
        "--warmup",
        "0",
        "--concurrency",
        "4",
        "--replay-ratio",
        "0.1",
    ]))
    .await
    .unwrap();
    let r = serde_json::to_value(&report).unwrap();
    assert_eq!(r["verification"]["ok"], true, "{r:#}");
    let fresh = r["result"]["kinds"]["fresh"].as_u64().unwrap();
    assert_eq!(
        r["verification"]["ledger_uses"].as_u64().unwrap(),
        10 * fresh
    );
    let rps = r["result"]["requests_per_s"].as_f64().unwrap();
    let vps = r["result"]["vouchers_per_s"].as_f64().unwrap();
    assert!(vps > rps, "{vps} vouchers/s vs {rps} requests/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stops_when_the_prepared_uses_run_out_and_still_verifies() {
    let report = execute(bench_args(&[
        "--spawn",
        "--orders",
        "2",
        "--vouchers-per-order",
        "2",
        "--capacity",
        "2",
        "--duration",
        "60s",
        "--warmup",
        "0",
        "--concurrency",
        "3",
    ]))
    .await
    .unwrap();
    let r = serde_json::to_value(&report).unwrap();
    assert_eq!(r["result"]["exhausted"], true);
    assert_eq!(r["verification"]["ok"], true, "{r:#}");
    assert_eq!(
        r["verification"]["ledger_uses"], 8,
        "2 orders × 2 codes × 2 uses"
    );
    assert!(r["result"]["elapsed_s"].as_f64().unwrap() < 30.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_server_process_is_started_observed_and_stopped() {
    let report = execute(bench_args(&[
        "--spawn",
        "process",
        "--server-exe",
        env!("CARGO_BIN_EXE_ticketd"),
        "--orders",
        "5",
        "--vouchers-per-order",
        "2",
        "--capacity",
        "10",
        "--requests",
        "60",
        "--warmup",
        "0",
        "--concurrency",
        "4",
    ]))
    .await
    .unwrap();
    let r = serde_json::to_value(&report).unwrap();
    assert_eq!(r["verification"]["ok"], true, "{r:#}");
    assert_eq!(r["server"]["scope"], "server process");
    assert!(r["server"]["hwm_mb"].as_f64().unwrap() > 0.0);
    assert!(r["target"]["description"]
        .as_str()
        .unwrap()
        .starts_with("child ticketd process"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_admin_token_fails_before_any_load() {
    let app = spawn_app().await;
    let url = format!("http://{}", app.addr);
    let err = execute(bench_args(&[
        "--url",
        &url,
        "--admin-token",
        "wrong",
        "--requests",
        "10",
    ]))
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("401"), "{err:#}");
}
