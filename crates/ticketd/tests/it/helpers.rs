//! Shared test harness: the real server on port 0 (`ticketd::test_support`, shared with
//! top-client's tests), called the way vendors (signed TOP requests) and operators (admin
//! JSON, read into the server's answer types) do.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use ticketd::admin::{
    AnomaliesPage, AnomalyAnswer, AuditEntryAnswer, AuditPage, OrderAnswer, RefundAnswer,
    RejectedCallAnswer, RejectedCallsPage, VoucherAnswer,
};
use ticketd::clock::Clock;
use top_protocol::timestamp::format_beijing;
use top_protocol::Params;

pub use ticketd::test_support::{
    answer, refusal, spawn_app, spawn_app_at, spawn_app_with, spawn_in, TestApp, TopCall, TopReply,
    ADMIN_TOKEN, VERIFY,
};

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

/// Asserts what every TOP answer must be on the wire (docs/PROTOCOL.md §4.2, §5.3): HTTP 200, a
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

/// What a request may change on an order: its counters and the entries that are not refusals
/// (a refusal adds an entry and changes nothing else). Two equal snapshots mean nothing was
/// applied.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerSnapshot {
    pub vouchers: Vec<VoucherAnswer>,
    pub status: String,
    pub used: i64,
    /// The order's `events` without the rejected ones.
    pub events: Vec<AuditEntryAnswer>,
    pub out_order_id: Option<String>,
    pub refunded_tickets: i64,
    pub refundable_tickets: i64,
    pub refunds: Vec<RefundAnswer>,
    pub issue_describe: Option<String>,
}

pub async fn ledger_snapshot(app: &TestApp, order_id: i64) -> LedgerSnapshot {
    let order = app.order(order_id).await;
    LedgerSnapshot {
        vouchers: order.vouchers,
        status: order.status,
        used: order.used,
        events: order
            .events
            .into_iter()
            .filter(|e| e.outcome != "rejected")
            .collect(),
        out_order_id: order.out_order_id,
        refunded_tickets: order.refunded_tickets,
        refundable_tickets: order.refundable_tickets,
        refunds: order.refunds,
        issue_describe: order.issue_describe,
    }
}

/// `GET /admin/audit?<query>` entries.
pub async fn audit_entries(app: &TestApp, query: &str) -> Vec<AuditEntryAnswer> {
    let page: AuditPage = app.admin_get_ok(&format!("/admin/audit?{query}")).await;
    page.entries
}

/// Where a refused call was kept, read back through the admin API.
#[derive(Debug)]
pub enum KeptRefusal {
    /// In the audit trail (the caller was authenticated): the entry.
    Audited(AuditEntryAnswer),
    /// In the pruned record of calls refused before authentication: the row.
    Anonymous(RejectedCallAnswer),
}

impl KeptRefusal {
    /// `(code, sub_code)` as kept.
    pub fn code(&self) -> (i64, Option<String>) {
        match self {
            Self::Audited(e) => (
                e.detail["code"].as_i64().unwrap(),
                e.detail["sub_code"].as_str().map(str::to_owned),
            ),
            Self::Anonymous(c) => (c.code, c.sub_code.clone()),
        }
    }
}

/// The one record of the refused call answered with `request_id`: its audit entry, or else its
/// row among the calls refused before authentication. Panics unless exactly one exists.
pub async fn kept_refusal(app: &TestApp, request_id: &str) -> KeptRefusal {
    let audited: Vec<AuditEntryAnswer> = audit_entries(app, "outcome=rejected&limit=1000")
        .await
        .into_iter()
        .filter(|e| e.request_id == request_id)
        .collect();
    let page: RejectedCallsPage = app.admin_get_ok("/admin/rejected-calls?limit=1000").await;
    let anonymous: Vec<RejectedCallAnswer> = page
        .calls
        .into_iter()
        .filter(|c| c.request_id == request_id)
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
pub fn entry_for<'a>(entries: &'a [AuditEntryAnswer], request_id: &str) -> &'a AuditEntryAnswer {
    let found: Vec<&AuditEntryAnswer> = entries
        .iter()
        .filter(|e| e.request_id == request_id)
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
/// vouchers given; `extra` is merged in). Returns the 201 answer.
pub async fn create_order_with(
    app: &TestApp,
    order_id: i64,
    app_key: &str,
    vouchers: &[(&str, i64)],
    extra: Value,
) -> OrderAnswer {
    let quantity: i64 = vouchers.iter().map(|(_, q)| q).sum::<i64>().max(1);
    let mut body = json!({
        "order_id": order_id, "app_key": app_key, "quantity": quantity,
        "created_at": format_beijing(Utc::now() - chrono::Duration::days(1)),
        "vouchers": vouchers.iter().map(|(c, q)| json!({"confirm_code": c, "quantity": q})).collect::<Vec<_>>(),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.admin_post_ok("/admin/orders", body, 201).await
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

/// The key a wrapped JSON success of `method` sits under (docs/PROTOCOL.md §5.3).
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
pub fn status_events(order: &OrderAnswer) -> Vec<(String, String, String, String)> {
    order
        .events
        .iter()
        .filter(|e| e.action == "order.status")
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                e.request_id.clone(),
                s(&e.detail["from"]),
                s(&e.detail["to"]),
                s(&e.detail["cause"]),
            )
        })
        .collect()
}

/// `GET /admin/anomalies?<query>` entries.
pub async fn anomalies(app: &TestApp, query: &str) -> Vec<AnomalyAnswer> {
    let page: AnomaliesPage = app.admin_get_ok(&format!("/admin/anomalies?{query}")).await;
    page.anomalies
}

/// Starts `ticketd serve --listen 127.0.0.1:0 <args> --data-dir <data_dir>` as a child
/// process, killed when dropped, and waits for its "listening on" line; returns it and its base
/// URL. Its stderr (warnings and errors) is copied to the test's output, so the child never
/// blocks on a full pipe and a failing test shows what the server said.
pub async fn serve_child(
    args: &[&str],
    data_dir: &std::path::Path,
) -> (tokio::process::Child, String) {
    let (child, base, _) = serve_child_logging(args, data_dir, "warn").await;
    (child, base)
}

/// [`serve_child`] logging at `level` (`TICKETD_LOG`); also returns the lines it wrote before
/// its "listening on" line.
pub async fn serve_child_logging(
    args: &[&str],
    data_dir: &std::path::Path,
    level: &str,
) -> (tokio::process::Child, String, Vec<String>) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("TICKETD_LOG", level)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ticketd serve");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let addr = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split("/router/rest").next().unwrap().to_owned();
            }
            seen.push(line);
        }
        panic!("ticketd exited before listening: {seen:?}");
    })
    .await
    .expect("ticketd did not start within 30 s");
    // Its warnings and errors go to the test's output, shown when the test fails.
    let name = addr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[ticketd {name}] {line}");
        }
    });
    (child, format!("http://{addr}"), seen)
}

/// A `ticketd serve` child process ([`serve_child`]) with its own data directory, and the
/// admin API as an operator's script calls it: what the multi-process and cluster tests share.
pub struct ServedChild {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    http: reqwest::Client,
    token: &'static str,
    /// Killed when dropped (`kill_on_drop`).
    _child: tokio::process::Child,
    _data_dir: tempfile::TempDir,
}

impl ServedChild {
    /// Starts `ticketd serve <args> --admin-token <token>` and waits until it listens.
    pub async fn start(args: &[&str], token: &'static str) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut all = args.to_vec();
        all.extend(["--admin-token", token]);
        let (child, base) = serve_child(&all, data_dir.path()).await;
        Self {
            base,
            http: reqwest::Client::new(),
            token,
            _child: child,
            _data_dir: data_dir,
        }
    }

    /// `POST path` with `body`, which must be answered 201; the answer's JSON.
    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{path}");
        r.json().await.unwrap()
    }

    /// `GET path`: its JSON if answered 200, `None` otherwise.
    pub async fn admin_try_get(&self, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 200 {
            Some(r.json().await.unwrap())
        } else {
            None
        }
    }

    /// `GET path`, which must be answered 200; its JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        self.admin_try_get(path)
            .await
            .unwrap_or_else(|| panic!("{path} was not answered 200"))
    }

    /// The status `/readyz` answers (0 when the process does not answer at all).
    pub async fn ready(&self) -> u16 {
        self.http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}
