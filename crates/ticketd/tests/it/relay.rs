//! The change events' relay to NATS JetStream, against a real `nats-server -js` started by the
//! test on a free port, on each of the three stores: the stream holds every event of the feed
//! once, in `seq` order, with the feed's bytes and `Nats-Msg-Id`; NATS stopped during writes
//! blocks nothing, and the relay catches up when it returns; a relaying process killed with
//! SIGKILL under load is replaced by the other one and restarted, and the stream still holds
//! every event once. Also: another publisher on the stream, and an event JetStream refuses.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ticketd::clock::SystemClock;
use tokio::process::{Child, Command};
use top_protocol::timestamp::format_beijing;

use serde_json::value::RawValue;
use ticket_store::scratch::ScratchDatabase;
use ticket_store::Engine;

use ticketd::admin::FeedPage;
use ticketd::test_support::ADMIN_TOKEN;

use crate::helpers::{assert_success_body, spawn_app_with, TestApp, TopCall};

const KEY: &str = "relay-vendor";
const SECRET: &str = "relay-secret-0123456789";
const STREAM: &str = "RELAY_TEST";
const TOKEN: &str = "relay-token";
/// The subject of the test's own messages on ticketd's stream (another publisher's).
const FOREIGN: &str = "ticketd.events.foreign";

/// A `nats-server -js` of the test's own (killed when dropped).
struct Nats {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    /// A server of its own, running. `None`: nats-server is not installed (outside CI).
    async fn start() -> Option<Self> {
        // The server is stopped and started again on this port during the outage tests, so a
        // port-0 port could be taken in between by an outbound connection.
        let port = crate::cluster::free_port();
        let mut nats = Self {
            port,
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        if !nats.spawn().await {
            assert!(
                std::env::var_os("CI").is_none(),
                "nats-server is needed (Debian: apt-get install nats-server)"
            );
            eprintln!("skipped: nats-server is not installed");
            return None;
        }
        Some(nats)
    }

    /// Starts the server (again, on the same port and store); false if there is none.
    async fn spawn(&mut self) -> bool {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(async_nats::connect(self.url()).await.unwrap())
    }

    /// Every message of the stream, in stream order: (subject, Nats-Msg-Id, payload).
    async fn messages(&self) -> Vec<(String, String, Vec<u8>)> {
        let js = self.jetstream().await;
        let mut stream = js.get_stream(STREAM).await.unwrap();
        let count = stream.info().await.unwrap().state.messages;
        let mut all = Vec::new();
        for seq in 1..=count {
            let m = stream.get_raw_message(seq).await.unwrap();
            let id = m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| format!("{:?}", m.headers));
            all.push((m.subject.to_string(), id, m.payload.to_vec()));
        }
        all
    }
}

/// An event as the feed gave it: its exact text, and parsed.
struct Fed {
    text: String,
    value: Value,
}

/// Every event of the feed of the server at `base`, following `next`.
async fn feed_at(http: &reqwest::Client, base: &str, token: &str) -> Vec<Fed> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let r = http
            .get(format!("{base}/admin/events?after={after}&limit=1000"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        let page: FeedPage<Box<RawValue>> = serde_json::from_str(&body).unwrap();
        if page.events.is_empty() {
            return all;
        }
        after = page.next;
        all.extend(page.events.iter().map(|raw| Fed {
            text: raw.get().to_owned(),
            value: serde_json::from_str(raw.get()).unwrap(),
        }));
    }
}

async fn feed(app: &TestApp) -> Vec<Fed> {
    feed_at(&app.http, &app.url(""), ADMIN_TOKEN).await
}

/// Waits until the stream holds as many messages as the feed has events (and `foreign` more,
/// published by the test), and answers ticketd's.
async fn caught_up(nats: &Nats, app: &TestApp, foreign: usize) -> Vec<(String, String, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = feed(app).await;
        let client = async_nats::connect(nats.url()).await;
        if let Ok(client) = client {
            let js = async_nats::jetstream::new(client);
            if let Ok(mut stream) = js.get_stream(STREAM).await {
                if let Ok(info) = stream.info().await {
                    if info.state.messages as usize >= events.len() + foreign {
                        let mut messages = nats.messages().await;
                        messages.retain(|(subject, _, _)| subject != FOREIGN);
                        return messages;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "the relay did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stream holds exactly the feed: same order, same bytes, ids as `Nats-Msg-Id`.
fn assert_stream_is_the_feed(messages: &[(String, String, Vec<u8>)], events: &[Fed]) {
    assert_eq!(messages.len(), events.len(), "one message per event");
    for ((subject, id, payload), event) in messages.iter().zip(events) {
        assert_eq!(
            String::from_utf8_lossy(payload),
            event.text,
            "the feed's bytes"
        );
        assert_eq!(id, event.value["id"].as_str().unwrap());
        let kind = event.value["type"].as_str().unwrap();
        assert_eq!(
            subject,
            &format!("ticketd.events.{}", &kind["ticketd.".len()..])
        );
    }
}

fn verify(order_id: i64, n: i64) -> TopCall {
    let at = chrono::Utc::now() - chrono::Duration::hours(1) + chrono::Duration::seconds(n);
    TopCall::verify(KEY, SECRET).set("order_id", order_id).set(
        "voucher_infos",
        json!([{"confirm_code": format!("RELAY-{order_id}"), "used_quantity": 1,
                "used_date": format_beijing(at)}])
        .to_string(),
    )
}

/// The ledger of a test: `None` for the in-process server's SQLite default, or a scratch
/// database of its own. The outer `None`: no such server here (outside CI), skip.
fn ledger(engine: Option<Engine>) -> Option<Option<ScratchDatabase>> {
    match engine {
        None => Some(None),
        Some(engine) => ScratchDatabase::fresh(engine).map(Some),
    }
}

/// A server on `ledger` relaying to `nats`.
async fn relaying_app(nats: &Nats, ledger: Option<&ScratchDatabase>) -> TestApp {
    let url = nats.url();
    let database_url = ledger.map(|db| db.url().to_owned());
    spawn_app_with(
        move |s| {
            s.events_nats = Some(url);
            s.events_stream = STREAM.to_owned();
            s.database_url = database_url;
        },
        Arc::new(SystemClock),
    )
    .await
}

/// The value of a metric on `/metrics` text (`None` if absent).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn nats_outage(engine: Option<Engine>) {
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    let Some(db) = ledger(engine) else {
        return;
    };
    let app = relaying_app(&nats, db.as_ref()).await;
    app.create_app(KEY, SECRET).await;
    for order_id in [1, 2] {
        app.create_order(order_id, KEY, &[(&format!("RELAY-{order_id}"), 100)])
            .await;
    }
    for n in 0..10 {
        assert_success_body(&app.call(&verify(1 + n % 2, n)).await);
    }
    let events = feed(&app).await;
    assert!(events.len() >= 12, "{}", events.len());
    assert_stream_is_the_feed(&caught_up(&nats, &app, 0).await, &events);

    // NATS goes away: verifies go on, answered at once; events wait in the ledger.
    nats.stop().await;
    let started = Instant::now();
    for n in 10..30 {
        assert_success_body(&app.call(&verify(1 + n % 2, n)).await);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "NATS down blocked verifies"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.metrics().await;
        if metric(&text, "ticketd_events_relay_lag_events") >= Some(20.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no lag shown: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, ready) = app.admin_get("/readyz").await;
    assert_eq!(status, 200, "still ready without NATS: {ready}");

    // It returns: the relay catches up, in order, nothing twice.
    assert!(nats.spawn().await);
    let events = feed(&app).await;
    assert!(events.len() >= 32, "{}", events.len());
    assert_stream_is_the_feed(&caught_up(&nats, &app, 0).await, &events);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.metrics().await;
        if metric(&text, "ticketd_events_relay_lag_events") == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the lag stayed above 0: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_stream_once_in_order_even_across_a_nats_outage_sqlite() {
    nats_outage(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_stream_once_in_order_even_across_a_nats_outage_postgres() {
    nats_outage(Some(Engine::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_stream_once_in_order_even_across_a_nats_outage_mariadb() {
    nats_outage(Some(Engine::MySql)).await;
}

/// A `ticketd serve` child process on the ledger `database_url`, relaying to `nats`.
async fn serve_child(
    database_url: &str,
    data_dir: &std::path::Path,
    nats: &Nats,
) -> (Child, String) {
    let url = nats.url();
    let args = [
        "--database-url",
        database_url,
        "--db-max-connections",
        "6",
        "--admin-token",
        TOKEN,
        "--events-nats",
        &url,
        "--events-stream",
        STREAM,
    ];
    crate::helpers::serve_child(&args, data_dir).await
}

/// Whether the process at `base` holds the relay's lease (`None`: it does not answer).
async fn leading(http: &reqwest::Client, base: &str) -> Option<bool> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metric(&text, "ticketd_events_relay_leading").map(|v| v == 1.0)
}

/// Two processes relay from one ledger under load; the one relaying is killed with SIGKILL
/// mid-flight, the other takes over, the killed one is started again; the stream holds every
/// event of the feed once, in order.
async fn relay_killed_under_load(database_url: &str) {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let http = reqwest::Client::new();
    let mut servers = Vec::new();
    for dir in &dirs {
        servers.push(serve_child(database_url, dir.path(), &nats).await);
    }
    let bases: Vec<String> = servers.iter().map(|(_, base)| base.clone()).collect();
    let admin = |path: &str, body: Value| {
        http.post(format!("{}{path}", bases[0]))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    assert!(
        admin("/admin/apps", json!({"app_key": KEY, "app_secret": SECRET}))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let paid = format_beijing(chrono::Utc::now() - chrono::Duration::days(1));
    for order_id in 1..=4 {
        let body = json!({"order_id": order_id, "app_key": KEY, "quantity": 1000,
            "created_at": paid,
            "vouchers": [{"confirm_code": format!("RELAY-{order_id}"), "quantity": 1000}]});
        assert!(admin("/admin/orders", body)
            .await
            .unwrap()
            .status()
            .is_success());
    }
    // 32 vendors, half on each process, verify until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..32_i64)
        .map(|w| {
            let client = top_client::TopClient::builder(
                format!("{}/router/rest", bases[(w % 2) as usize]),
                KEY,
                SECRET,
            )
            .build()
            .unwrap();
            let stop = stop.clone();
            tokio::spawn(async move {
                let gate = chrono::Utc::now() - chrono::Duration::hours(2);
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 400 {
                    let order_id = 1 + (w + n) % 4;
                    let params = top_client::VerifyParams {
                        order_id: Some(order_id),
                        voucher_infos: vec![top_client::VoucherInfo {
                            confirm_code: format!("RELAY-{order_id}"),
                            used_quantity: 1,
                            used_date: Some(format_beijing(
                                gate + chrono::Duration::seconds(w * 1000 + n),
                            )),
                        }],
                        ..top_client::VerifyParams::default()
                    };
                    // Calls in flight at the kill fail: fine, the ledger decides.
                    let _ = client.verify(&params).await;
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let killed = 'found: loop {
        for (i, base) in bases.iter().enumerate() {
            if leading(&http, base).await == Some(true) {
                break 'found i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no process took the relay's lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    servers[killed].0.start_kill().unwrap();
    servers[killed].0.wait().await.unwrap();
    // The other goes on writing, and takes the lease over once it expires.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let survivor = 1 - killed;
    let deadline = Instant::now() + Duration::from_secs(30);
    while leading(&http, &bases[survivor]).await != Some(true) {
        assert!(Instant::now() < deadline, "the survivor never took over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The killed one starts again on the same ledger; the lease stays where it is.
    servers[killed] = serve_child(database_url, dirs[killed].path(), &nats).await;

    let events = feed_at(&http, &bases[survivor], TOKEN).await;
    assert!(events.len() > 50, "load ran: {} events", events.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = loop {
        let messages = nats.messages().await;
        if messages.len() >= events.len() {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not catch up after the kill"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_stream_is_the_feed(&messages, &events);
    assert_eq!(
        leading(&http, &servers[killed].1).await,
        Some(false),
        "one relay per ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_under_load_is_replaced_and_the_stream_holds_every_event_once_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    relay_killed_under_load(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_under_load_is_replaced_and_the_stream_holds_every_event_once_postgres() {
    let Some(db) = ScratchDatabase::fresh(Engine::Postgres) else {
        return;
    };
    relay_killed_under_load(db.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_under_load_is_replaced_and_the_stream_holds_every_event_once_mariadb() {
    let Some(db) = ScratchDatabase::fresh(Engine::MySql) else {
        return;
    };
    relay_killed_under_load(db.url()).await;
}

/// Pages are published as chains confirmed by their last event (see `relay::publish_chained`).
/// Another publisher's message on the stream breaks the chain; the relay notices, publishes
/// that page one event at a time, and the stream still holds every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_publisher_on_the_stream_breaks_the_chain_and_no_event_is_lost() {
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    nats.stop().await;
    // Events made while NATS is down are relayed as one page when it is back: a chain.
    let app = relaying_app(&nats, None).await;
    app.create_app(KEY, SECRET).await;
    app.create_order(1, KEY, &[("RELAY-1", 100)]).await;
    for n in 0..20 {
        assert_success_body(&app.call(&verify(1, n)).await);
    }
    assert!(nats.spawn().await);
    let events = feed(&app).await;
    assert_stream_is_the_feed(&caught_up(&nats, &app, 0).await, &events);
    let unchained = |text: &str| metric(text, "ticketd_events_relay_unchained_pages_total");
    assert_eq!(unchained(&app.metrics().await), Some(0.0), "one chain");

    nats.jetstream()
        .await
        .publish(FOREIGN, "not ticketd's".into())
        .await
        .unwrap()
        .await
        .unwrap();
    nats.stop().await;
    for n in 20..40 {
        assert_success_body(&app.call(&verify(1, n)).await);
    }
    assert!(nats.spawn().await);
    let events = feed(&app).await;
    assert_stream_is_the_feed(&caught_up(&nats, &app, 1).await, &events);
    assert!(
        unchained(&app.metrics().await) >= Some(1.0),
        "the chain broke"
    );
    app.stop().await;
}

/// An event JetStream refuses (larger than the stream's `max_msg_size`) holds the relay just
/// before it: every event before it is in the stream, none after it, and the lag shows the
/// rest waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_jetstream_refuses_holds_the_relay_before_it() {
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    const MAX: usize = 2000;
    nats.jetstream()
        .await
        .create_stream(async_nats::jetstream::stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![ticketd::relay::SUBJECTS.to_owned()],
            max_message_size: i32::try_from(MAX).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
    nats.stop().await;
    let app = relaying_app(&nats, None).await;
    app.create_app(KEY, SECRET).await;
    app.create_order(1, KEY, &[("RELAY-1", 100)]).await;
    for n in 0..5 {
        assert_success_body(&app.call(&verify(1, n)).await);
    }
    let many: Vec<(String, i64)> = (0..60).map(|i| (format!("RELAY-BIG-{i:03}"), 1)).collect();
    let many: Vec<(&str, i64)> = many.iter().map(|(c, q)| (c.as_str(), *q)).collect();
    app.create_order(2, KEY, &many).await;
    for n in 5..10 {
        assert_success_body(&app.call(&verify(1, n)).await);
    }
    let events = feed(&app).await;
    let sizes: Vec<usize> = events.iter().map(|e| e.text.len()).collect();
    let big = sizes
        .iter()
        .position(|&n| n > MAX)
        .unwrap_or_else(|| panic!("a refused event: {sizes:?} {}", events[6].text));
    assert!(big > 5, "{sizes:?}");
    assert_eq!(
        sizes.iter().filter(|&&n| n > MAX).count(),
        1,
        "one event over the limit: {sizes:?}"
    );

    assert!(nats.spawn().await);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = app.metrics().await;
        let relayed = metric(&text, "ticketd_events_relayed_total");
        if relayed == Some(big as f64) {
            assert_eq!(
                metric(&text, "ticketd_events_relay_lag_events"),
                Some((events.len() - big) as f64),
                "{text}"
            );
            break;
        }
        assert!(
            relayed <= Some(big as f64),
            "relayed past the refused event: {text}"
        );
        assert!(Instant::now() < deadline, "the relay stopped early: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It stays there, retrying, and nothing after the refused event reaches the stream.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let messages = nats.messages().await;
    assert_stream_is_the_feed(&messages, &events[..big]);
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "ticketd_events_relayed_total"),
        Some(big as f64)
    );
    app.stop().await;
}
