//! Shared test harness: start the real server on port 0 with a temporary SQLite ledger, and
//! call it the way vendors (signed TOP requests) and operators (admin JSON) do.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use ticketd::clock::{Clock, FixedClock, SystemClock};
use ticketd::server::Application;
use ticketd::settings::Settings;
use tokio::sync::oneshot;
use top_protocol::sign::sign;
use top_protocol::timestamp::format_beijing;
use top_protocol::{EmptyValues, Params, SignMethod};

/// The admin token every test server uses.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The verify method name.
pub const VERIFY: &str = "taobao.travel.ticket.order.verify";

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn gateway(&self) -> String {
        self.url("/router/rest")
    }

    /// Stops the server gracefully and waits for it (and the store) to finish.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data_dir, dir)
    }

    /// `POST /admin/...` with the token; returns status and JSON body.
    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /admin/...` with the token.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers a vendor app with a known secret.
    pub async fn create_app(&self, key: &str, secret: &str) {
        let (status, body) = self
            .admin_post("/admin/apps", json!({"app_key": key, "app_secret": secret}))
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Creates an issued order; `vouchers` are (code, capacity). Paid a day ago.
    pub async fn create_order(&self, order_id: i64, app_key: &str, vouchers: &[(&str, i64)]) {
        let quantity: i64 = vouchers.iter().map(|(_, q)| q).sum::<i64>().max(1);
        let created = format_beijing(Utc::now() - chrono::Duration::days(1));
        let (status, body) = self
            .admin_post(
                "/admin/orders",
                json!({
                    "order_id": order_id, "app_key": app_key, "quantity": quantity,
                    "created_at": created,
                    "vouchers": vouchers.iter().map(|(c, q)| json!({"confirm_code": c, "quantity": q})).collect::<Vec<_>>(),
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// The operator's view of an order.
    pub async fn order(&self, order_id: i64) -> Value {
        let (status, body) = self.admin_get(&format!("/admin/orders/{order_id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Uses recorded on one code of an order.
    pub async fn used(&self, order_id: i64, code: &str) -> i64 {
        let order = self.order(order_id).await;
        order["vouchers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["confirm_code"] == code)
            .unwrap_or_else(|| panic!("no voucher {code} in {order}"))["used"]
            .as_i64()
            .unwrap()
    }

    /// Sends a signed TOP call as a form-urlencoded POST body (like taobaopy / the Node SDK).
    pub async fn call(&self, call: &TopCall) -> TopReply {
        let body = call.signed().to_form_urlencoded();
        let r = self
            .http
            .post(self.gateway())
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=UTF-8",
            )
            .body(body)
            .send()
            .await
            .unwrap();
        TopReply::read(r).await
    }

    /// Sends a raw request (any verb, query and body) and returns the reply.
    pub async fn raw(
        &self,
        verb: reqwest::Method,
        query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> TopReply {
        let url = if query.is_empty() {
            self.gateway()
        } else {
            format!("{}?{}", self.gateway(), query)
        };
        let mut req = self.http.request(verb, url).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        TopReply::read(req.send().await.unwrap()).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts the real server on port 0 with a fresh SQLite ledger and the system clock.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, Arc::new(SystemClock)).await
}

/// Starts the real server with a pinned clock.
pub async fn spawn_app_at(now: DateTime<Utc>) -> TestApp {
    spawn_app_with(|_| {}, Arc::new(FixedClock(now))).await
}

/// Starts the real server with adjusted settings.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings), clock: Arc<dyn Clock>) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    spawn_in(data_dir, adjust, clock).await
}

/// Starts the real server on an existing data directory (restart tests).
pub async fn spawn_in(
    data_dir: tempfile::TempDir,
    adjust: impl FnOnce(&mut Settings),
    clock: Arc<dyn Clock>,
) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        ticketd::telemetry::init(ticketd::settings::LogFormat::Text);
    }
    let mut settings = Settings::for_data_dir(data_dir.path().to_path_buf());
    settings.admin_token = Some(ADMIN_TOKEN.to_owned());
    adjust(&mut settings);
    let app = Application::build_with_clock(&settings, clock)
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        addr,
        http: reqwest::Client::new(),
        data_dir,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

/// A TOP call under construction: system params with sensible defaults, business params, and
/// the secret and sign method used to sign it.
#[derive(Clone, Debug)]
pub struct TopCall {
    pub params: Params,
    pub secret: String,
    pub sign_method: SignMethod,
    pub empty: EmptyValues,
}

impl TopCall {
    /// A verify call by `app_key`, signed with `secret` (md5, json, timestamp now in UTC+8).
    pub fn verify(app_key: &str, secret: &str) -> Self {
        Self::method(VERIFY, app_key, secret)
    }

    pub fn method(method: &str, app_key: &str, secret: &str) -> Self {
        let mut params = Params::new();
        params.insert("method", method);
        params.insert("app_key", app_key);
        params.insert("sign_method", "md5");
        params.insert("timestamp", format_beijing(Utc::now()));
        params.insert("v", "2.0");
        params.insert("format", "json");
        Self {
            params,
            secret: secret.to_owned(),
            sign_method: SignMethod::Md5,
            empty: EmptyValues::Skip,
        }
    }

    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.params.insert(key, value.to_string());
        self
    }

    pub fn unset(mut self, key: &str) -> Self {
        self.params.remove(key);
        self
    }

    pub fn sign_with(mut self, method: SignMethod) -> Self {
        self.sign_method = method;
        self.params.insert("sign_method", method.as_str());
        self
    }

    /// The parameters with `sign` added (unless a test already set one).
    ///
    /// Every call a vendor's SDK could make is signed by our SDK, `top-client` (STYLE.md §7),
    /// and checked against `top-protocol`'s signer, so each test also proves the two agree.
    /// Calls no SDK would send (missing system parameters, empty values signed in the
    /// keep-empty form, foreign system parameters) are signed by `top-protocol` alone.
    pub fn signed(&self) -> Params {
        let mut p = self.params.clone();
        if p.get("sign").is_some() {
            return p;
        }
        let raw = sign(self.sign_method, self.secret.as_bytes(), &p, self.empty);
        if let Some(by_sdk) = self.signed_by_sdk() {
            assert_eq!(
                by_sdk.get("sign"),
                Some(raw.as_str()),
                "top-client and top-protocol sign {:?} differently",
                self.params
            );
            return by_sdk;
        }
        p.insert("sign", raw);
        p
    }

    /// The same call as `top-client` builds it, when it is one the SDK can express.
    fn signed_by_sdk(&self) -> Option<Params> {
        let get = |k: &str| self.params.get(k);
        let format = match get("format")? {
            "json" => top_client::Format::Json,
            "xml" => top_client::Format::Xml,
            _ => return None,
        };
        let simplify = match get("simplify") {
            None => false,
            Some("true") if format == top_client::Format::Json => true,
            Some(_) => return None,
        };
        if get("v") != Some("2.0") || get("sign_method") != Some(self.sign_method.as_str()) {
            return None;
        }
        const SYSTEM: &[&str] = &[
            "method",
            "app_key",
            "sign_method",
            "timestamp",
            "v",
            "format",
            "simplify",
        ];
        let mut business = Vec::new();
        for (k, v) in self.params.iter() {
            if SYSTEM.contains(&k) {
                continue;
            }
            if v.is_empty() || matches!(k, "sign" | "session" | "partner_id") {
                return None;
            }
            business.push((k, v.to_owned()));
        }
        let client = top_client::TopClient::builder(
            "http://127.0.0.1:9/router/rest",
            get("app_key")?,
            &self.secret,
        )
        .sign_method(self.sign_method)
        .format(format)
        .simplify(simplify)
        .build()
        .ok()?;
        client
            .signed_params(get("method")?, &business, get("timestamp")?)
            .ok()
    }
}

/// An answer from the gateway.
#[derive(Debug)]
pub struct TopReply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl TopReply {
    async fn read(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = r.bytes().await.unwrap().to_vec();
        Self {
            status,
            content_type,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// `(code, sub_code)` of an `error_response`, or panics with the body.
    pub fn error(&self) -> (i64, String) {
        assert_eq!(self.status, 200, "TOP answers are always HTTP 200");
        let v = self.json();
        let e = &v["error_response"];
        assert!(
            e.is_object(),
            "expected error_response, got {}",
            self.text()
        );
        (
            e["code"].as_i64().unwrap(),
            e["sub_code"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Asserts a wrapped JSON verify success.
    pub fn assert_success(&self) {
        assert_eq!(self.status, 200);
        let v = self.json();
        assert_eq!(
            v["travel_ticket_order_verify_response"]["is_success"],
            Value::Bool(true),
            "expected success, got {}",
            self.text()
        );
    }
}

/// A `voucher_infos` JSON list from (code, quantity, used_date).
pub fn voucher_infos(entries: &[(&str, i64, &str)]) -> String {
    let list: Vec<Value> = entries
        .iter()
        .map(|(c, q, d)| json!({"confirm_code": c, "used_quantity": q, "used_date": d}))
        .collect();
    serde_json::to_string(&list).unwrap()
}

/// "now" minus `minutes`, as TOP writes dates (UTC+8).
pub fn minutes_ago(minutes: i64) -> String {
    format_beijing(Utc::now() - chrono::Duration::minutes(minutes))
}

// ---------------------------------------------------------------------------------------------
// Helpers for protocol.rs, rules.rs, admin.rs, race.rs and durability.rs.
// ---------------------------------------------------------------------------------------------

/// The `request_id` inside a TOP answer: JSON (wrapped, simplified or `error_response`) or XML.
pub fn request_id_of(reply: &TopReply) -> String {
    let text = reply.text();
    if text.starts_with("<?xml") {
        let start = text
            .find("<request_id>")
            .unwrap_or_else(|| panic!("no request_id: {text}"))
            + 12;
        let end = text[start..]
            .find("</request_id>")
            .unwrap_or_else(|| panic!("no request_id: {text}"));
        return text[start..start + end].to_owned();
    }
    let v = reply.json();
    let inner = v.as_object().and_then(|o| {
        if o.contains_key("request_id") {
            Some(&v)
        } else {
            o.values().next()
        }
    });
    inner
        .and_then(|i| i["request_id"].as_str())
        .unwrap_or_else(|| panic!("no request_id: {text}"))
        .to_owned()
}

/// A JSON string literal exactly as the gateway writes one (`"` `\` and controls escaped,
/// non-ASCII raw).
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The exact JSON `error_response` body.
pub fn error_json(code: i64, msg: &str, sub: Option<(&str, &str)>, request_id: &str) -> String {
    let sub = match sub {
        Some((c, m)) => format!(",\"sub_code\":{},\"sub_msg\":{}", json_str(c), json_str(m)),
        None => String::new(),
    };
    format!(
        "{{\"error_response\":{{\"code\":{code},\"msg\":{}{sub},\"request_id\":{}}}}}",
        json_str(msg),
        json_str(request_id)
    )
}

/// The exact XML `error_response` body (values used here need no XML escaping).
pub fn error_xml(code: i64, msg: &str, sub: Option<(&str, &str)>, request_id: &str) -> String {
    let sub = match sub {
        Some((c, m)) => format!("<sub_code>{c}</sub_code><sub_msg>{m}</sub_msg>"),
        None => String::new(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?><error_response><code>{code}</code><msg>{msg}</msg>{sub}<request_id>{request_id}</request_id></error_response>"
    )
}

/// The exact wrapped JSON verify success body.
pub fn success_json(request_id: &str) -> String {
    format!(
        "{{\"travel_ticket_order_verify_response\":{{\"is_success\":true,\"request_id\":{}}}}}",
        json_str(request_id)
    )
}

/// The exact simplified JSON verify success body.
pub fn success_simplified(request_id: &str) -> String {
    format!(
        "{{\"is_success\":true,\"request_id\":{}}}",
        json_str(request_id)
    )
}

/// The exact XML verify success body.
pub fn success_xml(request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?><travel_ticket_order_verify_response><is_success>true</is_success><request_id>{request_id}</request_id></travel_ticket_order_verify_response>"
    )
}

/// Asserts what every TOP answer must be on the wire (PROTOCOL.md §4.2, §5.3): HTTP 200, a
/// Content-Type matching the body's format, at least 20 bytes, no BOM, no trailing newline,
/// compact JSON (no whitespace outside strings), error bodies `{"error_response":…}` ending in
/// `}}`, and a 13-character lower-case base36 `request_id`. Returns the `request_id`.
pub fn assert_top_envelope(reply: &TopReply) -> String {
    let text = reply.text();
    assert_eq!(reply.status, 200, "TOP answers are always HTTP 200: {text}");
    assert!(
        reply.body.len() >= 20,
        "body shorter than 20 bytes: {text:?}"
    );
    assert!(!text.starts_with('\u{feff}'), "BOM in {text:?}");
    assert!(
        !text.ends_with('\n') && !text.ends_with('\r'),
        "trailing newline in {text:?}"
    );
    if text.starts_with("<?xml") {
        assert_eq!(reply.content_type, "text/xml;charset=UTF-8", "{text}");
        assert!(!text.contains('\n'), "{text:?}");
    } else {
        assert_eq!(
            reply.content_type, "text/javascript;charset=UTF-8",
            "{text}"
        );
        let mut in_string = false;
        let mut escaped = false;
        for c in text.chars() {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
            } else {
                assert!(!c.is_whitespace(), "JSON is not compact: {text:?}");
            }
        }
        let v = reply.json();
        if v.get("error_response").is_some() {
            assert!(text.starts_with("{\"error_response\":"), "{text}");
            assert!(text.ends_with("}}"), "{text}");
            assert_eq!(v.as_object().unwrap().len(), 1, "{text}");
        }
    }
    let id = request_id_of(reply);
    assert_eq!(id.len(), 13, "request_id {id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
        "request_id {id:?}"
    );
    id
}

/// Asserts the answer is exactly this JSON `error_response`; returns its `request_id`.
pub fn assert_error_body(
    reply: &TopReply,
    code: i64,
    msg: &str,
    sub: Option<(&str, &str)>,
) -> String {
    let id = assert_top_envelope(reply);
    assert_eq!(reply.text(), error_json(code, msg, sub, &id));
    id
}

/// Asserts the answer is exactly this XML `error_response`; returns its `request_id`.
pub fn assert_error_xml(
    reply: &TopReply,
    code: i64,
    msg: &str,
    sub: Option<(&str, &str)>,
) -> String {
    let id = assert_top_envelope(reply);
    assert_eq!(reply.text(), error_xml(code, msg, sub, &id));
    id
}

/// Asserts the answer is exactly the wrapped JSON verify success; returns its `request_id`.
pub fn assert_success_body(reply: &TopReply) -> String {
    let id = assert_top_envelope(reply);
    assert_eq!(reply.text(), success_json(&id));
    id
}

/// What a request may change on an order: its counters and the entries that are not refusals.
/// Two equal snapshots mean nothing was applied.
pub async fn ledger_snapshot(app: &TestApp, order_id: i64) -> Value {
    let order = app.order(order_id).await;
    let kept: Vec<Value> = order["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] != "rejected")
        .cloned()
        .collect();
    json!({
        "vouchers": order["vouchers"], "status": order["status"], "used": order["used"],
        "events": kept, "out_order_id": order["out_order_id"],
        "refunded_tickets": order["refunded_tickets"],
        "refundable_tickets": order["refundable_tickets"], "refunds": order["refunds"],
        "issue_describe": order["issue_describe"],
    })
}

/// `GET /admin/audit?<query>` entries.
pub async fn audit_entries(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app.admin_get(&format!("/admin/audit?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

/// Where a refused call was kept, read back through the admin API.
#[derive(Debug)]
pub enum KeptRefusal {
    /// In the audit trail (the caller was authenticated): the entry.
    Audited(Value),
    /// In the pruned record of calls refused before authentication: the row.
    Anonymous(Value),
}

impl KeptRefusal {
    /// `(code, sub_code)` as kept.
    pub fn code(&self) -> (i64, Option<String>) {
        let (code, sub) = match self {
            Self::Audited(e) => (&e["detail"]["code"], &e["detail"]["sub_code"]),
            Self::Anonymous(c) => (&c["code"], &c["sub_code"]),
        };
        (code.as_i64().unwrap(), sub.as_str().map(str::to_owned))
    }
}

/// The one record of the refused call answered with `request_id`: its audit entry, or else its
/// row among the calls refused before authentication. Panics unless exactly one exists.
pub async fn kept_refusal(app: &TestApp, request_id: &str) -> KeptRefusal {
    let audited: Vec<Value> = audit_entries(app, "outcome=rejected&limit=1000")
        .await
        .into_iter()
        .filter(|e| e["request_id"] == request_id)
        .collect();
    let (status, body) = app.admin_get("/admin/rejected-calls?limit=1000").await;
    assert_eq!(status, 200, "{body}");
    let anonymous: Vec<Value> = body["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["request_id"] == request_id)
        .cloned()
        .collect();
    match (audited.as_slice(), anonymous.as_slice()) {
        ([entry], []) => KeptRefusal::Audited(entry.clone()),
        ([], [call]) => KeptRefusal::Anonymous(call.clone()),
        _ => panic!(
            "expected one record of {request_id}, got audit {audited:?} and rejected calls \
             {anonymous:?}"
        ),
    }
}

/// The one audit entry written for `request_id` among `entries`.
pub fn entry_for<'a>(entries: &'a [Value], request_id: &str) -> &'a Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["request_id"] == request_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one audit entry for {request_id}, got {found:?}"
    );
    found[0]
}

/// Sends `params` as given (no signing) as a form-urlencoded POST body.
pub async fn post_params(app: &TestApp, params: &Params) -> TopReply {
    app.raw(
        reqwest::Method::POST,
        "",
        Some("application/x-www-form-urlencoded;charset=UTF-8"),
        params.to_form_urlencoded().into_bytes(),
    )
    .await
}

/// Creates an order through the admin API with any fields (`order_id`, `app_key` and the
/// vouchers given; `extra` is merged in). Returns the 201 body.
pub async fn create_order_with(
    app: &TestApp,
    order_id: i64,
    app_key: &str,
    vouchers: &[(&str, i64)],
    extra: Value,
) -> Value {
    let quantity: i64 = vouchers.iter().map(|(_, q)| q).sum::<i64>().max(1);
    let mut body = json!({
        "order_id": order_id, "app_key": app_key, "quantity": quantity,
        "created_at": format_beijing(Utc::now() - chrono::Duration::days(1)),
        "vouchers": vouchers.iter().map(|(c, q)| json!({"confirm_code": c, "quantity": q})).collect::<Vec<_>>(),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, resp) = app.admin_post("/admin/orders", body).await;
    assert_eq!(status, 201, "{resp}");
    resp
}

// ---------------------------------------------------------------------------------------------
// Helpers for the order lifecycle (lifecycle.rs).
// ---------------------------------------------------------------------------------------------

/// The issuance method name.
pub const ISSUE: &str = "alitrip.travel.ticket.order.create";
/// The refund notification method name.
pub const REFUND: &str = "taobao.travel.ticket.order.refund";

/// A clock the test moves by hand (never sleep to let time pass).
#[derive(Debug)]
pub struct StepClock(std::sync::Mutex<DateTime<Utc>>);

impl StepClock {
    /// A clock standing at `start`.
    pub fn at(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(std::sync::Mutex::new(start)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for StepClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The key a wrapped JSON success of `method` sits under (PROTOCOL.md §5.3).
pub fn success_root(method: &str) -> String {
    match method {
        VERIFY => "travel_ticket_order_verify_response",
        REFUND => "travel_ticket_order_refund_response",
        ISSUE => "alitrip_travel_ticket_order_create_response",
        other => panic!("no response root known for {other}"),
    }
    .to_owned()
}

/// The exact wrapped JSON success body of `method` (`is_success` true).
pub fn success_json_for(method: &str, request_id: &str) -> String {
    let root = success_root(method);
    format!(
        "{{\"{root}\":{{\"is_success\":true,\"request_id\":{}}}}}",
        json_str(request_id)
    )
}

/// Asserts the answer is exactly `method`'s wrapped JSON success; returns its `request_id`.
pub fn assert_success_for(reply: &TopReply, method: &str) -> String {
    let id = assert_top_envelope(reply);
    assert_eq!(reply.text(), success_json_for(method, &id));
    id
}

/// The `order.status` entries of an order's `events`, as (request_id, from, to, cause).
pub fn status_events(order: &Value) -> Vec<(String, String, String, String)> {
    order["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "order.status")
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                s(&e["request_id"]),
                s(&e["detail"]["from"]),
                s(&e["detail"]["to"]),
                s(&e["detail"]["cause"]),
            )
        })
        .collect()
}

/// `GET /admin/anomalies?<query>` entries.
pub async fn anomalies(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app.admin_get(&format!("/admin/anomalies?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["anomalies"].as_array().unwrap().clone()
}
