//! A PostgreSQL primary with a synchronous standby (`scripts/cluster/pg-standby`), ticketd on
//! the multi-host URL, and the primary SIGKILLed under load while the standby is promoted
//! (issue 17): ticketd finds the new primary without a restart, within 10 s, and every use it
//! acknowledged — before, during and after the cut — is in the ledger exactly once.
//!
//! Every use is sent with its own gate time (`used_date`), so a vendor's retry of a call whose
//! answer was lost at the cut is recognised; after the load, every use that was not
//! acknowledged is sent again, as a vendor would, and the ledger must then hold each use
//! exactly once: nothing acknowledged lost, nothing counted twice.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use top_client::{RetryPolicy, TopClient, VerifyParams, VoucherInfo};
use top_protocol::timestamp::format_beijing;

use crate::cluster::{running_as, Cluster};
use crate::helpers::ServedChild;

const TOKEN: &str = "failover-admin-token";
const KEY: &str = "failover-vendor";
const SECRET: &str = "failover-secret-0123456789";
const ORDER: i64 = 17_001;
const CODE: &str = "FAILOVER-CODE";
/// Uses the load sends at most (one gate time per second, within the last two hours).
const MAX_USES: i64 = 6_000;

/// Whether this machine can run `scripts/cluster/pg-standby`: PostgreSQL's server binaries,
/// and root or the `postgres` user (PostgreSQL refuses to run as root).
fn cluster_possible() -> bool {
    let binaries = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().any(|d| d.path().join("bin/pg_ctl").exists()))
        .unwrap_or(false);
    binaries && running_as("postgres")
}

fn verify_params(gate: chrono::DateTime<Utc>, n: i64) -> VerifyParams {
    VerifyParams {
        order_id: Some(ORDER),
        voucher_infos: vec![VoucherInfo {
            confirm_code: CODE.to_owned(),
            used_quantity: 1,
            used_date: Some(format_beijing(gate + chrono::Duration::seconds(n))),
        }],
        ..VerifyParams::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promoted_standby_takes_over_and_every_acknowledged_use_is_kept_once() {
    let Some((cluster, urls)) = Cluster::start(
        "pg-standby",
        cluster_possible(),
        "PostgreSQL's server binaries and root",
    ) else {
        return;
    };
    let url = urls[0].clone();
    assert!(
        url.contains(',') && url.contains("target_session_attrs=read-write"),
        "{url}"
    );
    let args = ["--database-url", url.as_str(), "--db-max-connections", "8"];
    let server = ServedChild::start(&args, TOKEN).await;
    server
        .admin_post("/admin/apps", json!({"app_key": KEY, "app_secret": SECRET}))
        .await;
    server
        .admin_post(
            "/admin/orders",
            json!({"order_id": ORDER, "app_key": KEY, "quantity": 1,
                "created_at": format_beijing(Utc::now() - chrono::Duration::days(1)),
                "vouchers": [{"confirm_code": CODE, "quantity": 1_000_000}]}),
        )
        .await;

    // Load: eight vendors' gates, each use its own gate time. Half retry as the SDK does by
    // default; half never retry, so calls caught at the cut are answered with an error and
    // sent again at the end.
    let gateway = format!("{}/router/rest", server.base);
    let client = Arc::new(
        TopClient::builder(gateway.as_str(), KEY, SECRET)
            .build()
            .unwrap(),
    );
    let no_retry = Arc::new(
        TopClient::builder(gateway.as_str(), KEY, SECRET)
            .retry_policy(RetryPolicy::never())
            .build()
            .unwrap(),
    );
    let gate = Utc::now() - chrono::Duration::hours(2);
    let next = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // (use, acknowledged, when answered)
    let answers: Arc<Mutex<Vec<(i64, bool, Instant)>>> = Arc::default();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let client = if i % 2 == 0 { &client } else { &no_retry }.clone();
            let (next, stop, answers) = (next.clone(), stop.clone(), answers.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= MAX_USES {
                        break;
                    }
                    let ok = match client.verify(&verify_params(gate, n)).await {
                        Ok(r) => r.is_success,
                        Err(_) => false,
                    };
                    answers.lock().unwrap().push((n, ok, Instant::now()));
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acknowledged_before = answers.lock().unwrap().iter().filter(|a| a.1).count();
    assert!(acknowledged_before > 0, "the load runs before the cut");
    let cut = Instant::now();
    // Blocks this worker for the promotion's fraction of a second; the load runs on the
    // others.
    cluster.run(&["promote"]);
    // Keep the load on until the new primary has taken writes for a while.
    let recovered = loop {
        let first_after = answers
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.1 && a.2 > cut + Duration::from_millis(300))
            .map(|a| a.2)
            .min();
        if let Some(at) = first_after {
            break at.duration_since(cut);
        }
        assert!(
            cut.elapsed() < Duration::from_secs(30),
            "no verify acknowledged within 30 s of the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    eprintln!("first verify acknowledged by the new primary {recovered:?} after the cut");
    assert!(
        recovered <= Duration::from_secs(10),
        "ticketd took {recovered:?} to write to the promoted standby"
    );
    assert_eq!(server.ready().await, 200, "ready again without a restart");

    // Every use not acknowledged is sent again, as the vendor's system would.
    let answers = answers.lock().unwrap().clone();
    let sent = answers.len() as i64;
    let acknowledged = answers.iter().filter(|a| a.1).count();
    let unanswered: Vec<i64> = answers.iter().filter(|a| !a.1).map(|a| a.0).collect();
    for n in &unanswered {
        let r = client.verify(&verify_params(gate, *n)).await;
        assert!(
            r.as_ref().is_ok_and(|r| r.is_success),
            "use {n} sent again after the failover: {r:?}"
        );
    }
    eprintln!(
        "{sent} uses: {acknowledged} acknowledged under load, {} sent again",
        unanswered.len()
    );

    // The ledger, read from the new primary: each use exactly once.
    let order = server.admin_get(&format!("/admin/orders/{ORDER}")).await;
    assert_eq!(order["used"], json!(sent), "{order}");
    drop(cluster);
}
