//! The rows of verify plans: [`VerifyRows`].

use std::collections::HashMap;

use serde::Serialize;
use ticket_ledger::{
    ConfirmCode, Fingerprint, LedgerError, NewAnomaly, OrderSnapshot, ReconcilePlan, VerifyCommand,
    VerifyPlan, VoucherChange,
};

use super::{event_steps, AnomalyRow, AuditRow, Check, Param, Rows, Step, WriteRow};
use crate::rows::{ms, WRITE_REFUND_REVIEW};
use crate::statements;

/// Everything one or several accepted verify plans write, and the anomalies of refused ones:
/// what one transaction stores for a verify, a batch of verifies, or several verifies that
/// must apply together. Each field is one statement's rows, in the order they are written.
#[derive(Debug, Default)]
pub(crate) struct VerifyRows {
    /// Uses added per voucher, summed over the plans (a plan names each voucher once).
    pub(crate) counts: Vec<UseCountRow>,
    /// The use log, one row per change.
    pub(crate) uses: Vec<VoucherUseRow>,
    /// Fingerprints to remember.
    pub(crate) fingerprints: Vec<FingerprintRow>,
    /// Refunds to mark for review, each once (several verifies may review one).
    pub(crate) reviews: Vec<ReviewRow>,
    pub(crate) audit: Vec<AuditRow>,
    pub(crate) anomalies: Vec<AnomalyRow>,
    /// Plans added so far.
    plans: usize,
    /// Where each voucher's row is in `counts`, kept only once a second plan is added (one
    /// plan's changes name distinct vouchers, so a lone verify needs no index).
    count_of: HashMap<VoucherKey, usize>,
    /// How many of `counts` are in `count_of`.
    indexed: usize,
}

impl VerifyRows {
    /// The rows of one plan (see [`VerifyRows::add`]).
    pub(crate) fn of(snapshot: &OrderSnapshot, plan: &VerifyPlan, cmd: &VerifyCommand) -> Self {
        let mut rows = Self::default();
        rows.add(snapshot, plan, cmd);
        rows
    }

    /// The rows of a reconciliation's steps, written together or not at all. Each step is added
    /// with the order as the steps before it leave it, so each healed code's audit entry shows
    /// its own status transition.
    pub(crate) fn of_reconcile(
        mut snapshot: OrderSnapshot,
        plan: &ReconcilePlan,
    ) -> Result<Self, LedgerError> {
        let mut rows = Self::default();
        for step in &plan.steps {
            rows.add(&snapshot, &step.plan, &step.cmd);
            if !step.plan.apply_to(&mut snapshot) {
                return Err(LedgerError::Internal(
                    "a reconciliation step does not fit the order it was planned on".into(),
                ));
            }
        }
        Ok(rows)
    }

    /// Adds what `plan` writes. Its audit entries see `snapshot` as it was before the plan
    /// (for the status transition), so plans of one order are added in the order they were
    /// planned, each with the snapshot it was planned on.
    pub(crate) fn add(&mut self, snapshot: &OrderSnapshot, plan: &VerifyPlan, cmd: &VerifyCommand) {
        self.plans += 1;
        let order_id = snapshot.order.order_id.get();
        let request_id = &cmd.meta.request_id;
        for change in &plan.changes {
            self.count(order_id, change);
            self.uses.push(VoucherUseRow {
                position: self.uses.len(),
                voucher: VoucherKey::new(order_id, &change.code),
                quantity: change.delta,
                used_at_ms: ms(change.used_at),
                recorded_at_ms: ms(cmd.meta.received_at),
                request_id: request_id.clone(),
            });
        }
        for fp in &plan.new_fingerprints {
            let position = self.fingerprints.len();
            self.fingerprints.push(FingerprintRow::new(
                position,
                order_id,
                fp,
                Some(request_id.clone()),
            ));
        }
        for flow in &plan.review_refunds {
            if !self.reviews.iter().any(|r| &r.flow_id == flow) {
                self.reviews.push(ReviewRow {
                    flow_id: flow.clone(),
                });
            }
        }
        for entry in plan.rendered_audit_entries(snapshot, cmd) {
            self.audit
                .push(AuditRow::of_rendered(self.audit.len(), entry));
        }
        for anomaly in plan.anomalies(cmd) {
            self.add_anomaly(&anomaly);
        }
    }

    /// Adds an anomaly (a refused verify's, which writes nothing else).
    pub(crate) fn add_anomaly(&mut self, anomaly: &NewAnomaly) {
        self.anomalies
            .push(AnomalyRow::of(self.anomalies.len(), anomaly));
    }

    fn count(&mut self, order_id: i64, change: &VoucherChange) {
        if self.plans > 1 {
            for (row, count) in self.counts.iter().enumerate().skip(self.indexed) {
                self.count_of.insert(count.voucher.clone(), row);
            }
            self.indexed = self.counts.len();
            if let Some(&row) = self.count_of.get(&VoucherKey::new(order_id, &change.code)) {
                self.counts[row].uses += change.delta;
                return;
            }
        }
        self.counts.push(UseCountRow {
            voucher: VoucherKey::new(order_id, &change.code),
            uses: change.delta,
        });
    }
}

/// Counts first: a count that changes no row refuses the whole write before anything else
/// is sent.
impl Rows for VerifyRows {
    fn steps(&self) -> Vec<Step<'_>> {
        Step::each(&self.counts, |count| Check::Capacity {
            order_id: count.voucher.order_id,
            code: &count.voucher.code,
            uses: count.uses,
        })
        .chain(Step::each(&self.uses, |_| Check::Nothing))
        .chain(Step::each(&self.fingerprints, |_| Check::Fingerprint))
        .chain(Step::each(&self.reviews, |_| {
            Check::OneRow(WRITE_REFUND_REVIEW)
        }))
        .chain(Step::each(&self.audit, |_| Check::Nothing))
        .chain(Step::each(&self.anomalies, |_| Check::Nothing))
        .chain(event_steps(&self.audit, &self.anomalies))
        .collect()
    }
}

/// A voucher as the rows of a verify name it (with the short keys the bulk statements read).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub(crate) struct VoucherKey {
    #[serde(rename = "o")]
    pub(crate) order_id: i64,
    #[serde(rename = "c")]
    pub(crate) code: ConfirmCode,
}

impl VoucherKey {
    fn new(order_id: i64, code: &ConfirmCode) -> Self {
        Self {
            order_id,
            code: code.clone(),
        }
    }
}

/// Uses counted on one voucher, only while they fit its capacity.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UseCountRow {
    #[serde(flatten)]
    pub(crate) voucher: VoucherKey,
    #[serde(rename = "n")]
    pub(crate) uses: i64,
}

impl WriteRow for UseCountRow {
    const SQL: &'static str = statements::COUNT_USES;
    const DURING: &'static str = "counting uses";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::int(self.uses),
            Param::int(self.voucher.order_id),
            Param::text(self.voucher.code.as_str()),
            Param::int(self.uses),
        ]
    }
}

/// One change of a verify in the use log, which a reversal reads.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct VoucherUseRow {
    /// Its place in the batch (ids are handed out in that order).
    #[serde(rename = "i")]
    pub(crate) position: usize,
    #[serde(flatten)]
    pub(crate) voucher: VoucherKey,
    #[serde(rename = "n")]
    pub(crate) quantity: i64,
    /// The gate time of the uses.
    #[serde(rename = "t")]
    pub(crate) used_at_ms: i64,
    /// When the ledger received the report (a reversal's window counts from it).
    #[serde(rename = "r")]
    pub(crate) recorded_at_ms: i64,
    #[serde(rename = "q")]
    pub(crate) request_id: String,
}

impl WriteRow for VoucherUseRow {
    const SQL: &'static str = statements::INSERT_VOUCHER_USE;
    const DURING: &'static str = "logging a use";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::int(self.voucher.order_id),
            Param::text(self.voucher.code.as_str()),
            Param::int(self.quantity),
            Param::int(self.used_at_ms),
            Param::int(self.recorded_at_ms),
            Param::text(&self.request_id),
        ]
    }
}

/// A report's fingerprint: remembered (`request_id`, the request that first applied it), or
/// looked up by a batch (no `request_id`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FingerprintRow {
    /// Its place in the batch (for the insert's order).
    #[serde(rename = "i")]
    pub(crate) position: usize,
    #[serde(flatten)]
    pub(crate) voucher: VoucherKey,
    #[serde(rename = "t")]
    pub(crate) used_at_ms: i64,
    #[serde(rename = "q")]
    pub(crate) quantity: i64,
    #[serde(rename = "r", skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
}

impl FingerprintRow {
    pub(crate) fn new(
        position: usize,
        order_id: i64,
        fp: &Fingerprint,
        request_id: Option<String>,
    ) -> Self {
        Self {
            position,
            voucher: VoucherKey::new(order_id, &fp.code),
            used_at_ms: fp.used_at_ms,
            quantity: fp.quantity,
            request_id,
        }
    }

    /// The fingerprint the row holds.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            code: self.voucher.code.clone(),
            used_at_ms: self.used_at_ms,
            quantity: self.quantity,
        }
    }
}

impl WriteRow for FingerprintRow {
    const SQL: &'static str = statements::INSERT_FINGERPRINT;
    const DURING: &'static str = "remembering a fingerprint";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::int(self.voucher.order_id),
            Param::text(self.voucher.code.as_str()),
            Param::int(self.used_at_ms),
            Param::int(self.quantity),
            Param::Text(self.request_id.as_deref()),
        ]
    }
}

/// A pending refund request marked for review (R9).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReviewRow {
    #[serde(rename = "f")]
    pub(crate) flow_id: String,
}

impl WriteRow for ReviewRow {
    const SQL: &'static str = statements::MARK_REFUND_REVIEW;
    const DURING: &'static str = "marking a refund for review";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [Param::text(&self.flow_id)]
    }
}
