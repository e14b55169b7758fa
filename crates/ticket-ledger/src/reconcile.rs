//! Reconciliation (对账): the vendor's own per-code counts against the ledger's, and the missing
//! uses recorded, all of them or none, as cumulative reports would record them.

use serde_json::json;

use crate::anomaly::{refusal_anomaly, NewAnomaly};
use crate::audit::RequestMeta;
use crate::ids::{ConfirmCode, OrderId};
use crate::limits::{self, MAX_CODE_USES};
use crate::order::VoucherRecord;
use crate::snapshot::OrderSnapshot;
use crate::verify::{
    plan_verify, OrderRef, VerifyCommand, VerifyOrigin, VerifyOutcome, VerifyPlan, VerifyPolicy,
    VerifyUses, VoucherUse, WriteOffType,
};
use crate::LedgerError;

/// One code's comparison between the vendor's count and the ledger's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileLine {
    /// The code.
    pub code: ConfirmCode,
    /// What the ledger has.
    pub ledger_used: i64,
    /// What the vendor reports.
    pub vendor_used: i64,
}

impl ReconcileLine {
    /// Uses the vendor has and the ledger lacks (what an applied reconciliation records). Both counts are
    /// non-negative ([`reconcile_diff`] refuses a negative vendor count, the schema a negative
    /// ledger one), so the difference cannot overflow; it saturates regardless.
    pub fn missing(&self) -> i64 {
        self.vendor_used.saturating_sub(self.ledger_used).max(0)
    }

    /// Uses the ledger has and the vendor lacks (never removed by reconciliation).
    pub fn excess(&self) -> i64 {
        self.ledger_used.saturating_sub(self.vendor_used).max(0)
    }
}

/// Compares the vendor's per-code counts with the ledger's. Codes the vendor did not list are
/// compared as 0 uses on its side; a code the order does not have is refused, and so is a
/// count above [`MAX_CODE_USES`] ([`LedgerError::CountTooLarge`] naming `vouchers[i].used`).
pub fn reconcile_diff(
    vouchers: &[VoucherRecord],
    vendor: &[(ConfirmCode, i64)],
) -> Result<Vec<ReconcileLine>, LedgerError> {
    for (i, (code, n)) in vendor.iter().enumerate() {
        if *n < 0 {
            return Err(LedgerError::InvalidOrder(format!(
                "voucher {} cannot have a negative count",
                code.masked()
            )));
        }
        limits::at_most(|| format!("vouchers[{i}].used"), *n, MAX_CODE_USES)?;
        if !vouchers.iter().any(|v| &v.code == code) {
            return Err(LedgerError::VoucherNotFound { code: code.clone() });
        }
    }
    Ok(vouchers
        .iter()
        .map(|v| ReconcileLine {
            code: v.code.clone(),
            ledger_used: v.used,
            vendor_used: vendor
                .iter()
                .find(|(c, _)| c == &v.code)
                .map(|(_, n)| *n)
                .unwrap_or(0),
        })
        .collect())
}

/// The vendor's count of one code, as the operator sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorCount {
    /// The code.
    pub code: ConfirmCode,
    /// Uses the vendor recorded for it so far.
    pub used: i64,
    /// The request the code's missing uses are recorded under: each healed code is its own
    /// event of its own request, as the cumulative report of that one code would be.
    pub request_id: String,
}

/// The operator reconciles an order with the vendor's own counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileCommand {
    /// The order.
    pub order_id: OrderId,
    /// The vendor's counts; a code it does not list counts 0 on its side.
    pub counts: Vec<VendorCount>,
    /// Whether to record the missing uses; without it the reconciliation only compares.
    pub apply: bool,
    /// The server's date rules, which the healing reports follow (uses before `valid_from`
    /// aside: see [`plan_reconcile`]).
    pub policy: VerifyPolicy,
    /// The operator's request: when it arrived, and what a refusal's anomaly names.
    pub meta: RequestMeta,
}

impl ReconcileCommand {
    /// The cumulative report that records `count`'s missing uses: the vendor's total for the
    /// one code, on the order's own app, with no gate time (the vendor's counts carry none).
    fn healing_report(&self, snapshot: &OrderSnapshot, count: &VendorCount) -> VerifyCommand {
        VerifyCommand {
            origin: VerifyOrigin::Reconciliation,
            app_key: snapshot.order.app_key.clone(),
            order: OrderRef::Id(self.order_id),
            mode: WriteOffType::Cumulative,
            uses: VerifyUses::Vouchers {
                entries: vec![VoucherUse {
                    code: count.code.clone(),
                    quantity: count.used,
                    used_at: None,
                }],
                legacy_code: None,
            },
            total_num: None,
            return_num: None,
            // The vendor's counts are facts already admitted at the gate.
            policy: VerifyPolicy {
                allow_before_valid_from: true,
                ..self.policy
            },
            meta: RequestMeta {
                request_id: count.request_id.clone(),
                received_at: self.meta.received_at,
                client_ip: self.meta.client_ip.clone(),
                summary: json!({"confirm_code": count.code.masked(), "used": count.used}).into(),
            },
        }
    }

    /// The anomaly a refusal of the reconciliation raises ([`refusal_anomaly`]): it names the
    /// order and the operator's request (an operator's request names no app).
    pub fn refusal_anomaly(&self, refusal: &LedgerError) -> Option<NewAnomaly> {
        refusal_anomaly(refusal, Some(self.order_id), None, &self.meta)
    }
}

/// One code's missing uses, recorded as a cumulative report of that code.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileStep {
    /// The report.
    pub cmd: VerifyCommand,
    /// What it changes, planned on the order as the steps before it leave it.
    pub plan: VerifyPlan,
}

/// What a reconciliation compares and, when applied, changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcilePlan {
    /// The comparison, per code of the order, as it stood before.
    pub lines: Vec<ReconcileLine>,
    /// One step per code with missing uses, in issuance order; empty when not applied. A store
    /// applies them all in one transaction, each with its own audit entries, or none.
    pub steps: Vec<ReconcileStep>,
}

impl ReconcilePlan {
    /// The answer once every step is applied.
    pub fn outcome(&self, order_id: OrderId) -> ReconcileOutcome {
        ReconcileOutcome {
            order_id,
            lines: self.lines.clone(),
            healed: self.steps.iter().map(|s| s.plan.outcome.clone()).collect(),
        }
    }
}

/// The answer to a reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileOutcome {
    /// The order.
    pub order_id: OrderId,
    /// The comparison, per code of the order, as it stood before.
    pub lines: Vec<ReconcileLine>,
    /// The outcome of each code's healing report, in issuance order (empty when not applied).
    pub healed: Vec<VerifyOutcome>,
}

impl ReconcileOutcome {
    /// Uses recorded in all. Each step records at most [`MAX_CODE_USES`] and an order has at
    /// most [`crate::limits::MAX_VOUCHERS`] codes, so the sum fits; it saturates regardless.
    pub fn applied_uses(&self) -> i64 {
        self.healed
            .iter()
            .fold(0_i64, |n, o| n.saturating_add(o.applied_uses))
    }
}

/// Decides a reconciliation as a whole: the comparison ([`reconcile_diff`], whose refusals it
/// shares), and with `apply` one cumulative report per code the vendor counts higher, each
/// planned with [`plan_verify`] on the order as the reports before it leave it.
///
/// The reconciliation is refused, and nothing recorded, when any of it would be: first a code
/// the vendor counts beyond its capacity ([`LedgerError::VendorCountExceedsCapacity`]), then
/// any report's own refusal. Uses dated before the order's `valid_from` are admitted: the
/// vendor's counts are of uses its gate already let through.
pub fn plan_reconcile(
    snapshot: &OrderSnapshot,
    cmd: &ReconcileCommand,
) -> Result<ReconcilePlan, LedgerError> {
    let vendor: Vec<(ConfirmCode, i64)> = cmd
        .counts
        .iter()
        .map(|c| (c.code.clone(), c.used))
        .collect();
    let lines = reconcile_diff(&snapshot.vouchers, &vendor)?;
    if !cmd.apply {
        return Ok(ReconcilePlan {
            lines,
            steps: Vec::new(),
        });
    }
    let missing: Vec<&ReconcileLine> = lines.iter().filter(|l| l.missing() > 0).collect();
    for line in &missing {
        let capacity = snapshot
            .vouchers
            .iter()
            .find(|v| v.code == line.code)
            .map_or(0, |v| v.capacity);
        if line.vendor_used > capacity {
            return Err(LedgerError::VendorCountExceedsCapacity {
                code: line.code.clone(),
                capacity,
                reported: line.vendor_used,
            });
        }
    }
    let mut current = snapshot.clone();
    let mut steps = Vec::with_capacity(missing.len());
    for line in missing {
        // A code with missing uses has a vendor count: it is the first listed for the code,
        // as in the comparison.
        let Some(count) = cmd.counts.iter().find(|c| c.code == line.code) else {
            continue;
        };
        let report = cmd.healing_report(snapshot, count);
        let plan = plan_verify(&current, &report)?;
        if !plan.apply_to(&mut current) {
            return Err(LedgerError::Internal(
                "a reconciliation step did not fit the order it was planned on".into(),
            ));
        }
        steps.push(ReconcileStep { cmd: report, plan });
    }
    Ok(ReconcilePlan { lines, steps })
}
