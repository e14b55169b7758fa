//! Executes the rows of a plan ([`crate::plan_rows`]) on PostgreSQL or MySQL/MariaDB, one
//! statement per row, inside the operation's transaction (the group commit's bulk form is
//! [`super::bulk`]).
//!
//! Counters change only through conditional updates (`used + ? <= capacity`), and every write
//! that must change exactly one row checks its row count ([`one_row`]; sqlx asks MySQL for
//! rows *matched*, as PostgreSQL counts them): one that changes none refuses the whole
//! operation with `LedgerError::WriteChangedNoRow`, the transaction is rolled back, and the
//! store records the anomaly (`Db::keeping_anomaly`).

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};
use ticket_ledger::{LedgerError, NewAnomaly};

use super::db::{During, Failure};
use super::engine::{Engine, ErrorClass};
use super::queries::{one, q};
use crate::plan_rows::{
    AnomalyRow, AuditRow, IssueRows, OrderRows, Param, RefundRequestRows, RefundRows,
    ResolutionRows, ReversalRows, VerifyRows, WriteRow,
};
use crate::rows::{
    capacity_refusal, one_row, ReadRow, WRITE_ANOMALY_RESOLUTION, WRITE_ISSUE_STATE,
    WRITE_REFUNDED_TICKETS, WRITE_REFUND_REVIEW, WRITE_REFUND_STATE, WRITE_USE_REVERSED,
    WRITE_VOUCHER_USED,
};
use crate::statements;

/// Binds one value.
pub(crate) fn bind(
    query: Query<'static, Any, AnyArguments>,
    param: Param<'_>,
) -> Query<'static, Any, AnyArguments> {
    match param {
        Param::Int(i) => query.bind(i),
        Param::Text(t) => query.bind(t.map(str::to_owned)),
    }
}

/// Writes one row; the number of rows its statement changed, or the driver's error for the
/// caller to classify.
pub(crate) async fn write_row<R: WriteRow>(
    conn: &mut AnyConnection,
    e: Engine,
    row: &R,
) -> Result<u64, sqlx::Error> {
    let query = row.params().into_iter().fold(q(e, R::SQL), bind);
    Ok(query.execute(conn).await?.rows_affected())
}

/// Writes every row of `rows`.
async fn write_all<R: WriteRow>(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &[R],
) -> Result<(), Failure> {
    for row in rows {
        write_row(conn, e, row).await.during(R::DURING)?;
    }
    Ok(())
}

/// Writes every row of `rows`, each of which must change one row ([`one_row`]).
async fn write_one_each<R: WriteRow>(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &[R],
    write: &'static str,
) -> Result<(), Failure> {
    for row in rows {
        one_row(write_row(conn, e, row).await.during(R::DURING)?, write)?;
    }
    Ok(())
}

/// Writes one row that must change one row, refused as `unique` when it breaks a uniqueness
/// constraint.
async fn write_one_unique<R: WriteRow>(
    conn: &mut AnyConnection,
    e: Engine,
    row: &R,
    write: &'static str,
    unique: LedgerError,
) -> Result<(), Failure> {
    let changed = write_row(conn, e, row).await.map_err(|error| {
        on_violation(e, R::DURING, error, |v| {
            matches!(v, ErrorClass::Unique(_)).then_some(unique)
        })
    })?;
    Ok(one_row(changed, write)?)
}

/// A constraint violation turned into a domain refusal: `refine` names the refusal for the
/// violation, or `None` to keep the database error.
pub(crate) fn on_violation(
    engine: Engine,
    during: &'static str,
    error: sqlx::Error,
    refine: impl FnOnce(&ErrorClass) -> Option<LedgerError>,
) -> Failure {
    match refine(&engine.classify(&error)) {
        Some(refusal) => Failure::Refused(refusal),
        None => Failure::Db { during, error },
    }
}

/// Writes the rows of one or several verify plans. A count that changes no row is answered as
/// the refusal it stands for ([`capacity_refusal`], read from the voucher as it is now).
pub(crate) async fn write_verify(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &VerifyRows,
) -> Result<(), Failure> {
    for count in &rows.counts {
        if write_row(conn, e, count).await.during("counting uses")? != 1 {
            let now = one(
                conn,
                q(e, statements::SELECT_VOUCHER_COUNT)
                    .bind(count.order_id)
                    .bind(count.code.as_str()),
                |row| Ok((row.int(0)?, row.int(1)?)),
                "reading a voucher",
            )
            .await?;
            return Err(capacity_refusal(&count.code, count.uses, now).into());
        }
    }
    write_all(conn, e, &rows.uses).await?;
    for fingerprint in &rows.fingerprints {
        write_row(conn, e, fingerprint)
            .await
            // Only possible if the order lock did not serialise us: the retry will see the
            // fingerprint and answer "replayed".
            .map_err(|error| match e.classify(&error) {
                ErrorClass::Unique(_) => Failure::Conflict("a concurrent copy of the report won"),
                _ => Failure::Db {
                    during: "remembering a fingerprint",
                    error,
                },
            })?;
    }
    write_one_each(conn, e, &rows.reviews, WRITE_REFUND_REVIEW).await?;
    write_all(conn, e, &rows.audit).await?;
    write_all(conn, e, &rows.anomalies).await
}

/// Writes a new order. The constraints decide, not a racy look-up first.
pub(crate) async fn write_order(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &OrderRows,
) -> Result<(), Failure> {
    write_row(conn, e, &rows.order).await.map_err(|error| {
        on_violation(e, "creating an order", error, |v| match v {
            ErrorClass::ForeignKey => Some(LedgerError::UnknownApp),
            ErrorClass::Unique(Some(name)) if name.contains("out_order_id") => {
                Some(LedgerError::OutOrderIdTaken)
            }
            ErrorClass::Unique(_) => Some(LedgerError::OrderExists),
            _ => None,
        })
    })?;
    write_all(conn, e, &rows.vouchers).await?;
    write_all(conn, e, std::slice::from_ref(&rows.audit)).await
}

/// Writes an issuance report.
pub(crate) async fn write_issue(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &IssueRows,
) -> Result<(), Failure> {
    if let Some(state) = &rows.state {
        write_one_unique(
            conn,
            e,
            state,
            WRITE_ISSUE_STATE,
            LedgerError::OutOrderIdTaken,
        )
        .await?;
    }
    write_all(conn, e, &rows.vouchers).await?;
    write_all(conn, e, &rows.audit).await
}

/// Writes a refund request.
pub(crate) async fn write_refund_request(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &RefundRequestRows,
) -> Result<(), Failure> {
    write_all(conn, e, std::slice::from_ref(&rows.request)).await?;
    write_all(conn, e, &rows.audit).await
}

/// Writes a refund notification. Both writes must change their row (the request is pending
/// and the tickets fit the order, as planned under its lock).
pub(crate) async fn write_refund(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &RefundRows,
) -> Result<(), Failure> {
    if let Some((settlement, refunded)) = &rows.settlement {
        write_one_unique(
            conn,
            e,
            settlement,
            WRITE_REFUND_STATE,
            LedgerError::RefundConflict,
        )
        .await?;
        write_one_each(
            conn,
            e,
            std::slice::from_ref(refunded),
            WRITE_REFUNDED_TICKETS,
        )
        .await?;
    }
    write_all(conn, e, &rows.audit).await
}

/// Writes a reversal.
pub(crate) async fn write_reversal(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &ReversalRows,
) -> Result<(), Failure> {
    write_one_each(
        conn,
        e,
        std::slice::from_ref(&rows.count),
        WRITE_VOUCHER_USED,
    )
    .await?;
    write_one_each(conn, e, &rows.reversed, WRITE_USE_REVERSED).await?;
    write_all(conn, e, &rows.audit).await
}

/// Writes an anomaly's resolution.
pub(crate) async fn write_resolution(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &ResolutionRows,
) -> Result<(), Failure> {
    write_one_each(
        conn,
        e,
        std::slice::from_ref(&rows.resolution),
        WRITE_ANOMALY_RESOLUTION,
    )
    .await?;
    write_all(conn, e, std::slice::from_ref(&rows.audit)).await
}

/// Appends audit entries.
pub(crate) async fn write_audit(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &[AuditRow],
) -> Result<(), Failure> {
    write_all(conn, e, rows).await
}

/// Records an anomaly.
pub(crate) async fn insert_anomaly(
    conn: &mut AnyConnection,
    e: Engine,
    anomaly: &NewAnomaly,
) -> Result<(), Failure> {
    write_all(conn, e, &[AnomalyRow::of(0, anomaly)]).await
}
