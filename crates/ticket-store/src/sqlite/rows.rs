//! rusqlite rows → domain values, and SQLite errors → [`LedgerError`].
//!
//! The conversion itself is shared with the other backends ([`crate::rows`]); this module gives
//! it rusqlite's rows, and turns driver errors into the domain's `Unavailable`/`Internal`.

use rusqlite::types::Type;
use rusqlite::{ErrorCode, Row};
use ticket_ledger::{
    Anomaly, App, AuditEntry, LedgerError, OrderRecord, RefundRequest, UseRecord, VoucherRecord,
};

pub(crate) use crate::rows::ms;
use crate::rows::{self as shared, ReadRow};

/// rusqlite's rows for the shared readers. A stored value that the domain does not accept (the
/// row was written by something other than this store, or the disk lies) is reported as a
/// conversion failure, so it ends up `Internal`.
impl ReadRow for Row<'_> {
    type Error = rusqlite::Error;

    fn int(&self, column: usize) -> rusqlite::Result<i64> {
        self.get(column)
    }

    fn opt_int(&self, column: usize) -> rusqlite::Result<Option<i64>> {
        self.get(column)
    }

    fn float(&self, column: usize) -> rusqlite::Result<f64> {
        self.get(column)
    }

    fn text(&self, column: usize) -> rusqlite::Result<String> {
        self.get(column)
    }

    fn opt_text(&self, column: usize) -> rusqlite::Result<Option<String>> {
        self.get(column)
    }

    fn corrupt(&self, column: usize, what: String) -> rusqlite::Error {
        let ty = self
            .get_ref(column)
            .map_or(Type::Null, |value| value.data_type());
        rusqlite::Error::FromSqlConversionFailure(column, ty, what.into())
    }
}

/// Reads `rows::app_columns!` (rusqlite wants a function of `&Row<'_>`).
pub(crate) fn app(row: &Row<'_>) -> rusqlite::Result<App> {
    shared::app(row)
}

/// Reads [`ORDER_COLUMNS`](crate::rows::ORDER_COLUMNS).
pub(crate) fn order(row: &Row<'_>) -> rusqlite::Result<OrderRecord> {
    shared::order(row)
}

/// Reads `rows::refund_columns!`.
pub(crate) fn refund(row: &Row<'_>) -> rusqlite::Result<RefundRequest> {
    shared::refund(row)
}

/// Reads `rows::use_columns!`.
pub(crate) fn voucher_use(row: &Row<'_>) -> rusqlite::Result<UseRecord> {
    shared::voucher_use(row)
}

/// Reads [`ANOMALY_COLUMNS`](crate::rows::ANOMALY_COLUMNS).
pub(crate) fn anomaly(row: &Row<'_>) -> rusqlite::Result<Anomaly> {
    shared::anomaly(row)
}

/// Reads `rows::voucher_columns!`.
pub(crate) fn voucher(row: &Row<'_>) -> rusqlite::Result<VoucherRecord> {
    shared::voucher(row)
}

/// Reads [`AUDIT_COLUMNS`](crate::rows::AUDIT_COLUMNS).
pub(crate) fn audit(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    shared::audit(row)
}

/// A uniqueness, foreign-key or check violation, the constraint failures the store turns into
/// domain refusals (so a race ends as a refusal the caller understands, not a raw database error)
/// or into the failed write they stand for (an event without its counter row, `sqlite::exec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation<'a> {
    /// A UNIQUE or PRIMARY KEY constraint; the columns as SQLite names them
    /// (`orders.app_key, orders.out_order_id`).
    Unique(&'a str),
    /// A FOREIGN KEY constraint (SQLite does not say which).
    ForeignKey,
    /// A CHECK constraint.
    Check,
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
        rusqlite::ffi::SQLITE_CONSTRAINT_CHECK => Some(Violation::Check),
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

/// Whether the disk (or file system quota) is full. SQLite rolls the statement or the whole
/// transaction back, so nothing was written; the same request succeeds once space is freed,
/// with no restart, so it is retryable like busy — but an operator must act, hence `error`.
pub(crate) fn is_disk_full(err: &rusqlite::Error) -> bool {
    matches!(err.sqlite_error_code(), Some(ErrorCode::DiskFull))
}

pub(crate) use crate::error::chain;

/// Maps a driver error to the domain: busy/locked and disk full are
/// [`LedgerError::Unavailable`] (a retry may succeed once the fault clears; the gateway answers
/// the retryable `isp.service-busy`), anything else [`LedgerError::Internal`], logged here with
/// its whole source chain so the caller can answer with the generic system error alone
/// (internal detail stays in the operator's log, never in an answer).
pub(crate) fn ledger_error(during: &'static str, err: &rusqlite::Error) -> LedgerError {
    let detail = chain(err);
    if is_busy(err) {
        tracing::warn!(during, error = %detail, "ledger database busy");
        LedgerError::Unavailable(format!("{during}: {detail}"))
    } else if is_disk_full(err) {
        tracing::error!(during, error = %detail, "ledger disk full: free space to recover");
        LedgerError::Unavailable(format!("{during}: disk full: {detail}"))
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
