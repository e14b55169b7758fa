//! Executes the rows of a plan ([`crate::plan_rows`]) on SQLite, one statement per row.
//!
//! Every function runs inside the writer's transaction (a job's savepoint): an `Err` undoes
//! the job. Each statement is prepared once per connection and cached (`prepare_cached`), and
//! once per call for all its rows. Every write that must change exactly one row checks that it
//! did ([`one_row`]): one that changes none means the database disagrees with what the plan was
//! made from, and the whole operation is refused with [`LedgerError::WriteChangedNoRow`] and
//! recorded as an anomaly — never answered as a success that changed nothing.

use rusqlite::types::{Null, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, ToSql};
use ticket_ledger::{LedgerError, NewAnomaly};

use super::rows::{ledger_error, violation, During, Violation};
use crate::plan_rows::{
    AnomalyRow, AuditRow, IssueRows, OrderRows, Param, RefundRequestRows, RefundRows,
    ResolutionRows, ReversalRows, VerifyRows, WriteRow,
};
use crate::rows::{
    capacity_refusal, one_row, WRITE_ANOMALY_RESOLUTION, WRITE_ISSUE_STATE, WRITE_REFUNDED_TICKETS,
    WRITE_REFUND_REVIEW, WRITE_REFUND_STATE, WRITE_USE_REVERSED, WRITE_VOUCHER_USED,
};
use crate::statements;

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Int(Some(i)) => ToSqlOutput::from(i),
            Param::Text(Some(text)) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Param::Int(None) | Param::Text(None) => ToSqlOutput::from(Null),
        })
    }
}

/// Writes every row of `rows` with one prepared statement; `check` sees each row with the
/// number of rows its statement changed.
fn write_each<R: WriteRow>(
    conn: &Connection,
    rows: &[R],
    mut check: impl FnMut(&R, u64) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut statement = conn.prepare_cached(R::SQL).during(R::DURING)?;
    for row in rows {
        let changed = statement
            .execute(rusqlite::params_from_iter(row.params()))
            .during(R::DURING)?;
        check(row, u64::try_from(changed).unwrap_or(u64::MAX))?;
    }
    Ok(())
}

/// Writes every row of `rows`.
fn write_all<R: WriteRow>(conn: &Connection, rows: &[R]) -> Result<(), LedgerError> {
    write_each(conn, rows, |_, _| Ok(()))
}

/// Writes every row of `rows`, each of which must change one row ([`one_row`]).
fn write_one_each<R: WriteRow>(
    conn: &Connection,
    rows: &[R],
    write: &'static str,
) -> Result<(), LedgerError> {
    write_each(conn, rows, |_, changed| one_row(changed, write))
}

/// Writes one row and says how many rows changed, leaving the driver's error to the caller
/// (which turns a constraint violation into the refusal it stands for).
pub(crate) fn write_row<R: WriteRow>(conn: &Connection, row: &R) -> rusqlite::Result<u64> {
    let changed = conn
        .prepare_cached(R::SQL)?
        .execute(rusqlite::params_from_iter(row.params()))?;
    Ok(u64::try_from(changed).unwrap_or(u64::MAX))
}

/// Writes one row that must change one row, refused as `unique` when it breaks a uniqueness
/// constraint.
fn write_one_unique<R: WriteRow>(
    conn: &Connection,
    row: &R,
    write: &'static str,
    unique: LedgerError,
) -> Result<(), LedgerError> {
    let changed = write_row(conn, row).map_err(|e| match violation(&e) {
        Some(Violation::Unique(_)) => unique,
        _ => ledger_error(R::DURING, &e),
    })?;
    one_row(changed, write)
}

/// Writes the rows of one or several verify plans. A count that changes no row (the snapshot
/// was stale, which the single writer rules out) is answered as the refusal it stands for
/// ([`capacity_refusal`], read from the voucher as it is now).
pub(crate) fn write_verify(conn: &Connection, rows: &VerifyRows) -> Result<(), LedgerError> {
    // The single writer already serialises verifies, so the plan's snapshot is current; the
    // count's condition is defence in depth should that ever stop being true.
    write_each(conn, &rows.counts, |count, changed| {
        if changed == 1 {
            return Ok(());
        }
        let now = conn
            .prepare_cached(statements::SELECT_VOUCHER_COUNT)
            .during("preparing the voucher lookup")?
            .query_row(params![count.order_id, count.code.as_str()], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })
            .optional()
            .during("reading a voucher")?;
        Err(capacity_refusal(&count.code, count.uses, now))
    })?;
    write_all(conn, &rows.uses)?;
    write_all(conn, &rows.fingerprints)?;
    write_one_each(conn, &rows.reviews, WRITE_REFUND_REVIEW)?;
    write_all(conn, &rows.audit)?;
    write_all(conn, &rows.anomalies)
}

/// Writes a new order. The constraints decide, not a racy look-up first: `orders` has one
/// foreign key (its app) and two unique keys, which SQLite names by their columns.
pub(crate) fn write_order(conn: &Connection, rows: &OrderRows) -> Result<(), LedgerError> {
    write_row(conn, &rows.order).map_err(|e| match violation(&e) {
        Some(Violation::ForeignKey) => LedgerError::UnknownApp,
        Some(Violation::Unique(columns)) if columns.contains("out_order_id") => {
            LedgerError::OutOrderIdTaken
        }
        Some(Violation::Unique("orders.order_id")) => LedgerError::OrderExists,
        _ => ledger_error("creating an order", &e),
    })?;
    write_all(conn, &rows.vouchers)?;
    write_all(conn, std::slice::from_ref(&rows.audit))
}

/// Writes an issuance report.
pub(crate) fn write_issue(conn: &Connection, rows: &IssueRows) -> Result<(), LedgerError> {
    if let Some(state) = &rows.state {
        write_one_unique(conn, state, WRITE_ISSUE_STATE, LedgerError::OutOrderIdTaken)?;
    }
    write_all(conn, &rows.vouchers)?;
    write_all(conn, &rows.audit)
}

/// Writes a refund request.
pub(crate) fn write_refund_request(
    conn: &Connection,
    rows: &RefundRequestRows,
) -> Result<(), LedgerError> {
    write_all(conn, std::slice::from_ref(&rows.request))?;
    write_all(conn, &rows.audit)
}

/// Writes a refund notification. Both writes must change their row: the request is pending
/// and the refunded tickets fit the order, as planned.
pub(crate) fn write_refund(conn: &Connection, rows: &RefundRows) -> Result<(), LedgerError> {
    if let Some((settlement, refunded)) = &rows.settlement {
        write_one_unique(
            conn,
            settlement,
            WRITE_REFUND_STATE,
            LedgerError::RefundConflict,
        )?;
        write_one_each(conn, std::slice::from_ref(refunded), WRITE_REFUNDED_TICKETS)?;
    }
    write_all(conn, &rows.audit)
}

/// Writes a reversal.
pub(crate) fn write_reversal(conn: &Connection, rows: &ReversalRows) -> Result<(), LedgerError> {
    write_one_each(conn, std::slice::from_ref(&rows.count), WRITE_VOUCHER_USED)?;
    write_one_each(conn, &rows.reversed, WRITE_USE_REVERSED)?;
    write_all(conn, &rows.audit)
}

/// Writes an anomaly's resolution.
pub(crate) fn write_resolution(
    conn: &Connection,
    rows: &ResolutionRows,
) -> Result<(), LedgerError> {
    write_one_each(
        conn,
        std::slice::from_ref(&rows.resolution),
        WRITE_ANOMALY_RESOLUTION,
    )?;
    write_all(conn, std::slice::from_ref(&rows.audit))
}

/// Appends audit entries.
pub(crate) fn write_audit(conn: &Connection, rows: &[AuditRow]) -> Result<(), LedgerError> {
    write_all(conn, rows)
}

/// Records an anomaly.
pub(crate) fn insert_anomaly(conn: &Connection, anomaly: &NewAnomaly) -> Result<(), LedgerError> {
    write_all(conn, &[AnomalyRow::of(0, anomaly)])
}
