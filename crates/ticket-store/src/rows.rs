//! Rows → domain values, once for every backend.
//!
//! SQLite (rusqlite), PostgreSQL and MySQL (sqlx) hand back rows of different types, but the
//! ledger stores the same columns everywhere: instants as UTC milliseconds in integer columns,
//! identifiers and states as text, JSON as text. Each driver implements the four accessors of
//! [`ReadRow`]; the readers below turn a row into a domain value the same way for all of them,
//! re-parsing identifiers with the domain's own `parse` so that a corrupted row surfaces as an
//! error instead of an invalid value. The column lists (`order_columns!`, …) are the `SELECT`
//! lists the readers expect, so every backend selects the same columns in the same order; the
//! statements themselves are in [`crate::statements`], what is written in [`crate::plan_rows`].
//!
//! Also here: the few pure helpers that both the SQLite and the SQL operations need (the
//! refusal of a conditional update that matched no row, the one-row check and the names of
//! the writes it guards, and the filters of the list queries), so the two stay one piece of
//! logic.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use ticket_ledger::{
    Anomaly, AnomalyFilter, AnomalyKind, App, AppAccess, AppKey, AuditEntry, AuditFilter,
    AuditOutcome, ConfirmCode, IssueState, LedgerError, NewAnomaly, OrderFilter, OrderId,
    OrderRead, OrderRecord, OrderSummary, OutOrderId, PreviousSecret, RateLimit, RefundRequest,
    RefundState, RejectedCall, Resolution, UseRecord, VoucherRecord,
};

use crate::plan_rows::Param;

// Each column list is a macro as well as a const, so that the statements of
// [`crate::statements`] are `concat!`ed from it at compile time: one list, read here and
// selected there.

/// `apps` columns in the order [`app`] reads them.
macro_rules! app_columns {
    () => {
        "app_key, name, secret, created_at_ms, rate_limit, rate_burst, ip_allowlist, \
         previous_secret, previous_secret_expires_at_ms"
    };
}
/// `orders` columns in the order [`order`] reads them.
macro_rules! order_columns {
    () => {
        "order_id, app_key, out_order_id, quantity, valid_from_ms, valid_until_ms, \
         created_at_ms, issue_state, issue_describe, refunded_tickets"
    };
}
/// `refund_requests` columns in the order [`refund`] reads them.
macro_rules! refund_columns {
    () => {
        "flow_id, quantity, requested_at_ms, state, refunded_tickets, batch_no, \
         failure_reason, settled_at_ms, needs_review"
    };
}
/// `voucher_uses` columns in the order [`voucher_use`] reads them.
macro_rules! use_columns {
    () => {
        "id, confirm_code, quantity, reversed, recorded_at_ms"
    };
}
/// `anomalies` columns in the order [`anomaly`] reads them.
macro_rules! anomaly_columns {
    () => {
        "id, kind, order_id, app_key, request_id, at_ms, detail, request, resolution, note, \
         resolved_at_ms"
    };
}
/// `vouchers` columns in the order [`voucher`] reads them.
macro_rules! voucher_columns {
    () => {
        "confirm_code, capacity, used"
    };
}
/// `audit_log` columns in the order [`audit`] reads them.
macro_rules! audit_columns {
    () => {
        "seq, request_id, at_ms, action, app_key, order_id, outcome, reason, detail, client_ip"
    };
}
/// The columns of a refused call in the order [`rejected_call`] reads them.
macro_rules! rejected_call_columns {
    () => {
        "seq, request_id, at_ms, client_ip, app_key, method, code, sub_code"
    };
}
pub(crate) use {
    anomaly_columns, app_columns, audit_columns, order_columns, refund_columns,
    rejected_call_columns, use_columns, voucher_columns,
};

/// `orders` columns in the order [`order`] reads them.
pub(crate) const ORDER_COLUMNS: &str = order_columns!();
/// `anomalies` columns in the order [`anomaly`] reads them.
pub(crate) const ANOMALY_COLUMNS: &str = anomaly_columns!();
/// `audit_log` columns in the order [`audit`] reads them.
pub(crate) const AUDIT_COLUMNS: &str = audit_columns!();

/// Reads the row of [`crate::statements::totals`].
pub(crate) fn totals<R: ReadRow>(row: &R) -> Result<ticket_ledger::StoreMetrics, R::Error> {
    Ok(ticket_ledger::StoreMetrics {
        orders: row.int(0)?,
        capacity: row.float(1)?,
        used: row.float(2)?,
        refunded_tickets: row.float(3)?,
        open_anomalies: row.int(4)?,
        batches: None,
        trigger_reloads: 0,
        failed_trigger_reloads: 0,
    })
}

/// After storing the refused call numbered `newest`, the `seq` through which older ones are
/// dropped so that at most `keep` remain; `None` when nothing need go.
pub(crate) fn rejected_calls_prune_through(newest: i64, keep: u64) -> Option<i64> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    newest.checked_sub(keep).filter(|through| *through > 0)
}

/// The `?` values of [`crate::statements::LIST_REJECTED_CALLS`]: the cursor (everything when
/// absent) and the limit, capped like every other list.
pub(crate) fn rejected_calls_page(filter: &ticket_ledger::RejectedCallFilter) -> (i64, i64) {
    (
        filter.before_seq.unwrap_or(i64::MAX),
        i64::from(filter.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)),
    )
}

/// The `?` values of [`crate::statements::LIST_APPS`]: the key to list after (`""`, before
/// every key, from the first) and the limit clamped as `LedgerStore::list_apps` says.
pub(crate) fn apps_page(after: Option<&AppKey>, limit: u32) -> (String, i64) {
    (
        after.map_or_else(String::new, |key| key.as_str().to_owned()),
        i64::from(ticket_ledger::apps_page_size(limit)),
    )
}

/// The candidates one read of the order list found ([`ListQuery::order_candidates`]), one list
/// per statement, merged into the list's order: newest first by `(created_at, order_id)`,
/// each order once (a search text can name an order twice: by its id and by its app), at most
/// `limit`. Each statement read the first `limit` of its own candidates after the cursor, so
/// the first `limit` of the union are among them.
pub(crate) fn merge_candidates(found: Vec<Vec<OrderRecord>>, limit: u32) -> Vec<OrderRecord> {
    let mut all: Vec<OrderRecord> = found.into_iter().flatten().collect();
    all.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.order_id)));
    all.dedup_by_key(|o| o.order_id);
    all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    all
}

/// What the order list shows beside each order's row, gathered for a chunk of orders: the sums
/// of its vouchers' capacities and uses, exact in `i128` (SQL's `sum` fails past `i64::MAX`,
/// which a ledger older than its bounds can reach), and whether a refund is pending.
#[derive(Debug, Default)]
pub(crate) struct OrderTotals {
    /// `(capacity, used)` summed per order id.
    sums: HashMap<i64, (i128, i128)>,
    /// The orders with a pending refund request.
    pending: HashSet<i64>,
}

impl OrderTotals {
    /// Counts one voucher of the order `order_id`.
    pub(crate) fn voucher(&mut self, order_id: i64, capacity: i64, used: i64) {
        let sums = self.sums.entry(order_id).or_default();
        // Fewer than 2^64 vouchers of at most 2^63 each: an `i128` sum cannot overflow.
        sums.0 += i128::from(capacity);
        sums.1 += i128::from(used);
    }

    /// Marks the order `order_id` as having a pending refund request.
    pub(crate) fn refund_pending(&mut self, order_id: i64) {
        self.pending.insert(order_id);
    }

    /// The list's summary of `order`, its status derived from the totals as the order view
    /// derives it.
    pub(crate) fn summary(&self, order: OrderRecord) -> OrderSummary {
        let id = order.order_id.get();
        let (capacity, used) = self.sums.get(&id).copied().unwrap_or_default();
        let pending = self.pending.contains(&id);
        OrderSummary::from_totals(order, capacity, used, pending)
    }
}

/// Entries a list query returns when the filter names no limit.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
/// Entries a list query returns at most, whatever the filter asks.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// An instant as stored.
pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Typed access to one column of a driver's row. `corrupt` builds the driver's own error for a
/// value the domain refuses, so it travels the same road as any other read failure.
pub(crate) trait ReadRow {
    /// The driver's error.
    type Error;
    /// A non-null integer column.
    fn int(&self, column: usize) -> Result<i64, Self::Error>;
    /// A nullable integer column.
    fn opt_int(&self, column: usize) -> Result<Option<i64>, Self::Error>;
    /// A non-null floating point column.
    fn float(&self, column: usize) -> Result<f64, Self::Error>;
    /// A non-null text column.
    fn text(&self, column: usize) -> Result<String, Self::Error>;
    /// A nullable text column.
    fn opt_text(&self, column: usize) -> Result<Option<String>, Self::Error>;
    /// The error for a stored value the domain does not accept.
    fn corrupt(&self, column: usize, what: String) -> Self::Error;
}

fn instant<R: ReadRow>(row: &R, column: usize) -> Result<DateTime<Utc>, R::Error> {
    let ms = row.int(column)?;
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| row.corrupt(column, format!("instant {ms} ms out of range")))
}

fn opt_instant<R: ReadRow>(row: &R, column: usize) -> Result<Option<DateTime<Utc>>, R::Error> {
    match row.opt_int(column)? {
        None => Ok(None),
        Some(_) => instant(row, column).map(Some),
    }
}

fn parsed<R: ReadRow, T>(
    row: &R,
    column: usize,
    parse: fn(&str) -> Option<T>,
) -> Result<T, R::Error> {
    let text = row.text(column)?;
    parse(&text).ok_or_else(|| row.corrupt(column, format!("invalid value {text:?}")))
}

fn opt_parsed<R: ReadRow, T>(
    row: &R,
    column: usize,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, R::Error> {
    match row.opt_text(column)? {
        None => Ok(None),
        Some(_) => parsed(row, column, parse).map(Some),
    }
}

fn json<R: ReadRow>(row: &R, column: usize) -> Result<serde_json::Value, R::Error> {
    let text = row.text(column)?;
    serde_json::from_str(&text).map_err(|e| row.corrupt(column, format!("invalid JSON: {e}")))
}

/// JSON text kept as it is, once checked to be JSON.
fn raw_json<R: ReadRow>(
    row: &R,
    column: usize,
) -> Result<Box<serde_json::value::RawValue>, R::Error> {
    let text = row.text(column)?;
    serde_json::value::RawValue::from_string(text)
        .map_err(|e| row.corrupt(column, format!("invalid JSON: {e}")))
}

/// Reads [`app_columns!`].
pub(crate) fn app<R: ReadRow>(row: &R) -> Result<App, R::Error> {
    let rate_limit = match row.opt_text(4)? {
        None => None,
        Some(rate) => {
            let burst = row
                .opt_int(5)?
                .map(|b| u32::try_from(b).map_err(|_| row.corrupt(5, format!("burst {b}"))))
                .transpose()?;
            Some(RateLimit::parse(&rate, burst).map_err(|why| row.corrupt(4, why))?)
        }
    };
    let ip_allowlist = match row.opt_text(6)? {
        None => Vec::new(),
        Some(text) => AppAccess::parse_allowlist(&text).map_err(|why| row.corrupt(6, why))?,
    };
    let previous_secret = match (row.opt_text(7)?, opt_instant(row, 8)?) {
        (Some(secret), Some(expires_at)) => Some(PreviousSecret { secret, expires_at }),
        (None, None) => None,
        _ => {
            return Err(row.corrupt(
                7,
                "previous_secret and its expiry must be set together".to_owned(),
            ))
        }
    };
    Ok(App {
        app_key: parsed(row, 0, AppKey::parse)?,
        name: row.text(1)?,
        secret: row.text(2)?,
        created_at: instant(row, 3)?,
        access: AppAccess {
            rate_limit,
            ip_allowlist,
        },
        previous_secret,
    })
}

/// Reads [`ORDER_COLUMNS`].
pub(crate) fn order<R: ReadRow>(row: &R) -> Result<OrderRecord, R::Error> {
    let id = row.int(0)?;
    Ok(OrderRecord {
        order_id: OrderId::new(id).ok_or_else(|| row.corrupt(0, format!("order id {id}")))?,
        app_key: parsed(row, 1, AppKey::parse)?,
        out_order_id: opt_parsed(row, 2, OutOrderId::parse)?,
        quantity: row.int(3)?,
        valid_from: opt_instant(row, 4)?,
        valid_until: opt_instant(row, 5)?,
        created_at: instant(row, 6)?,
        issue_state: parsed(row, 7, IssueState::parse)?,
        issue_describe: row.opt_text(8)?,
        refunded_tickets: row.int(9)?,
    })
}

/// Reads [`refund_columns!`].
pub(crate) fn refund<R: ReadRow>(row: &R) -> Result<RefundRequest, R::Error> {
    Ok(RefundRequest {
        flow_id: row.text(0)?,
        quantity: row.int(1)?,
        requested_at: instant(row, 2)?,
        state: parsed(row, 3, RefundState::parse)?,
        refunded_tickets: row.int(4)?,
        batch_no: row.opt_text(5)?,
        failure_reason: row.opt_text(6)?,
        settled_at: opt_instant(row, 7)?,
        needs_review: row.int(8)? != 0,
    })
}

/// Reads [`use_columns!`].
pub(crate) fn voucher_use<R: ReadRow>(row: &R) -> Result<UseRecord, R::Error> {
    Ok(UseRecord {
        id: row.int(0)?,
        code: parsed(row, 1, ConfirmCode::parse)?,
        quantity: row.int(2)?,
        reversed: row.int(3)?,
        recorded_at: instant(row, 4)?,
    })
}

/// Reads [`ANOMALY_COLUMNS`].
pub(crate) fn anomaly<R: ReadRow>(row: &R) -> Result<Anomaly, R::Error> {
    Ok(Anomaly {
        id: row.int(0)?,
        anomaly: NewAnomaly {
            kind: parsed(row, 1, AnomalyKind::parse)?,
            order_id: row.opt_int(2)?,
            app_key: row.opt_text(3)?,
            request_id: row.text(4)?,
            at: instant(row, 5)?,
            detail: json(row, 6)?,
            request: json(row, 7)?,
        },
        resolution: opt_parsed(row, 8, Resolution::parse)?,
        note: row.opt_text(9)?,
        resolved_at: opt_instant(row, 10)?,
    })
}

/// Reads [`voucher_columns!`].
pub(crate) fn voucher<R: ReadRow>(row: &R) -> Result<VoucherRecord, R::Error> {
    Ok(VoucherRecord {
        code: parsed(row, 0, ConfirmCode::parse)?,
        capacity: row.int(1)?,
        used: row.int(2)?,
    })
}

/// Reads [`AUDIT_COLUMNS`].
pub(crate) fn audit<R: ReadRow>(row: &R) -> Result<AuditEntry, R::Error> {
    Ok(AuditEntry {
        seq: row.int(0)?,
        request_id: row.text(1)?,
        at: instant(row, 2)?,
        action: row.text(3)?,
        app_key: row.opt_text(4)?,
        order_id: row.opt_int(5)?,
        outcome: parsed(row, 6, AuditOutcome::parse)?,
        reason: row.text(7)?,
        detail: json(row, 8)?,
        client_ip: row.opt_text(9)?,
    })
}

/// Reads [`rejected_call_columns!`].
pub(crate) fn rejected_call<R: ReadRow>(row: &R) -> Result<RejectedCall, R::Error> {
    Ok(RejectedCall {
        seq: row.int(0)?,
        request_id: row.text(1)?,
        at: instant(row, 2)?,
        client_ip: row.opt_text(3)?,
        app_key: row.opt_text(4)?,
        method: row.opt_text(5)?,
        code: row.int(6)?,
        sub_code: row.opt_text(7)?,
    })
}

/// A stored change event: the columns of `statements::LIST_EVENTS`.
pub(crate) fn event<R: ReadRow>(row: &R) -> Result<ticket_ledger::Event, R::Error> {
    Ok(ticket_ledger::Event {
        seq: row.int(0)?,
        kind: row.text(1)?,
        order_id: row.opt_int(2)?,
        at: instant(row, 3)?,
        data: raw_json(row, 4)?,
        anomaly_id: row.opt_int(5)?,
    })
}

/// The `(after, limit)` of a feed page: `limit` 0 means the default, and at most
/// [`MAX_LIMIT`].
pub(crate) fn events_page(after: i64, limit: u32) -> (i64, i64) {
    let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
    (after.max(0), i64::from(limit.min(MAX_LIMIT)))
}

/// The page of `events` read after `after`.
pub(crate) fn event_page(
    (ledger_id, last_seq): (String, i64),
    after: i64,
    events: Vec<ticket_ledger::Event>,
) -> ticket_ledger::EventPage {
    let next = events.last().map_or(after.max(0), |e| e.seq);
    ticket_ledger::EventPage {
        ledger_id,
        last_seq,
        events,
        next,
    }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers shared by the operations of every backend
// ---------------------------------------------------------------------------------------------

/// The refusal for a conditional voucher update (`used + n <= capacity`) that matched no row,
/// computed from the row as it is now (`(capacity, used)`, or `None` when the voucher is
/// gone) rather than from the evidently stale plan: `CapacityExceeded` when the row really has
/// too few uses left, the answer a fresh plan would give. Otherwise the row exists and has room,
/// or vanished under the order's lock: the database disagrees with what the planner read in a
/// way no refusal of the request explains, so it is [`LedgerError::WriteChangedNoRow`], which
/// the store records as an anomaly.
pub(crate) fn capacity_refusal(
    code: &ConfirmCode,
    delta: i64,
    now: Option<(i64, i64)>,
) -> LedgerError {
    match now {
        Some((capacity, used)) if capacity.saturating_sub(used) < delta => {
            LedgerError::CapacityExceeded {
                code: code.clone(),
                requested: delta,
                remaining: capacity.saturating_sub(used).max(0),
            }
        }
        Some(_) | None => LedgerError::WriteChangedNoRow {
            write: WRITE_VOUCHER_USED,
        },
    }
}

// The writes that must change exactly one row, named as `LedgerError::WriteChangedNoRow`
// names them on every store (the behaviour suite compares them).

/// A voucher's count of uses (verify, reversal).
pub(crate) const WRITE_VOUCHER_USED: &str = "vouchers.used";
/// A pending refund request marked for review (R9).
pub(crate) const WRITE_REFUND_REVIEW: &str = "refund_requests.needs_review";
/// A pending refund request settled.
pub(crate) const WRITE_REFUND_STATE: &str = "refund_requests.state";
/// An order's refunded tickets counted (`refunded_tickets + n <= quantity`).
pub(crate) const WRITE_REFUNDED_TICKETS: &str = "orders.refunded_tickets";
/// An order's issuance recorded.
pub(crate) const WRITE_ISSUE_STATE: &str = "orders.issue_state";
/// A logged use marked reversed (`reversed + n <= quantity`).
pub(crate) const WRITE_USE_REVERSED: &str = "voucher_uses.reversed";
/// An open anomaly resolved.
pub(crate) const WRITE_ANOMALY_RESOLUTION: &str = "anomalies.resolution";

/// `Ok` when a write that must change exactly one row changed `changed` rows (as the driver
/// counts them: MySQL through sqlx counts rows matched, like PostgreSQL and SQLite), else
/// [`LedgerError::WriteChangedNoRow`] naming `write`. The caller rolls the whole operation
/// back and records the anomaly.
pub(crate) fn one_row(changed: u64, write: &'static str) -> Result<(), LedgerError> {
    if changed == 1 {
        Ok(())
    } else {
        Err(LedgerError::WriteChangedNoRow { write })
    }
}

/// A value to bind, typed even when null (PostgreSQL wants a NULL's type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqlValue {
    /// An integer column's value.
    Int(Option<i64>),
    /// A text column's value.
    Text(Option<String>),
}

impl SqlValue {
    /// The value as a statement parameter.
    pub(crate) fn param(&self) -> Param<'_> {
        match self {
            Self::Int(i) => Param::Int(*i),
            Self::Text(t) => Param::Text(t.as_deref()),
        }
    }
}

/// The `WHERE` clauses (each with one `?`) and their values of a list query, its order and its
/// capped limit. Only the filters in use are named, so each query can use the index that fits
/// instead of `? IS NULL OR ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// `SELECT <columns> FROM <table>`.
    pub(crate) select: String,
    /// Clauses joined with `AND`.
    pub(crate) clauses: Vec<&'static str>,
    /// One value per `?` in `clauses`.
    pub(crate) values: Vec<SqlValue>,
    /// The `ORDER BY` list.
    pub(crate) order_by: &'static str,
    /// The limit, already capped.
    pub(crate) limit: i64,
}

impl ListQuery {
    fn new(select: String, order_by: &'static str, limit: Option<u32>) -> Self {
        Self {
            select,
            clauses: Vec::new(),
            values: Vec::new(),
            order_by,
            limit: i64::from(limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)),
        }
    }

    fn and(&mut self, clause: &'static str, value: Option<SqlValue>) {
        self.clauses.push(clause);
        self.values.extend(value);
    }

    /// The whole statement with `?` placeholders; the limit is the last one.
    pub(crate) fn sql(&self) -> String {
        let filter = if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        };
        format!("{}{filter} ORDER BY {} LIMIT ?", self.select, self.order_by)
    }

    /// Audit entries matching every field of `filter`, oldest first (newest first when
    /// [`AuditFilter::descending`]).
    pub(crate) fn audit(filter: &AuditFilter) -> Self {
        let mut q = Self::new(
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log"),
            if filter.descending() {
                "seq DESC"
            } else {
                "seq"
            },
            filter.limit,
        );
        if let Some(order_id) = filter.order_id {
            q.and("order_id = ?", Some(SqlValue::Int(Some(order_id))));
        }
        if let Some(app_key) = &filter.app_key {
            q.and("app_key = ?", Some(SqlValue::Text(Some(app_key.clone()))));
        }
        if let Some(outcome) = filter.outcome {
            q.and(
                "outcome = ?",
                Some(SqlValue::Text(Some(outcome.as_str().to_owned()))),
            );
        }
        if let Some(after) = filter.after_seq {
            q.and("seq > ?", Some(SqlValue::Int(Some(after))));
        }
        if let Some(before) = filter.before_seq {
            q.and("seq < ?", Some(SqlValue::Int(Some(before))));
        }
        q
    }

    /// [`ListQuery::audit`] on SQLite, whose entries by order and by app are folded
    /// (`statements::SQLITE_ORDER_ENTRIES`, `statements::SQLITE_APP_AUDIT`).
    pub(crate) fn sqlite_audit(filter: &AuditFilter) -> Self {
        let mut q = Self::audit(&AuditFilter {
            order_id: None,
            app_key: None,
            ..filter.clone()
        });
        if let Some(order_id) = filter.order_id {
            q.clauses.insert(0, crate::statements::SQLITE_ORDER_ENTRIES);
            q.values.splice(
                0..0,
                [SqlValue::Int(Some(order_id)), SqlValue::Int(Some(order_id))],
            );
        }
        if let Some(app_key) = &filter.app_key {
            // The select's two parameters come before every clause's.
            q.select = crate::statements::SQLITE_APP_AUDIT.to_owned();
            let app = SqlValue::Text(Some(app_key.clone()));
            q.values.splice(0..0, [app.clone(), app]);
        }
        q
    }

    /// The statements reading one chunk of the order list's candidates (`read`, what
    /// [`ticket_ledger::OrderScan`] asks): the orders `filter` admits (all but its status)
    /// after the read's cursor, newest first by `(created_at_ms, order_id)`, at most its limit.
    ///
    /// One statement without a search text. With one, a statement per identifier the text can
    /// be (an `order_id`, an `out_order_id`, an `app_key`), each on its own index, merged by
    /// [`merge_candidates`]: an `OR` of the three would make the engines collect every order
    /// of a matching app and sort them, on every page. A text that is none of them reads
    /// nothing.
    ///
    /// The cursor is `created_at_ms <= ? AND (created_at_ms < ? OR order_id < ?)`: the first
    /// term bounds the walk on the index, the rest drops the cursor's own millisecond's orders
    /// up to and including it.
    pub(crate) fn order_candidates(filter: &OrderFilter, read: OrderRead) -> Vec<Self> {
        let query = |term: Option<(&'static str, SqlValue)>| {
            let mut q = Self::new(
                format!("SELECT {ORDER_COLUMNS} FROM orders"),
                "created_at_ms DESC, order_id DESC",
                Some(read.limit),
            );
            if let Some((clause, value)) = term {
                q.and(clause, Some(value));
            }
            if let Some(app) = &filter.app_key {
                q.and(
                    "app_key = ?",
                    Some(SqlValue::Text(Some(app.as_str().to_owned()))),
                );
            }
            if let Some(after) = read.after {
                let at = ms(after.created_at);
                q.clauses
                    .push("created_at_ms <= ? AND (created_at_ms < ? OR order_id < ?)");
                q.values.extend([
                    SqlValue::Int(Some(at)),
                    SqlValue::Int(Some(at)),
                    SqlValue::Int(Some(after.order_id.get())),
                ]);
            }
            q
        };
        let Some(terms) = filter.q_terms() else {
            return vec![query(None)];
        };
        let text = |s: &str| SqlValue::Text(Some(s.to_owned()));
        [
            terms
                .order_id
                .map(|id| ("order_id = ?", SqlValue::Int(Some(id.get())))),
            terms
                .out_order_id
                .map(|out| ("out_order_id = ?", text(out.as_str()))),
            terms.app_key.map(|key| ("app_key = ?", text(key.as_str()))),
        ]
        .into_iter()
        .flatten()
        .map(|term| query(Some(term)))
        .collect()
    }

    /// Anomalies matching the filter, newest first.
    pub(crate) fn anomalies(filter: &AnomalyFilter) -> Self {
        let mut q = Self::new(
            format!("SELECT {ANOMALY_COLUMNS} FROM anomalies"),
            "id DESC",
            filter.limit,
        );
        match filter.open {
            Some(true) => q.and("resolution IS NULL", None),
            Some(false) => q.and("resolution IS NOT NULL", None),
            None => {}
        }
        if let Some(order_id) = filter.order_id {
            q.and("order_id = ?", Some(SqlValue::Int(Some(order_id))));
        }
        if let Some(kind) = filter.kind {
            q.and(
                "kind = ?",
                Some(SqlValue::Text(Some(kind.as_str().to_owned()))),
            );
        }
        if let Some(before) = filter.before_id {
            q.and("id < ?", Some(SqlValue::Int(Some(before))));
        }
        q
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pruning_keeps_the_newest_rows_and_never_a_negative_bound() {
        use super::rejected_calls_prune_through as through;
        assert_eq!(through(10, 3), Some(7));
        assert_eq!(through(3, 3), None);
        assert_eq!(through(1, 100_000), None);
        assert_eq!(through(5, 0), Some(5));
        assert_eq!(through(i64::MAX, u64::MAX), None);
    }

    use super::*;

    #[test]
    fn list_queries_name_only_the_filters_in_use_and_cap_the_limit() {
        let q = ListQuery::audit(&AuditFilter {
            order_id: Some(7),
            after_seq: Some(3),
            limit: Some(5000),
            ..AuditFilter::default()
        });
        assert_eq!(
            q.sql(),
            format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE order_id = ? AND seq > ? \
                 ORDER BY seq LIMIT ?"
            )
        );
        assert_eq!(q.values, [SqlValue::Int(Some(7)), SqlValue::Int(Some(3))]);
        assert_eq!(q.limit, 1000);
        let q = ListQuery::anomalies(&AnomalyFilter {
            open: Some(true),
            ..AnomalyFilter::default()
        });
        assert!(q
            .sql()
            .ends_with("WHERE resolution IS NULL ORDER BY id DESC LIMIT ?"));
        assert!(q.values.is_empty());
        assert_eq!(q.limit, 100);
        let q = ListQuery::anomalies(&AnomalyFilter {
            before_id: Some(40),
            ..AnomalyFilter::default()
        });
        assert!(q.sql().ends_with("WHERE id < ? ORDER BY id DESC LIMIT ?"));
        assert_eq!(q.values, [SqlValue::Int(Some(40))]);
    }

    #[test]
    fn newest_first_audit_queries_walk_seq_down_from_a_cursor() {
        let q = ListQuery::audit(&AuditFilter::order_events_newest_first(
            OrderId::new(7).expect("positive"),
            Some(50),
            20,
        ));
        assert_eq!(
            q.sql(),
            format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE order_id = ? AND seq < ? \
                 ORDER BY seq DESC LIMIT ?"
            )
        );
        assert_eq!(q.values, [SqlValue::Int(Some(7)), SqlValue::Int(Some(50))]);
        assert_eq!(q.limit, 20);
        let q = ListQuery::audit(&AuditFilter {
            newest_first: true,
            ..AuditFilter::default()
        });
        assert!(q
            .sql()
            .ends_with("FROM audit_log ORDER BY seq DESC LIMIT ?"));
        let q = ListQuery::audit(&AuditFilter::default());
        assert!(q.sql().ends_with("FROM audit_log ORDER BY seq LIMIT ?"));
    }

    fn record(id: i64, ms: i64) -> OrderRecord {
        OrderRecord {
            order_id: OrderId::new(id).expect("positive"),
            app_key: AppKey::parse("k").expect("valid"),
            out_order_id: None,
            quantity: 1,
            valid_from: None,
            valid_until: None,
            created_at: DateTime::from_timestamp_millis(ms).expect("in range"),
            issue_state: IssueState::Issued,
            issue_describe: None,
            refunded_tickets: 0,
        }
    }

    #[test]
    fn order_candidates_read_one_index_per_identifier_a_search_text_can_be() {
        use ticket_ledger::{OrderCursor, OrderFilter, OrderRead};
        let read = OrderRead {
            after: Some(OrderCursor::of(&record(9, 1000))),
            limit: 51,
        };
        let all = ListQuery::order_candidates(&OrderFilter::default(), read);
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].sql(),
            format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE created_at_ms <= ? AND \
                 (created_at_ms < ? OR order_id < ?) ORDER BY created_at_ms DESC, \
                 order_id DESC LIMIT ?"
            )
        );
        assert_eq!(
            all[0].values,
            [
                SqlValue::Int(Some(1000)),
                SqlValue::Int(Some(1000)),
                SqlValue::Int(Some(9))
            ]
        );
        assert_eq!(all[0].limit, 51);
        let text = |q: &str| OrderFilter {
            q: Some(q.to_owned()),
            app_key: AppKey::parse("app"),
            ..OrderFilter::default()
        };
        let first = OrderRead {
            after: None,
            limit: 10,
        };
        let by_number = ListQuery::order_candidates(&text("42"), first);
        let clauses: Vec<_> = by_number.iter().map(|q| q.clauses.clone()).collect();
        assert_eq!(
            clauses,
            [
                ["order_id = ?", "app_key = ?"],
                ["out_order_id = ?", "app_key = ?"],
                ["app_key = ?", "app_key = ?"]
            ]
        );
        assert_eq!(ListQuery::order_candidates(&text("-1x"), first).len(), 2);
        assert!(ListQuery::order_candidates(&text("a b"), first).is_empty());
    }

    #[test]
    fn merged_candidates_are_newest_first_once_each_and_at_most_the_limit() {
        let merged = merge_candidates(
            vec![
                vec![record(5, 20), record(3, 10)],
                vec![record(5, 20), record(4, 10), record(1, 5)],
            ],
            3,
        );
        let ids: Vec<i64> = merged.iter().map(|o| o.order_id.get()).collect();
        assert_eq!(ids, [5, 4, 3]);
    }

    #[test]
    fn order_totals_sum_exactly_and_show_a_huge_total_as_i64_max() {
        let mut totals = OrderTotals::default();
        totals.voucher(1, i64::MAX, 3);
        totals.voucher(1, i64::MAX, 4);
        totals.refund_pending(2);
        let one = totals.summary(record(1, 0));
        assert_eq!((one.capacity, one.used), (i64::MAX, 7));
        let two = totals.summary(record(2, 0));
        assert_eq!((two.capacity, two.used), (0, 0));
        assert_eq!(two.status, ticket_ledger::OrderStatus::Refunding);
    }
}
