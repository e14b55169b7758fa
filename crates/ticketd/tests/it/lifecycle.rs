//! The whole life of an order (issue 3, docs/LIFECYCLE.md) through the real server: issuance
//! (发码), verify (核销), refund requests and notifications (退票), reversal (撤销核销),
//! anomalies and reconciliation.
//!
//! The first two tests walk `ticketd::lifecycle_doc::TRANSITIONS` and `REFUSALS` — the tables
//! docs/LIFECYCLE.md is generated from — row by row, so a documented row that the server does
//! not honour fails here, and a new row fails until someone teaches the walker how to build it.
//! Every app runs on a clock the test moves by hand, so dates before and after a refund request
//! or a reversal window are exact, and nothing sleeps.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use ticketd::admin::{AnomalyAnswer, AuditEntryAnswer, OrderAnswer};
use ticketd::clock::Clock;
use ticketd::lifecycle_doc::{Refusal, Transition, REFUSALS, STARTS, TRANSITIONS};
use ticketd::settings::Settings;
use top_protocol::timestamp::format_beijing;

use crate::helpers::{
    anomalies, answer, assert_error_body, assert_success_for, assert_top_envelope, audit_entries,
    create_order_with, error_json, ledger_snapshot, refusal, spawn_app_with, status_events,
    LedgerSnapshot, StepClock, TestApp, TopCall, TopReply, ISSUE, REFUND, VERIFY,
};

const KEY: &str = "life-vendor";
const SECRET: &str = "life-secret-0123456789";
const OTHER: &str = "life-other-vendor";
const OTHER_SECRET: &str = "life-other-secret-0123456789";

// The `call` column of the tables, exactly as lifecycle_doc.rs writes it.
const CREATE_CALL: &str = "`POST /admin/orders`";
const ISSUE_CALL: &str = "`alitrip.travel.ticket.order.create`";
const VERIFY_CALL: &str = "`taobao.travel.ticket.order.verify`";
const REQUEST_CALL: &str = "`POST /admin/orders/{id}/refunds`";
const REFUND_CALL: &str = "`taobao.travel.ticket.order.refund`";
const REVERSE_CALL: &str = "`POST /admin/orders/{id}/reversals`";
const RECONCILE_CALL: &str = "`POST /admin/orders/{id}/reconcile`";

// The audit actions of the admin calls.
const CREATE_ACTION: &str = "admin.create_order";
const REQUEST_ACTION: &str = "admin.request_refund";
const REVERSE_ACTION: &str = "admin.reverse";
const RECONCILE_ACTION: &str = "admin.reconcile";

/// A server on a hand-moved clock, with the vendor apps registered.
struct Life {
    app: TestApp,
    clock: Arc<StepClock>,
    /// Makes every [`Life::gate`] time distinct, so no report replays another by accident.
    gates: AtomicI64,
}

impl Life {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(adjust: impl FnOnce(&mut Settings)) -> Self {
        // Whole seconds, so the dates the server shows (to the second) equal what we compute.
        let start = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let clock = StepClock::at(start);
        let app = spawn_app_with(adjust, clock.clone()).await;
        app.create_app(KEY, SECRET).await;
        app.create_app(OTHER, OTHER_SECRET).await;
        Self {
            app,
            clock,
            gates: AtomicI64::new(0),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A distinct gate time half an hour before now (before any refund request of the test).
    fn gate(&self) -> Option<DateTime<Utc>> {
        let k = self.gates.fetch_add(1, Ordering::Relaxed);
        Some(self.now() - Duration::minutes(30) + Duration::seconds(k))
    }

    /// A TOP call by the vendor, its timestamp on the server's clock.
    fn call(&self, method: &str) -> TopCall {
        TopCall::method(method, KEY, SECRET).set("timestamp", format_beijing(self.now()))
    }

    async fn send(&self, call: TopCall) -> TopReply {
        self.app.call(&call).await
    }

    // ---- orders ---------------------------------------------------------------------------

    /// An order created with its codes (`quantity` tickets), paid a day ago.
    async fn issued(&self, o: i64, quantity: i64, codes: &[(&str, i64)]) -> OrderAnswer {
        create_order_with(&self.app, o, KEY, codes, json!({"quantity": quantity})).await
    }

    /// An order created without codes: it waits for the vendor's issuance report.
    async fn awaiting(&self, o: i64, quantity: i64) -> OrderAnswer {
        create_order_with(&self.app, o, KEY, &[], json!({"quantity": quantity})).await
    }

    async fn order(&self, o: i64) -> OrderAnswer {
        self.app.order(o).await
    }

    async fn status(&self, o: i64) -> String {
        self.order(o).await.status.as_str().to_owned()
    }

    async fn used(&self, o: i64, code: &str) -> i64 {
        self.app.used(o, code).await
    }

    // ---- TOP calls ------------------------------------------------------------------------

    fn issue_call(&self, o: i64, out: &str, vouchers: &Value) -> TopCall {
        self.call(ISSUE)
            .set("order_id", o)
            .set("out_order_id", out)
            .set("issue_type", 1)
            .set("voucher_infos", vouchers)
    }

    fn fail_call(&self, o: i64, out: &str, describe: &str) -> TopCall {
        self.call(ISSUE)
            .set("order_id", o)
            .set("out_order_id", out)
            .set("issue_type", 2)
            .set("describe", describe)
    }

    /// A verify of (code, uses, gate time); no gate time means none is sent.
    fn verify_call(&self, o: i64, uses: &[(&str, i64, Option<DateTime<Utc>>)]) -> TopCall {
        let list: Vec<Value> = uses
            .iter()
            .map(|(c, n, at)| match at {
                Some(t) => {
                    json!({"confirm_code": c, "used_quantity": n, "used_date": format_beijing(*t)})
                }
                None => json!({"confirm_code": c, "used_quantity": n}),
            })
            .collect();
        self.call(VERIFY)
            .set("order_id", o)
            .set("voucher_infos", Value::from(list))
    }

    fn notify_call(&self, o: i64, fields: &[(&str, &str)]) -> TopCall {
        let mut call = self.call(REFUND).set("order_id", o);
        for (k, v) in fields {
            call = call.set(k, v);
        }
        call
    }

    /// Issues `codes` (type 1) for `o`; must succeed. Returns the request_id.
    async fn issue_ok(&self, o: i64, codes: &[(&str, i64)]) -> String {
        let vouchers: Vec<Value> = codes
            .iter()
            .map(|(c, q)| json!({"confirm_code": c, "type": 1, "quantity": q}))
            .collect();
        let call = self.issue_call(o, &format!("OUT-{o}"), &Value::from(vouchers));
        assert_success_for(&self.send(call).await, ISSUE)
    }

    /// Verifies `n` uses of `code` at a fresh gate time; must succeed. Returns the request_id.
    async fn verify_ok(&self, o: i64, code: &str, n: i64) -> String {
        let call = self.verify_call(o, &[(code, n, self.gate())]);
        assert_success_for(&self.send(call).await, VERIFY)
    }

    /// Sends a refund notification; must succeed. Returns the request_id.
    async fn notify_ok(&self, o: i64, fields: &[(&str, &str)]) -> String {
        assert_success_for(&self.send(self.notify_call(o, fields)).await, REFUND)
    }

    // ---- admin calls ----------------------------------------------------------------------

    async fn request_refund(&self, o: i64, quantity: i64) -> (u16, Value) {
        self.app
            .admin_post(
                &format!("/admin/orders/{o}/refunds"),
                json!({"quantity": quantity}),
            )
            .await
    }

    /// Asks for a refund; must be 201. Returns the flow id.
    async fn request_ok(&self, o: i64, quantity: i64) -> String {
        let (status, body) = self.request_refund(o, quantity).await;
        assert_eq!(status, 201, "refund request on {o}: {body}");
        body["fliggy_refund_flow_id"].as_str().unwrap().to_owned()
    }

    async fn reverse(&self, o: i64, code: &str, quantity: i64) -> (u16, Value) {
        self.app
            .admin_post(
                &format!("/admin/orders/{o}/reversals"),
                json!({"confirm_code": code, "quantity": quantity, "reason": "gate scanned twice"}),
            )
            .await
    }

    async fn reverse_ok(&self, o: i64, code: &str, quantity: i64) {
        let (status, body) = self.reverse(o, code, quantity).await;
        assert_eq!(status, 201, "reversal on {o}: {body}");
    }

    async fn reconcile(&self, o: i64, counts: &[(&str, i64)], apply: bool) -> (u16, Value) {
        let vouchers: Vec<Value> = counts
            .iter()
            .map(|(c, n)| json!({"confirm_code": c, "used": n}))
            .collect();
        self.app
            .admin_post(
                &format!("/admin/orders/{o}/reconcile"),
                json!({"vouchers": vouchers, "apply": apply}),
            )
            .await
    }

    async fn anomalies(&self, query: &str) -> Vec<AnomalyAnswer> {
        anomalies(&self.app, query).await
    }

    async fn assert_status(&self, o: i64, want: &str, ctx: &str) {
        let order = self.order(o).await;
        assert_eq!(order.status, want, "{ctx}: {order:?}");
    }
}

/// Asserts a business refusal (`code` 50) with this `sub_code`; returns (request_id, sub_msg).
fn refused_with(reply: &TopReply, sub_code: &str) -> (String, String) {
    let id = assert_top_envelope(reply);
    let v = reply.json();
    let e = &v["error_response"];
    assert_eq!(
        (
            e["code"].as_i64(),
            e["msg"].as_str(),
            e["sub_code"].as_str()
        ),
        (Some(50), Some("Remote service error"), Some(sub_code)),
        "{}",
        reply.text()
    );
    (id, e["sub_msg"].as_str().unwrap().to_owned())
}

/// Asserts exactly this business refusal; returns its request_id.
fn assert_business(reply: &TopReply, sub_code: &str, sub_msg: &str) -> String {
    assert_error_body(reply, 50, "Remote service error", Some((sub_code, sub_msg)))
}

/// The request_id of the order's last event of `action`.
fn last_of(order: &OrderAnswer, action: &str) -> String {
    order
        .events
        .iter()
        .rev()
        .find(|e| e.action == action)
        .unwrap_or_else(|| panic!("no {action} event in {order:?}"))
        .request_id
        .as_str()
        .to_owned()
}

/// The events `request_id` left on the order, as (action, outcome, reason).
fn events_of(order: &OrderAnswer, request_id: &str) -> Vec<(String, String, String)> {
    order
        .events
        .iter()
        .filter(|e| e.request_id == request_id)
        .map(|e| (e.action.clone(), e.outcome.clone(), e.reason.clone()))
        .collect()
}

/// Asserts `request_id` caused exactly one `cause` entry followed by exactly one `order.status`
/// entry from `from` to `to`.
fn assert_transition(order: &OrderAnswer, request_id: &str, from: &str, to: &str, cause: &str) {
    let events: Vec<&AuditEntryAnswer> = order
        .events
        .iter()
        .filter(|e| e.request_id == request_id)
        .collect();
    let causing: Vec<&&AuditEntryAnswer> = events.iter().filter(|e| e.action == cause).collect();
    let status: Vec<&&AuditEntryAnswer> = events
        .iter()
        .filter(|e| e.action == "order.status")
        .collect();
    assert_eq!(
        (causing.len(), status.len()),
        (1, 1),
        "{from} -> {to}: expected one {cause} and one order.status entry for {request_id}, got {events:#?}"
    );
    let s = status[0];
    assert_eq!(
        s.detail,
        json!({"from": from, "to": to, "cause": cause}),
        "{s:?}"
    );
    assert_eq!(
        (s.outcome.as_str(), s.reason.as_str()),
        ("accepted", to),
        "{s:?}"
    );
    assert_eq!(s.order_id, Some(order.order_id), "{s:?}");
    assert_eq!(s.app_key.as_deref(), Some(KEY), "{s:?}");
    assert!(
        s.seq > causing[0].seq,
        "the transition follows its cause: {events:#?}"
    );
}

/// A ledger snapshot without its events (a replay adds an event and nothing else).
fn without_events(mut snapshot: LedgerSnapshot) -> LedgerSnapshot {
    snapshot.events.clear();
    snapshot
}

/// Asserts `request_id` left no `order.status` entry.
fn assert_no_transition(order: &OrderAnswer, request_id: &str) {
    let got: Vec<_> = status_events(order)
        .into_iter()
        .filter(|(rid, ..)| rid == request_id)
        .collect();
    assert!(got.is_empty(), "unexpected transitions {got:?}");
}

// ---------------------------------------------------------------------------------------------
// The documented tables, row by row
// ---------------------------------------------------------------------------------------------

/// Every row of `TRANSITIONS`: build `from` through the API, perform `call` as `when` says,
/// and check the status becomes `to` with an `order.status` event of the causing request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_transition_happens_and_is_recorded() {
    let life = Life::new().await;
    assert!(TRANSITIONS.len() >= 16, "the transition table shrank");
    for (i, t) in TRANSITIONS.iter().enumerate() {
        walk_transition(&life, 71_000 + i as i64, t).await;
    }
}

/// Every row of `STARTS`: the order begins in the documented status, with its creation event
/// and no `order.status` entry (there is no status before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_start_creates_the_order_in_its_status() {
    let life = Life::new().await;
    for (i, start) in STARTS.iter().enumerate() {
        let o = 70_000 + i as i64;
        let ctx = format!(
            "{} starts {} ({})",
            start.call,
            start.status.as_str(),
            start.when
        );
        let (created, reason) = match (start.call, start.status.as_str()) {
            (CREATE_CALL, "awaiting_issuance") => {
                (life.awaiting(o, 2).await, "created_awaiting_issuance")
            }
            (CREATE_CALL, "issued") => (life.issued(o, 2, &[("T-A", 2)]).await, "created_issued"),
            _ => panic!("STARTS row not walked by lifecycle.rs: {start:?}"),
        };
        assert_eq!(created.status, start.status.as_str(), "{ctx}: {created:?}");
        let rid = last_of(&created, CREATE_ACTION);
        assert_eq!(
            events_of(&created, &rid),
            [(
                CREATE_ACTION.to_owned(),
                "accepted".to_owned(),
                reason.to_owned()
            )],
            "{ctx}"
        );
        assert_eq!(status_events(&created), [], "{ctx}");
    }
}

async fn walk_transition(life: &Life, o: i64, t: &Transition) {
    let (from, to) = (t.from.as_str(), t.to.as_str());
    let ctx = format!("{} {from} -> {to} ({})", t.call, t.when);
    let (rid, cause) = match (t.call, from, to) {
        (ISSUE_CALL, "awaiting_issuance", "issued") => {
            life.awaiting(o, 2).await;
            life.assert_status(o, from, &ctx).await;
            (life.issue_ok(o, &[("T-A", 1), ("T-B", 1)]).await, ISSUE)
        }
        (ISSUE_CALL, "awaiting_issuance", "issue_failed") => {
            life.awaiting(o, 2).await;
            life.assert_status(o, from, &ctx).await;
            let call = life.fail_call(o, &format!("OUT-{o}"), "库存不足");
            (assert_success_for(&life.send(call).await, ISSUE), ISSUE)
        }
        (ISSUE_CALL, "issue_failed", "issued") => {
            life.awaiting(o, 2).await;
            let call = life.fail_call(o, &format!("OUT-{o}"), "供应商系统超时");
            assert_success_for(&life.send(call).await, ISSUE);
            life.assert_status(o, from, &ctx).await;
            (life.issue_ok(o, &[("T-A", 2)]).await, ISSUE)
        }
        (VERIFY_CALL, "issued", "partly_used") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.assert_status(o, from, &ctx).await;
            (life.verify_ok(o, "T-A", 1).await, VERIFY)
        }
        (VERIFY_CALL, "partly_used", "used") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.assert_status(o, from, &ctx).await;
            (life.verify_ok(o, "T-A", 1).await, VERIFY)
        }
        (VERIFY_CALL, "partly_refunded", "closed") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            life.assert_status(o, from, &ctx).await;
            (life.verify_ok(o, "T-A", 1).await, VERIFY)
        }
        (REQUEST_CALL, "issued", "refunding") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.assert_status(o, from, &ctx).await;
            life.request_ok(o, 2).await;
            (last_of(&life.order(o).await, REQUEST_ACTION), REQUEST_ACTION)
        }
        (REQUEST_CALL, "partly_used", "refunding") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.assert_status(o, from, &ctx).await;
            life.request_ok(o, 1).await;
            (last_of(&life.order(o).await, REQUEST_ACTION), REQUEST_ACTION)
        }
        (REFUND_CALL, "refunding", "refunded") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 2).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (REFUND_CALL, "refunding", "partly_refunded") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (REFUND_CALL, "refunding", "closed") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.request_ok(o, 1).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (REFUND_CALL, "refunding", "partly_used") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.request_ok(o, 1).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(
                    o,
                    &[
                        ("refund_status", "2"),
                        ("refund_batch_no", "RB-1"),
                        ("refund_failure_reason", "门票已过退票期"),
                    ],
                )
                .await;
            (rid, REFUND)
        }
        (REVERSE_CALL, "used", "partly_used") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 2).await;
            life.assert_status(o, from, &ctx).await;
            life.reverse_ok(o, "T-A", 1).await;
            (last_of(&life.order(o).await, REVERSE_ACTION), REVERSE_ACTION)
        }
        (REVERSE_CALL, "partly_used", "issued") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 1).await;
            life.assert_status(o, from, &ctx).await;
            life.reverse_ok(o, "T-A", 1).await;
            (last_of(&life.order(o).await, REVERSE_ACTION), REVERSE_ACTION)
        }
        (VERIFY_CALL, "issued", "used") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.assert_status(o, from, &ctx).await;
            (life.verify_ok(o, "T-A", 2).await, VERIFY)
        }
        (REQUEST_CALL, "partly_refunded", "refunding") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            life.assert_status(o, from, &ctx).await;
            life.request_ok(o, 1).await;
            (last_of(&life.order(o).await, REQUEST_ACTION), REQUEST_ACTION)
        }
        (REFUND_CALL, "refunding", "issued") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "2"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (REFUND_CALL, "refunding", "used") => {
            // The request holds the only ticket; a use dated before it takes it (R9).
            life.issued(o, 1, &[("T-A", 1)]).await;
            life.request_ok(o, 1).await;
            let before = life.now() - chrono::Duration::seconds(30);
            let call = life.verify_call(o, &[("T-A", 1, Some(before))]);
            assert_success_for(&life.send(call).await, VERIFY);
            life.assert_status(o, from, &ctx).await;
            let rid = life
                .notify_ok(o, &[("refund_status", "2"), ("refund_batch_no", "RB-1")])
                .await;
            (rid, REFUND)
        }
        (REVERSE_CALL, "used", "issued") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.verify_ok(o, "T-A", 2).await;
            life.assert_status(o, from, &ctx).await;
            life.reverse_ok(o, "T-A", 2).await;
            (last_of(&life.order(o).await, REVERSE_ACTION), REVERSE_ACTION)
        }
        (REVERSE_CALL, "closed", "partly_refunded") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.request_ok(o, 1).await;
            life.notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            life.verify_ok(o, "T-A", 1).await;
            life.assert_status(o, from, &ctx).await;
            life.reverse_ok(o, "T-A", 1).await;
            (last_of(&life.order(o).await, REVERSE_ACTION), REVERSE_ACTION)
        }
        (RECONCILE_CALL, "issued", "partly_used") => {
            life.issued(o, 2, &[("T-A", 2)]).await;
            life.assert_status(o, from, &ctx).await;
            let (status, body) = life.reconcile(o, &[("T-A", 1)], true).await;
            assert_eq!(status, 200, "{ctx}: {body}");
            (last_of(&life.order(o).await, RECONCILE_ACTION), RECONCILE_ACTION)
        }
        _ => panic!(
            "TRANSITIONS row not walked by lifecycle.rs: {t:?}; teach walk_transition how to build it"
        ),
    };
    let order = life.order(o).await;
    assert_eq!(order.status, to, "{ctx}: {order:?}");
    if from == to {
        assert_no_transition(&order, &rid);
    } else {
        assert_transition(&order, &rid, from, to, cause);
    }
}

/// What a refusal row's attempt sends.
enum Attempt {
    Top(TopCall),
    Admin(String, Value),
}

/// Every row of `REFUSALS`: build the situation `when` describes, send the refused call, and
/// check the documented answer, that the ledger did not change, and the anomaly stored (or
/// that none was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_refusal_answers_changes_nothing_and_records_its_anomaly() {
    let life = Life::new().await;
    assert!(REFUSALS.len() >= 14, "the refusal table shrank");
    let mut cases = 0;
    for (i, r) in REFUSALS.iter().enumerate() {
        cases += walk_refusal(&life, 72_000 + 10 * i as i64, r).await;
    }
    assert!(cases >= 2 * REFUSALS.len(), "only {cases} cases");
}

/// Runs the cases of one row; returns how many.
async fn walk_refusal(life: &Life, base: i64, r: &Refusal) -> usize {
    let mut n = 0;
    // Each attempt is checked right away: later setup steps must not change what it meets.
    macro_rules! refuse {
        ($o:expr, $attempt:expr $(,)?) => {{
            let (o, attempt) = ($o, $attempt);
            check_refusal(life, r, o, attempt).await;
            n += 1;
        }};
    }
    match (r.call, r.when) {
        (VERIFY_CALL, "the order awaits issuance or its issuance failed") => {
            life.awaiting(base, 1).await;
            refuse!(base, Attempt::Top(life.verify_call(base, &[("X", 1, life.gate())])));
            life.awaiting(base + 1, 1).await;
            let call = life.fail_call(base + 1, &format!("OUT-F-{base}"), "库存不足");
            assert_success_for(&life.send(call).await, ISSUE);
            refuse!(
                base + 1,
                Attempt::Top(
                    life.call(VERIFY)
                        .set("order_id", base + 1)
                        .set("check_num", 1),
                ),
            );
        }
        (VERIFY_CALL, "a code was not issued for the order") => {
            life.issued(base, 2, &[("V-A", 2)]).await;
            refuse!(
                base,
                Attempt::Top(life.verify_call(base, &[("V-A", 1, life.gate()), ("V-NOPE", 1, life.gate())])),
            );
            refuse!(
                base,
                Attempt::Top(
                    life.call(VERIFY)
                        .set("order_id", base)
                        .set("confirm_code", "V-NOPE")
                        .set("check_num", 1),
                ),
            );
        }
        (VERIFY_CALL, "a code (or the order) has fewer uses left than reported") => {
            life.issued(base, 2, &[("V-A", 1), ("V-B", 1)]).await;
            life.verify_ok(base, "V-A", 1).await;
            // The code…
            refuse!(base, Attempt::Top(life.verify_call(base, &[("V-A", 1, life.gate())])));
            // …and the order (legacy check_num without a code).
            refuse!(
                base,
                Attempt::Top(life.call(VERIFY).set("order_id", base).set("check_num", 2)),
            );
        }
        (VERIFY_CALL, "every ticket is refunded, or the uses left belong to refunded tickets") => {
            // Every ticket refunded.
            life.issued(base, 2, &[("V-A", 2)]).await;
            life.request_ok(base, 2).await;
            life.notify_ok(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            assert_eq!(life.status(base).await, "refunded");
            refuse!(base, Attempt::Top(life.verify_call(base, &[("V-A", 1, life.gate())])));
            // One of two refunded: the code still has 2 uses, the order only 1.
            life.issued(base + 1, 2, &[("V-A", 2)]).await;
            life.request_ok(base + 1, 1).await;
            life.notify_ok(base + 1, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            refuse!(
                base + 1,
                Attempt::Top(life.verify_call(base + 1, &[("V-A", 2, life.gate())])),
            );
            // One code per ticket: each code fits, the order does not.
            life.issued(base + 2, 2, &[("V-A", 1), ("V-B", 1)]).await;
            life.request_ok(base + 2, 1).await;
            life.notify_ok(base + 2, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            refuse!(
                base + 2,
                Attempt::Top(life.verify_call(base + 2, &[("V-A", 1, life.gate()), ("V-B", 1, life.gate())])),
            );
        }
        (
            VERIFY_CALL,
            "a refund is pending and uses dated after its request need the tickets it holds",
        ) => {
            life.issued(base, 2, &[("V-A", 2)]).await;
            life.request_ok(base, 1).await;
            let after = life.now() + Duration::minutes(2);
            // Dated after the request, with no used_date (the receive time, which is the
            // request's own instant: "at or after"), and with an order-level legacy report.
            refuse!(base, Attempt::Top(life.verify_call(base, &[("V-A", 2, Some(after))])));
            refuse!(base, Attempt::Top(life.verify_call(base, &[("V-A", 2, None)])));
            refuse!(
                base,
                Attempt::Top(life.call(VERIFY).set("order_id", base).set("check_num", 2)),
            );
        }
        (
            ISSUE_CALL,
            "the order was issued with other codes or quantities, or a failure follows a success",
        ) => {
            life.awaiting(base, 2).await;
            life.issue_ok(base, &[("I-A", 1), ("I-B", 1)]).await;
            let out = format!("OUT-{base}");
            for vouchers in [
                json!([{"confirm_code": "I-A", "quantity": 1}, {"confirm_code": "I-B", "quantity": 2}]),
                json!([{"confirm_code": "I-A", "quantity": 1}]),
                json!([{"confirm_code": "I-A", "quantity": 1}, {"confirm_code": "I-C", "quantity": 1}]),
                json!([{"confirm_code": "I-A", "quantity": 1}, {"confirm_code": "I-B", "quantity": 1}, {"confirm_code": "I-C", "quantity": 1}]),
            ] {
                refuse!(base, Attempt::Top(life.issue_call(base, &out, &vouchers)));
            }
            refuse!(base, Attempt::Top(life.fail_call(base, &out, "库存不足")));
            // Created issued by the operator: the vendor's report must match it too.
            life.issued(base + 1, 1, &[("I-ADMIN", 1)]).await;
            refuse!(
                base + 1,
                Attempt::Top(life.issue_call(
                    base + 1,
                    "OUT-X",
                    &json!([{"confirm_code": "I-OTHER", "quantity": 1}]),
                )),
            );
        }
        (ISSUE_CALL, "`out_order_id` differs from the one the order has") => {
            // Given at creation…
            create_order_with(&life.app, base, KEY, &[], json!({"quantity": 1, "out_order_id": "OUT-A"}))
                .await;
            refuse!(
                base,
                Attempt::Top(life.issue_call(base, "OUT-B", &json!([{"confirm_code": "O-A", "quantity": 1}]))),
            );
            // …or set by the first issuance report.
            life.awaiting(base + 1, 1).await;
            life.issue_ok(base + 1, &[("O-B", 1)]).await;
            refuse!(
                base + 1,
                Attempt::Top(life.issue_call(base + 1, "OUT-OTHER", &json!([{"confirm_code": "O-B", "type": 1, "quantity": 1}]))),
            );
            refuse!(base + 1, Attempt::Top(life.fail_call(base + 1, "OUT-OTHER", "x")));
        }
        (REQUEST_CALL, "more tickets than are unused, unrefunded and not already requested") => {
            life.issued(base, 3, &[("Q-A", 1), ("Q-B", 1), ("Q-C", 1)]).await;
            let path = format!("/admin/orders/{base}/refunds");
            refuse!(base, Attempt::Admin(path.clone(), json!({"quantity": 4})));
            life.verify_ok(base, "Q-A", 1).await;
            refuse!(base, Attempt::Admin(path.clone(), json!({"quantity": 3})));
            life.request_ok(base, 1).await;
            refuse!(base, Attempt::Admin(path.clone(), json!({"quantity": 2})));
            life.notify_ok(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            life.request_ok(base, 1).await;
            refuse!(base, Attempt::Admin(path, json!({"quantity": 1})));
        }
        (REQUEST_CALL, "the order is not issued") => {
            life.awaiting(base, 2).await;
            refuse!(
                base,
                Attempt::Admin(format!("/admin/orders/{base}/refunds"), json!({"quantity": 1})),
            );
            life.awaiting(base + 1, 2).await;
            let call = life.fail_call(base + 1, &format!("OUT-F-{base}"), "库存不足");
            assert_success_for(&life.send(call).await, ISSUE);
            refuse!(
                base + 1,
                Attempt::Admin(format!("/admin/orders/{}/refunds", base + 1), json!({"quantity": 1})),
            );
        }
        (
            REFUND_CALL,
            "no pending request (none named by `fliggy_refund_flow_id`, or none at all)",
        ) => {
            life.issued(base, 2, &[("N-A", 2)]).await;
            refuse!(
                base,
                Attempt::Top(life.notify_call(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])),
            );
            life.request_ok(base, 1).await;
            refuse!(
                base,
                Attempt::Top(life.notify_call(
                    base,
                    &[("refund_status", "1"), ("fliggy_refund_flow_id", "RF-NOT-MINE")],
                )),
            );
            life.notify_ok(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            refuse!(
                base,
                Attempt::Top(life.notify_call(base, &[("refund_status", "1"), ("refund_batch_no", "RB-2")])),
            );
        }
        (
            REFUND_CALL,
            "the request or `refund_batch_no` was already settled with another result",
        ) => {
            life.issued(base, 2, &[("C-A", 2)]).await;
            let flow = life.request_ok(base, 1).await;
            life.notify_ok(
                base,
                &[("refund_status", "1"), ("refund_batch_no", "RB-1"), ("fliggy_refund_flow_id", &flow)],
            )
            .await;
            for fields in [
                vec![("refund_status", "2"), ("refund_batch_no", "RB-1")],
                vec![("refund_status", "2"), ("fliggy_refund_flow_id", flow.as_str())],
                vec![("refund_status", "1"), ("refund_num", "2"), ("fliggy_refund_flow_id", flow.as_str())],
                vec![("refund_status", "1"), ("refund_num", "2"), ("refund_batch_no", "RB-1")],
            ] {
                refuse!(base, Attempt::Top(life.notify_call(base, &fields)));
            }
        }
        (REFUND_CALL, "`refund_num` exceeds the request's tickets") => {
            life.issued(base, 3, &[("E-A", 3)]).await;
            let flow = life.request_ok(base, 1).await;
            refuse!(
                base,
                Attempt::Top(life.notify_call(base, &[("refund_status", "1"), ("refund_num", "2")])),
            );
            refuse!(
                base,
                Attempt::Top(life.notify_call(
                    base,
                    &[("refund_status", "1"), ("refund_num", "2"), ("fliggy_refund_flow_id", &flow), ("refund_type", "3")],
                )),
            );
        }
        (REFUND_CALL, "uses recorded meanwhile leave fewer unused tickets than `refund_num`") => {
            // R9: a use dated before the request takes a ticket the request holds.
            life.issued(base, 2, &[("M-A", 2)]).await;
            let flow = life.request_ok(base, 2).await;
            life.verify_ok(base, "M-A", 1).await;
            refuse!(
                base,
                Attempt::Top(life.notify_call(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])),
            );
            refuse!(
                base,
                Attempt::Top(life.notify_call(
                    base,
                    &[("refund_status", "1"), ("refund_num", "2"), ("fliggy_refund_flow_id", &flow)],
                )),
            );
        }
        (
            REVERSE_CALL,
            "more uses than were recorded within the window (`--reversal-window`, default 24 h) and not yet reversed",
        ) => {
            life.issued(base, 3, &[("R-A", 2), ("R-B", 1)]).await;
            life.verify_ok(base, "R-A", 1).await;
            let path = format!("/admin/orders/{base}/reversals");
            let body = |code: &str, n: i64| json!({"confirm_code": code, "quantity": n, "reason": "test"});
            refuse!(base, Attempt::Admin(path.clone(), body("R-A", 2)));
            refuse!(base, Attempt::Admin(path.clone(), body("R-B", 1)));
            life.reverse_ok(base, "R-A", 1).await;
            refuse!(base, Attempt::Admin(path, body("R-A", 1)));
        }
        _ => panic!(
            "REFUSALS row not walked by lifecycle.rs: {r:?}; teach walk_refusal how to build it"
        ),
    }
    n
}

/// Sends one refused attempt and checks the row's answer, the unchanged ledger and the anomaly.
async fn check_refusal(life: &Life, r: &Refusal, o: i64, attempt: Attempt) {
    let ctx = format!("{} refused when {} (order {o})", r.call, r.when);
    let before = ledger_snapshot(&life.app, o).await;
    let known: Vec<i64> = life
        .anomalies("limit=1000")
        .await
        .iter()
        .map(|a| a.id)
        .collect();
    let rid = match attempt {
        Attempt::Top(call) => {
            let method = call.params.get("method").unwrap().to_owned();
            let sub_code = r.answer.trim_matches('`');
            let reply = life.send(call).await;
            let (rid, sub_msg) = refused_with(&reply, sub_code);
            // The refusal is in the audit trail, under its request_id.
            let rejected = audit_entries(
                &life.app,
                &format!("order_id={o}&outcome=rejected&limit=1000"),
            )
            .await;
            let e = crate::helpers::entry_for(&rejected, &rid);
            assert_eq!(
                (
                    e.action.as_str(),
                    e.reason.as_str(),
                    e.detail["sub_msg"].as_str()
                ),
                (method.as_str(), sub_code, Some(sub_msg.as_str())),
                "{ctx}: {e:?}"
            );
            Some((rid, method))
        }
        Attempt::Admin(path, body) => {
            let (status, kind) = r
                .answer
                .split_once(' ')
                .unwrap_or_else(|| panic!("{ctx}: admin answer {:?}", r.answer));
            let (got, resp) = life.app.admin_post(&path, body.clone()).await;
            assert_eq!(
                (got.to_string().as_str(), resp["error"].as_str()),
                (status, Some(kind.trim_matches('`'))),
                "{ctx}: {body} answered {resp}"
            );
            assert!(
                resp["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{ctx}: {resp}"
            );
            None
        }
    };
    assert_eq!(
        ledger_snapshot(&life.app, o).await,
        before,
        "{ctx}: a refused call changed the order"
    );
    let new: Vec<AnomalyAnswer> = life
        .anomalies("limit=1000")
        .await
        .into_iter()
        .filter(|a| !known.contains(&a.id))
        .collect();
    match r.anomaly {
        None => assert!(new.is_empty(), "{ctx}: unexpected anomalies {new:#?}"),
        Some(kind) => {
            assert_eq!(
                new.len(),
                1,
                "{ctx}: expected one {kind} anomaly, got {new:#?}"
            );
            let a = &new[0];
            let (rid, method) = rid.expect("anomalies come from TOP calls");
            assert_eq!(
                (a.kind.as_str(), a.order_id, a.status.as_str()),
                (kind, Some(o), "open"),
                "{ctx}: {a:?}"
            );
            assert_eq!(a.request_id, rid.as_str(), "{ctx}: {a:?}");
            assert_eq!(a.app_key.as_deref(), Some(KEY), "{ctx}: {a:?}");
            assert_eq!(a.resolution, None, "{ctx}: {a:?}");
            // The raw request, sanitized: no signature.
            assert_eq!(a.request["method"], method.as_str(), "{ctx}: {a:?}");
            assert_eq!(a.request["order_id"], o.to_string(), "{ctx}: {a:?}");
            assert!(a.request.get("sign").is_none(), "{ctx}: {a:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Issuance
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_fills_the_ledger_once_and_refuses_contradictions() {
    let life = Life::new().await;
    let o = 73_001;
    let created = life.awaiting(o, 3).await;
    assert_eq!(created.status, "awaiting_issuance");
    assert_eq!(created.out_order_id, None);
    assert_business(
        &life
            .send(life.verify_call(o, &[("ISS-1", 1, life.gate())]))
            .await,
        "isv.order-status-invalid",
        "订单状态不允许核销: 订单尚未发码",
    );

    // The report with extras and types: recorded, the order becomes verifiable.
    let vouchers = json!([
        {"confirm_code": "ISS-1", "type": 1, "quantity": 1, "assist_code": "AC-1", "url": "https://v.example/ISS-1"},
        {"confirm_code": "ISS-2", "type": 1, "quantity": 1, "pdf_url": "https://v.example/2.pdf", "img": "https://v.example/2.png"},
        {"confirm_code": "ISS-3", "type": 2, "quantity": 1},
    ]);
    let rid = assert_success_for(
        &life
            .send(
                life.issue_call(o, "OUT-73001", &vouchers)
                    .set("attribute_map", r#"{"channel":"gate-7"}"#),
            )
            .await,
        ISSUE,
    );
    let order = life.order(o).await;
    assert_eq!(order.status, "issued", "{order:?}");
    assert_eq!(
        order.out_order_id.as_deref(),
        Some("OUT-73001"),
        "issuance sets out_order_id"
    );
    assert_eq!(
        json!(order.vouchers),
        json!([
            {"confirm_code": "ISS-1", "capacity": 1, "used": 0, "remaining": 1},
            {"confirm_code": "ISS-2", "capacity": 1, "used": 0, "remaining": 1},
            {"confirm_code": "ISS-3", "capacity": 1, "used": 0, "remaining": 1},
        ])
    );
    assert_eq!((order.capacity, order.refundable_tickets), (3, 3));
    let issue_event = order
        .events
        .iter()
        .find(|e| e.request_id == rid.as_str() && e.action == ISSUE)
        .unwrap()
        .clone();
    assert_eq!(
        (issue_event.outcome.as_str(), issue_event.reason.as_str()),
        ("accepted", "issued")
    );
    assert_eq!(
        issue_event.detail["vouchers"],
        json!([
            {"confirm_code": "****-1", "capacity": 1, "type": 1},
            {"confirm_code": "****-2", "capacity": 1, "type": 1},
            {"confirm_code": "****-3", "capacity": 1, "type": 2},
        ]),
        "codes masked, types kept: {issue_event:?}"
    );
    assert_transition(&order, &rid, "awaiting_issuance", "issued", ISSUE);

    // The same report again — also with its codes in another order — changes nothing.
    let same = without_events(ledger_snapshot(&life.app, o).await);
    let reordered = json!([
        {"confirm_code": "ISS-3", "type": 2, "quantity": 1},
        {"confirm_code": "ISS-1", "type": 1, "quantity": 1, "assist_code": "AC-1", "url": "https://v.example/ISS-1"},
        {"confirm_code": "ISS-2", "type": 1, "quantity": 1},
    ]);
    for report in [&vouchers, &reordered] {
        let rid = assert_success_for(
            &life.send(life.issue_call(o, "OUT-73001", report)).await,
            ISSUE,
        );
        let order = life.order(o).await;
        assert_eq!(
            events_of(&order, &rid),
            [(
                ISSUE.to_owned(),
                "replayed".to_owned(),
                "replayed".to_owned()
            )]
        );
        assert_eq!(without_events(ledger_snapshot(&life.app, o).await), same);
    }

    // Contradictions are refused precisely and change nothing.
    let conflict = |why: &str| format!("发码结果与已记录的不一致: {why}");
    let before = ledger_snapshot(&life.app, o).await;
    for (report, why) in [
        (
            json!([{"confirm_code": "ISS-1", "quantity": 2}, {"confirm_code": "ISS-2", "quantity": 1}, {"confirm_code": "ISS-3", "quantity": 1}]),
            "the order was already issued with other codes",
        ),
        (
            json!([{"confirm_code": "ISS-1", "quantity": 1}]),
            "the order was already issued with other codes",
        ),
    ] {
        assert_business(
            &life.send(life.issue_call(o, "OUT-73001", &report)).await,
            "isv.issue-conflict",
            &conflict(why),
        );
    }
    assert_business(
        &life.send(life.fail_call(o, "OUT-73001", "库存不足")).await,
        "isv.issue-conflict",
        &conflict("the order was already issued; a failure cannot follow"),
    );
    assert_business(
        &life.send(life.issue_call(o, "OUT-OTHER", &vouchers)).await,
        "isv.out-order-id-mismatch",
        "外部订单号与订单不匹配",
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, before);

    // The codes now verify, also by the out_order_id issuance set.
    life.verify_ok(o, "ISS-1", 1).await;
    let by_out = life.call(VERIFY).set("out_order_id", "OUT-73001").set(
        "voucher_infos",
        json!([{"confirm_code": "ISS-2", "used_quantity": 1, "used_date": format_beijing(life.gate().unwrap())}]),
    );
    assert_success_for(&life.send(by_out).await, VERIFY);
    assert_eq!(
        (life.used(o, "ISS-1").await, life.used(o, "ISS-2").await),
        (1, 1)
    );
    assert_eq!(life.status(o).await, "partly_used");

    // A failure, its retry, then the vendor's successful retry of issuing.
    let o2 = 73_002;
    life.awaiting(o2, 2).await;
    let failed = assert_success_for(
        &life.send(life.fail_call(o2, "OUT-73002", "库存不足")).await,
        ISSUE,
    );
    let order = life.order(o2).await;
    assert_eq!(order.status, "issue_failed");
    assert_eq!(order.issue_describe.as_deref(), Some("库存不足"));
    assert_eq!(order.out_order_id.as_deref(), Some("OUT-73002"));
    assert_eq!(order.vouchers, []);
    assert_eq!(
        events_of(&order, &failed)[0],
        (
            ISSUE.to_owned(),
            "accepted".to_owned(),
            "issue_failed".to_owned()
        )
    );
    assert_transition(&order, &failed, "awaiting_issuance", "issue_failed", ISSUE);
    let again = assert_success_for(
        &life.send(life.fail_call(o2, "OUT-73002", "库存不足")).await,
        ISSUE,
    );
    let order = life.order(o2).await;
    assert_eq!(
        events_of(&order, &again),
        [(
            ISSUE.to_owned(),
            "replayed".to_owned(),
            "replayed".to_owned()
        )]
    );
    assert_business(
        &life
            .send(life.verify_call(o2, &[("RETRY-1", 1, life.gate())]))
            .await,
        "isv.order-status-invalid",
        "订单状态不允许核销: 订单尚未发码",
    );
    let ok = life.issue_ok(o2, &[("RETRY-1", 1), ("RETRY-2", 1)]).await;
    let order = life.order(o2).await;
    assert_eq!(order.status, "issued");
    assert_transition(&order, &ok, "issue_failed", "issued", ISSUE);
    assert_eq!(
        status_events(&order)
            .into_iter()
            .map(|(_, f, t, _)| (f, t))
            .collect::<Vec<_>>(),
        [
            ("awaiting_issuance".to_owned(), "issue_failed".to_owned()),
            ("issue_failed".to_owned(), "issued".to_owned())
        ]
    );
    life.verify_ok(o2, "RETRY-2", 1).await;

    // An order the operator created with its codes: the vendor's report of the same codes is
    // a replay, and records the vendor's order id.
    let o3 = 73_003;
    life.issued(o3, 2, &[("ADM-1", 1), ("ADM-2", 1)]).await;
    let rid = assert_success_for(
        &life
            .send(life.issue_call(
                o3,
                "OUT-73003",
                &json!([{"confirm_code": "ADM-1", "quantity": 1}, {"confirm_code": "ADM-2", "quantity": 1}]),
            ))
            .await,
        ISSUE,
    );
    let order = life.order(o3).await;
    assert_eq!(order.out_order_id.as_deref(), Some("OUT-73003"));
    assert_eq!(order.status, "issued");
    assert_no_transition(&order, &rid);

    // Another order of the same app cannot take an out_order_id already in use.
    let o4 = 73_004;
    life.awaiting(o4, 1).await;
    assert_business(
        &life
            .send(life.issue_call(
                o4,
                "OUT-73001",
                &json!([{"confirm_code": "DUP-1", "quantity": 1}]),
            ))
            .await,
        "isv.out-order-id-duplicate",
        "外部订单号已被其他订单使用",
    );
    assert_eq!(life.status(o4).await, "awaiting_issuance");

    // Unknown orders and other vendors' orders do not exist for the caller.
    create_order_with(&life.app, 73_005, OTHER, &[], json!({"quantity": 1})).await;
    for id in [73_005, 73_999] {
        assert_business(
            &life
                .send(life.issue_call(
                    id,
                    "OUT-X",
                    &json!([{"confirm_code": "X-1", "quantity": 1}]),
                ))
                .await,
            "isv.order-not-exist",
            "订单不存在",
        );
    }
    assert_eq!(life.status(73_005).await, "awaiting_issuance");

    // Shape rules through the gateway.
    let missing = life
        .send(
            life.call(ISSUE)
                .set("order_id", o4)
                .set("out_order_id", "OUT-73004")
                .set("issue_type", 1),
        )
        .await;
    let id = assert_top_envelope(&missing);
    assert_eq!(
        missing.text(),
        error_json(
            40,
            "Missing required arguments:voucher_infos",
            Some((
                "isv.missing-parameter:voucher_infos",
                "缺少必选参数:voucher_infos"
            )),
            &id
        )
    );
    let no_describe = life
        .send(
            life.call(ISSUE)
                .set("order_id", o4)
                .set("out_order_id", "OUT-73004")
                .set("issue_type", 2),
        )
        .await;
    let (code, sub) = no_describe.error();
    assert_eq!((code, sub.as_str()), (40, "isv.missing-parameter:describe"));
    let zero = life
        .send(life.issue_call(
            o4,
            "OUT-73004",
            &json!([{"confirm_code": "Z-1", "quantity": 0}]),
        ))
        .await;
    let (code, sub) = zero.error();
    assert_eq!(
        (code, sub.as_str()),
        (41, "isv.invalid-parameter:voucher_infos")
    );
    assert_eq!(life.status(o4).await, "awaiting_issuance");
}

// ---------------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_requests_are_settled_by_the_vendors_notification() {
    let life = Life::new().await;
    let o = 74_001;
    life.issued(o, 3, &[("RF-1", 1), ("RF-2", 1), ("RF-3", 1)])
        .await;
    let t0 = format_beijing(life.now());

    // A request: 201 with the flow id the vendor will name.
    let (status, first) = life.request_refund(o, 1).await;
    assert_eq!(status, 201, "{first}");
    let flow1 = format!("RF{o}001");
    assert_eq!(
        first,
        json!({"fliggy_refund_flow_id": flow1, "quantity": 1, "state": "pending",
               "refunded_tickets": 0, "requested_at": t0, "settled_at": null,
               "refund_batch_no": null, "refund_failure_reason": null, "needs_review": false})
    );
    let order = life.order(o).await;
    assert_eq!(order.status, "refunding");
    assert_eq!(json!(order.refunds), json!([first]));
    assert_eq!(order.refundable_tickets, 2);
    let rid = last_of(&order, REQUEST_ACTION);
    let e = order
        .events
        .iter()
        .find(|e| e.request_id == rid.as_str() && e.action == REQUEST_ACTION)
        .unwrap()
        .clone();
    assert_eq!(
        (e.reason.as_str(), &e.detail),
        (
            "refund_requested",
            &json!({"fliggy_refund_flow_id": flow1, "quantity": 1})
        )
    );
    assert_transition(&order, &rid, "issued", "refunding", REQUEST_ACTION);

    // More than remain unused and unrequested: 409, nothing recorded. Bad input: 400 / 404.
    let snap = ledger_snapshot(&life.app, o).await;
    let (status, body) = life.request_refund(o, 3).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("refund_exceeds_unused")),
        "{body}"
    );
    let (status, body) = life.request_refund(o, 0).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("quantity")),
        "{body}"
    );
    let (status, body) = life
        .app
        .admin_post(&format!("/admin/orders/{o}/refunds"), json!({"tickets": 1}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = life.request_refund(74_999, 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // A second request, a second later.
    life.clock.advance(Duration::seconds(1));
    let flow2 = life.request_ok(o, 1).await;
    assert_eq!(flow2, format!("RF{o}002"));
    assert_eq!(life.order(o).await.refundable_tickets, 1);

    // Without a flow id the notification settles the oldest pending request.
    life.clock.advance(Duration::seconds(1));
    let settled_at = format_beijing(life.now());
    let rid = life
        .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
        .await;
    let order = life.order(o).await;
    assert_eq!(order.refunds[0].state, "succeeded", "{order:?}");
    assert_eq!(order.refunds[0].refunded_tickets, 1);
    assert_eq!(order.refunds[0].refund_batch_no.as_deref(), Some("RB-1"));
    assert_eq!(
        order.refunds[0].settled_at.as_deref(),
        Some(settled_at.as_str())
    );
    assert_eq!(order.refunds[1].state, "pending");
    assert_eq!(order.refunded_tickets, 1);
    assert_eq!(
        order.status, "refunding",
        "another request is still pending"
    );
    assert_no_transition(&order, &rid);
    let e = order
        .events
        .iter()
        .find(|e| e.request_id == rid.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (e.action.as_str(), e.outcome.as_str(), e.reason.as_str()),
        (REFUND, "accepted", "refunded")
    );
    assert_eq!(e.detail["fliggy_refund_flow_id"], flow1.as_str());
    assert_eq!(e.detail["refunded_tickets"], 1);

    // The same notification again (same refund_batch_no) changes nothing.
    let snap = ledger_snapshot(&life.app, o).await;
    let again = life
        .notify_ok(o, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
        .await;
    let order = life.order(o).await;
    assert_eq!(
        events_of(&order, &again),
        [(
            REFUND.to_owned(),
            "replayed".to_owned(),
            "replayed".to_owned()
        )]
    );
    let mut now = ledger_snapshot(&life.app, o).await;
    now.events.pop();
    assert_eq!(now, snap);
    let now = ledger_snapshot(&life.app, o).await;

    // A partial refund (refund_type 3) names its request; without a flow id it is refused.
    let reply = life
        .send(life.notify_call(o, &[("refund_status", "1"), ("refund_type", "3")]))
        .await;
    let id = assert_top_envelope(&reply);
    assert_eq!(
        reply.text(),
        error_json(
            40,
            "Missing required arguments:fliggy_refund_flow_id",
            Some((
                "isv.missing-parameter:fliggy_refund_flow_id",
                "缺少必选参数:fliggy_refund_flow_id"
            )),
            &id
        )
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, now);
    let rid = life
        .notify_ok(
            o,
            &[
                ("refund_status", "1"),
                ("refund_type", "3"),
                ("refund_num", "1"),
                ("fliggy_refund_flow_id", &flow2),
                ("refund_batch_no", "RB-2"),
            ],
        )
        .await;
    let order = life.order(o).await;
    assert_eq!(order.refunds[1].state, "succeeded");
    assert_eq!(order.refunds[1].refund_batch_no.as_deref(), Some("RB-2"));
    assert_eq!(order.refunded_tickets, 2);
    assert_eq!(order.refundable_tickets, 1);
    assert_transition(&order, &rid, "refunding", "partly_refunded", REFUND);

    // The same result again, by flow id alone: a replay.
    let snap = ledger_snapshot(&life.app, o).await;
    let again = life
        .notify_ok(
            o,
            &[("refund_status", "1"), ("fliggy_refund_flow_id", &flow2)],
        )
        .await;
    assert_eq!(
        events_of(&life.order(o).await, &again),
        [(
            REFUND.to_owned(),
            "replayed".to_owned(),
            "replayed".to_owned()
        )]
    );
    let mut now = ledger_snapshot(&life.app, o).await;
    now.events.pop();
    assert_eq!(now, snap);
    let now = ledger_snapshot(&life.app, o).await;

    // Nothing pending: refused, and recorded as an anomaly.
    let reply = life
        .send(life.notify_call(o, &[("refund_status", "1"), ("refund_batch_no", "RB-3")]))
        .await;
    let rid = assert_business(&reply, "isv.refund-not-requested", "没有对应的退票申请");
    let found = life
        .anomalies(&format!("order_id={o}&kind=refund_not_requested"))
        .await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].request_id, rid.as_str());
    assert_eq!(ledger_snapshot(&life.app, o).await, now);

    // Two tickets are refunded: one use is left for three codes. Two uses are refused as
    // refunded tickets (and recorded), one is accepted and closes the order.
    let reply = life
        .send(life.verify_call(o, &[("RF-1", 1, life.gate()), ("RF-2", 1, life.gate())]))
        .await;
    let rid = assert_business(
        &reply,
        "isv.ticket-refunded",
        "门票已退票，不可核销: 本次核销2次, 未退票的剩余可核销1次",
    );
    let found = life
        .anomalies(&format!("order_id={o}&kind=verify_after_refund"))
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].request_id, rid.as_str());
    assert_eq!(
        found[0].detail,
        json!({"requested": 2, "remaining": 1, "refund_pending": false})
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, now);
    let rid = life.verify_ok(o, "RF-3", 1).await;
    let order = life.order(o).await;
    assert_transition(&order, &rid, "partly_refunded", "closed", VERIFY);
    assert_eq!(order.refundable_tickets, 0);
    let reply = life
        .send(life.verify_call(o, &[("RF-1", 1, life.gate())]))
        .await;
    assert_business(
        &reply,
        "isv.ticket-refunded",
        "门票已退票，不可核销: 本次核销1次, 未退票的剩余可核销0次",
    );
    assert_eq!(
        life.anomalies(&format!("order_id={o}&kind=verify_after_refund"))
            .await
            .len(),
        2
    );

    // A refund that fails releases its tickets, with the vendor's reason kept.
    let o2 = 74_002;
    life.issued(o2, 2, &[("RF-F", 2)]).await;
    let flow = life.request_ok(o2, 2).await;
    life.notify_ok(
        o2,
        &[
            ("refund_status", "2"),
            ("fliggy_refund_flow_id", &flow),
            ("refund_failure_reason", "已过退票期"),
        ],
    )
    .await;
    let order = life.order(o2).await;
    assert_eq!(order.refunds[0].state, "failed");
    assert_eq!(
        order.refunds[0].refund_failure_reason.as_deref(),
        Some("已过退票期")
    );
    assert_eq!(order.refunds[0].refunded_tickets, 0);
    assert_eq!((order.refunded_tickets, order.refundable_tickets), (0, 2));
    assert_eq!(
        order.status, "issued",
        "the status before the request returns"
    );
    life.verify_ok(o2, "RF-F", 2).await;

    // A full refund: every ticket; a verify is refused as refunded.
    let o3 = 74_003;
    life.issued(o3, 2, &[("RF-ALL", 2)]).await;
    life.request_ok(o3, 2).await;
    life.notify_ok(
        o3,
        &[
            ("refund_status", "1"),
            ("refund_num", "2"),
            ("refund_batch_no", "RB-ALL"),
        ],
    )
    .await;
    let order = life.order(o3).await;
    assert_eq!(
        (order.status.as_str(), order.refunded_tickets),
        ("refunded", 2)
    );
    assert_business(
        &life
            .send(life.verify_call(o3, &[("RF-ALL", 1, life.gate())]))
            .await,
        "isv.ticket-refunded",
        "门票已退票，不可核销: 订单门票已全部退票",
    );
}

/// DOMAIN.md R9 exactly as docs/LIFECYCLE.md says: a pending request holds its tickets' uses;
/// uses dated before the request may still take them (accepted, the request needs review, a
/// `verify_during_refund` anomaly); uses dated at or after it may not (refused
/// `isv.ticket-refunded`, a `verify_after_refund` anomaly); a notification for more tickets
/// than remain unused is refused with a `refund_exceeds_unused` anomaly; a failed refund
/// releases what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_refund_holds_its_tickets_against_later_uses() {
    let life = Life::new().await;
    let o = 75_001;
    life.issued(o, 2, &[("R9-A", 2)]).await;
    let requested = life.now();
    let flow = life.request_ok(o, 1).await;

    // After the request: the unheld use may be taken…
    let rid = assert_success_for(
        &life
            .send(life.verify_call(o, &[("R9-A", 1, Some(requested + Duration::minutes(1)))]))
            .await,
        VERIFY,
    );
    let order = life.order(o).await;
    assert_eq!(order.refunds[0].needs_review, false);
    assert_eq!(
        order.status, "refunding",
        "a pending request wins over partly_used"
    );
    assert_no_transition(&order, &rid);
    assert!(life.anomalies(&format!("order_id={o}")).await.is_empty());

    // …the held one may not: dated after, or at the request's instant (no used_date: the
    // receive time, which the clock keeps at the request's instant).
    let held = "门票已退票，不可核销: 本次核销1次, 未退票的剩余可核销0次 (有退票处理中)";
    let snap = ledger_snapshot(&life.app, o).await;
    let mut refused = Vec::new();
    for at in [
        Some(requested + Duration::minutes(2)),
        None,
        Some(requested),
    ] {
        let reply = life.send(life.verify_call(o, &[("R9-A", 1, at)])).await;
        refused.push(assert_business(&reply, "isv.ticket-refunded", held));
    }
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);
    let found = life
        .anomalies(&format!("order_id={o}&kind=verify_after_refund"))
        .await;
    let mut ids: Vec<&str> = found.iter().map(|a| a.request_id.as_str()).collect();
    ids.reverse(); // newest first
    assert_eq!(ids, refused.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        found[0].detail,
        json!({"requested": 1, "remaining": 0, "refund_pending": true})
    );

    // Dated before the request: the visitor was admitted first. Accepted; the request needs
    // review, and the fact is an anomaly.
    let before = requested - Duration::minutes(10);
    let rid = assert_success_for(
        &life
            .send(life.verify_call(o, &[("R9-A", 1, Some(before))]))
            .await,
        VERIFY,
    );
    let order = life.order(o).await;
    assert_eq!(life.used(o, "R9-A").await, 2);
    assert_eq!(order.refunds[0].needs_review, true, "{order:?}");
    assert_eq!(order.refunds[0].state, "pending");
    assert_eq!(order.status, "refunding");
    assert_no_transition(&order, &rid);
    let during = life
        .anomalies(&format!("order_id={o}&kind=verify_during_refund"))
        .await;
    assert_eq!(during.len(), 1, "{during:#?}");
    assert_eq!(during[0].request_id, rid.as_str());
    assert_eq!(during[0].status, "open");
    assert_eq!(
        during[0].detail,
        json!({"kind": "verify_during_refund", "fliggy_refund_flow_ids": [flow]})
    );

    // The vendor reports the ticket refunded although it was used: refused, an anomaly.
    let snap = ledger_snapshot(&life.app, o).await;
    let reply = life
        .send(life.notify_call(
            o,
            &[("refund_status", "1"), ("fliggy_refund_flow_id", &flow)],
        ))
        .await;
    let rid = assert_business(
        &reply,
        "isv.refund-num-exceed",
        "退票数量超过可退数量: 退票1张, 未使用可退0张",
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);
    let exceeds = life
        .anomalies(&format!("order_id={o}&kind=refund_exceeds_unused"))
        .await;
    assert_eq!(exceeds.len(), 1);
    assert_eq!(exceeds[0].request_id, rid.as_str());
    assert_eq!(exceeds[0].detail, json!({"requested": 1, "refundable": 0}));

    // The vendor then reports the refund failed: the hold is released, the order is used.
    life.notify_ok(
        o,
        &[
            ("refund_status", "2"),
            ("fliggy_refund_flow_id", &flow),
            ("refund_failure_reason", "门票已使用"),
        ],
    )
    .await;
    let order = life.order(o).await;
    assert_eq!(order.refunds[0].state, "failed");
    assert_eq!(order.status, "used");

    // With tickets to spare, a reviewed request is still settled for what remains unused.
    let o2 = 75_002;
    life.issued(o2, 3, &[("R9-1", 1), ("R9-2", 1), ("R9-3", 1)])
        .await;
    let flow = life.request_ok(o2, 2).await;
    life.verify_ok(o2, "R9-1", 1).await; // the unheld ticket
    assert_eq!(life.order(o2).await.refunds[0].needs_review, false);
    life.verify_ok(o2, "R9-2", 1).await; // a held one, dated before the request
    assert_eq!(life.order(o2).await.refunds[0].needs_review, true);
    let rid = life
        .notify_ok(
            o2,
            &[
                ("refund_status", "1"),
                ("refund_type", "3"),
                ("refund_num", "1"),
                ("fliggy_refund_flow_id", &flow),
            ],
        )
        .await;
    let order = life.order(o2).await;
    assert_eq!(order.refunded_tickets, 1);
    assert_eq!(order.refunds[0].refunded_tickets, 1);
    assert_transition(&order, &rid, "refunding", "closed", REFUND);
}

// ---------------------------------------------------------------------------------------------
// Reversal
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_gives_back_uses_within_the_window_only() {
    let life = Life::with(|s| s.reversal_window = Duration::seconds(60)).await;
    let o = 76_001;
    life.issued(o, 4, &[("REV-1", 3), ("REV-2", 1)]).await;
    let verify = life.verify_ok(o, "REV-1", 3).await;

    // Within the window: 201, the count goes down, the reversal is its own event and the
    // verify stays in the history.
    let (status, body) = life.reverse(o, "REV-1", 1).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"order_id": o, "confirm_code": "REV-1", "reversed": 1, "used": 2,
               "reason": "gate scanned twice"})
    );
    let order = life.order(o).await;
    assert_eq!(life.used(o, "REV-1").await, 2);
    assert_eq!(order.status, "partly_used");
    let v = order
        .events
        .iter()
        .find(|e| e.request_id == verify.as_str() && e.action == VERIFY)
        .unwrap()
        .clone();
    assert_eq!(
        (v.outcome.as_str(), v.reason.as_str()),
        ("accepted", "applied")
    );
    assert_eq!(
        v.detail["changes"][0]["used"], 3,
        "the verify is kept as it was"
    );
    let rid = last_of(&order, REVERSE_ACTION);
    let r = order
        .events
        .iter()
        .find(|e| e.request_id == rid.as_str() && e.action == REVERSE_ACTION)
        .unwrap()
        .clone();
    assert_eq!(
        (r.outcome.as_str(), r.reason.as_str()),
        ("accepted", "reversed")
    );
    assert_eq!(
        r.detail,
        json!({"confirm_code": "****-1", "quantity": 1, "used": 2, "reason": "gate scanned twice"})
    );
    assert_no_transition(&order, &rid);

    // Beyond what was recorded and not yet reversed, or a code with no use: 409, nothing.
    let snap = ledger_snapshot(&life.app, o).await;
    for (code, n) in [("REV-1", 3), ("REV-2", 1)] {
        let (status, body) = life.reverse(o, code, n).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("reversal_not_allowed")),
            "{body}"
        );
    }
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // At the window's edge the use is still reversible; one second later it is not.
    life.clock.advance(Duration::seconds(60));
    life.reverse_ok(o, "REV-1", 1).await;
    assert_eq!(life.used(o, "REV-1").await, 1);
    life.clock.advance(Duration::seconds(1));
    let snap = ledger_snapshot(&life.app, o).await;
    let (status, body) = life.reverse(o, "REV-1", 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("reversal_not_allowed")),
        "{body}"
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // A newer use is reversible, the old one still not; the count never goes below zero.
    life.verify_ok(o, "REV-1", 1).await;
    assert_eq!(life.used(o, "REV-1").await, 2);
    let (status, _) = life.reverse(o, "REV-1", 2).await;
    assert_eq!(status, 409);
    life.reverse_ok(o, "REV-1", 1).await;
    assert_eq!(life.used(o, "REV-1").await, 1);
    let (status, _) = life.reverse(o, "REV-1", 1).await;
    assert_eq!(status, 409);

    // Malformed requests.
    let path = format!("/admin/orders/{o}/reversals");
    for (body, status, field) in [
        (
            json!({"confirm_code": "REV-1", "quantity": 0, "reason": "x"}),
            400,
            Some("quantity"),
        ),
        (
            json!({"confirm_code": "REV-1", "quantity": 1, "reason": "  "}),
            400,
            Some("reason"),
        ),
        (
            json!({"confirm_code": "REV-1", "quantity": 1}),
            400,
            Some("reason"),
        ),
        (
            json!({"confirm_code": "", "quantity": 1, "reason": "x"}),
            400,
            Some("confirm_code"),
        ),
    ] {
        let (got, resp) = life.app.admin_post(&path, body.clone()).await;
        assert_eq!(
            (got, resp["field"].as_str()),
            (status, field),
            "{body}: {resp}"
        );
    }
    let (status, body) = life.reverse(o, "NOPE", 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("refused")),
        "{body}"
    );
    let (status, body) = life.reverse(76_999, "REV-1", 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );

    // The default window is 24 hours.
    let life = Life::new().await;
    life.issued(o, 2, &[("DEF-1", 2)]).await;
    life.verify_ok(o, "DEF-1", 2).await;
    life.clock.advance(Duration::hours(24));
    life.reverse_ok(o, "DEF-1", 1).await;
    let order = life.order(o).await;
    let rid = last_of(&order, REVERSE_ACTION);
    assert_transition(&order, &rid, "used", "partly_used", REVERSE_ACTION);
    life.clock.advance(Duration::seconds(1));
    let (status, _) = life.reverse(o, "DEF-1", 1).await;
    assert_eq!(status, 409);
}

// ---------------------------------------------------------------------------------------------
// Anomalies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_are_listed_filtered_and_resolved_once() {
    let life = Life::new().await;
    // refund_not_requested on one order…
    let o1 = 77_001;
    life.issued(o1, 2, &[("AN-1", 2)]).await;
    let nobody = assert_business(
        &life
            .send(life.notify_call(o1, &[("refund_status", "1")]))
            .await,
        "isv.refund-not-requested",
        "没有对应的退票申请",
    );
    // …verify_after_refund on another…
    let o2 = 77_002;
    life.issued(o2, 1, &[("ANOM-2", 1)]).await;
    life.request_ok(o2, 1).await;
    life.notify_ok(o2, &[("refund_status", "1")]).await;
    let (after_refund, _) = refused_with(
        &life
            .send(life.verify_call(o2, &[("ANOM-2", 1, life.gate())]))
            .await,
        "isv.ticket-refunded",
    );
    // …and the verify flags that are accepted but recorded: count_regressed, late_redemption,
    // total_num_mismatch, return_num_mismatch.
    let o3 = 77_003;
    create_order_with(
        &life.app,
        o3,
        KEY,
        &[("AN-3", 5)],
        json!({"valid_until": format_beijing(life.now() - Duration::hours(2))}),
    )
    .await;
    let cumulative = |n: i64| {
        life.call(VERIFY)
            .set("order_id", o3)
            .set("write_off_type", 1)
            .set(
                "voucher_infos",
                json!([{"confirm_code": "AN-3", "used_quantity": n,
                "used_date": format_beijing(life.now() - Duration::hours(3))}]),
            )
    };
    assert_success_for(&life.send(cumulative(2)).await, VERIFY);
    let regressed = assert_success_for(&life.send(cumulative(1)).await, VERIFY);
    let late = assert_success_for(
        &life
            .send(life.verify_call(o3, &[("AN-3", 1, Some(life.now() - Duration::hours(1)))]))
            .await,
        VERIFY,
    );
    let total = assert_success_for(
        &life
            .send(
                life.call(VERIFY)
                    .set("order_id", o3)
                    .set("confirm_code", "AN-3")
                    .set("check_num", 1)
                    .set("total_num", 4),
            )
            .await,
        VERIFY,
    );
    let returned = assert_success_for(
        &life
            .send(
                life.call(VERIFY)
                    .set("order_id", o3)
                    .set("confirm_code", "AN-3")
                    .set("check_num", 1)
                    .set("return_num", 1),
            )
            .await,
        VERIFY,
    );
    // (The two legacy reports carry no gate time: the receive time is after valid_until, so
    // they are late redemptions too.)

    let all = life.anomalies("").await;
    let seen: Vec<(String, i64, String)> = all
        .iter()
        .map(|a| {
            (
                a.kind.as_str().to_owned(),
                a.order_id.unwrap(),
                a.request_id.as_str().to_owned(),
            )
        })
        .collect();
    let want = |kind: &str, o: i64, rid: &str| (kind.to_owned(), o, rid.to_owned());
    for w in [
        want("refund_not_requested", o1, &nobody),
        want("verify_after_refund", o2, &after_refund),
        want("count_regressed", o3, &regressed),
        want("late_redemption", o3, &late),
        want("total_num_mismatch", o3, &total),
        want("return_num_mismatch", o3, &returned),
    ] {
        assert!(seen.contains(&w), "{w:?} missing in {seen:#?}");
    }
    let ids: Vec<i64> = all.iter().map(|a| a.id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    // Every field is on the wire, null or not (the typed answers cannot tell absent from
    // null).
    let (status, on_wire) = life.app.admin_get("/admin/anomalies?limit=1000").await;
    assert_eq!(status, 200, "{on_wire}");
    for a in on_wire["anomalies"].as_array().unwrap() {
        for field in [
            "id",
            "kind",
            "order_id",
            "app_key",
            "status",
            "request_id",
            "at",
            "detail",
            "request",
            "resolution",
            "note",
            "resolved_at",
        ] {
            assert!(a.get(field).is_some(), "{field} missing in {a}");
        }
    }
    for a in &all {
        assert_eq!(a.status, "open");
        assert_eq!(a.app_key.as_deref(), Some(KEY));
        assert!(a.request.get("sign").is_none(), "{a:?}");
    }
    let a2 = all
        .iter()
        .find(|a| a.request_id == after_refund.as_str())
        .unwrap();
    assert_eq!(
        a2.request["voucher_infos"][0]["confirm_code"], "****M-2",
        "codes are masked in the stored request: {a2:?}"
    );

    // Filters: order, kind, status, and together.
    let kinds =
        |list: &[AnomalyAnswer]| -> Vec<String> { list.iter().map(|a| a.kind.clone()).collect() };
    assert_eq!(
        kinds(&life.anomalies(&format!("order_id={o1}")).await),
        ["refund_not_requested"]
    );
    assert_eq!(
        kinds(&life.anomalies(&format!("order_id={o2}")).await),
        ["verify_after_refund"]
    );
    let by_kind = life.anomalies("kind=count_regressed").await;
    assert_eq!(by_kind.len(), 1);
    assert_eq!(by_kind[0].request_id, regressed.as_str());
    assert_eq!(life.anomalies("status=open").await, all);
    assert!(life.anomalies("status=resolved").await.is_empty());
    assert_eq!(life.anomalies("limit=2").await, all[..2].to_vec());

    // Resolve: 200 with the decision; a second time 409; the list follows.
    let id = all
        .iter()
        .find(|a| a.request_id == nobody.as_str())
        .unwrap()
        .id;
    let resolved_at = format_beijing(life.now());
    let (status, body) = life
        .app
        .admin_post(
            &format!("/admin/anomalies/{id}/resolve"),
            json!({"resolution": "dismissed", "note": "the vendor's test call"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body: AnomalyAnswer = answer(&body);
    assert_eq!(
        (
            body.id,
            body.status.as_str(),
            body.resolution.as_deref(),
            body.note.as_deref(),
            body.resolved_at.as_deref()
        ),
        (
            id,
            "resolved",
            Some("dismissed"),
            Some("the vendor's test call"),
            Some(resolved_at.as_str())
        ),
        "{body:?}"
    );
    assert_eq!(body.kind, "refund_not_requested");
    let (status, again) = life
        .app
        .admin_post(
            &format!("/admin/anomalies/{id}/resolve"),
            json!({"resolution": "accepted"}),
        )
        .await;
    assert_eq!(
        (status, refusal(&again).error.as_str()),
        (409, "already_resolved"),
        "{again}"
    );
    assert_eq!(life.anomalies("status=resolved").await, vec![body.clone()]);
    assert!(life
        .anomalies(&format!("status=open&order_id={o1}"))
        .await
        .is_empty());
    assert_eq!(
        life.anomalies(&format!(
            "status=resolved&order_id={o1}&kind=refund_not_requested"
        ))
        .await
        .len(),
        1
    );
    assert_eq!(life.anomalies("status=open").await.len(), all.len() - 1);
    // The decision is in the order's history.
    let order = life.order(o1).await;
    let e = order.events.last().unwrap().clone();
    assert_eq!(
        (e.action.as_str(), e.reason.as_str()),
        ("admin.resolve_anomaly", "dismissed")
    );
    assert_eq!(
        e.detail,
        json!({"anomaly_id": id, "kind": "refund_not_requested", "note": "the vendor's test call"})
    );

    // Every resolution is accepted.
    let open = life.anomalies("status=open").await;
    for (a, resolution) in open
        .iter()
        .zip(["accepted", "reversed", "refund_adjusted", "dismissed"])
    {
        let (status, body) = life
            .app
            .admin_post(
                &format!("/admin/anomalies/{}/resolve", a.id),
                json!({"resolution": resolution}),
            )
            .await;
        assert_eq!(
            (status, body["resolution"].as_str()),
            (200, Some(resolution)),
            "{body}"
        );
    }

    // Refusals: a resolution that is not one of the four, a missing one, unknown ids, bad
    // filters.
    let last = open.last().unwrap().id;
    for body in [
        json!({"resolution": "ignored"}),
        json!({"note": "no resolution"}),
    ] {
        let (status, resp) = life
            .app
            .admin_post(&format!("/admin/anomalies/{last}/resolve"), body.clone())
            .await;
        assert_eq!(
            (status, resp["error"].as_str(), resp["field"].as_str()),
            (400, Some("invalid_request"), Some("resolution")),
            "{body}: {resp}"
        );
    }
    for path in [
        "/admin/anomalies/999999/resolve",
        "/admin/anomalies/abc/resolve",
    ] {
        let (status, resp) = life
            .app
            .admin_post(path, json!({"resolution": "accepted"}))
            .await;
        assert_eq!(
            (status, resp["error"].as_str()),
            (404, Some("not_found")),
            "{path}: {resp}"
        );
    }
    for (query, field) in [
        ("status=maybe", "status"),
        ("kind=nope", "kind"),
        ("order_id=abc", "order_id"),
    ] {
        let (status, resp) = life
            .app
            .admin_get(&format!("/admin/anomalies?{query}"))
            .await;
        assert_eq!(
            (status, resp["error"].as_str(), resp["field"].as_str()),
            (400, Some("invalid_request"), Some(field)),
            "{query}: {resp}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reconciliation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_diffs_then_records_missing_uses_only() {
    let life = Life::new().await;
    let o = 78_001;
    life.issued(o, 5, &[("REC-1", 3), ("REC-2", 2)]).await;
    life.verify_ok(o, "REC-1", 1).await;
    let line = |code: &str, ledger: i64, vendor: i64| {
        json!({"confirm_code": code, "ledger_used": ledger, "vendor_used": vendor,
               "missing": (vendor - ledger).max(0), "excess": (ledger - vendor).max(0)})
    };

    // A diff changes nothing; an unlisted code counts as 0 on the vendor's side.
    let snap = ledger_snapshot(&life.app, o).await;
    let (status, body) = life.reconcile(o, &[("REC-1", 2)], false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"order_id": o, "apply": false, "applied_uses": 0,
               "lines": [line("REC-1", 1, 2), line("REC-2", 0, 0)]})
    );
    let (_, body) = life
        .reconcile(o, &[("REC-1", 0), ("REC-2", 1)], false)
        .await;
    assert_eq!(
        body["lines"],
        json!([line("REC-1", 1, 0), line("REC-2", 0, 1)])
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // A count beyond capacity refuses the whole reconciliation, before anything is applied.
    let (status, body) = life.reconcile(o, &[("REC-1", 2), ("REC-2", 3)], true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("refused")),
        "{body}"
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);
    // Unknown codes and negative counts are refused too.
    let (status, body) = life.reconcile(o, &[("NOPE", 1)], true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("unknown_code")),
        "{body}"
    );
    let (status, body) = life.reconcile(o, &[("REC-1", -1)], true).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // Apply: the missing uses, one `admin.reconcile` event per code; excess is never removed.
    let (status, body) = life.reconcile(o, &[("REC-1", 2), ("REC-2", 1)], true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"order_id": o, "apply": true, "applied_uses": 2,
               "lines": [line("REC-1", 1, 2), line("REC-2", 0, 1)]})
    );
    let order = life.order(o).await;
    assert_eq!(
        (life.used(o, "REC-1").await, life.used(o, "REC-2").await),
        (2, 1)
    );
    let healed: Vec<Value> = order
        .events
        .iter()
        .filter(|e| e.action == RECONCILE_ACTION)
        .map(|e| json!({"outcome": e.outcome, "reason": e.reason, "changes": e.detail["changes"]}))
        .collect();
    assert_eq!(
        healed,
        [
            json!({"outcome": "accepted", "reason": "applied",
                   "changes": [{"confirm_code": "****-1", "delta": 1, "used": 2, "capacity": 3}]}),
            json!({"outcome": "accepted", "reason": "applied",
                   "changes": [{"confirm_code": "****-2", "delta": 1, "used": 1, "capacity": 2}]}),
        ]
    );
    let rids: std::collections::HashSet<&str> = order
        .events
        .iter()
        .filter(|e| e.action == RECONCILE_ACTION)
        .map(|e| e.request_id.as_str())
        .collect();
    assert_eq!(rids.len(), 2, "each code is its own request");
    assert_eq!(order.status, "partly_used");

    // Lower vendor counts never decrease the ledger, and record nothing.
    let snap = ledger_snapshot(&life.app, o).await;
    let (status, body) = life.reconcile(o, &[("REC-1", 0), ("REC-2", 1)], true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied_uses"], 0);
    assert_eq!(
        body["lines"],
        json!([line("REC-1", 2, 0), line("REC-2", 1, 1)])
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // Healing the last uses moves the status, under the reconciling request.
    let (_, body) = life.reconcile(o, &[("REC-1", 3), ("REC-2", 2)], true).await;
    assert_eq!(body["applied_uses"], 2);
    let order = life.order(o).await;
    assert_eq!(order.status, "used");
    let rid = last_of(&order, RECONCILE_ACTION);
    assert_transition(&order, &rid, "partly_used", "used", RECONCILE_ACTION);

    let (status, _) = life.reconcile(78_999, &[("REC-1", 1)], false).await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------------------------
// Completeness of the documented table
// ---------------------------------------------------------------------------------------------

/// docs/LIFECYCLE.md promises "which call moves which state": every `order.status` event the
/// server writes must be a row of `TRANSITIONS`. Ordinary stories — a one-use code verified,
/// a refund that fails on an issued order, a reversal after a refund, a second request after
/// a partial refund, a reconciliation — each produce one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_the_server_writes_is_documented() {
    let life = Life::new().await;
    // Verify: one code, one use.
    life.issued(79_001, 1, &[("U-1", 1)]).await;
    life.verify_ok(79_001, "U-1", 1).await;
    // …then the use is reversed.
    life.reverse_ok(79_001, "U-1", 1).await;
    // A refund that fails on an issued order.
    life.issued(79_002, 1, &[("U-2", 1)]).await;
    life.request_ok(79_002, 1).await;
    life.notify_ok(79_002, &[("refund_status", "2")]).await;
    // A partial refund, another request, then a use on the remaining ticket is reversed.
    life.issued(79_003, 3, &[("U-3", 3)]).await;
    life.request_ok(79_003, 1).await;
    life.notify_ok(
        79_003,
        &[("refund_status", "1"), ("refund_batch_no", "RB-1")],
    )
    .await;
    life.request_ok(79_003, 1).await;
    life.notify_ok(
        79_003,
        &[("refund_status", "1"), ("refund_batch_no", "RB-2")],
    )
    .await;
    life.verify_ok(79_003, "U-3", 1).await;
    life.reverse_ok(79_003, "U-3", 1).await;
    // A pending refund, a use dated before it, the refund then fails.
    life.issued(79_004, 1, &[("U-4", 1)]).await;
    life.request_ok(79_004, 1).await;
    life.verify_ok(79_004, "U-4", 1).await;
    life.notify_ok(79_004, &[("refund_status", "2")]).await;
    // A reconciliation.
    life.issued(79_005, 2, &[("U-5", 2)]).await;
    let (status, _) = life.reconcile(79_005, &[("U-5", 1)], true).await;
    assert_eq!(status, 200);

    let call_of = |cause: &str| match cause {
        ISSUE => ISSUE_CALL,
        VERIFY => VERIFY_CALL,
        REQUEST_ACTION => REQUEST_CALL,
        REFUND => REFUND_CALL,
        REVERSE_ACTION => REVERSE_CALL,
        CREATE_ACTION => CREATE_CALL,
        RECONCILE_ACTION => RECONCILE_CALL,
        _ => "(a call the table does not name)",
    };
    let mut undocumented = std::collections::BTreeSet::new();
    for e in audit_entries(&life.app, "limit=1000").await {
        if e.action != "order.status" {
            continue;
        }
        let (cause, from, to) = (
            e.detail["cause"].as_str().unwrap(),
            e.detail["from"].as_str().unwrap(),
            e.detail["to"].as_str().unwrap(),
        );
        let call = call_of(cause);
        if !TRANSITIONS
            .iter()
            .any(|t| t.call == call && t.from.as_str() == from && t.to.as_str() == to)
        {
            undocumented.insert(format!("{cause} ({call}): {from} -> {to}"));
        }
    }
    assert!(
        undocumented.is_empty(),
        "status transitions the server writes but docs/LIFECYCLE.md does not list:\n  {}",
        undocumented.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}
