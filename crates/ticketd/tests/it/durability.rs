//! Durability: once a vendor was told `is_success`, the use is on disk. The real `ticketd`
//! binary is killed with SIGKILL (no shutdown, no flush) right after the acknowledgements and
//! restarted on the same data directory; every acknowledged use and its audit entry are there.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use top_protocol::timestamp::format_beijing;

use crate::helpers::{assert_top_envelope, success_json, TopCall, TopReply, VERIFY};

const TOKEN: &str = "durability-admin-token";
const KEY: &str = "durable-vendor";
const SECRET: &str = "durable-secret-0123456789";
const ORDER: i64 = 9001;
const CODE: &str = "DURABLE-CODE";

/// A running `ticketd serve` child process.
struct Server {
    child: Child,
    addr: SocketAddr,
    http: reqwest::Client,
    /// Everything the process wrote to stderr (diagnostics when something fails).
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the binary on port 0 and waits (bounded) for its "listening" line.
    async fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--admin-token")
            .arg(TOKEN)
            .env("TICKETD_LOG", "warn")
            .env_remove("TICKETD_DATABASE_URL")
            .env_remove("TICKETD_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ticketd");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.lock().unwrap().push(line.clone());
                if let Some(rest) = line.strip_prefix("ticketd: listening on http://") {
                    let addr = rest.split('/').next().unwrap();
                    return Some(addr.parse::<SocketAddr>().unwrap());
                }
            }
            None
        })
        .await;
        let addr = match found {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!("ticketd exited before listening: {:?}", log.lock().unwrap()),
            Err(_) => panic!(
                "ticketd did not report listening within 60 s: {:?}",
                log.lock().unwrap()
            ),
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Server {
            child,
            addr,
            http: reqwest::Client::new(),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn admin_get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn verify(&self, used_date: &str) -> TopReply {
        let call = TopCall::verify(KEY, SECRET).set("order_id", ORDER).set(
            "voucher_infos",
            json!([{"confirm_code": CODE, "used_quantity": 1, "used_date": used_date}]),
        );
        verify_at(&self.http, self.url("/router/rest"), call).await
    }

    /// SIGKILL, then reap; asserts the process really died of the signal.
    async fn kill9(mut self) {
        self.child.kill().await.unwrap();
        let status = self.child.wait().await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(9),
                "ticketd was not killed by SIGKILL: {status:?}; log {:?}",
                self.log.lock().unwrap()
            );
        }
        #[cfg(not(unix))]
        let _ = status;
    }

    async fn used(&self) -> i64 {
        let order = self.admin_get(&format!("/admin/orders/{ORDER}")).await;
        order["vouchers"][0]["used"].as_i64().unwrap()
    }

    /// Request ids of the accepted verify entries in the audit trail.
    async fn accepted_ids(&self) -> HashSet<String> {
        let body = self
            .admin_get(&format!(
                "/admin/audit?order_id={ORDER}&outcome=accepted&limit=1000"
            ))
            .await;
        body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == VERIFY)
            .map(|e| e["request_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn verify_at(http: &reqwest::Client, url: String, call: TopCall) -> TopReply {
    let r = http
        .post(url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .body(call.signed().to_form_urlencoded())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    TopReply {
        status,
        content_type,
        body: r.bytes().await.unwrap().to_vec(),
    }
}

/// `is_success` or panic; returns the request id.
fn acked(reply: &TopReply) -> String {
    let id = assert_top_envelope(reply);
    assert_eq!(reply.text(), success_json(&id));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_uses_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let start = Utc::now() - Duration::hours(2);
    let date = |i: i64| format_beijing(start + Duration::seconds(i));

    // Round 1: 20 verifies one after another, then SIGKILL right after the last answer.
    let server = Server::start(dir.path()).await;
    let (status, body) = server
        .admin_post("/admin/apps", json!({"app_key": KEY, "app_secret": SECRET}))
        .await;
    assert_eq!(status, 201, "{body}");
    let created = format_beijing(Utc::now() - Duration::days(1));
    let (status, body) = server
        .admin_post(
            "/admin/orders",
            json!({"order_id": ORDER, "app_key": KEY, "quantity": 100, "created_at": created,
                   "vouchers": [{"confirm_code": CODE, "quantity": 100}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut acknowledged = HashSet::new();
    for i in 0..20 {
        acknowledged.insert(acked(&server.verify(&date(i)).await));
    }
    server.kill9().await;

    let server = Server::start(dir.path()).await;
    assert_eq!(server.used().await, 20, "acknowledged uses lost by kill -9");
    assert_eq!(
        server.accepted_ids().await,
        acknowledged,
        "audit entries lost by kill -9"
    );
    // The fingerprints survived too: a retry of an acknowledged report is not counted again.
    let reply = server.verify(&date(7)).await;
    acked(&reply);
    assert_eq!(server.used().await, 20);

    // Round 2: 20 concurrent verifies (several land in one group commit), then SIGKILL.
    let tasks: Vec<_> = (20..40)
        .map(|i| {
            let call = TopCall::verify(KEY, SECRET).set("order_id", ORDER).set(
                "voucher_infos",
                json!([{"confirm_code": CODE, "used_quantity": 1, "used_date": date(i)}]),
            );
            let http = server.http.clone();
            let url = server.url("/router/rest");
            tokio::spawn(async move { verify_at(&http, url, call).await })
        })
        .collect();
    for t in tasks {
        acknowledged.insert(acked(&t.await.unwrap()));
    }
    server.kill9().await;

    let server = Server::start(dir.path()).await;
    assert_eq!(
        server.used().await,
        40,
        "acknowledged concurrent uses lost by kill -9"
    );
    assert_eq!(server.accepted_ids().await, acknowledged);
    // The app and the admin's order record survived as well.
    let order = server.admin_get(&format!("/admin/orders/{ORDER}")).await;
    assert_eq!(order["app_key"], KEY);
    assert_eq!(order["events"][0]["action"], "admin.create_order");
    server.kill9().await;
}
