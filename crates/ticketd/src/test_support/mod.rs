//! The real server for tests (feature `test-support`): [`spawn_app`] starts it on port 0 with
//! a temporary SQLite ledger and a known admin token, and [`TestApp`] calls its admin API the
//! way an operator does, reading answers into the types the server writes
//! ([`crate::admin`]'s `…Answer` structs).
//!
//! ticketd's own integration tests and `top-client`'s use this one harness, so a change to how
//! the server starts is made once. It is test code: every failure panics with what went wrong,
//! which is how a test reports it.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use top_protocol::timestamp::format_beijing;

use crate::admin::{ErrorAnswer, OrderAnswer};
use crate::clock::{Clock, FixedClock, SystemClock};
use crate::server::Application;
use crate::settings::{LogFormat, Settings};

mod top;

pub use top::{TopCall, TopReply, VERIFY};

/// The admin token every test server uses.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A running server and what a test needs to talk to it. Dropping it stops the server;
/// [`TestApp::stop`] also waits for it.
#[derive(Debug)]
pub struct TestApp {
    /// Where it listens (`127.0.0.1` and the port the system chose).
    pub addr: SocketAddr,
    /// A client for the admin API and raw gateway calls.
    pub http: reqwest::Client,
    /// The ledger's directory, removed when the last owner drops it.
    pub data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// `http://addr` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The TOP gateway's URL.
    pub fn gateway(&self) -> String {
        self.url("/router/rest")
    }

    /// Stops the server gracefully and waits for it (and the store) to finish; returns the
    /// data directory, for a restart on the same ledger ([`spawn_in`]).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("the server task panicked");
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::mem::replace(&mut self.data_dir, dir)
    }

    /// `POST /admin/...` with the token; returns the status and the JSON body (`null` when the
    /// body is not JSON).
    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /admin/...` with the token; returns the status and the JSON body.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /metrics` (unauthenticated), which must answer 200: the exposition text.
    pub async fn metrics(&self) -> String {
        let r = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200);
        r.text().await.expect("the /metrics body")
    }

    /// `GET /admin/...`, which must answer 200, read into its answer type.
    pub async fn admin_get_ok<T: DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self.admin_get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        answer(&body)
    }

    /// `POST /admin/...`, which must answer `want`, read into its answer type.
    pub async fn admin_post_ok<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Value,
        want: u16,
    ) -> T {
        let (status, reply) = self.admin_post(path, body.clone()).await;
        assert_eq!(status, want, "POST {path} {body}: {reply}");
        answer(&reply)
    }

    /// Registers a vendor app with a known secret.
    pub async fn create_app(&self, key: &str, secret: &str) {
        let (status, body) = self
            .admin_post("/admin/apps", json!({"app_key": key, "app_secret": secret}))
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Creates an issued order of `app_key`, paid a day ago; `vouchers` are (code, capacity)
    /// and the order has one ticket per use (at least one).
    pub async fn create_order(&self, order_id: i64, app_key: &str, vouchers: &[(&str, i64)]) {
        let quantity: i64 = vouchers.iter().map(|(_, q)| q).sum::<i64>().max(1);
        let created = format_beijing(Utc::now() - chrono::Duration::days(1));
        let vouchers: Vec<Value> = vouchers
            .iter()
            .map(|(c, q)| json!({"confirm_code": c, "quantity": q}))
            .collect();
        let (status, body) = self
            .admin_post(
                "/admin/orders",
                json!({
                    "order_id": order_id, "app_key": app_key, "quantity": quantity,
                    "created_at": created, "vouchers": vouchers,
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// The operator's view of an order, which must exist.
    pub async fn order(&self, order_id: i64) -> OrderAnswer {
        self.admin_get_ok(&format!("/admin/orders/{order_id}"))
            .await
    }

    /// Uses recorded on one code of an order.
    pub async fn used(&self, order_id: i64, code: &str) -> i64 {
        let order = self.order(order_id).await;
        order
            .vouchers
            .iter()
            .find(|v| v.confirm_code == code)
            .unwrap_or_else(|| panic!("no voucher {code} in {order:?}"))
            .used
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A JSON answer read into its type; panics with the body when it does not fit.
pub fn answer<T: DeserializeOwned>(body: &Value) -> T {
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not a {} ({e}): {body}", std::any::type_name::<T>()))
}

/// An admin refusal's body, read as [`ErrorAnswer`].
pub fn refusal(body: &Value) -> ErrorAnswer {
    answer(body)
}

/// Starts the real server on port 0 with a fresh SQLite ledger and the system clock.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, Arc::new(SystemClock)).await
}

/// Starts the real server with a pinned clock.
pub async fn spawn_app_at(now: DateTime<Utc>) -> TestApp {
    spawn_app_with(|_| {}, Arc::new(FixedClock(now))).await
}

/// Starts the real server with adjusted settings and the given clock.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings), clock: Arc<dyn Clock>) -> TestApp {
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    spawn_in(data_dir, adjust, clock).await
}

/// Starts the real server on an existing data directory (restart tests). Logs go to the
/// console only with `TEST_LOG` set, so tests are quiet by default.
pub async fn spawn_in(
    data_dir: tempfile::TempDir,
    adjust: impl FnOnce(&mut Settings),
    clock: Arc<dyn Clock>,
) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        crate::telemetry::init(LogFormat::Text);
    }
    let mut settings = Settings::for_data_dir(data_dir.path().to_path_buf());
    settings.admin_token = Some(ADMIN_TOKEN.to_owned());
    adjust(&mut settings);
    let app = Application::build_with_clock(&settings, clock)
        .await
        .unwrap_or_else(|e| panic!("the test server did not start: {e:#}"));
    let addr = app
        .local_addr()
        .unwrap_or_else(|e| panic!("the test server has no address: {e}"));
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .unwrap_or_else(|e| panic!("the test server failed: {e:#}"));
    });
    TestApp {
        addr,
        http: reqwest::Client::new(),
        data_dir,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}
