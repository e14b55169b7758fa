//! Rows ↔ domain values, and SQLite errors → [`LedgerError`].
//!
//! Everything that crosses the store boundary is converted here: instants become UTC
//! milliseconds (`*_ms` INTEGER columns) and come back as `DateTime<Utc>`, identifiers are
//! re-parsed with the domain's own `parse` so a corrupted row surfaces as an error instead of
//! an invalid value, and driver errors become the domain's `Unavailable`/`Internal`.

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::{ErrorCode, Row};
use ticket_ledger::{
    App, AppKey, AuditEntry, AuditOutcome, ConfirmCode, LedgerError, OrderId, OrderRecord,
    OutOrderId, VoucherRecord,
};

/// `apps` columns in the order [`app`] reads them.
pub(crate) const APP_COLUMNS: &str = "app_key, name, secret, created_at_ms";
/// `orders` columns in the order [`order`] reads them.
pub(crate) const ORDER_COLUMNS: &str =
    "order_id, app_key, out_order_id, quantity, valid_from_ms, valid_until_ms, created_at_ms";
/// `vouchers` columns in the order [`voucher`] reads them.
pub(crate) const VOUCHER_COLUMNS: &str = "confirm_code, capacity, used";
/// `audit_log` columns in the order [`audit`] reads them.
pub(crate) const AUDIT_COLUMNS: &str =
    "seq, request_id, at_ms, action, app_key, order_id, outcome, reason, detail, client_ip";

/// An instant as stored.
pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// A stored value that the domain does not accept: the row was written by something other than
/// this store, or the disk lies. Reported as a conversion failure so it ends up `Internal`.
fn corrupt(column: usize, ty: Type, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, ty, what.into())
}

fn instant(row: &Row<'_>, column: usize) -> rusqlite::Result<DateTime<Utc>> {
    let ms: i64 = row.get(column)?;
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        corrupt(
            column,
            Type::Integer,
            format!("instant {ms} ms out of range"),
        )
    })
}

fn opt_instant(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get::<_, Option<i64>>(column)? {
        None => Ok(None),
        Some(_) => instant(row, column).map(Some),
    }
}

fn parsed<T>(row: &Row<'_>, column: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    parse(&text).ok_or_else(|| corrupt(column, Type::Text, "invalid identifier".to_owned()))
}

fn order_id(row: &Row<'_>, column: usize) -> rusqlite::Result<OrderId> {
    let id: i64 = row.get(column)?;
    OrderId::new(id).ok_or_else(|| corrupt(column, Type::Integer, format!("order id {id}")))
}

/// Reads [`APP_COLUMNS`].
pub(crate) fn app(row: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        app_key: parsed(row, 0, AppKey::parse)?,
        name: row.get(1)?,
        secret: row.get(2)?,
        created_at: instant(row, 3)?,
    })
}

/// Reads [`ORDER_COLUMNS`].
pub(crate) fn order(row: &Row<'_>) -> rusqlite::Result<OrderRecord> {
    Ok(OrderRecord {
        order_id: order_id(row, 0)?,
        app_key: parsed(row, 1, AppKey::parse)?,
        out_order_id: match row.get::<_, Option<String>>(2)? {
            None => None,
            Some(_) => Some(parsed(row, 2, OutOrderId::parse)?),
        },
        quantity: row.get(3)?,
        valid_from: opt_instant(row, 4)?,
        valid_until: opt_instant(row, 5)?,
        created_at: instant(row, 6)?,
    })
}

/// Reads [`VOUCHER_COLUMNS`].
pub(crate) fn voucher(row: &Row<'_>) -> rusqlite::Result<VoucherRecord> {
    Ok(VoucherRecord {
        code: parsed(row, 0, ConfirmCode::parse)?,
        capacity: row.get(1)?,
        used: row.get(2)?,
    })
}

/// Reads [`AUDIT_COLUMNS`].
pub(crate) fn audit(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let outcome: String = row.get(6)?;
    let detail: String = row.get(8)?;
    Ok(AuditEntry {
        seq: row.get(0)?,
        request_id: row.get(1)?,
        at: instant(row, 2)?,
        action: row.get(3)?,
        app_key: row.get(4)?,
        order_id: row.get(5)?,
        outcome: AuditOutcome::parse(&outcome)
            .ok_or_else(|| corrupt(6, Type::Text, format!("outcome {outcome:?}")))?,
        reason: row.get(7)?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(8, Type::Text, Box::new(e)))?,
        client_ip: row.get(9)?,
    })
}

/// Appends one audit entry; returns its `seq`. Shared by every write that leaves a trace.
pub(crate) fn insert_audit(
    conn: &rusqlite::Connection,
    entry: &AuditEntry,
) -> Result<i64, LedgerError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO audit_log \
             (request_id, at_ms, action, app_key, order_id, outcome, reason, detail, client_ip) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .during("preparing the audit insert")?;
    stmt.execute(rusqlite::params![
        entry.request_id,
        ms(entry.at),
        entry.action,
        entry.app_key,
        entry.order_id,
        entry.outcome.as_str(),
        entry.reason,
        entry.detail.to_string(),
        entry.client_ip,
    ])
    .during("appending to the audit trail")?;
    Ok(conn.last_insert_rowid())
}

/// A uniqueness or foreign-key violation, the two constraint failures the store turns into
/// domain refusals (STYLE §3.6, the `on_constraint` pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation<'a> {
    /// A UNIQUE or PRIMARY KEY constraint; the columns as SQLite names them
    /// (`orders.app_key, orders.out_order_id`).
    Unique(&'a str),
    /// A FOREIGN KEY constraint (SQLite does not say which).
    ForeignKey,
}

/// Classifies a constraint violation, or `None` for any other error.
pub(crate) fn violation(err: &rusqlite::Error) -> Option<Violation<'_>> {
    let rusqlite::Error::SqliteFailure(e, message) = err else {
        return None;
    };
    match e.extended_code {
        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
            let columns = message
                .as_deref()
                .and_then(|m| m.split_once("constraint failed: "))
                .map_or("", |(_, columns)| columns);
            Some(Violation::Unique(columns))
        }
        rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(Violation::ForeignKey),
        _ => None,
    }
}

/// Whether the error means "try again later": another process holds the write lock past the
/// busy timeout, or a shared-cache table lock. Nothing was written in either case.
pub(crate) fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// The error and all its sources, `: `-separated, for logs and `Internal` messages.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Maps a driver error to the domain: busy/locked is [`LedgerError::Unavailable`] (a retry may
/// succeed), anything else [`LedgerError::Internal`], logged here with its whole source chain so
/// the caller can answer with the generic system error alone (STYLE §3.5).
pub(crate) fn ledger_error(during: &'static str, err: &rusqlite::Error) -> LedgerError {
    let detail = chain(err);
    if is_busy(err) {
        tracing::warn!(during, error = %detail, "ledger database busy");
        LedgerError::Unavailable(format!("{during}: {detail}"))
    } else {
        tracing::error!(during, error = %detail, "ledger database failure");
        LedgerError::Internal(format!("{during}: {detail}"))
    }
}

/// `.during("what")` on driver results: [`ledger_error`] with a description of the step.
pub(crate) trait During<T> {
    fn during(self, what: &'static str) -> Result<T, LedgerError>;
}

impl<T> During<T> for rusqlite::Result<T> {
    fn during(self, what: &'static str) -> Result<T, LedgerError> {
        self.map_err(|e| ledger_error(what, &e))
    }
}
