//! What each write stores, as typed rows: the one place a ledger plan becomes the rows of its
//! tables.
//!
//! The domain decides (`ticket_ledger::plan_verify`, `plan_issue`, …); a constructor here
//! turns its plan into rows, one type per statement of [`crate::statements`]; each store only
//! loads snapshots and executes rows: the SQLite store one row at a time on its writer
//! thread, the SQL store one row at a time or, for a batch of verifies, each table in one
//! statement whose rows travel as one JSON parameter (so the row types are `Serialize`, with
//! the short keys the bulk statements read: a batch carries hundreds of rows). Adding a column
//! means touching its row type and its statements, nowhere else.
//!
//! - [`verify`]: [`VerifyRows`], the rows of one or several verify plans;
//! - [`lifecycle`]: order creation, issuance, refund requests and notifications, reversals,
//!   anomaly resolutions;
//! - here: what every write shares ([`AuditRow`], [`AnomalyRow`]), apps, and [`WriteRow`],
//!   how an executor binds a row.

mod lifecycle;
mod verify;

use serde::Serialize;
use ticket_ledger::{
    App, AppAccess, AppKey, AuditEntry, ConfirmCode, EventType, LedgerError, NewAnomaly, NewEvent,
    RejectedCall, SecretRotation,
};

pub(crate) use self::lifecycle::{
    IssueRows, OrderRows, RefundRequestRows, RefundRows, ResolutionRows, ReversalRows,
};
pub(crate) use self::verify::{FingerprintRow, VerifyRows};
use ticket_ledger::text::json_text;

use crate::rows::{capacity_refusal, ms, one_row};
use crate::statements;

/// One value bound to a `?`, borrowed from its row (rusqlite binds it without a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param<'a> {
    /// An integer column's value.
    Int(Option<i64>),
    /// A text column's value.
    Text(Option<&'a str>),
}

impl<'a> Param<'a> {
    fn int(value: i64) -> Self {
        Self::Int(Some(value))
    }

    fn text(value: &'a str) -> Self {
        Self::Text(Some(value))
    }

    fn opt_text(value: Option<&'a String>) -> Self {
        Self::Text(value.map(String::as_str))
    }
}

/// A row one statement writes.
pub(crate) trait WriteRow {
    /// The statement, with `?` placeholders.
    const SQL: &'static str;
    /// What the write does, for the error that names a failed step.
    const DURING: &'static str;
    /// The values of the statement's `?`s, in order.
    fn params(&self) -> impl IntoIterator<Item = Param<'_>>;
}

/// What an executor checks of one statement's outcome, so that every store answers a write
/// that did not go as planned the same way.
#[derive(Debug, Clone)]
pub(crate) enum Check<'a> {
    /// Nothing (an insert).
    Nothing,
    /// It must change one row (`rows::one_row`, naming the write).
    OneRow(&'static str),
    /// It must change one row; breaking a uniqueness constraint is the refusal given.
    OneRowUnique(&'static str, LedgerError),
    /// A count of uses: when it changes no row, the refusal is `rows::capacity_refusal` of the
    /// voucher as it is now.
    Capacity {
        order_id: i64,
        code: &'a ConfirmCode,
        uses: i64,
    },
    /// A fingerprint remembered: breaking its primary key means a concurrent copy of the
    /// report won, which a retry answers as replayed (only possible where several
    /// connections write).
    Fingerprint,
    /// An order created: its constraints decide (unknown app, ids taken), not a racy look-up
    /// first; each driver names the constraint its own way.
    NewOrder,
}

impl<'a> Check<'a> {
    /// What it means that the statement changed `changed` rows: `Ok(None)` as planned, `Err`
    /// the refusal it stands for, or a count that changed no row, whose refusal depends on
    /// the voucher as it is now ([`CapacityMiss`]).
    pub(crate) fn changed(&self, changed: u64) -> Result<Option<CapacityMiss<'a>>, LedgerError> {
        match *self {
            Self::Nothing | Self::Fingerprint | Self::NewOrder => Ok(None),
            Self::OneRow(write) | Self::OneRowUnique(write, _) => {
                one_row(changed, write).map(|()| None)
            }
            Self::Capacity {
                order_id,
                code,
                uses,
            } => Ok((changed != 1).then_some(CapacityMiss {
                order_id,
                code,
                uses,
            })),
        }
    }
}

/// A count of uses that changed no row: the executor reads the voucher (`order_id`, `code`)
/// with `statements::SELECT_VOUCHER_COUNT` and answers [`CapacityMiss::refusal`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CapacityMiss<'a> {
    pub(crate) order_id: i64,
    pub(crate) code: &'a ConfirmCode,
    uses: i64,
}

impl CapacityMiss<'_> {
    /// The refusal, from the voucher's `(capacity, used)` as it is now (`None`: gone).
    pub(crate) fn refusal(&self, now: Option<(i64, i64)>) -> LedgerError {
        capacity_refusal(self.code, self.uses, now)
    }
}

/// One statement to run: a row's statement, its values, and what to check of its outcome.
#[derive(Debug, Clone)]
pub(crate) struct Step<'a> {
    pub(crate) sql: &'static str,
    pub(crate) during: &'static str,
    pub(crate) params: Vec<Param<'a>>,
    pub(crate) check: Check<'a>,
    /// For the event of an entry that rebuilds its data (`NewEvent::entry_data_unescaped`):
    /// the same event as a reference to that entry, which a store may write instead of `params`
    /// (SQLite does, `statements::SQLITE_INSERT_ENTRY_EVENT`), with the same check.
    pub(crate) entry_event: Option<EntryEvent<'a>>,
}

/// An entry's event as a reference to its entry: the event's type, order and time, and which
/// of the entries written before the event steps is its own, counted back from the last one
/// written (`back`: 0 for the last; [`event_steps`] writes the events after the entries they
/// record).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryEvent<'a> {
    event: &'a EventRow,
    pub(crate) back: usize,
}

impl<'a> EntryEvent<'a> {
    /// The values of `statements::SQLITE_INSERT_ENTRY_EVENT`'s four `?`s, `seq` being the key
    /// the database gave the entry.
    pub(crate) fn params(&self, seq: i64) -> [Param<'a>; 4] {
        [
            Param::text(self.event.event_type),
            Param::Int(self.event.order_id),
            Param::int(self.event.at_ms),
            Param::int(seq),
        ]
    }
}

impl<'a> Step<'a> {
    /// `row`'s statement, checked with `check`.
    fn of<R: WriteRow>(row: &'a R, check: Check<'a>) -> Self {
        Self {
            sql: R::SQL,
            during: R::DURING,
            params: row.params().into_iter().collect(),
            check,
            entry_event: None,
        }
    }

    /// Every row of `rows`, each checked with `check`.
    fn each<R: WriteRow>(
        rows: &'a [R],
        check: impl Fn(&'a R) -> Check<'a> + 'a,
    ) -> impl Iterator<Item = Self> + 'a {
        rows.iter().map(move |row| Self::of(row, check(row)))
    }
}

/// The rows of one write, as the statements that store them, in order: what an executor
/// runs (`sqlite::exec::write`, `sql::exec::write`).
pub(crate) trait Rows {
    fn steps(&self) -> Vec<Step<'_>>;
}

/// An audit entry as `audit_log` stores it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AuditRow {
    /// Its place among the rows written together, so that a bulk insert hands out `seq`s in
    /// that order.
    #[serde(rename = "i")]
    pub(crate) position: usize,
    pub(crate) request_id: String,
    pub(crate) at_ms: i64,
    pub(crate) action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) app_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) order_id: Option<i64>,
    pub(crate) outcome: &'static str,
    pub(crate) reason: String,
    /// JSON text.
    pub(crate) detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_ip: Option<String>,
    /// The change event this entry records, if it records one ([`NewEvent::of_entry`]):
    /// written with it, in the same transaction.
    #[serde(skip)]
    pub(crate) event: Option<EventRow>,
}

impl AuditRow {
    /// The row of `entry` (its `seq` is the database's to hand out).
    pub(crate) fn of(position: usize, entry: AuditEntry) -> Self {
        Self::of_rendered(position, entry.rendered())
    }

    /// The row of `entry`, whose detail is JSON text already (a verify's, rendered from its
    /// plan: `VerifyPlan::rendered_audit_entries`).
    pub(crate) fn of_rendered(position: usize, entry: AuditEntry<String>) -> Self {
        let event = EventType::of_entry(&entry).map(|kind| EventRow {
            event_type: kind.as_str(),
            order_id: entry.order_id,
            at_ms: ms(entry.at),
            data: NewEvent::entry_data_json(&entry, &entry.detail),
        });
        Self {
            position,
            event,
            request_id: entry.request_id,
            at_ms: ms(entry.at),
            action: entry.action,
            app_key: entry.app_key,
            order_id: entry.order_id,
            outcome: entry.outcome.as_str(),
            reason: entry.reason,
            detail: entry.detail,
            client_ip: entry.client_ip,
        }
    }

    /// The rows of a plan's entries, in their order.
    pub(crate) fn all(entries: Vec<AuditEntry>) -> Vec<Self> {
        entries
            .into_iter()
            .enumerate()
            .map(|(position, entry)| Self::of(position, entry))
            .collect()
    }
}

impl WriteRow for AuditRow {
    const SQL: &'static str = statements::INSERT_AUDIT;
    const DURING: &'static str = "appending to the audit trail";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::text(&self.request_id),
            Param::int(self.at_ms),
            Param::text(&self.action),
            Param::opt_text(self.app_key.as_ref()),
            Param::Int(self.order_id),
            Param::text(self.outcome),
            Param::text(&self.reason),
            Param::text(&self.detail),
            Param::opt_text(self.client_ip.as_ref()),
        ]
    }
}

/// An anomaly as `anomalies` stores it when raised (unresolved).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AnomalyRow {
    /// Its place among the rows written together (ids are handed out in that order).
    #[serde(rename = "i")]
    pub(crate) position: usize,
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) order_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) app_key: Option<String>,
    pub(crate) request_id: String,
    pub(crate) at_ms: i64,
    /// JSON text.
    pub(crate) detail: String,
    /// JSON text.
    pub(crate) request: String,
    /// The event of its opening.
    #[serde(skip)]
    pub(crate) event: AnomalyEventRow,
}

impl AnomalyRow {
    /// The row of `anomaly`.
    pub(crate) fn of(position: usize, anomaly: &NewAnomaly) -> Self {
        Self {
            position,
            event: AnomalyEventRow {
                event: EventRow::of(&NewEvent::of_anomaly(anomaly)),
                request_id: anomaly.request_id.clone(),
                kind: anomaly.kind.as_str(),
            },
            kind: anomaly.kind.as_str(),
            order_id: anomaly.order_id,
            app_key: anomaly.app_key.clone(),
            request_id: anomaly.request_id.clone(),
            at_ms: ms(anomaly.at),
            detail: json_text(&anomaly.detail),
            request: json_text(&anomaly.request),
        }
    }
}

/// Entries appended on their own.
impl Rows for [AuditRow] {
    fn steps(&self) -> Vec<Step<'_>> {
        Step::each(self, |_| Check::Nothing)
            .chain(event_steps(self, &[]))
            .collect()
    }
}

/// An anomaly recorded on its own.
impl Rows for AnomalyRow {
    fn steps(&self) -> Vec<Step<'_>> {
        std::iter::once(Step::of(self, Check::Nothing))
            .chain(event_steps(&[], std::slice::from_ref(self)))
            .collect()
    }
}

/// A change event as `ledger_events` stores it ([`NewEvent`]); its `seq` is taken from
/// `ledger_event_seq` by the [`EventSeqRow`] step before it (on SQLite by the event's own
/// insert, after the newest event: `statements::SQLITE_INSERT_EVENT`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventRow {
    pub(crate) event_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) order_id: Option<i64>,
    pub(crate) at_ms: i64,
    /// JSON text.
    pub(crate) data: String,
}

impl EventRow {
    fn of(event: &NewEvent) -> Self {
        Self {
            event_type: event.kind.as_str(),
            order_id: event.order_id,
            at_ms: ms(event.at),
            data: json_text(&event.data),
        }
    }
}

impl WriteRow for EventRow {
    const SQL: &'static str = statements::INSERT_EVENT;
    const DURING: &'static str = "writing a change event";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::text(self.event_type),
            Param::Int(self.order_id),
            Param::int(self.at_ms),
            Param::text(&self.data),
        ]
    }
}

/// An anomaly's event: written with the id of the anomaly, the newest of its request and
/// kind (`statements::INSERT_ANOMALY_EVENT`), which the database handed out when it wrote it.
#[derive(Debug, Clone)]
pub(crate) struct AnomalyEventRow {
    pub(crate) event: EventRow,
    pub(crate) request_id: String,
    pub(crate) kind: &'static str,
}

impl WriteRow for AnomalyEventRow {
    const SQL: &'static str = statements::INSERT_ANOMALY_EVENT;
    const DURING: &'static str = "writing an anomaly's event";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        self.event
            .params()
            .into_iter()
            .chain([Param::text(&self.request_id), Param::text(self.kind)])
    }
}

/// Takes the next event `seq` (no values).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventSeqRow;

impl WriteRow for EventSeqRow {
    const SQL: &'static str = statements::ADVANCE_EVENT_SEQ;
    const DURING: &'static str = "taking an event seq";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        []
    }
}

/// The events of `audit` and `anomalies`, in that order, each with its anomaly's request and
/// kind when it records one.
pub(crate) fn events<'a>(
    audit: &'a [AuditRow],
    anomalies: &'a [AnomalyRow],
) -> impl Iterator<Item = (&'a EventRow, Option<&'a AnomalyEventRow>)> + 'a {
    audit
        .iter()
        .filter_map(|row| row.event.as_ref().map(|event| (event, None)))
        .chain(
            anomalies
                .iter()
                .map(|row| (&row.event.event, Some(&row.event))),
        )
}

/// The steps writing the events of `audit` and `anomalies`: for each, take a `seq`, then
/// write the event with it. Writers put them last, so that the counter row is locked for as
/// short a time as possible (on PostgreSQL and MySQL other writers wait for it).
///
/// `audit` must be the last entries written before these steps, in their order: an entry's
/// event that may be kept as a reference ([`EntryEvent`]) names its entry by its place among
/// them, counted back from the last one written. Every write does: it writes its entries,
/// then their events (a verify writes its anomalies, which are not entries, in between).
pub(crate) fn event_steps<'a>(
    audit: &'a [AuditRow],
    anomalies: &'a [AnomalyRow],
) -> impl Iterator<Item = Step<'a>> + 'a {
    let written = audit.len();
    let entries = audit.iter().enumerate().filter_map(move |(place, row)| {
        let event = row.event.as_ref()?;
        let mut step = Step::of(event, Check::OneRow(WRITE_EVENT));
        // An entry's event is `NewEvent::entry_data_json` of the entry (`AuditRow::of_rendered`).
        let rebuilt =
            NewEvent::entry_data_unescaped(&row.request_id, row.app_key.as_deref(), &row.reason);
        step.entry_event = rebuilt.then(|| EntryEvent {
            event,
            // `place` is below `written`.
            back: written.saturating_sub(place.saturating_add(1)),
        });
        Some(step)
    });
    let anomalies = anomalies
        .iter()
        .map(|row| Step::of(&row.event, Check::OneRow(WRITE_EVENT)));
    entries.chain(anomalies).flat_map(|event| {
        [
            Step::of(&EventSeqRow, Check::OneRow(WRITE_EVENT_SEQ)),
            event,
        ]
    })
}

/// The write taking an event `seq`, for `WriteChangedNoRow`.
pub(crate) const WRITE_EVENT_SEQ: &str = "ledger_event_seq";
/// The write of an event, for `WriteChangedNoRow`.
pub(crate) const WRITE_EVENT: &str = "ledger_events";

impl WriteRow for AnomalyRow {
    const SQL: &'static str = statements::INSERT_ANOMALY;
    const DURING: &'static str = "recording an anomaly";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::text(self.kind),
            Param::Int(self.order_id),
            Param::opt_text(self.app_key.as_ref()),
            Param::text(&self.request_id),
            Param::int(self.at_ms),
            Param::text(&self.detail),
            Param::text(&self.request),
        ]
    }
}

/// An app's access columns (`rate_limit, rate_burst, ip_allowlist`), as every write of an app
/// stores them.
#[derive(Debug, Clone)]
struct AccessColumns {
    rate_limit: Option<String>,
    rate_burst: Option<i64>,
    ip_allowlist: Option<String>,
}

impl AccessColumns {
    fn of(access: &AppAccess) -> Self {
        Self {
            rate_limit: access.rate_limit.map(|r| r.rate_text()),
            rate_burst: access.rate_limit.and_then(|r| r.burst()).map(i64::from),
            ip_allowlist: access.allowlist_text(),
        }
    }

    fn params(&self) -> [Param<'_>; 3] {
        [
            Param::opt_text(self.rate_limit.as_ref()),
            Param::Int(self.rate_burst),
            Param::opt_text(self.ip_allowlist.as_ref()),
        ]
    }
}

/// A registered app, in the columns of `rows::app_columns!`.
#[derive(Debug, Clone)]
pub(crate) struct AppRow {
    app_key: String,
    name: String,
    secret: String,
    created_at_ms: i64,
    access: AccessColumns,
    previous_secret: Option<String>,
    previous_secret_expires_at_ms: Option<i64>,
}

impl AppRow {
    pub(crate) fn of(app: &App) -> Self {
        let previous = app.previous_secret.as_ref();
        Self {
            app_key: app.app_key.as_str().to_owned(),
            name: app.name.clone(),
            secret: app.secret.clone(),
            created_at_ms: ms(app.created_at),
            access: AccessColumns::of(&app.access),
            previous_secret: previous.map(|p| p.secret.clone()),
            previous_secret_expires_at_ms: previous.map(|p| ms(p.expires_at)),
        }
    }
}

impl WriteRow for AppRow {
    const SQL: &'static str = statements::INSERT_APP;
    const DURING: &'static str = "registering an app";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        let [rate_limit, rate_burst, ip_allowlist] = self.access.params();
        [
            Param::text(&self.app_key),
            Param::text(&self.name),
            Param::text(&self.secret),
            Param::int(self.created_at_ms),
            rate_limit,
            rate_burst,
            ip_allowlist,
            Param::opt_text(self.previous_secret.as_ref()),
            Param::Int(self.previous_secret_expires_at_ms),
        ]
    }
}

/// New access settings of an app.
#[derive(Debug, Clone)]
pub(crate) struct AppAccessRow {
    app_key: String,
    access: AccessColumns,
}

impl AppAccessRow {
    pub(crate) fn of(key: &AppKey, access: &AppAccess) -> Self {
        Self {
            app_key: key.as_str().to_owned(),
            access: AccessColumns::of(access),
        }
    }
}

impl WriteRow for AppAccessRow {
    const SQL: &'static str = statements::UPDATE_APP_ACCESS;
    const DURING: &'static str = "updating an app's access settings";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        let [rate_limit, rate_burst, ip_allowlist] = self.access.params();
        [
            rate_limit,
            rate_burst,
            ip_allowlist,
            Param::text(&self.app_key),
        ]
    }
}

/// An app's secret rotated (the old one becomes the previous secret).
#[derive(Debug, Clone)]
pub(crate) struct SecretRotationRow {
    app_key: String,
    previous_expires_at_ms: i64,
    new_secret: String,
}

impl SecretRotationRow {
    pub(crate) fn of(key: &AppKey, rotation: &SecretRotation) -> Self {
        Self {
            app_key: key.as_str().to_owned(),
            previous_expires_at_ms: ms(rotation.previous_expires_at),
            new_secret: rotation.new_secret.clone(),
        }
    }
}

impl WriteRow for SecretRotationRow {
    const SQL: &'static str = statements::ROTATE_APP_SECRET;
    const DURING: &'static str = "rotating an app's secret";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::int(self.previous_expires_at_ms),
            Param::text(&self.new_secret),
            Param::text(&self.app_key),
        ]
    }
}

/// A call refused before authentication, kept for operators.
#[derive(Debug, Clone)]
pub(crate) struct RejectedCallRow<'a> {
    call: &'a RejectedCall,
    at_ms: i64,
}

impl<'a> RejectedCallRow<'a> {
    pub(crate) fn of(call: &'a RejectedCall) -> Self {
        Self {
            call,
            at_ms: ms(call.at),
        }
    }
}

impl WriteRow for RejectedCallRow<'_> {
    const SQL: &'static str = statements::INSERT_REJECTED_CALL;
    const DURING: &'static str = "recording a rejected call";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        let call = self.call;
        [
            Param::text(&call.request_id),
            Param::int(self.at_ms),
            Param::opt_text(call.client_ip.as_ref()),
            Param::opt_text(call.app_key.as_ref()),
            Param::opt_text(call.method.as_ref()),
            Param::int(call.code),
            Param::opt_text(call.sub_code.as_ref()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_writes_the_bytes_display_writes() {
        // The detail is stored as this text, and SQLite's view rebuilds an entry's event from
        // it: the text must not depend on which serializer wrote it.
        let detail = serde_json::json!({
            "changes": [{"code": "CØDE-\u{1F3AB}", "used": 3, "capacity": 10}],
            "escaped": "quote \" backslash \\ newline \n tab \t nul \u{0} del \u{7f}",
            "numbers": [0, -1, 9_007_199_254_740_993_i64, 1.5, 1e300, -0.0],
            "nothing": null,
            "flags": [true, false],
            "nested": {"z": {}, "a": []},
        });
        assert_eq!(json_text(&detail), detail.to_string());
        assert_eq!(
            json_text(&serde_json::Value::String("a\u{2028}b".into())),
            "\"a\u{2028}b\""
        );
    }
}
