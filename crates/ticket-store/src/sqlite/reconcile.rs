//! A reconciliation as one job of the writer: every code's healing report applied in the
//! job's savepoint, or none of them.

use rusqlite::Connection;
use ticket_ledger::{plan_reconcile, LedgerError, ReconcileCommand, ReconcileOutcome};

use super::exec;
use super::ops::keeping_anomaly;
use super::queries;
use super::writer::Tx;
use crate::plan_rows::VerifyRows;

/// Plans the reconciliation on the order as stored and writes every step's rows, each code
/// with its own audit entries. A refusal, by the plan or by a write, undoes the job's writes
/// and keeps only the anomaly it raises.
pub(crate) fn reconcile_keeping_anomaly(
    tx: &mut Tx<'_>,
    cmd: &ReconcileCommand,
) -> Result<Result<ReconcileOutcome, LedgerError>, LedgerError> {
    // The writer's memory of the order would be stale after these writes: read it afresh.
    tx.snapshots.forget(cmd.order_id);
    keeping_anomaly(tx, |e| cmd.refusal_anomaly(e), |conn| reconcile(conn, cmd))
}

fn reconcile(conn: &Connection, cmd: &ReconcileCommand) -> Result<ReconcileOutcome, LedgerError> {
    let snapshot = queries::snapshot_of(conn, cmd.order_id)?.ok_or(LedgerError::OrderNotFound)?;
    let plan = plan_reconcile(&snapshot, cmd)?;
    exec::write(conn, &VerifyRows::of_reconcile(snapshot, &plan)?)?;
    Ok(plan.outcome(cmd.order_id))
}
