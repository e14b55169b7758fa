//! The real ticketd server on port 0 (ticketd's own `test_support` harness, with an operator's
//! view of it read into the admin API's answer types), and small HTTP servers that misbehave on
//! purpose.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Router;
use chrono::Utc;
use tokio::net::TcpListener;
use top_client::{RetryPolicy, SignMethod, TopClient, TopClientBuilder};
use top_protocol::timestamp::format_beijing;

pub use ticketd::test_support::TestApp;

pub const VERIFY: &str = "taobao.travel.ticket.order.verify";
pub const KEY: &str = "sdk-vendor";
pub const SECRET: &str = "sdk-secret-0123456789";

/// ticketd's own test server (`ticketd::test_support::spawn_app`) with one vendor app
/// (`KEY`/`SECRET`).
pub async fn spawn_server() -> TestApp {
    let app = ticketd::test_support::spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app
}

/// A client for the vendor app, retrying fast (tests do not wait for real backoff).
pub fn client(server: &TestApp) -> TopClientBuilder {
    client_for(&server.gateway())
}

/// Verify attempts that changed the ledger.
pub async fn accepted_verifies(server: &TestApp, order_id: i64) -> usize {
    server
        .order(order_id)
        .await
        .events
        .iter()
        .filter(|e| e.action == VERIFY && e.outcome == "accepted")
        .count()
}

/// A builder for the vendor app against `url`, with a fast retry policy.
pub fn client_for(url: &str) -> TopClientBuilder {
    TopClient::builder(url, KEY, SECRET)
        .sign_method(SignMethod::HmacSha256)
        .retry_policy(fast_retries(3))
}

pub fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(10),
        max_elapsed: Duration::from_secs(10),
    }
}

/// "now" minus `minutes`, as TOP writes dates (UTC+8).
pub fn minutes_ago(minutes: i64) -> String {
    format_beijing(Utc::now() - chrono::Duration::minutes(minutes))
}

/// An `isp.service-busy` answer, as ticketd sends it when its ledger is locked.
pub const BUSY: &str = r#"{"error_response":{"code":50,"msg":"Remote service error","sub_code":"isp.service-busy","sub_msg":"服务繁忙，请稍后重试","request_id":"proxy00000001"}}"#;

/// A server in front of ticketd that answers `isp.service-busy` to the first `fail_first`
/// requests and forwards every later one unchanged. Counts every request it receives.
pub struct FlakyProxy {
    pub url: String,
    pub attempts: Arc<AtomicU32>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    fail_first: u32,
    attempts: Arc<AtomicU32>,
    http: reqwest::Client,
}

pub async fn flaky_proxy(upstream: String, fail_first: u32) -> FlakyProxy {
    async fn handle(
        State(s): State<ProxyState>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let n = s.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= s.fail_first {
            return (
                [(header::CONTENT_TYPE, "text/javascript;charset=UTF-8")],
                BUSY,
            )
                .into_response();
        }
        let mut req = s.http.post(&s.upstream).body(body);
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            req = req.header(header::CONTENT_TYPE, ct.clone());
        }
        let upstream = req.send().await.unwrap();
        let ct = upstream.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = upstream.bytes().await.unwrap();
        let mut response = bytes.into_response();
        if let Some(ct) = ct {
            response.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        response
    }
    let attempts = Arc::new(AtomicU32::new(0));
    let state = ProxyState {
        upstream,
        fail_first,
        attempts: attempts.clone(),
        http: reqwest::Client::new(),
    };
    let app = Router::new()
        .route("/router/rest", axum::routing::post(handle))
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    FlakyProxy {
        url: format!("http://{addr}/router/rest"),
        attempts,
    }
}

/// A server that accepts connections and closes each at once, without answering: a transport
/// failure after the connection was made. Counts the connections.
pub async fn hang_up_server() -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU32::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (format!("http://{addr}/router/rest"), count)
}
