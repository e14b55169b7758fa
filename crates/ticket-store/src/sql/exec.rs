//! Executes the rows of a plan ([`crate::plan_rows`]) on PostgreSQL or MySQL/MariaDB, one
//! statement per row, inside the operation's transaction (the group commit's bulk form is
//! [`super::bulk`]).
//!
//! Counters change only through conditional updates (`used + ? <= capacity`), and every write
//! that must change exactly one row checks its row count (`rows::one_row`; sqlx asks MySQL for
//! rows *matched*, as PostgreSQL counts them): one that changes none refuses the whole
//! operation with `LedgerError::WriteChangedNoRow`, the transaction is rolled back, and the
//! store records the anomaly (`Db::keeping_anomaly`).

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};
use ticket_ledger::{LedgerError, NewAnomaly};

use super::db::Failure;
use super::engine::{Engine, ErrorClass};
use super::queries::{one, q};
use crate::plan_rows::{AnomalyRow, Check, Param, Rows, WriteRow};
use crate::rows::ReadRow;
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

/// Writes `rows` (a plan's, several verify plans', an entry, an anomaly), checking each
/// statement as its [`Check`] says.
pub(crate) async fn write(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &(impl Rows + ?Sized),
) -> Result<(), Failure> {
    for step in rows.steps() {
        let query = step.params.iter().copied().fold(q(e, step.sql), bind);
        let changed = match query.execute(&mut *conn).await {
            Ok(done) => done.rows_affected(),
            Err(error) => return Err(refusal(e, step.during, &step.check, error)),
        };
        if let Some(miss) = step.check.changed(changed)? {
            let query = q(e, statements::SELECT_VOUCHER_COUNT)
                .bind(miss.order_id)
                .bind(miss.code.as_str());
            let read = |row: &AnyRow| Ok((row.int(0)?, row.int(1)?));
            let now = one(conn, query, read, "reading a voucher").await?;
            return Err(miss.refusal(now).into());
        }
    }
    Ok(())
}

/// What a statement's error stands for: a constraint violation its check turns into a
/// refusal (or a conflict to retry), else the database's failure.
fn refusal(e: Engine, during: &'static str, check: &Check<'_>, error: sqlx::Error) -> Failure {
    let refusal = match (check, e.classify(&error)) {
        (Check::OneRowUnique(_, unique), ErrorClass::Unique(_)) => unique.clone(),
        // Only possible if the order lock did not serialise us: the retry will see the
        // fingerprint and answer "replayed".
        (Check::Fingerprint, ErrorClass::Unique(_)) => {
            return Failure::Conflict("a concurrent copy of the report won")
        }
        (Check::NewOrder, ErrorClass::ForeignKey) => LedgerError::UnknownApp,
        (Check::NewOrder, ErrorClass::Unique(Some(name))) if name.contains("out_order_id") => {
            LedgerError::OutOrderIdTaken
        }
        (Check::NewOrder, ErrorClass::Unique(_)) => LedgerError::OrderExists,
        _ => return Failure::Db { during, error },
    };
    Failure::Refused(refusal)
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

/// Records an anomaly.
pub(crate) async fn insert_anomaly(
    conn: &mut AnyConnection,
    e: Engine,
    anomaly: &NewAnomaly,
) -> Result<(), Failure> {
    write(conn, e, &AnomalyRow::of(0, anomaly)).await
}
