//! A three-node MariaDB Galera cluster (`scripts/cluster/galera`), every node written by its
//! own ticketd process (issue 17). In Galera a row lock holds only on its own node until
//! commit: two nodes changing the same voucher both go ahead and one fails certification at
//! commit (error 1213), which ticketd runs again like any deadlock. The capacity of a code
//! must hold across the nodes as it does on one server.

use chrono::Utc;
use serde_json::{json, Value};
use top_client::{RetryPolicy, TopClient, VerifyParams, VoucherInfo};
use top_protocol::timestamp::format_beijing;

use crate::cluster::{running_as, Cluster};
use crate::helpers::ServedChild;

const TOKEN: &str = "galera-admin-token";
const KEY: &str = "galera-vendor";
const SECRET: &str = "galera-secret-0123456789";

/// Whether this machine can run `scripts/cluster/galera`: MariaDB's server, and root (the
/// script installs galera-4 when missing, and runs the servers as `mysql`).
fn cluster_possible() -> bool {
    let server = std::process::Command::new("sh")
        .args(["-c", "command -v mariadbd && command -v mariadb-install-db"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    server && running_as("root")
}

/// The three-node cluster and its URLs; `None`: skip.
fn galera() -> Option<(Cluster, Vec<String>)> {
    let started = Cluster::start("galera", cluster_possible(), "MariaDB's server and root")?;
    assert_eq!(started.1.len(), 3, "{:?}", started.1);
    Some(started)
}

/// A use sent under load: its number, the node (0-2) it went to, whether it was
/// acknowledged, and the `sub_code` of a refusal.
type Answered = (i64, usize, bool, Option<String>);

/// One ticketd process on one node.
struct Node {
    served: ServedChild,
    client: TopClient,
}

impl Node {
    async fn start(url: &str) -> Node {
        // A lost node shows within a second rather than the default acquire timeout.
        let args = ["--database-url", url, "--db-acquire-timeout", "1s"];
        let served = ServedChild::start(&args, TOKEN).await;
        // No client retries: what ticketd answers at each moment is what the test sees.
        let client = TopClient::builder(format!("{}/router/rest", served.base), KEY, SECRET)
            .retry_policy(RetryPolicy::never())
            .build()
            .unwrap();
        Node { served, client }
    }

    /// The order as this node's process reads it (`None` until it is there).
    async fn order(&self, id: i64) -> Option<Value> {
        self.served
            .admin_try_get(&format!("/admin/orders/{id}"))
            .await
    }
}

/// The vendor's app and an order of one code of `capacity`, written through the first node,
/// and waited for until every node reads it (Galera applies a commit on the other nodes just
/// after it).
async fn given_order_on_every_node(nodes: &[Node], order: i64, code: &str, capacity: i64) {
    nodes[0]
        .served
        .admin_post("/admin/apps", json!({"app_key": KEY, "app_secret": SECRET}))
        .await;
    nodes[0]
        .served
        .admin_post(
            "/admin/orders",
            json!({"order_id": order, "app_key": KEY, "quantity": 1,
                "created_at": format_beijing(Utc::now() - chrono::Duration::days(1)),
                "vouchers": [{"confirm_code": code, "quantity": capacity}]}),
        )
        .await;
    for node in nodes {
        let mut tries = 0;
        while node.order(order).await.is_none() {
            tries += 1;
            assert!(tries < 100, "the order did not reach every node");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Waits until every node's process reads `used` uses of `order` (each node applies the
/// others' commits just after them), and fails naming the node that does not.
async fn every_node_reads_used(nodes: &[Node], order: i64, used: i64) {
    for (n, node) in nodes.iter().enumerate() {
        let mut tries = 0;
        loop {
            let read = node.order(order).await.unwrap();
            if read["used"] == json!(used) {
                break;
            }
            tries += 1;
            assert!(
                tries < 100,
                "node {}: used {} of {used}",
                n + 1,
                read["used"]
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_racing_uses_over_three_written_nodes_accept_exactly_the_capacity() {
    let Some((cluster, urls)) = galera() else {
        return;
    };
    // All three at once, on a fresh cluster: GET_LOCK would hold on each node alone and two
    // would migrate at once (one failing on the tables the other created); the replicated
    // migration lease makes them take turns.
    let (a, b, c) = tokio::join!(
        Node::start(&urls[0]),
        Node::start(&urls[1]),
        Node::start(&urls[2])
    );
    let nodes = [a, b, c];
    // They did take turns through the lease: its table is there, replicated, and free.
    let port = urls[1]
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap();
    let lease = std::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            port,
            "-u",
            "ticketd",
            "-pticketd",
            "-N",
            "-B",
        ])
        .args([
            "ticketd",
            "-e",
            "SELECT COUNT(*) FROM ticketd_migration_lock",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&lease.stdout).trim(),
        "0",
        "{}",
        String::from_utf8_lossy(&lease.stderr)
    );
    const ORDER: i64 = 17_101;
    const CAPACITY: i64 = 10;
    given_order_on_every_node(&nodes, ORDER, "GALERA-1", CAPACITY).await;

    // 64 distinct uses (each its own gate time), all at once, spread over the three nodes.
    let gate = Utc::now() - chrono::Duration::hours(1);
    let params: Vec<VerifyParams> = (0..64)
        .map(|n| VerifyParams {
            order_id: Some(ORDER),
            voucher_infos: vec![VoucherInfo {
                confirm_code: "GALERA-1".to_owned(),
                used_quantity: 1,
                used_date: Some(format_beijing(gate + chrono::Duration::seconds(n))),
            }],
            ..VerifyParams::default()
        })
        .collect();
    let barrier = tokio::sync::Barrier::new(params.len());
    let answers = futures::future::join_all(params.iter().enumerate().map(|(i, p)| {
        let node = &nodes[i % 3];
        let barrier = &barrier;
        async move {
            barrier.wait().await;
            node.client.verify(p).await
        }
    }))
    .await;
    let mut accepted = 0;
    let mut busy = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        match answer {
            Ok(r) => {
                assert!(r.is_success);
                accepted += 1;
            }
            Err(e) => {
                let api = e.api().unwrap_or_else(|| panic!("use {i}: {e}"));
                match api.sub_code.as_deref() {
                    Some("isv.verify-num-exceed") => {}
                    // Too many certification conflicts in a row: nothing written; the vendor
                    // sends it again.
                    Some(s) if s.starts_with("isp.") => busy.push(i),
                    other => panic!("use {i}: unexpected refusal {other:?}: {api:?}"),
                }
            }
        }
    }
    eprintln!(
        "{accepted} accepted, {} answered busy at first (sent again)",
        busy.len()
    );
    for i in busy {
        match nodes[i % 3].client.verify(&params[i]).await {
            Ok(r) => {
                assert!(r.is_success);
                accepted += 1;
            }
            Err(e) => {
                let api = e.api().unwrap_or_else(|| panic!("use {i}: {e}"));
                assert_eq!(
                    api.sub_code.as_deref(),
                    Some("isv.verify-num-exceed"),
                    "{api:?}"
                );
            }
        }
    }
    assert_eq!(accepted, CAPACITY, "exactly the capacity is accepted");
    // Every node's process reads the same count.
    every_node_reads_used(&nodes, ORDER, CAPACITY).await;
    drop(nodes);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_stops_its_ticketd_the_others_go_on_and_it_rejoins() {
    let Some((cluster, urls)) = galera() else {
        return;
    };
    let mut nodes = Vec::new();
    for url in &urls {
        nodes.push(Node::start(url).await);
    }
    let nodes = std::sync::Arc::new(nodes);
    const ORDER: i64 = 17_201;
    given_order_on_every_node(&nodes, ORDER, "GALERA-KILL", 1_000_000).await;

    // Load on all three: each use its own gate time, so a use answered with an error can be
    // sent again and still count once.
    let gate = Utc::now() - chrono::Duration::hours(2);
    let use_of = move |n: i64| VerifyParams {
        order_id: Some(ORDER),
        voucher_infos: vec![VoucherInfo {
            confirm_code: "GALERA-KILL".to_owned(),
            used_quantity: 1,
            used_date: Some(format_beijing(gate + chrono::Duration::seconds(n))),
        }],
        ..VerifyParams::default()
    };
    let next = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers: std::sync::Arc<std::sync::Mutex<Vec<Answered>>> = std::sync::Arc::default();
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (nodes, next, stop, answers) =
                (nodes.clone(), next.clone(), stop.clone(), answers.clone());
            tokio::spawn(async move {
                let node = w % 3;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= 6_000 {
                        break;
                    }
                    let answer = nodes[node].client.verify(&use_of(n)).await;
                    let (ok, sub) = match &answer {
                        Ok(r) => (r.is_success, None),
                        Err(e) => (false, e.api().and_then(|a| a.sub_code.clone())),
                    };
                    answers.lock().unwrap().push((n, node, ok, sub));
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    // SIGKILL node 3's server.
    let cut_at = answers.lock().unwrap().len();
    let pid = cluster.pid(3);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut tries = 0;
    while nodes[2].served.ready().await != 503 {
        tries += 1;
        assert!(tries < 200, "node 3's ticketd still says ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The two others stall until Galera declares node 3 gone (evs.suspect_timeout, 5 s by
    // default), then go on as a cluster of two.
    let killed_at = std::time::Instant::now();
    let during = loop {
        let during: Vec<_> = answers.lock().unwrap()[cut_at..].to_vec();
        let others_go_on = during.iter().any(|a| a.1 != 2 && a.2);
        let three_refuses = during.iter().any(|a| a.1 == 2 && !a.2);
        if others_go_on && three_refuses {
            break during;
        }
        assert!(
            killed_at.elapsed() < std::time::Duration::from_secs(30),
            "30 s after node 3 was killed: the others go on: {others_go_on}, node 3's ticketd \
             refuses: {three_refuses}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    eprintln!(
        "the two other nodes acknowledged again {:?} after node 3 was killed",
        killed_at.elapsed()
    );
    // Node 3's ticketd refuses as the platform does when busy; a call whose commit was in
    // flight when the server died, and whose fate the lookup by request id could not learn
    // from a dead server, is answered `isv.commit-outcome-unknown` instead. Either way the use
    // is sent again below, and must then count once.
    let refused_on_3: Vec<_> = during.iter().filter(|a| a.1 == 2 && !a.2).collect();
    for a in &refused_on_3 {
        assert!(
            a.3.as_deref()
                .is_some_and(|s| s.starts_with("isp.") || s == "isv.commit-outcome-unknown"),
            "node 3's ticketd: {a:?}"
        );
    }
    let unknown = refused_on_3
        .iter()
        .filter(|a| a.3.as_deref() == Some("isv.commit-outcome-unknown"))
        .count();
    let node_3_workers = (0..6).filter(|w| w % 3 == 2).count();
    assert!(
        unknown <= node_3_workers,
        "only calls in flight at the kill (one per worker on node 3) may have an unknown outcome: \
         {unknown}"
    );

    // Node 3 rejoins; its ticketd is ready again without a restart.
    cluster.run(&["restart-node", "3"]);
    let mut tries = 0;
    while nodes[2].served.ready().await != 200 {
        tries += 1;
        assert!(
            tries < 300,
            "node 3's ticketd is not ready after its node rejoined"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    // Every use not acknowledged is sent again (to node 1), as a vendor would: a busy answer
    // (`isp.service-busy`: certification conflicts past the retries, or the node not synced
    // while node 3 catches up from it) is sent again after a pause, for up to 30 s; any other
    // answer fails the test. Then each use is in the ledger exactly once, read through every
    // node.
    let answers = answers.lock().unwrap().clone();
    let sent = answers.len() as i64;
    let again: Vec<i64> = answers.iter().filter(|a| !a.2).map(|a| a.0).collect();
    let mut busy = 0;
    for n in &again {
        let started = std::time::Instant::now();
        loop {
            let r = nodes[0].client.verify(&use_of(*n)).await;
            let is_busy = matches!(
                &r,
                Err(top_client::ClientError::Api(e))
                    if e.sub_code.as_deref() == Some("isp.service-busy")
            );
            if is_busy && started.elapsed() < std::time::Duration::from_secs(30) {
                busy += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            assert!(r.as_ref().is_ok_and(|r| r.is_success), "use {n}: {r:?}");
            break;
        }
    }
    eprintln!("{busy} busy answers while sending again");
    eprintln!(
        "{sent} uses, {} acknowledged under load, {} sent again",
        answers.iter().filter(|a| a.2).count(),
        again.len()
    );
    every_node_reads_used(&nodes, ORDER, sent).await;
    drop(cluster);
}
