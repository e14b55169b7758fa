//! `ticketd bench` against real servers: bounded runs with replays and refusals mixed in, whose
//! verification pass must find in the ledger exactly what was acknowledged, and whose JSON
//! report carries every field the docs promise; and runs that must fail: a ledger that
//! disagrees on one voucher though every order total agrees, and answers that are not the
//! ones the requests called for.

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use clap::Parser;
use serde_json::{json, Value};
use ticket_ledger::RateLimit;
use ticketd::bench::{execute, run, BenchArgs};
use ticketd::clock::SystemClock;

use crate::helpers::{
    minutes_ago, spawn_app, spawn_app_with, voucher_infos, TestApp, TopCall, ADMIN_TOKEN,
};

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
    assert!(r["result"]["send_lateness_ms"].is_null(), "unpaced");
    assert_eq!(r["load"]["concurrency"], 8);
    assert_eq!(r["load"]["form"], "vouchers");
    assert_eq!(r["load"]["sign_method"], "md5");
    assert!(r["baseline"].is_null());
    assert!(
        r["server"].is_null(),
        "an external server without --server-pid"
    );
    assert!(r["machine"]["loadavg_before"].is_string());
    assert_eq!(v["vouchers"], 80);
    assert_eq!(v["mismatched_vouchers"], 0);
    assert_eq!(v["voucher_mismatches"], json!([]));
    assert!(report.to_text().contains("every order and voucher matches"));
    report.verdict().unwrap();
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
async fn a_paced_run_sends_no_more_than_its_rate_and_reports_how_late_it_sent() {
    // 16 connections unpaced would send thousands of requests in a second; at 200/s the run
    // sends one per slot, and no slot is handed out before it is due.
    let rate = 200.0;
    let dir = tempfile::tempdir().unwrap();
    let timeline = dir.path().join("timeline.csv");
    let report = execute(bench_args(&[
        "--timeline",
        timeline.to_str().unwrap(),
        "--spawn",
        "--orders",
        "20",
        "--vouchers-per-order",
        "5",
        "--capacity",
        "20",
        "--duration",
        "1500ms",
        "--warmup",
        "0",
        "--concurrency",
        "16",
        "--rate",
        "200",
    ]))
    .await
    .unwrap();
    let r = serde_json::to_value(&report).unwrap();
    assert_eq!(r["verification"]["ok"], true, "{r:#}");
    assert_eq!(r["result"]["unexpected"], 0, "{r:#}");
    assert_eq!(r["load"]["rate"], rate);
    let requests = r["result"]["requests"].as_f64().unwrap();
    let elapsed = r["result"]["elapsed_s"].as_f64().unwrap();
    // Slots are due from the run's start; the last answer can come a little after the last
    // slot, never a slot before its time.
    assert!(
        requests <= rate * elapsed + 2.0,
        "{requests} requests in {elapsed} s at {rate}/s"
    );
    assert!(requests >= 100.0, "{requests} requests in {elapsed} s");
    let late = &r["result"]["send_lateness_ms"];
    let lat = &r["result"]["latency_ms"];
    for p in ["p50", "p90", "p99", "max"] {
        // Each request's lateness is part of its latency, so every quantile is too.
        assert!(
            late[p].as_f64().unwrap() <= lat[p].as_f64().unwrap(),
            "{p}: sent {late} late, answered {lat}"
        );
    }
    assert!(report.to_text().contains("sent late   p50"));

    // One line per measured request, in scheduled order, at most one slot per 1/rate.
    let text = std::fs::read_to_string(&timeline).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("scheduled_unix_us,latency_us,sent_late_us")
    );
    let rows: Vec<[u64; 3]> = lines
        .map(|l| {
            let f: Vec<u64> = l.split(',').map(|v| v.parse().unwrap()).collect();
            [f[0], f[1], f[2]]
        })
        .collect();
    assert_eq!(rows.len() as f64, requests);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    for pair in rows.windows(2) {
        assert!(pair[0][0] <= pair[1][0], "{pair:?}");
    }
    let span_us = rows[rows.len() - 1][0] - rows[0][0];
    assert!(
        span_us as f64 >= (rows.len() - 1) as f64 * 1e6 / rate - 2.0,
        "{} slots in {span_us} µs",
        rows.len()
    );
    for [at, latency, late] in &rows {
        assert!(now_us - at < 60_000_000, "{at} is not a recent Unix time");
        assert!(
            late <= latency,
            "sent {late} µs late, answered in {latency}"
        );
    }
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
    // CPU and bytes written are divided by what was acknowledged between the same two
    // readings of the server: here at most the 60 requests, every one a fresh use.
    let srv = &r["server"];
    let acknowledged = srv["acknowledged_verifies"].as_u64().unwrap();
    assert!((1..=60).contains(&acknowledged), "{srv:#}");
    let cpu_s = srv["cpu_s"].as_f64().unwrap();
    let per_verify = srv["cpu_us_per_acknowledged_verify"].as_f64().unwrap();
    assert!(
        (per_verify - cpu_s * 1e6 / acknowledged as f64).abs() < 1e-6,
        "{srv:#}"
    );
    if let Some(written) = srv["written_bytes"].as_u64() {
        let each = srv["written_bytes_per_acknowledged_verify"]
            .as_f64()
            .unwrap();
        assert!(
            (each - written as f64 / acknowledged as f64).abs() < 1e-6,
            "{srv:#}"
        );
        assert!(report.to_text().contains("KB per acknowledged verify"));
    }
    assert!(report.to_text().contains("µs per acknowledged verify"));
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

/// A proxy in front of a test server that, once the bench has run its load, makes the ledger
/// disagree with it on single vouchers while every order's total stays right: on the first
/// `GET /admin/orders/{id}` of each bench app (the verification pass has begun; the load is
/// over), it gives back one use of one code of that order (an operator's reversal) and records
/// one new use of another code (a signed verify as the bench's own app, whose key and secret it
/// saw at registration). Everything else is passed through unchanged, the load included.
#[derive(Debug)]
struct MovingProxy {
    app: TestApp,
    /// The bench app registered last and not yet used to move a use: (key, secret).
    pending: Mutex<Option<(String, String)>>,
    /// What was moved, one entry per bench run.
    moved: Mutex<Vec<Moved>>,
}

/// One use moved from `from` to `to` within `order_id`, every code having had `uses` uses.
#[derive(Debug, Clone)]
struct Moved {
    order_id: i64,
    from: String,
    to: String,
    uses: i64,
}

impl MovingProxy {
    /// Starts the proxy in front of `app`; returns it and its base URL.
    async fn start(app: TestApp) -> (Arc<Self>, String) {
        let proxy = Arc::new(Self {
            app,
            pending: Mutex::new(None),
            moved: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(Self::forward)
            .with_state(Arc::clone(&proxy));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (proxy, url)
    }

    fn moved(&self) -> Vec<Moved> {
        self.moved.lock().unwrap().clone()
    }

    async fn forward(State(proxy): State<Arc<Self>>, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let body = to_bytes(body, 16 << 20).await.unwrap();
        let path = parts.uri.path().to_owned();
        if parts.method == Method::POST && path == "/admin/apps" {
            let app: Value = serde_json::from_slice(&body).unwrap();
            let key = app["app_key"].as_str().unwrap().to_owned();
            let secret = app["app_secret"].as_str().unwrap().to_owned();
            *proxy.pending.lock().unwrap() = Some((key, secret));
        }
        if parts.method == Method::GET {
            let order_id = path
                .strip_prefix("/admin/orders/")
                .and_then(|id| id.parse::<i64>().ok());
            let vendor = order_id.and_then(|_| proxy.pending.lock().unwrap().take());
            if let (Some(order_id), Some((key, secret))) = (order_id, vendor) {
                let moved = proxy.move_one_use(order_id, &key, &secret).await;
                proxy.moved.lock().unwrap().push(moved);
            }
        }
        let mut outgoing = proxy
            .app
            .http
            .request(parts.method, proxy.app.url(&parts.uri.to_string()))
            .body(body);
        for name in ["authorization", "content-type"] {
            if let Some(value) = parts.headers.get(name) {
                outgoing = outgoing.header(name, value);
            }
        }
        let answer = outgoing.send().await.unwrap();
        let mut response = Response::builder().status(answer.status());
        if let Some(ct) = answer.headers().get("content-type") {
            response = response.header("content-type", ct);
        }
        response
            .body(Body::from(answer.bytes().await.unwrap()))
            .unwrap()
    }

    /// Reverses one use of the order's first used code and verifies one more use of another,
    /// and checks that the order's total is what it was.
    async fn move_one_use(&self, order_id: i64, key: &str, secret: &str) -> Moved {
        let before = self.app.order(order_id).await;
        let from = before.vouchers.iter().find(|v| v.used > 0).unwrap();
        let to = before
            .vouchers
            .iter()
            .find(|v| v.confirm_code != from.confirm_code && v.used < v.capacity)
            .unwrap();
        let _: Value = self
            .app
            .admin_post_ok(
                &format!("/admin/orders/{order_id}/reversals"),
                json!({"confirm_code": from.confirm_code, "quantity": 1,
                       "reason": "moved to another code by the bench test"}),
                201,
            )
            .await;
        let reply = self
            .app
            .call(&TopCall::verify(key, secret).set("order_id", order_id).set(
                "voucher_infos",
                voucher_infos(&[(&to.confirm_code, 1, &minutes_ago(1))]),
            ))
            .await;
        assert_eq!(
            reply.json()["travel_ticket_order_verify_response"]["is_success"],
            true,
            "{}",
            reply.text()
        );
        let after = self.app.order(order_id).await;
        assert_eq!(after.used, before.used, "the order's total must not change");
        assert_eq!(from.used, to.used, "every code had the same uses");
        Moved {
            order_id,
            from: from.confirm_code.clone(),
            to: to.confirm_code.clone(),
            uses: from.used,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_moved_to_another_code_of_its_order_fails_the_run_naming_the_vouchers() {
    let (proxy, url) = MovingProxy::start(spawn_app().await).await;
    // 3 orders × 2 codes, 12 fresh uses: every code is used exactly twice.
    let args = || {
        bench_args(&[
            "--url",
            &url,
            "--admin-token",
            ADMIN_TOKEN,
            "--orders",
            "3",
            "--vouchers-per-order",
            "2",
            "--capacity",
            "4",
            "--requests",
            "12",
            "--warmup",
            "0",
            "--concurrency",
            "2",
        ])
    };
    let report = execute(args()).await.unwrap();
    let moved = proxy.moved();
    assert_eq!(moved.len(), 1, "{moved:?}");
    let m = &moved[0];
    assert_eq!(m.uses, 2, "{m:?}");
    assert_eq!((m.from.as_str(), m.to.as_str()), ("BENCH0000", "BENCH0001"));
    let r = serde_json::to_value(&report).unwrap();
    let v = &r["verification"];
    assert_eq!(v["mismatched_orders"], 0, "every total agrees: {v:#}");
    assert_eq!(v["acknowledged_uses"], 12);
    assert_eq!(v["ledger_uses"], 12);
    assert_eq!(v["vouchers"], 6);
    assert_eq!(v["mismatched_vouchers"], 2, "{v:#}");
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["voucher_mismatches"],
        json!([
            {"order_id": m.order_id, "confirm_code": "****0000", "acknowledged": 2, "unknown": 0, "ledger": 1},
            {"order_id": m.order_id, "confirm_code": "****0001", "acknowledged": 2, "unknown": 0, "ledger": 3},
        ])
    );
    let text = report.to_text();
    assert!(
        text.contains("MISMATCH on 0 orders and 2 vouchers"),
        "{text}"
    );
    let from = format!(
        "order {}, code ****0000: 2 acknowledged, 1 in the ledger",
        m.order_id
    );
    let to = format!(
        "order {}, code ****0001: 2 acknowledged, 3 in the ledger",
        m.order_id
    );
    assert!(text.contains(&from), "{text}");
    let err = format!("{:#}", report.verdict().unwrap_err());
    assert!(err.contains(&from) && err.contains(&to), "{err}");
    assert!(
        err.contains("2 of 6 vouchers and 0 of 3 orders disagree"),
        "{err}"
    );

    // The command itself (report printed, then the verdict) fails the same way.
    let err = format!("{:#}", run(args()).await.unwrap_err());
    let moved = proxy.moved();
    assert_eq!(moved.len(), 2, "{moved:?}");
    let again = format!(
        "order {}, code ****0000: 2 acknowledged, 1 in the ledger",
        moved[1].order_id
    );
    assert!(err.contains(&again), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_uses_refused_by_the_apps_rate_limit_fail_the_run_though_the_ledger_matches() {
    // A server whose default rate limit lets a new app make one call a minute: the bench's
    // first fresh use is acknowledged, the other nine are refused with code 7 instead.
    let app = spawn_app_with(
        |s| s.default_rate_limit = RateLimit::parse("1/m", None).unwrap(),
        Arc::new(SystemClock),
    )
    .await;
    let url = format!("http://{}", app.addr);
    let args = || {
        bench_args(&[
            "--url",
            &url,
            "--admin-token",
            ADMIN_TOKEN,
            "--orders",
            "2",
            "--vouchers-per-order",
            "2",
            "--capacity",
            "5",
            "--requests",
            "10",
            "--warmup",
            "0",
            "--concurrency",
            "1",
        ])
    };
    let report = execute(args()).await.unwrap();
    let r = serde_json::to_value(&report).unwrap();
    assert_eq!(r["verification"]["ok"], true, "the ledger agrees: {r:#}");
    assert_eq!(r["verification"]["acknowledged_uses"], 1, "{r:#}");
    assert_eq!(r["result"]["unexpected"], 9, "{r:#}");
    assert_eq!(r["result"]["warmup_unexpected"], 0, "{r:#}");
    let limited: u64 = r["result"]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["code"] == 7)
        .map(|a| a["count"].as_u64().unwrap())
        .sum();
    assert_eq!(limited, 9, "{r:#}");
    assert!(report.to_text().contains("UNEXPECTED  9 answers"));
    let err = format!("{:#}", report.verdict().unwrap_err());
    assert!(
        err.contains("9 measured answers and 0 warm-up answers were not the one expected"),
        "{err}"
    );
    assert!(!err.contains("does not match"), "{err}");

    // The command itself: a new app, a new bucket, the same failure.
    let err = format!("{:#}", run(args()).await.unwrap_err());
    assert!(err.contains("9 measured answers"), "{err}");
}

/// Two servers on one PostgreSQL ledger, the load spread over both (`--url a,b`): the run
/// goes to both, and the ledger read back through the first holds exactly what either
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_two_servers_on_one_ledger_spreads_the_load_and_verifies() {
    let Some(db) = ticket_store::scratch::ScratchDatabase::fresh(ticket_store::Engine::Postgres)
    else {
        return;
    };
    let on_db = |s: &mut ticketd::settings::Settings| s.database_url = Some(db.url().to_owned());
    let a = spawn_app_with(on_db, Arc::new(SystemClock)).await;
    let b = spawn_app_with(on_db, Arc::new(SystemClock)).await;
    let urls = format!("http://{},http://{}", a.addr, b.addr);
    let report = execute(bench_args(&[
        "--url",
        &urls,
        "--admin-token",
        ADMIN_TOKEN,
        "--orders",
        "10",
        "--vouchers-per-order",
        "2",
        "--requests",
        "200",
        "--warmup",
        "0",
        "--concurrency",
        "4",
    ]))
    .await
    .unwrap();
    let r = serde_json::to_value(&report).unwrap();
    assert_eq!(r["verification"]["ok"], true, "{r:#}");
    assert_eq!(r["result"]["unexpected"], 0, "{r:#}");
    let description = r["target"]["description"].as_str().unwrap();
    assert!(
        description.starts_with("2 external ticketd servers"),
        "{description}"
    );
    // Both took calls: each audited some of the verifies.
    for app in [&a, &b] {
        let metrics = app.metrics().await;
        assert!(
            metrics.contains(
                "ticketd_top_calls_total{method=\"taobao.travel.ticket.order.verify\",code=\"0\""
            ),
            "{}",
            metrics
                .lines()
                .filter(|l| l.contains("top_calls"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    report.verdict().unwrap();
}
