//! A reconciliation as one job of the writer: every code's healing report applied in the
//! job's savepoint, or none of them.

use rusqlite::Connection;
use ticket_ledger::{plan_reconcile, LedgerError, ReconcileCommand, ReconcileOutcome};

use super::ops::{apply_verify, keeping_anomaly, snapshot_of};
use super::writer::Tx;

/// Plans the reconciliation on the order as stored and applies each step as a verify of its
/// code would be applied, each with its own audit entries. A refusal, by the plan or by a
/// write, undoes the job's writes and keeps only the anomaly it raises.
pub(crate) fn reconcile_keeping_anomaly(
    tx: &mut Tx<'_>,
    cmd: &ReconcileCommand,
) -> Result<Result<ReconcileOutcome, LedgerError>, LedgerError> {
    // The writer's memory of the order would be stale after these writes: read it afresh.
    tx.snapshots.forget(cmd.order_id);
    keeping_anomaly(tx, |e| cmd.refusal_anomaly(e), |conn| reconcile(conn, cmd))
}

fn reconcile(conn: &Connection, cmd: &ReconcileCommand) -> Result<ReconcileOutcome, LedgerError> {
    let snapshot = snapshot_of(conn, cmd.order_id)?.ok_or(LedgerError::OrderNotFound)?;
    let plan = plan_reconcile(&snapshot, cmd)?;
    for step in &plan.steps {
        apply_verify(conn, &snapshot, &step.plan, &step.cmd)?;
    }
    Ok(plan.outcome(cmd.order_id))
}
