//! The ledger's change events: what other systems (settlement, buyer notifications, the data
//! warehouse) learn from, in the order the changes committed.
//!
//! An event is written by the store in the same transaction as the change it describes (the
//! outbox pattern), so there is no event without its change and no change without its event.
//! Every change of the ledger already records itself as an accepted audit entry (or, for an
//! anomaly, as the anomaly); [`NewEvent::of_entry`] and [`NewEvent::of_anomaly`] decide here,
//! in one place, which of those are events and what they carry. Replayed and refused calls
//! are never events (their entries are not `accepted`); an anomaly a refused call opened is
//! one, because the anomaly queue changed.
//!
//! The store hands each event a `seq`: consecutive integers in commit order across the whole
//! ledger, without gaps. [`Event::to_json`] renders a stored event as a CloudEvents 1.0
//! JSON object, the same bytes for the feed (`GET /admin/events`) and every relay.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::anomaly::NewAnomaly;
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::text::json_text;

/// What happened. Every name starts with `ticketd.`; `docs/EVENTS.md` documents each one's
/// `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// An operator created an order.
    OrderCreated,
    /// A vendor issued an order's vouchers.
    OrderIssued,
    /// A vendor reported that issuing failed.
    OrderIssueFailed,
    /// A verify applied uses (one event per request, listing its entries and the counts
    /// after).
    VoucherUsed,
    /// An operator gave uses back.
    VoucherUseReversed,
    /// An operator opened a refund request.
    RefundRequested,
    /// A vendor settled a refund request: refunded.
    RefundSucceeded,
    /// A vendor settled a refund request: not refunded.
    RefundFailed,
    /// An order's status moved.
    OrderStatusChanged,
    /// An anomaly was raised.
    AnomalyOpened,
    /// An operator resolved an anomaly.
    AnomalyResolved,
    /// An operator recorded a code's missing uses from the vendor's counts.
    OrderReconciled,
}

impl EventType {
    /// Every type.
    pub const ALL: &'static [EventType] = &[
        Self::OrderCreated,
        Self::OrderIssued,
        Self::OrderIssueFailed,
        Self::VoucherUsed,
        Self::VoucherUseReversed,
        Self::RefundRequested,
        Self::RefundSucceeded,
        Self::RefundFailed,
        Self::OrderStatusChanged,
        Self::AnomalyOpened,
        Self::AnomalyResolved,
        Self::OrderReconciled,
    ];

    /// The CloudEvents `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OrderCreated => "ticketd.order.created",
            Self::OrderIssued => "ticketd.order.issued",
            Self::OrderIssueFailed => "ticketd.order.issue_failed",
            Self::VoucherUsed => "ticketd.voucher.used",
            Self::VoucherUseReversed => "ticketd.voucher.use_reversed",
            Self::RefundRequested => "ticketd.refund.requested",
            Self::RefundSucceeded => "ticketd.refund.succeeded",
            Self::RefundFailed => "ticketd.refund.failed",
            Self::OrderStatusChanged => "ticketd.order.status_changed",
            Self::AnomalyOpened => "ticketd.anomaly.opened",
            Self::AnomalyResolved => "ticketd.anomaly.resolved",
            Self::OrderReconciled => "ticketd.order.reconciled",
        }
    }

    /// Parses a stored type.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// The type of the event `entry` records, if it records a change: only accepted entries
    /// of the actions [`EventType::of_action`] names.
    pub fn of_entry<D>(entry: &AuditEntry<D>) -> Option<Self> {
        if entry.outcome != AuditOutcome::Accepted {
            return None;
        }
        Self::of_action(AuditAction::parse(&entry.action)?, &entry.reason)
    }

    /// The event of an accepted entry of `action` with `reason`, if that is a change other
    /// systems hear of. Apps' settings are not: they are configuration, and a rotation's
    /// entry is about a secret.
    pub fn of_action(action: AuditAction, reason: &str) -> Option<Self> {
        match action {
            AuditAction::Verify => Some(Self::VoucherUsed),
            AuditAction::Issue => Some(if reason == "issue_failed" {
                Self::OrderIssueFailed
            } else {
                Self::OrderIssued
            }),
            AuditAction::Refund => Some(if reason == "refunded" {
                Self::RefundSucceeded
            } else {
                Self::RefundFailed
            }),
            AuditAction::StatusChange => Some(Self::OrderStatusChanged),
            AuditAction::CreateOrder => Some(Self::OrderCreated),
            AuditAction::RequestRefund => Some(Self::RefundRequested),
            AuditAction::Reverse => Some(Self::VoucherUseReversed),
            AuditAction::Reconcile => Some(Self::OrderReconciled),
            AuditAction::ResolveAnomaly => Some(Self::AnomalyResolved),
            AuditAction::CreateApp | AuditAction::SetAppAccess | AuditAction::RotateAppSecret => {
                None
            }
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to be stored with its change (its `seq` is the store's to hand out).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventType,
    /// The order it concerns (the CloudEvents `subject`).
    pub order_id: Option<i64>,
    /// When the change was made (the request's arrival).
    pub at: DateTime<Utc>,
    /// The CloudEvents `data`: codes masked as in the audit trail.
    pub data: Value,
}

impl NewEvent {
    /// The event recording `entry`, if it records a change (see [`EventType::of_action`]).
    pub fn of_entry(entry: &AuditEntry) -> Option<Self> {
        let kind = EventType::of_entry(entry)?;
        let mut data = Map::new();
        data.insert("request_id".into(), json!(entry.request_id));
        data.insert("app_key".into(), json!(entry.app_key));
        data.insert("order_id".into(), json!(entry.order_id));
        data.insert("reason".into(), json!(entry.reason));
        data.insert("detail".into(), entry.detail.clone());
        Some(Self {
            kind,
            order_id: entry.order_id,
            at: entry.at,
            data: Value::Object(data),
        })
    }

    /// [`NewEvent::of_entry`]'s `data` as JSON text, given the entry's `detail` already
    /// serialized as `detail_json` (a store writing both the entry and its event serializes
    /// the detail, often the largest part, once). Equal, once parsed, to `of_entry`'s.
    ///
    /// Written into one buffer sized for it: `format!` with a string per field cost a verify's
    /// event 3,400 instructions on the writer thread (callgrind, docs/PERFORMANCE.md,
    /// "Thirteenth session").
    pub fn entry_data_json<D>(entry: &AuditEntry<D>, detail_json: &str) -> String {
        let mut out = Vec::with_capacity(
            detail_json.len() + entry.request_id.len() + entry.reason.len() + 128,
        );
        out.extend_from_slice(b"{\"request_id\":");
        write_json(&mut out, &entry.request_id);
        out.extend_from_slice(b",\"app_key\":");
        write_json(&mut out, &entry.app_key);
        out.extend_from_slice(b",\"order_id\":");
        write_json(&mut out, &entry.order_id);
        out.extend_from_slice(b",\"reason\":");
        write_json(&mut out, &entry.reason);
        out.extend_from_slice(b",\"detail\":");
        out.extend_from_slice(detail_json.as_bytes());
        out.push(b'}');
        // Only whole JSON texts and UTF-8 were appended.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Whether [`NewEvent::entry_data_json`] writes each of an entry's strings (its
    /// `request_id`, `app_key` and `reason`) between quotes exactly as it is: every byte
    /// printable ASCII but `"` and `\`, which JSON never escapes. The data is then a fixed
    /// frame around those strings, the order id and the detail text, which any JSON writer
    /// fills alike, so a store may keep such an event as a reference to its entry and rebuild
    /// the data when it is read (SQLite's `ledger_events`) without comparing the two first.
    /// The request ids and reasons ticketd writes always are, and app keys unless an operator
    /// named the app with a `"` or `\`; anything else is kept whole.
    pub fn entry_data_unescaped(request_id: &str, app_key: Option<&str>, reason: &str) -> bool {
        let as_is = |s: &str| {
            s.bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        };
        as_is(request_id) && app_key.is_none_or(as_is) && as_is(reason)
    }

    /// The event recording that `anomaly` was raised.
    pub fn of_anomaly(anomaly: &NewAnomaly) -> Self {
        Self {
            kind: EventType::AnomalyOpened,
            order_id: anomaly.order_id,
            at: anomaly.at,
            data: json!({
                "request_id": anomaly.request_id,
                "app_key": anomaly.app_key,
                "order_id": anomaly.order_id,
                "kind": anomaly.kind.as_str(),
                "detail": anomaly.detail,
            }),
        }
    }

    /// The events of `entries`, in their order.
    pub fn of_entries<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> Vec<Self> {
        entries.into_iter().filter_map(Self::of_entry).collect()
    }
}

/// Appends `value` as JSON text (strings, integers and options of them cannot fail to
/// serialize; were one to, `null` stands for it).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its place in the ledger's sequence: 1, 2, 3, … in commit order, without gaps.
    pub seq: i64,
    /// The stored type (an [`EventType`]'s name).
    pub kind: String,
    /// The order it concerns.
    pub order_id: Option<i64>,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// The event's data, as the store keeps it: JSON text, checked to be JSON when read. It
    /// is handed on as it is — the feed and the relay render thousands of events a second, and
    /// parsing each one's data only to write it out again cost most of their time.
    pub data: Box<RawValue>,
    /// For `ticketd.anomaly.opened`: the anomaly's id, handed out by the store when it wrote
    /// the anomaly (after the data was built); [`Event::to_json`] adds it to the data.
    pub anomaly_id: Option<i64>,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
            && self.kind == other.kind
            && self.order_id == other.order_id
            && self.at == other.at
            && self.data.get() == other.data.get()
            && self.anomaly_id == other.anomaly_id
    }
}

impl Event {
    /// The CloudEvents 1.0 JSON object of this event in the ledger `ledger_id` (a random id
    /// each ledger draws once, so that two ledgers' events never share an `id`), as text: the
    /// one rendering of an event, byte for byte the same in the feed and on NATS.
    pub fn to_json(&self, ledger_id: &str) -> String {
        let data = self.data.get();
        let mut out = String::with_capacity(data.len() + 256 + 2 * ledger_id.len());
        out.push_str("{\"data\":");
        match (self.anomaly_id, data.strip_prefix('{')) {
            (Some(id), Some(rest)) => {
                let separator = if rest.trim_start().starts_with('}') {
                    ""
                } else {
                    ","
                };
                out.push_str(&format!("{{\"anomaly_id\":{id}{separator}"));
                out.push_str(rest);
            }
            _ => out.push_str(data),
        }
        out.push_str(",\"datacontenttype\":\"application/json\",\"id\":");
        out.push_str(&json_text(&format!("{ledger_id}-{}", self.seq)));
        out.push_str(&format!(",\"seq\":{},\"source\":", self.seq));
        out.push_str(&json_text(&format!("/ticketd/{ledger_id}")));
        out.push_str(",\"specversion\":\"1.0\",\"subject\":");
        match self.order_id {
            Some(id) => out.push_str(&format!("\"{id}\"")),
            None => out.push_str("null"),
        }
        out.push_str(",\"time\":\"");
        out.push_str(&self.at.to_rfc3339_opts(SecondsFormat::Millis, true));
        out.push_str("\",\"type\":");
        out.push_str(&json_text(&self.kind));
        out.push('}');
        out
    }

    /// [`Event::to_json`], parsed (for readers that look inside).
    pub fn cloud_event(&self, ledger_id: &str) -> Value {
        serde_json::from_str(&self.to_json(ledger_id)).unwrap_or(Value::Null)
    }

    /// The event's data, parsed.
    pub fn data_value(&self) -> Value {
        serde_json::from_str(self.data.get()).unwrap_or(Value::Null)
    }
}

/// One page of the feed: the events after a `seq`, and where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// The ledger's random id (see [`Event::to_json`]).
    pub ledger_id: String,
    /// The last `seq` handed out when the page was read (what a relay's lag is measured to).
    pub last_seq: i64,
    /// At most the page's limit, in `seq` order.
    pub events: Vec<Event>,
    /// The `seq` to ask after next time: the last event's, or the one asked after if the page
    /// is empty.
    pub next: i64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use chrono::TimeZone;

    fn entry(action: AuditAction, outcome: AuditOutcome, reason: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            request_id: "r1".into(),
            at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            action: action.as_str().into(),
            app_key: Some("app".into()),
            order_id: Some(7),
            outcome,
            reason: reason.into(),
            detail: json!({"changes": [{"confirm_code": "****1234", "used": 1}]}),
            client_ip: Some("192.0.2.1".into()),
        }
    }

    #[test]
    fn only_accepted_changes_are_events() {
        let used = entry(AuditAction::Verify, AuditOutcome::Accepted, "applied");
        let event = NewEvent::of_entry(&used).expect("a verify is an event");
        assert_eq!(event.kind, EventType::VoucherUsed);
        assert_eq!(
            event.data["detail"]["changes"][0]["confirm_code"],
            "****1234"
        );
        assert!(event.data.get("client_ip").is_none());
        for outcome in [AuditOutcome::Replayed, AuditOutcome::Rejected] {
            let e = entry(AuditAction::Verify, outcome, "replayed");
            assert_eq!(NewEvent::of_entry(&e), None, "{outcome:?}");
        }
        let app = entry(
            AuditAction::RotateAppSecret,
            AuditOutcome::Accepted,
            "rotated",
        );
        assert_eq!(NewEvent::of_entry(&app), None);
        let mut unknown = used.clone();
        unknown.action = "taobao.some.other.method".into();
        assert_eq!(NewEvent::of_entry(&unknown), None);
    }

    #[test]
    fn the_data_written_from_a_serialized_detail_is_the_same_data() {
        let mut e = entry(AuditAction::Verify, AuditOutcome::Accepted, "applied");
        e.request_id = "quote\" and \\ 中文".into();
        e.app_key = None;
        let detail = e.detail.to_string();
        let text = NewEvent::entry_data_json(&e, &detail);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, NewEvent::of_entry(&e).unwrap().data);
    }

    #[test]
    fn unescaped_entry_data_is_the_strings_between_quotes_as_they_are() {
        let base = entry(AuditAction::Verify, AuditOutcome::Accepted, "applied");
        let frame = |e: &AuditEntry, detail: &str| {
            let quoted = |s: &str| format!("\"{s}\"");
            format!(
                "{{\"request_id\":{},\"app_key\":{},\"order_id\":{},\"reason\":{},\"detail\":{detail}}}",
                quoted(&e.request_id),
                e.app_key.as_deref().map_or("null".to_owned(), quoted),
                e.order_id.map_or("null".to_owned(), |id| id.to_string()),
                quoted(&e.reason),
            )
        };
        let detail = base.detail.to_string();
        // Every character of the first 256 code points, alone in each of the three strings.
        for c in (0_u32..256).filter_map(char::from_u32) {
            for field in 0..3 {
                let mut e = base.clone();
                let s = format!("a{c}b");
                match field {
                    0 => e.request_id = s,
                    1 => e.app_key = Some(s),
                    _ => e.reason = s,
                }
                let claimed =
                    NewEvent::entry_data_unescaped(&e.request_id, e.app_key.as_deref(), &e.reason);
                assert_eq!(
                    claimed,
                    (' '..='~').contains(&c) && c != '"' && c != '\\',
                    "{c:?} in field {field}"
                );
                if claimed {
                    assert_eq!(NewEvent::entry_data_json(&e, &detail), frame(&e, &detail));
                }
            }
        }
        let mut no_app = base.clone();
        no_app.app_key = None;
        no_app.order_id = None;
        assert!(NewEvent::entry_data_unescaped(
            &no_app.request_id,
            None,
            &no_app.reason
        ));
        assert_eq!(
            NewEvent::entry_data_json(&no_app, &detail),
            frame(&no_app, &detail)
        );
    }

    #[test]
    fn reasons_pick_the_settlement_and_issuance_types() {
        let kind = |action, reason| {
            NewEvent::of_entry(&entry(action, AuditOutcome::Accepted, reason)).map(|e| e.kind)
        };
        assert_eq!(
            kind(AuditAction::Refund, "refunded"),
            Some(EventType::RefundSucceeded)
        );
        assert_eq!(
            kind(AuditAction::Refund, "refund_failed"),
            Some(EventType::RefundFailed)
        );
        assert_eq!(
            kind(AuditAction::Issue, "issued"),
            Some(EventType::OrderIssued)
        );
        assert_eq!(
            kind(AuditAction::Issue, "issue_failed"),
            Some(EventType::OrderIssueFailed)
        );
    }

    #[test]
    fn every_type_is_named_under_ticketd_and_parses_back() {
        for t in EventType::ALL {
            assert!(t.as_str().starts_with("ticketd."), "{t}");
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
    }

    fn stored(data: &str, order_id: Option<i64>, anomaly_id: Option<i64>) -> Event {
        Event {
            seq: 42,
            kind: EventType::VoucherUsed.as_str().into(),
            order_id,
            at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            data: RawValue::from_string(data.to_owned()).unwrap(),
            anomaly_id,
        }
    }

    #[test]
    fn a_stored_event_renders_as_a_cloud_event() {
        let event = stored(
            r#"{"reason":"applied","detail":{"b":1,"a":"中文\"q"}}"#,
            Some(7),
            None,
        );
        assert_eq!(
            event.to_json("L1"),
            concat!(
                r#"{"data":{"reason":"applied","detail":{"b":1,"a":"中文\"q"}},"#,
                r#""datacontenttype":"application/json","id":"L1-42","seq":42,"#,
                r#""source":"/ticketd/L1","specversion":"1.0","subject":"7","#,
                r#""time":"2026-01-02T03:04:05.000Z","type":"ticketd.voucher.used"}"#
            )
        );
        assert_eq!(
            event.cloud_event("L1"),
            json!({
                "specversion": "1.0", "id": "L1-42", "source": "/ticketd/L1",
                "type": "ticketd.voucher.used", "subject": "7",
                "time": "2026-01-02T03:04:05.000Z", "datacontenttype": "application/json",
                "seq": 42, "data": {"reason": "applied", "detail": {"a": "中文\"q", "b": 1}}
            })
        );
    }

    #[test]
    fn an_opened_anomaly_carries_its_id_in_its_data() {
        let opened = stored(r#"{"kind":"over_capacity"}"#, None, Some(9));
        assert_eq!(
            opened.cloud_event("L")["data"],
            json!({"anomaly_id": 9, "kind": "over_capacity"})
        );
        assert_eq!(opened.cloud_event("L")["subject"], Value::Null);
        let empty = stored("{}", None, Some(9));
        assert_eq!(empty.cloud_event("L")["data"], json!({"anomaly_id": 9}));
        // Only objects take an id; the rendering stays JSON whatever the data.
        let odd = stored("[1]", None, Some(9));
        assert_eq!(odd.cloud_event("L")["data"], json!([1]));
    }
}
