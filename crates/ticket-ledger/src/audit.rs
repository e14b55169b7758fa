//! The append-only audit trail: what every attempt and every operator action leaves, the
//! actions it names, and the request metadata every plan records itself with.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::order::OrderRecord;
use crate::status::StatusChange;
use crate::text::json_text;

/// What an audit entry records: the TOP method of a vendor's call, or an operator's action.
///
/// The trail stores the name ([`AuditAction::as_str`]), and [`AuditEntry::action`] stays text:
/// a refused call is recorded under whatever method name its caller sent, known or not. Every
/// entry the ledger writes itself names one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A vendor's redemption report (`taobao.travel.ticket.order.verify`).
    Verify,
    /// A vendor's issuance report (`alitrip.travel.ticket.order.create`).
    Issue,
    /// A vendor's refund notification (`taobao.travel.ticket.order.refund`).
    Refund,
    /// An order's status moved; `detail.cause` names the action that moved it.
    StatusChange,
    /// The operator created an order.
    CreateOrder,
    /// The operator registered an app.
    CreateApp,
    /// The operator replaced an app's access settings.
    SetAppAccess,
    /// The operator rotated an app's secret.
    RotateAppSecret,
    /// The operator opened a refund request.
    RequestRefund,
    /// The operator gave uses back.
    Reverse,
    /// The operator recorded a code's missing uses from the vendor's counts.
    Reconcile,
    /// The operator settled an anomaly.
    ResolveAnomaly,
}

impl AuditAction {
    /// Every action.
    pub const ALL: &'static [AuditAction] = &[
        Self::Verify,
        Self::Issue,
        Self::Refund,
        Self::StatusChange,
        Self::CreateOrder,
        Self::CreateApp,
        Self::SetAppAccess,
        Self::RotateAppSecret,
        Self::RequestRefund,
        Self::Reverse,
        Self::Reconcile,
        Self::ResolveAnomaly,
    ];

    /// The stored and wire name: the TOP method name, or `admin.<action>`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "taobao.travel.ticket.order.verify",
            Self::Issue => "alitrip.travel.ticket.order.create",
            Self::Refund => "taobao.travel.ticket.order.refund",
            Self::StatusChange => "order.status",
            Self::CreateOrder => "admin.create_order",
            Self::CreateApp => "admin.create_app",
            Self::SetAppAccess => "admin.set_app_access",
            Self::RotateAppSecret => "admin.rotate_app_secret",
            Self::RequestRefund => "admin.request_refund",
            Self::Reverse => "admin.reverse",
            Self::Reconcile => "admin.reconcile",
            Self::ResolveAnomaly => "admin.resolve_anomaly",
        }
    }

    /// Parses a stored name; `None` for a name the ledger never writes itself (a refused call's
    /// unknown method).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The audit action of an issuance report.
pub const ISSUE_ACTION: &str = AuditAction::Issue.as_str();
/// The audit action of a refund notification.
pub const REFUND_ACTION: &str = AuditAction::Refund.as_str();

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It changed the ledger.
    Accepted,
    /// It repeated something already recorded, or changed nothing by design; answered success.
    Replayed,
    /// It was refused; `reason` says why.
    Rejected,
}

impl AuditOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Replayed => "replayed",
            Self::Rejected => "rejected",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accepted),
            "replayed" => Some(Self::Replayed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// One line of the append-only audit trail: every attempt — accepted, replayed, rejected — and
/// every operator action leaves one.
///
/// `D` is the form of its detail: parsed (`Value`, what readers get and most plans build), or
/// already JSON text (`String`, what a verify's plan renders straight from its parts for the
/// store to write, see `VerifyPlan::rendered_audit_entries`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry<D = serde_json::Value> {
    /// Position in the trail, assigned by the store (0 before it is stored).
    pub seq: i64,
    /// The request that caused it (TOP `request_id`, or the admin request's id).
    pub request_id: String,
    /// When it was received.
    pub at: DateTime<Utc>,
    /// What was attempted: an [`AuditAction`]'s name, or the method name a refused call sent.
    pub action: String,
    /// The calling app, when the request named one.
    pub app_key: Option<String>,
    /// The order it named, when it named one (even an unknown or foreign one).
    pub order_id: Option<i64>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Why: `applied`, `replayed`, a TOP sub_code such as `isv.verify-num-exceed`, or a platform
    /// code such as `25 Invalid signature`.
    pub reason: String,
    /// Details as JSON: the uses applied, flags raised, the sanitized request.
    pub detail: D,
    /// The caller's address, when known.
    pub client_ip: Option<String>,
}

impl<D> AuditEntry<D> {
    /// The same entry with its detail in another form.
    pub fn map_detail<E>(self, f: impl FnOnce(D) -> E) -> AuditEntry<E> {
        AuditEntry {
            seq: self.seq,
            request_id: self.request_id,
            at: self.at,
            action: self.action,
            app_key: self.app_key,
            order_id: self.order_id,
            outcome: self.outcome,
            reason: self.reason,
            detail: f(self.detail),
            client_ip: self.client_ip,
        }
    }
}

impl AuditEntry {
    /// The entry with its detail as the JSON text stores write ([`json_text`]).
    pub fn rendered(self) -> AuditEntry<String> {
        self.map_detail(|detail| json_text(&detail))
    }
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this order's.
    pub order_id: Option<i64>,
    /// Only this app's.
    pub app_key: Option<String>,
    /// Only with this outcome.
    pub outcome: Option<AuditOutcome>,
    /// Only entries with `seq` greater than this (paging).
    pub after_seq: Option<i64>,
    /// Only entries with `seq` less than this; when set, entries come newest first (paging
    /// back from the newest: the next page is before the smallest `seq` seen).
    pub before_seq: Option<i64>,
    /// Entries in decreasing `seq` (newest first) instead of increasing; implied by
    /// `before_seq`. A timeline shows the latest entries first, and reading them from the end
    /// of the `(order_id, seq)` index costs what the page holds however long the history is.
    pub newest_first: bool,
    /// At most this many (the store caps it at 1000).
    pub limit: Option<u32>,
}

impl AuditFilter {
    /// One page of an order's events, oldest first after `after_seq`: what
    /// [`crate::LedgerStore::order_events`] reads once the order is known to exist.
    pub fn order_events(id: crate::OrderId, after_seq: Option<i64>, limit: u32) -> Self {
        Self {
            order_id: Some(id.get()),
            after_seq,
            limit: Some(limit),
            ..Self::default()
        }
    }

    /// One page of an order's events, newest first before `before_seq` (from the newest when
    /// `None`): the order's timeline, read back from its end.
    pub fn order_events_newest_first(
        id: crate::OrderId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Self {
        Self {
            order_id: Some(id.get()),
            before_seq,
            newest_first: true,
            limit: Some(limit),
            ..Self::default()
        }
    }

    /// Whether entries come newest first: [`AuditFilter::newest_first`], or a
    /// [`AuditFilter::before_seq`] cursor.
    pub fn descending(&self) -> bool {
        self.newest_first || self.before_seq.is_some()
    }
}

/// Who asked, when, and what they sent, for the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMeta {
    /// The TOP `request_id` answered to the caller.
    pub request_id: String,
    /// When the request arrived; also the gate time for reports without one (R22).
    pub received_at: DateTime<Utc>,
    /// The caller's address.
    pub client_ip: Option<String>,
    /// The request's business parameters, with confirm codes masked, for the audit trail.
    pub summary: Summary,
}

/// A request's summary for the audit trail ([`RequestMeta::summary`]): a JSON value, with
/// its text rendered once, where the request is parsed.
///
/// Every entry a request leaves embeds its summary. A store's single writer thread used to
/// serialize the value into each entry's detail, about 4,200 of its instructions per
/// single-voucher verify (callgrind, docs/PERFORMANCE.md, "Twenty-seventh session"); the text
/// is now made on the thread that parsed the request and copied as is. The text is always the
/// value's ([`json_text`]'s bytes): both are set together, and only here.
#[derive(Debug, Clone)]
pub struct Summary {
    value: Value,
    text: Box<RawValue>,
}

impl Summary {
    /// `value`, with its text.
    pub fn new(value: Value) -> Self {
        // A `Value` always serializes; were it not to, `null`, as `json_text` would write.
        let text =
            serde_json::value::to_raw_value(&value).unwrap_or_else(|_| RawValue::NULL.to_owned());
        Self { value, text }
    }

    /// The summary as a value, for what reads it (`summary.get(..)` also reaches it).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The summary as the JSON text an entry's detail embeds.
    pub fn text(&self) -> &RawValue {
        &self.text
    }
}

impl From<Value> for Summary {
    fn from(value: Value) -> Self {
        Self::new(value)
    }
}

impl std::ops::Deref for Summary {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.value
    }
}

impl PartialEq for Summary {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl PartialEq<Value> for Summary {
    fn eq(&self, other: &Value) -> bool {
        self.value == *other
    }
}

impl Serialize for Summary {
    /// As its text: to `serde_json`'s writer, the bytes as they are.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(serializer)
    }
}

impl RequestMeta {
    /// The key of [`RequestMeta::summary`] under which an operator's request names where it
    /// came from (`"console"`); the request's audit entries carry it into their detail. TOP
    /// calls never have it: their summaries keep only the methods' known parameters.
    pub const ORIGIN_KEY: &'static str = "origin";

    /// An audit entry of this request: every plan records itself through here, so all entries
    /// carry the same request id, time and caller, and the request's origin when it names one
    /// ([`RequestMeta::ORIGIN_KEY`]).
    pub fn audit_entry(
        &self,
        action: AuditAction,
        order: &OrderRecord,
        outcome: AuditOutcome,
        reason: &str,
        detail: Value,
    ) -> AuditEntry {
        AuditEntry {
            seq: 0,
            request_id: self.request_id.clone(),
            at: self.received_at,
            action: action.as_str().to_owned(),
            app_key: Some(order.app_key.as_str().to_owned()),
            order_id: Some(order.order_id.get()),
            outcome,
            reason: reason.to_owned(),
            detail: self.with_origin(detail),
            client_ip: self.client_ip.clone(),
        }
    }

    /// `detail` with the request's origin added, when the request names one
    /// ([`RequestMeta::ORIGIN_KEY`]) and `detail` is an object without it: every entry a
    /// request leaves says where it came from.
    pub fn with_origin(&self, mut detail: Value) -> Value {
        if let (Some(origin), Value::Object(map)) =
            (self.summary.get(Self::ORIGIN_KEY), &mut detail)
        {
            map.entry(Self::ORIGIN_KEY.to_owned())
                .or_insert_with(|| origin.clone());
        }
        detail
    }

    /// `entry`, followed by the status transition it caused (if the status moved).
    pub(crate) fn with_status(
        &self,
        entry: AuditEntry,
        status: &StatusChange,
        order: &OrderRecord,
    ) -> Vec<AuditEntry> {
        self.with_status_as(entry, status, order, |detail| detail)
    }

    /// [`RequestMeta::with_status`] for an entry whose detail is in another form: the
    /// transition's detail is converted by `form`.
    pub(crate) fn with_status_as<D>(
        &self,
        entry: AuditEntry<D>,
        status: &StatusChange,
        order: &OrderRecord,
        form: impl FnOnce(Value) -> D,
    ) -> Vec<AuditEntry<D>> {
        let transition =
            status.audit_entry(order, &self.request_id, self.received_at, &entry.action);
        let mut entries = vec![entry];
        entries.extend(transition.map(|t| t.map_detail(form)));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_actions_round_trip_through_their_stored_names() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(*action));
        }
        assert_eq!(AuditAction::parse("taobao.travel.ticket.order.query"), None);
        assert_eq!(AuditAction::Reverse.as_str(), "admin.reverse");
        assert_eq!(AuditAction::StatusChange.as_str(), "order.status");
        assert_eq!(ISSUE_ACTION, "alitrip.travel.ticket.order.create");
        assert_eq!(REFUND_ACTION, "taobao.travel.ticket.order.refund");
    }

    /// A summary embedded in a detail writes the bytes its value would, escapes and all, and
    /// reads as its value.
    #[test]
    fn a_summary_serializes_as_its_value_would() {
        let value = serde_json::json!({
            "order_id": "7",
            "voucher_infos": [{"code": "****-A", "used_date": "2025-03-15 13:00:00"}],
            "note": "引号\"和\\反斜杠\n\u{1}",
            "num": 3,
            "price": 1.5,
            "none": null,
        });
        let summary = Summary::from(value.clone());
        assert_eq!(summary.text().get(), json_text(&value));
        assert_eq!(
            json_text(&serde_json::json!({"a": 1, "request": summary.clone()})),
            json_text(&serde_json::json!({"a": 1, "request": value.clone()}))
        );
        assert_eq!(
            serde_json::to_string(&[&summary]).expect("text"),
            serde_json::to_string(&[&value]).expect("text")
        );
        assert_eq!(summary, value);
        assert_eq!(summary.get("num"), Some(&serde_json::json!(3)));
        assert_eq!(Summary::from(Value::Null).text().get(), "null");
    }
}
