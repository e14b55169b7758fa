//! Two real `ticketd serve` processes on one PostgreSQL database (and on one MariaDB/MySQL
//! database): racing verifies of the same vouchers, sent through our Rust SDK (`top-client`)
//! and split across both processes, are counted exactly — every voucher used up to its capacity
//! and no further, every retry recognised by whichever process it reaches.
//!
//! Each run uses a scratch database of its own (`ticket_store::scratch`); without a server the
//! test prints how to start it and passes, unless `CI` is set.

use chrono::Utc;
use serde_json::{json, Value};
use ticket_store::scratch::ScratchDatabase;
use ticket_store::Engine;
use top_client::{TopClient, VerifyParams, VoucherInfo};
use top_protocol::timestamp::format_beijing;

use crate::helpers::ServedChild;

const TOKEN: &str = "multiprocess-admin-token";
const KEY: &str = "mp-vendor";
const SECRET: &str = "mp-secret-0123456789";

/// A `ticketd serve` child process on port 0 ([`ServedChild`]), called as the vendors do.
struct Server(ServedChild);

impl std::ops::Deref for Server {
    type Target = ServedChild;

    fn deref(&self) -> &ServedChild {
        &self.0
    }
}

impl Server {
    /// Starts `ticketd serve` on `url` and waits for its "listening on" line.
    async fn start(url: &str) -> Self {
        let args = ["--database-url", url, "--db-max-connections", "6"];
        Self(ServedChild::start(&args, TOKEN).await)
    }

    fn client(&self) -> TopClient {
        TopClient::builder(format!("{}/router/rest", self.base), KEY, SECRET)
            .build()
            .unwrap()
    }
}

/// (order id, [(code, capacity)]).
const ORDERS: &[(i64, &[(&str, i64)])] = &[
    (7001, &[("MP-A", 5)]),
    (7002, &[("MP-B", 3)]),
    (7003, &[("MP-C1", 4), ("MP-C2", 2)]),
];

/// Distinct uses sent per voucher beyond its capacity.
const EXTRA: i64 = 6;

async fn racing_verifies_through_two_processes_are_counted_exactly(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let (a, b) = tokio::join!(Server::start(db.url()), Server::start(db.url()));
    a.admin_post("/admin/apps", json!({"app_key": KEY, "app_secret": SECRET}))
        .await;
    let paid = format_beijing(Utc::now() - chrono::Duration::days(1));
    for (order_id, vouchers) in ORDERS {
        let quantity: i64 = vouchers.iter().map(|(_, q)| q).sum();
        a.admin_post(
            "/admin/orders",
            json!({"order_id": order_id, "app_key": KEY, "quantity": quantity,
                   "created_at": paid,
                   "vouchers": vouchers.iter().map(|(c, q)| json!({"confirm_code": c, "quantity": q}))
                       .collect::<Vec<_>>()}),
        )
        .await;
    }

    // Every distinct use (code, gate time) is sent twice, once to each process: the second
    // copy is a vendor's retry and must never count again.
    let clients = [a.client(), b.client()];
    let gate = Utc::now() - chrono::Duration::minutes(30);
    let mut calls = Vec::new();
    for (order_id, vouchers) in ORDERS {
        for (code, capacity) in *vouchers {
            for n in 0..capacity + EXTRA {
                let params = VerifyParams {
                    order_id: Some(*order_id),
                    voucher_infos: vec![VoucherInfo {
                        confirm_code: (*code).to_owned(),
                        used_quantity: 1,
                        used_date: Some(format_beijing(gate + chrono::Duration::seconds(n))),
                    }],
                    ..VerifyParams::default()
                };
                for copy in 0..2 {
                    calls.push(((*code, n), (n as usize + copy) % 2, params.clone()));
                }
            }
        }
    }
    let barrier = tokio::sync::Barrier::new(calls.len());
    let answers = futures::future::join_all(calls.iter().map(|(use_id, server, params)| {
        let client = &clients[*server];
        let barrier = &barrier;
        async move {
            barrier.wait().await;
            (*use_id, client.verify(params).await)
        }
    }))
    .await;

    // Both copies of a use get the same answer: applied-then-replayed, or refused twice.
    let mut by_use: std::collections::BTreeMap<(&str, i64), Vec<bool>> = Default::default();
    for (use_id, answer) in &answers {
        let ok = match answer {
            Ok(r) => {
                assert!(r.is_success);
                true
            }
            Err(e) => {
                let api = e.api().unwrap_or_else(|| panic!("{use_id:?}: {e}"));
                assert_eq!(
                    api.sub_code.as_deref(),
                    Some("isv.verify-num-exceed"),
                    "{use_id:?}: {api:?}"
                );
                false
            }
        };
        by_use.entry(*use_id).or_default().push(ok);
    }
    for (use_id, oks) in &by_use {
        assert!(
            oks == &[true, true] || oks == &[false, false],
            "{use_id:?}: the two copies were answered {oks:?}"
        );
    }

    for (order_id, vouchers) in ORDERS {
        // Read through the other process than the one that created the order.
        let order = b.admin_get(&format!("/admin/orders/{order_id}")).await;
        for (code, capacity) in *vouchers {
            let used = order["vouchers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["confirm_code"] == *code)
                .unwrap()["used"]
                .as_i64()
                .unwrap();
            assert_eq!(used, *capacity, "{code} on {}", engine.name());
            let accepted_uses = by_use
                .iter()
                .filter(|((c, _), oks)| c == code && oks[0])
                .count() as i64;
            assert_eq!(accepted_uses, *capacity, "{code}: uses answered success");
        }
        let events = order["events"].as_array().unwrap();
        let count = |outcome: &str, reason: &str| {
            events
                .iter()
                .filter(|e| {
                    e["action"] == "taobao.travel.ticket.order.verify"
                        && e["outcome"] == outcome
                        && e["reason"] == reason
                })
                .count() as i64
        };
        let capacity: i64 = vouchers.iter().map(|(_, q)| q).sum();
        assert_eq!(
            count("accepted", "applied"),
            capacity,
            "applied on {order_id}"
        );
        assert_eq!(
            count("replayed", "replayed"),
            capacity,
            "replays on {order_id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_database_count_racing_verifies_exactly() {
    racing_verifies_through_two_processes_are_counted_exactly(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_mariadb_database_count_racing_verifies_exactly() {
    racing_verifies_through_two_processes_are_counted_exactly(Engine::MySql).await;
}

/// Follows `GET /admin/events` on `server` from `after` until `stop` is set and a last read
/// comes back empty; returns every event read.
async fn follow_feed(
    server: &Server,
    mut after: i64,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let finished = stop.load(std::sync::atomic::Ordering::SeqCst);
        let page = server
            .admin_get(&format!("/admin/events?after={after}&limit=37&wait=1"))
            .await;
        let events = page["events"].as_array().unwrap();
        for event in events {
            assert_eq!(event["seq"], after + 1, "a gap or a repeat after {after}");
            after += 1;
        }
        assert_eq!(page["next"], after);
        if events.is_empty() && finished {
            return seen;
        }
        seen.extend(events.iter().cloned());
    }
}

/// Two processes write one ledger through 64 concurrent vendors while a reader on each
/// follows the change feed: both readers see the same events, each once, in `seq` order
/// without a gap, and every verify answered success is exactly one `ticketd.voucher.used`.
async fn readers_follow_the_feed_while_two_processes_write(url: &str, name: &str) {
    let (a, b) = tokio::join!(Server::start(url), Server::start(url));
    a.admin_post("/admin/apps", json!({"app_key": KEY, "app_secret": SECRET}))
        .await;
    let paid = format_beijing(Utc::now() - chrono::Duration::days(1));
    let orders: Vec<i64> = (8001..=8008).collect();
    for order_id in &orders {
        a.admin_post(
            "/admin/orders",
            json!({"order_id": order_id, "app_key": KEY, "quantity": 1000, "created_at": paid,
                   "vouchers": [{"confirm_code": format!("FEED-{order_id}"), "quantity": 1000}]}),
        )
        .await;
    }
    let start = a.admin_get("/admin/events?after=0&limit=1000").await["next"]
        .as_i64()
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let clients = [a.client(), b.client()];
    let gate = Utc::now() - chrono::Duration::hours(3);
    let writers = futures::future::join_all((0..64_i64).map(|w| {
        let client = &clients[usize::try_from(w % 2).unwrap()];
        let orders = &orders;
        async move {
            let mut acknowledged = Vec::new();
            for n in 0..8_i64 {
                let order_id = orders[usize::try_from((w + n) % 8).unwrap()];
                let params = VerifyParams {
                    order_id: Some(order_id),
                    voucher_infos: vec![VoucherInfo {
                        confirm_code: format!("FEED-{order_id}"),
                        used_quantity: 1,
                        used_date: Some(format_beijing(
                            gate + chrono::Duration::seconds(w * 100 + n),
                        )),
                    }],
                    ..VerifyParams::default()
                };
                let answer = client.verify(&params).await.expect("verify");
                assert!(answer.is_success);
                acknowledged.push((order_id, gate + chrono::Duration::seconds(w * 100 + n)));
            }
            acknowledged
        }
    }));
    let (acknowledged, seen_a, seen_b) = tokio::join!(
        async {
            let all = writers.await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            all
        },
        follow_feed(&a, start, &stop),
        follow_feed(&b, start, &stop),
    );
    assert_eq!(seen_a, seen_b, "both readers see the same feed on {name}");
    // Each use is one event, found by its order and gate time (second precision, as sent).
    let mut used: std::collections::HashMap<(i64, i64), usize> = Default::default();
    for event in &seen_a {
        if event["type"] == "ticketd.voucher.used" {
            let order = event["data"]["order_id"].as_i64().unwrap();
            let info = &event["data"]["detail"]["request"]["voucher_infos"][0];
            let at = info["used_date"]
                .as_str()
                .and_then(top_protocol::timestamp::parse_beijing)
                .unwrap_or_else(|| panic!("{event}"))
                .timestamp();
            *used.entry((order, at)).or_default() += 1;
        }
    }
    let acknowledged: Vec<(i64, i64)> = acknowledged
        .into_iter()
        .flatten()
        .map(|(order, at)| (order, at.timestamp()))
        .collect();
    assert_eq!(acknowledged.len(), 512);
    for key in &acknowledged {
        assert_eq!(used.get(key), Some(&1), "{key:?} on {name}");
    }
    assert_eq!(
        used.len(),
        512,
        "no event without an acknowledged verify on {name}"
    );
}

async fn feed_on(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    readers_follow_the_feed_while_two_processes_write(db.url(), engine.name()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_follow_the_feed_while_two_processes_write_postgres() {
    feed_on(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_follow_the_feed_while_two_processes_write_mariadb() {
    feed_on(Engine::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_follow_the_feed_while_two_processes_write_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    readers_follow_the_feed_while_two_processes_write(&url, "sqlite").await;
}
