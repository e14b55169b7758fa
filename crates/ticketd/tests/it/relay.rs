//! The change events' relay to NATS JetStream, against a real `nats-server -js` started by the
//! test on a free port: the stream holds every event of the feed once, in `seq` order, with
//! the feed's bytes and `Nats-Msg-Id`; NATS stopped during writes blocks nothing, and the relay
//! catches up when it returns.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ticketd::clock::SystemClock;
use tokio::process::{Child, Command};
use top_protocol::timestamp::format_beijing;

use crate::helpers::{assert_success_body, spawn_app_with, TestApp, TopCall};

const KEY: &str = "relay-vendor";
const SECRET: &str = "relay-secret-0123456789";
const STREAM: &str = "RELAY_TEST";

/// A `nats-server -js` of the test's own (killed when dropped).
struct Nats {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    async fn start() -> Option<Self> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
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

    /// Every message of the stream, in stream order: (subject, Nats-Msg-Id, payload).
    async fn messages(&self) -> Vec<(String, String, Vec<u8>)> {
        let client = async_nats::connect(self.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
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

async fn feed(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.admin_get("/admin/events?after=0&limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().clone()
}

/// Waits until the stream holds as many messages as the feed has events.
async fn caught_up(nats: &Nats, app: &TestApp) -> Vec<(String, String, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = feed(app).await;
        let client = async_nats::connect(nats.url()).await;
        if let Ok(client) = client {
            let js = async_nats::jetstream::new(client);
            if let Ok(mut stream) = js.get_stream(STREAM).await {
                if let Ok(info) = stream.info().await {
                    if info.state.messages as usize >= events.len() {
                        return nats.messages().await;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "the relay did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stream holds exactly the feed: same order, same bytes, ids as `Nats-Msg-Id`.
fn assert_stream_is_the_feed(messages: &[(String, String, Vec<u8>)], events: &[Value]) {
    assert_eq!(messages.len(), events.len(), "one message per event");
    for ((subject, id, payload), event) in messages.iter().zip(events) {
        assert_eq!(
            payload,
            &serde_json::to_vec(event).unwrap(),
            "the feed's bytes"
        );
        assert_eq!(id, event["id"].as_str().unwrap());
        let kind = event["type"].as_str().unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_stream_once_in_order_even_across_a_nats_outage() {
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    let url = nats.url();
    let app = spawn_app_with(
        move |s| {
            s.events_nats = Some(url);
            s.events_stream = STREAM.to_owned();
        },
        Arc::new(SystemClock),
    )
    .await;
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
    assert_stream_is_the_feed(&caught_up(&nats, &app).await, &events);

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
    let text = app.metrics().await;
    assert!(text.contains("ticketd_events_relay_lag_events"), "{text}");
    let (status, ready) = app.admin_get("/readyz").await;
    assert_eq!(status, 200, "still ready without NATS: {ready}");

    // It returns: the relay catches up, in order, nothing twice.
    assert!(nats.spawn().await);
    let events = feed(&app).await;
    assert!(events.len() >= 32, "{}", events.len());
    assert_stream_is_the_feed(&caught_up(&nats, &app).await, &events);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.metrics().await;
        if text.contains("ticketd_events_relay_lag_events 0") {
            break;
        }
        assert!(Instant::now() < deadline, "the lag stayed above 0: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// A `ticketd serve` child process relaying to `nats`, on `data_dir`.
async fn serve_child(data_dir: &std::path::Path, nats: &Nats) -> (Child, String) {
    let url = nats.url();
    let args = [
        "--admin-token",
        "relay-token",
        "--events-nats",
        &url,
        "--events-stream",
        STREAM,
    ];
    crate::helpers::serve_child(&args, data_dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_under_load_resumes_and_the_stream_holds_every_event_once() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (mut first, base) = serve_child(dir.path(), &nats).await;
    let admin = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth("relay-token")
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
    // 32 vendors verify until the process is killed, mid-flight.
    let client = top_client::TopClient::builder(format!("{base}/router/rest"), KEY, SECRET)
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..32_i64)
        .map(|w| {
            let client = client.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let gate = chrono::Utc::now() - chrono::Duration::hours(2);
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 200 {
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
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    // Restarted on the same ledger, it resumes where JetStream's acks left it.
    let (_second, base) = serve_child(dir.path(), &nats).await;
    let events = {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page: Value = http
                .get(format!("{base}/admin/events?after={after}&limit=1000"))
                .bearer_auth("relay-token")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let events = page["events"].as_array().unwrap();
            if events.is_empty() {
                break all;
            }
            after = page["next"].as_i64().unwrap();
            all.extend(events.iter().cloned());
        }
    };
    assert!(events.len() > 50, "load ran: {} events", events.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = loop {
        let messages = nats.messages().await;
        if messages.len() >= events.len() {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not catch up after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_stream_is_the_feed(&messages, &events);
}
