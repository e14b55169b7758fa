//! A reconciliation in one transaction under the order's lock: every code's healing report
//! applied, or none of them.

use sqlx::AnyConnection;
use ticket_ledger::{plan_reconcile, ReconcileCommand, ReconcileOutcome};

use super::db::Failure;
use super::engine::Engine;
use super::exec;
use super::queries::locked_snapshot;
use super::trace::{unknown_anomaly, Fence, Mark, Trace, Traced};
use crate::plan_rows::VerifyRows;

/// Locks the order, plans the reconciliation on what is stored and writes every step's rows,
/// each code with its own audit entries. A refusal, by the
/// plan or by a write, rolls the whole transaction back.
pub(crate) async fn reconcile(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &ReconcileCommand,
) -> Result<ReconcileOutcome, Failure> {
    let snapshot = locked_snapshot(conn, e, cmd.order_id).await?;
    let plan = plan_reconcile(&snapshot, cmd)?;
    exec::write(conn, e, &VerifyRows::of_reconcile(snapshot, &plan)?).await?;
    Ok(plan.outcome(cmd.order_id))
}

impl Traced<ReconcileOutcome> for ReconcileCommand {
    /// A reconciliation that recorded nothing has no outcome to find out. One that did is found
    /// by its first healed code's audit entry, and each healed code's request is named if the
    /// outcome stays unknown.
    fn trace(&self, outcome: &ReconcileOutcome) -> Option<Trace> {
        let order_id = self.order_id.get();
        let healed: Vec<_> = outcome
            .lines
            .iter()
            .filter(|l| self.apply && l.missing() > 0)
            .filter_map(|l| self.counts.iter().find(|c| c.code == l.code))
            .collect();
        let first = healed.first()?;
        Some(Trace {
            fence: vec![Fence::Orders(vec![order_id])],
            mark: Mark::Audit {
                order_id,
                request_id: first.request_id.clone(),
            },
            requests: healed
                .iter()
                .map(|c| {
                    let meta = ticket_ledger::RequestMeta {
                        request_id: c.request_id.clone(),
                        ..self.meta.clone()
                    };
                    unknown_anomaly(Some(order_id), None, &meta)
                })
                .collect(),
        })
    }
}
