//! The whole life of an order (issue 3, docs/LIFECYCLE.md) through the real server: issuance
//! (发码), verify (核销), refund requests and notifications (退票), reversal (撤销核销),
//! anomalies and reconciliation.
//!
//! One file per step: `issue`, `refund`, `reversal`, `anomalies`, `reconcile`. `transitions`
//! and `refusals` walk `ticketd::lifecycle_doc::TRANSITIONS` and `REFUSALS` — the tables
//! docs/LIFECYCLE.md is generated from — row by row, matching each row on its typed
//! `Call`/`OrderStatus` or `Refused` case (never on the document's text), so a documented row
//! that the server does not honour fails here, and a new row fails until someone teaches the
//! walker how to build it (a new `Refused` case does not even compile).
//! This file holds what they share: [`Life`], a server on a clock the test moves by hand, so
//! dates before and after a refund request or a reversal window are exact, and nothing sleeps.

mod anomalies;
mod issue;
mod reconcile;
mod refund;
mod refusals;
mod reversal;
mod transitions;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use ticket_ledger::OrderStatus as S;
use ticketd::admin::{AnomalyAnswer, AuditEntryAnswer, OrderAnswer};
use ticketd::clock::Clock;
use ticketd::lifecycle_doc::{
    Answer, Call, Refusal, Refused, Transition, REFUSALS, STARTS, TRANSITIONS,
};
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
