//! Verify (核销): the rules that decide what a vendor's redemption report changes. The command
//! itself is in `verify/command.rs`.
//!
//! [`plan_verify`] is a pure function of an [`OrderSnapshot`] (loaded by the store inside the
//! transaction that will apply the result) and a [`VerifyCommand`]. It either refuses the whole
//! request or returns a [`VerifyPlan`]: the counter increments, the fingerprints to remember,
//! and the outcome to answer. The store applies the plan with conditional updates in the same
//! transaction, so a plan computed from a stale snapshot can never over-use a voucher.
//!
//! Rules (docs/DOMAIN.md §2.3) enforced here: R1, R2, R4–R7, R10, R13, R16–R19, R22–R27. R3, R11,
//! R12, R20 and R21 are shape rules checked where wire parameters are parsed (`ticket-api`);
//! R28 is the store's transaction; R29 is the gateway's authentication; R30 is the wire mapping.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::anomaly::{flag_anomalies, NewAnomaly};
use crate::audit::{AuditEntry, AuditOutcome};
use crate::error::UsedDateProblem;
use crate::ids::{ConfirmCode, OrderId};
use crate::limits::{self, add, sub, sum, MAX_CODE_USES, MAX_ORDER_USES, MAX_TICKETS};
use crate::order::{IssueState, OrderRecord, VoucherRecord};
use crate::refund::{RefundRequest, RefundState};
use crate::snapshot::OrderSnapshot;
use crate::status::{status_after_uses, StatusChange};
use crate::text::json_text;
use crate::LedgerError;

mod command;

pub use command::{
    Fingerprint, OrderRef, VerifyCommand, VerifyOrigin, VerifyPolicy, VerifyUses, VoucherUse,
    WriteOffType,
};

/// Facts worth an operator's attention that do not refuse the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    /// R18: a cumulative report below the recorded count; nothing was decreased.
    CountRegressed {
        /// The code.
        code: ConfirmCode,
        /// What the vendor reported.
        reported: i64,
        /// What the ledger has.
        recorded: i64,
    },
    /// R18 at order level (legacy cumulative without a code).
    OrderCountRegressed {
        /// What the vendor reported.
        reported: i64,
        /// What the ledger has.
        recorded: i64,
    },
    /// R26: used after the order's `valid_until`; accepted as a fact.
    LateRedemption {
        /// The code.
        code: ConfirmCode,
    },
    /// R22: no `used_date`; the receive time stands in for it.
    ServerTimeUsed {
        /// The code.
        code: ConfirmCode,
    },
    /// R27: legacy `total_num` below the uses sold.
    TotalNumMismatch {
        /// What the vendor reported.
        reported: i64,
        /// What the ledger has.
        ledger: i64,
    },
    /// R27: legacy `return_num` differs from the tickets refunded in the ledger.
    ReturnNumMismatch {
        /// What the vendor reported.
        reported: i64,
        /// What the ledger has.
        ledger: i64,
    },
    /// R9: uses dated before a pending refund was requested took tickets it had reserved; the
    /// refund needs review before it is paid.
    VerifyDuringRefund {
        /// The pending requests concerned.
        flow_ids: Vec<String>,
    },
}

impl Flag {
    /// The flag as JSON for the audit trail (codes masked).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::CountRegressed {
                code,
                reported,
                recorded,
            } => json!({"kind": "count_regressed", "confirm_code": code.masked(),
                        "reported": reported, "recorded": recorded}),
            Self::OrderCountRegressed { reported, recorded } => {
                json!({"kind": "count_regressed", "reported": reported, "recorded": recorded})
            }
            Self::LateRedemption { code } => {
                json!({"kind": "late_redemption", "confirm_code": code.masked()})
            }
            Self::ServerTimeUsed { code } => {
                json!({"kind": "time_source_server", "confirm_code": code.masked()})
            }
            Self::TotalNumMismatch { reported, ledger } => {
                json!({"kind": "total_num_mismatch", "reported": reported, "ledger": ledger})
            }
            Self::ReturnNumMismatch { reported, ledger } => {
                json!({"kind": "return_num_mismatch", "reported": reported, "ledger": ledger})
            }
            Self::VerifyDuringRefund { flow_ids } => {
                json!({"kind": "verify_during_refund", "fliggy_refund_flow_ids": flow_ids})
            }
        }
    }
}

/// How an accepted request is answered and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// At least one use was recorded.
    Applied,
    /// Every entry had been recorded before (a retry): nothing changed.
    Replayed,
    /// Nothing to change by design (a cumulative report equal to, or below, the count).
    NoChange,
}

/// The answer to an accepted verify; the caller sends `is_success` true for every kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    /// The order it resolved to.
    pub order_id: OrderId,
    /// How it went.
    pub kind: OutcomeKind,
    /// Uses recorded by this request.
    pub applied_uses: i64,
    /// Entries recognised as retries and skipped.
    pub replayed_entries: usize,
    /// Facts for the operator.
    pub flags: Vec<Flag>,
}

/// One voucher's counter change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherChange {
    /// The code.
    pub code: ConfirmCode,
    /// Uses to add (always > 0).
    pub delta: i64,
    /// The count the plan was computed from; the store's conditional update checks capacity
    /// again, so a stale snapshot fails instead of over-using.
    pub used_before: i64,
    /// Uses allowed.
    pub capacity: i64,
    /// The gate time of these uses (the receive time when none was reported).
    pub used_at: DateTime<Utc>,
}

/// What an accepted verify changes.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyPlan {
    /// Counter increments, in issuance order.
    pub changes: Vec<VoucherChange>,
    /// Delta fingerprints to remember so retries are recognised.
    pub new_fingerprints: Vec<Fingerprint>,
    /// The answer.
    pub outcome: VerifyOutcome,
    /// Status transition.
    pub status: StatusChange,
    /// Pending refunds to mark as needing review (R9).
    pub review_refunds: Vec<String>,
}

impl VerifyPlan {
    /// Applies the plan to the snapshot it was planned on, exactly as a store applies it to
    /// its rows: counters raised, refunds marked for review. A store that keeps snapshots in
    /// memory, or plans several verifies of one order in one transaction, plans the next one
    /// on the result. `false` (and the snapshot partly changed) when the plan does not fit the
    /// snapshot, i.e. it was planned on another: the caller must then drop the snapshot.
    #[must_use]
    pub fn apply_to(&self, snapshot: &mut OrderSnapshot) -> bool {
        // The changes are in issuance order, the snapshot's order: one pass finds them all,
        // also in a 999-voucher order.
        let mut vouchers = snapshot.vouchers.iter_mut();
        for change in &self.changes {
            match vouchers.by_ref().find(|v| v.code == change.code) {
                Some(v) if v.used == change.used_before => match v.used.checked_add(change.delta) {
                    Some(used) => v.used = used,
                    None => return false,
                },
                _ => return false,
            }
        }
        for flow in &self.review_refunds {
            if let Some(r) = snapshot.refunds.iter_mut().find(|r| &r.flow_id == flow) {
                r.needs_review = true;
            }
        }
        true
    }

    /// The audit entries that record this plan, written in the same transaction: the verify
    /// itself, then the status transition it caused, if any.
    pub fn audit_entries(&self, snapshot: &OrderSnapshot, cmd: &VerifyCommand) -> Vec<AuditEntry> {
        cmd.meta
            .with_status(self.audit_entry(cmd), &self.status, &snapshot.order)
    }

    /// [`VerifyPlan::audit_entries`] with each detail already JSON text, the form a store
    /// writes. The verify's own detail is rendered from the plan's parts, by reference: built
    /// as a `Value` first, it copied the request's summary and every change into a tree that
    /// was serialized and dropped at once, on the one thread that writes (21,000 of the
    /// writer's 95,000 instructions per single-voucher verify went to the entry and its
    /// event; docs/PERFORMANCE.md, "Thirteenth session"). Equal, once parsed, to
    /// `audit_entries`: both come from one `VerifyDetail`.
    pub fn rendered_audit_entries(
        &self,
        snapshot: &OrderSnapshot,
        cmd: &VerifyCommand,
    ) -> Vec<AuditEntry<String>> {
        let entry = self
            .audit_head(cmd)
            .map_detail(|()| json_text(&self.detail(cmd.meta.summary.text())));
        cmd.meta
            .with_status_as(entry, &self.status, &snapshot.order, |detail| {
                json_text(&detail)
            })
    }

    /// The anomalies this plan raises, written in the same transaction.
    pub fn anomalies(&self, cmd: &VerifyCommand) -> Vec<NewAnomaly> {
        flag_anomalies(
            &self.outcome.flags,
            self.outcome.order_id,
            &cmd.app_key,
            &cmd.meta,
        )
    }

    /// The audit entry of the verify itself.
    pub fn audit_entry(&self, cmd: &VerifyCommand) -> AuditEntry {
        // As `json_text` would: `null` rather than a partial detail.
        let detail =
            serde_json::to_value(self.detail(cmd.meta.summary.value())).unwrap_or_default();
        self.audit_head(cmd).map_detail(|()| detail)
    }

    /// Everything of the verify's entry but its detail.
    fn audit_head(&self, cmd: &VerifyCommand) -> AuditEntry<()> {
        let (outcome, reason) = match self.outcome.kind {
            OutcomeKind::Applied => (AuditOutcome::Accepted, "applied"),
            OutcomeKind::Replayed => (AuditOutcome::Replayed, "replayed"),
            OutcomeKind::NoChange => (AuditOutcome::Replayed, "no_change"),
        };
        AuditEntry {
            seq: 0,
            request_id: cmd.meta.request_id.clone(),
            at: cmd.meta.received_at,
            action: cmd.origin.action().to_owned(),
            app_key: Some(cmd.app_key.as_str().to_owned()),
            order_id: Some(self.outcome.order_id.get()),
            outcome,
            reason: reason.to_owned(),
            detail: (),
            client_ip: cmd.meta.client_ip.clone(),
        }
    }

    /// The verify's detail, borrowing the plan and the request's summary in the form that
    /// serializes cheapest to where it goes: the summary's text for a store, which writes text;
    /// its value for a `Value` (read back as text, it would be parsed again).
    fn detail<'a, R: Serialize + ?Sized>(&'a self, request: &'a R) -> VerifyDetail<'a, R> {
        VerifyDetail {
            applied_uses: self.outcome.applied_uses,
            changes: ChangesDetail(&self.changes),
            flags: FlagsDetail(&self.outcome.flags),
            replayed_entries: self.outcome.replayed_entries,
            request,
        }
    }
}

/// A verify's audit detail: the uses applied, the codes changed (masked), the flags raised and
/// the request's summary. Its fields are in the order of their names, the order a `Value`'s
/// map keeps, so the text is the same whichever form is serialized.
#[derive(Serialize)]
struct VerifyDetail<'a, R: ?Sized> {
    applied_uses: i64,
    changes: ChangesDetail<'a>,
    flags: FlagsDetail<'a>,
    replayed_entries: usize,
    request: &'a R,
}

/// The changes of a plan, each as `{capacity, confirm_code, delta, used}`.
struct ChangesDetail<'a>(&'a [VoucherChange]);

impl Serialize for ChangesDetail<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Change {
            capacity: i64,
            confirm_code: String,
            delta: i64,
            used: i64,
        }
        serializer.collect_seq(self.0.iter().map(|c| Change {
            capacity: c.capacity,
            confirm_code: c.code.masked(),
            delta: c.delta,
            // A change is planned only when it fits its capacity, so this cannot saturate.
            used: c.used_before.saturating_add(c.delta),
        }))
    }
}

/// The flags of an outcome, each as [`Flag::to_json`] gives it.
struct FlagsDetail<'a>(&'a [Flag]);

impl Serialize for FlagsDetail<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Flag::to_json))
    }
}

/// Refuses a request whose counts are above the ledger's bounds ([`crate::limits`]), naming
/// each as the wire does. The gateway's parser refuses them first; this holds every other
/// caller (the admin API's reconciliation, a future one) to the same bounds.
fn check_bounds(cmd: &VerifyCommand) -> Result<(), LedgerError> {
    match &cmd.uses {
        VerifyUses::Vouchers { entries, .. } => {
            for (i, e) in entries.iter().enumerate() {
                limits::at_most(
                    || format!("voucher_infos[{i}].used_quantity"),
                    e.quantity,
                    MAX_CODE_USES,
                )?;
            }
        }
        VerifyUses::Code { check_num, .. } => {
            limits::at_most(|| "check_num".into(), *check_num, MAX_CODE_USES)?;
        }
        VerifyUses::Order { check_num } => {
            limits::at_most(|| "check_num".into(), *check_num, MAX_ORDER_USES)?;
        }
    }
    if let Some(total) = cmd.total_num {
        limits::at_most(|| "total_num".into(), total, MAX_ORDER_USES)?;
    }
    if let Some(returned) = cmd.return_num {
        limits::at_most(|| "return_num".into(), returned, MAX_TICKETS)?;
    }
    Ok(())
}

/// Where a code is among an order's vouchers: the first voucher with that code.
///
/// A report of a few codes scans the list; a large one looks each code up in a map of it.
/// Scanning for every code of a 999-code report in an order of 999 compared about 500,000
/// codes per report: 14.5 % of the writer's samples in that bench shape (perf, 2026-12-05).
enum CodeIndex<'a> {
    Scan(&'a [VoucherRecord]),
    Map(std::collections::HashMap<&'a ConfirmCode, usize>),
}

impl<'a> CodeIndex<'a> {
    /// Reports of more codes than this look them up in a map.
    const SCAN_UP_TO: usize = 8;

    fn new(vouchers: &'a [VoucherRecord], lookups: usize) -> Self {
        if lookups <= Self::SCAN_UP_TO || vouchers.len() <= Self::SCAN_UP_TO {
            return CodeIndex::Scan(vouchers);
        }
        let mut map = std::collections::HashMap::with_capacity(vouchers.len());
        for (i, v) in vouchers.iter().enumerate() {
            map.entry(&v.code).or_insert(i);
        }
        CodeIndex::Map(map)
    }

    fn find(&self, code: &ConfirmCode) -> Option<usize> {
        match self {
            CodeIndex::Scan(vouchers) => vouchers.iter().position(|v| &v.code == code),
            CodeIndex::Map(map) => map.get(code).copied(),
        }
    }
}

/// Decides what a verify request changes, or why it is refused as a whole.
///
/// `snapshot` must be the order the store resolved from `cmd.order` *without* filtering by
/// app: ownership is checked here so that a foreign order is refused exactly like a missing
/// one (R6).
///
/// Counts above the ledger's bounds are refused first ([`LedgerError::CountTooLarge`]), and all
/// arithmetic on counts is checked: a snapshot whose counts overflow (stored before the bounds
/// existed) is refused with [`LedgerError::CountOverflow`], never planned with wrapped numbers.
pub fn plan_verify(
    snapshot: &OrderSnapshot,
    cmd: &VerifyCommand,
) -> Result<VerifyPlan, LedgerError> {
    check_bounds(cmd)?;
    let order = &snapshot.order;
    // R4/R6: another app's order does not exist for this caller.
    if order.app_key != cmd.app_key {
        return Err(LedgerError::OrderNotFound);
    }
    // R5: both keys must name the same order. An order whose vendor id is not yet known cannot
    // contradict one.
    if let OrderRef::Both(_, out) = &cmd.order {
        if order
            .out_order_id
            .as_ref()
            .is_some_and(|known| known != out)
        {
            return Err(LedgerError::OutOrderIdMismatch);
        }
    }
    // R7: nothing to use before codes exist (a failed issuance has none either).
    if order.issue_state != IssueState::Issued || snapshot.vouchers.is_empty() {
        return Err(LedgerError::OrderNotIssued);
    }
    // R8: a fully refunded order has nothing left to use; the gate admitted a refunded ticket.
    if order.refunded_tickets >= order.quantity {
        return Err(LedgerError::OrderRefunded);
    }

    let mut flags = Vec::new();
    let sold = snapshot.capacity()?;
    // R27: the platform's records are authoritative for capacity.
    if let Some(total) = cmd.total_num {
        if total > sold {
            return Err(LedgerError::TotalNumExceeds {
                reported: total,
                ledger: sold,
            });
        }
        if total < sold {
            flags.push(Flag::TotalNumMismatch {
                reported: total,
                ledger: sold,
            });
        }
    }
    if let Some(returned) = cmd.return_num {
        if returned != order.refunded_tickets {
            flags.push(Flag::ReturnNumMismatch {
                reported: returned,
                ledger: order.refunded_tickets,
            });
        }
    }

    // Per-voucher increments and their gate times, indexed like snapshot.vouchers.
    let mut deltas = vec![0_i64; snapshot.vouchers.len()];
    let mut times = vec![cmd.meta.received_at; snapshot.vouchers.len()];
    let mut new_fingerprints = Vec::new();
    let mut replayed_entries = 0;
    let lookups = match &cmd.uses {
        VerifyUses::Vouchers { entries, .. } => entries.len(),
        VerifyUses::Code { .. } | VerifyUses::Order { .. } => 1,
    };
    let codes = CodeIndex::new(&snapshot.vouchers, lookups);
    let find = |code: &ConfirmCode| -> Result<usize, LedgerError> {
        codes
            .find(code)
            .ok_or_else(|| LedgerError::VoucherNotFound { code: code.clone() })
    };

    match &cmd.uses {
        VerifyUses::Vouchers {
            entries,
            legacy_code,
        } => {
            // R1: a legacy code beside the list must be one of its codes.
            if let Some(code) = legacy_code {
                if !entries.iter().any(|e| &e.code == code) {
                    return Err(LedgerError::LegacyCodeNotInList { code: code.clone() });
                }
            }
            // R10 first for the whole list: one unknown code refuses everything.
            let indexes = entries
                .iter()
                .map(|e| find(&e.code))
                .collect::<Result<Vec<_>, _>>()?;
            for (entry, &i) in entries.iter().zip(&indexes) {
                if cmd.mode == WriteOffType::Delta {
                    if let Some(t) = entry.used_at {
                        let fp = Fingerprint {
                            code: entry.code.clone(),
                            used_at_ms: t.timestamp_millis(),
                            quantity: entry.quantity,
                        };
                        // R16: a retried entry is skipped, not recounted.
                        if snapshot.seen.contains(&fp) {
                            replayed_entries += 1;
                            continue;
                        }
                        new_fingerprints.push(fp);
                    }
                }
                check_used_date(order, cmd, &entry.code, entry.used_at, &mut flags)?;
                times[i] = entry.used_at.unwrap_or(cmd.meta.received_at);
                let voucher = &snapshot.vouchers[i];
                match cmd.mode {
                    WriteOffType::Delta => deltas[i] = add(deltas[i], entry.quantity, USES)?,
                    WriteOffType::Cumulative => {
                        cumulative(voucher, entry.quantity, &mut deltas[i], &mut flags)?
                    }
                }
            }
        }
        VerifyUses::Code { code, check_num } => {
            let i = find(code)?;
            check_used_date(order, cmd, code, None, &mut flags)?;
            match cmd.mode {
                WriteOffType::Delta => deltas[i] = add(deltas[i], *check_num, USES)?,
                WriteOffType::Cumulative => cumulative(
                    &snapshot.vouchers[i],
                    *check_num,
                    &mut deltas[i],
                    &mut flags,
                )?,
            }
        }
        VerifyUses::Order { check_num } => {
            let used = snapshot.used()?;
            let wanted = match cmd.mode {
                WriteOffType::Delta => *check_num,
                WriteOffType::Cumulative if *check_num < used => {
                    flags.push(Flag::OrderCountRegressed {
                        reported: *check_num,
                        recorded: used,
                    });
                    0
                }
                WriteOffType::Cumulative => sub(*check_num, used, USES)?,
            };
            if wanted > 0 {
                // R13 at order level: refuse rather than clamp.
                let remaining = sub(sold, used, USES)?;
                if wanted > remaining {
                    return Err(LedgerError::OrderCapacityExceeded {
                        requested: wanted,
                        remaining,
                    });
                }
                // R2: draw down the codes in issuance order.
                let mut left = wanted;
                for (i, v) in snapshot.vouchers.iter().enumerate() {
                    let take = left.min(sub(v.capacity, v.used, USES)?);
                    if take > 0 {
                        // The date rules, and any flag, concern the codes actually drawn.
                        check_used_date(order, cmd, &v.code, None, &mut flags)?;
                        deltas[i] = add(deltas[i], take, USES)?;
                        left -= take;
                    }
                }
            }
        }
    }

    // R13/R19: every code must fit, or nothing is applied.
    let mut changes = Vec::new();
    for (i, (v, &delta)) in snapshot.vouchers.iter().zip(&deltas).enumerate() {
        if delta == 0 {
            continue;
        }
        let remaining = sub(v.capacity, v.used, USES)?;
        if delta > remaining {
            return Err(LedgerError::CapacityExceeded {
                code: v.code.clone(),
                requested: delta,
                remaining: remaining.max(0),
            });
        }
        changes.push(VoucherChange {
            code: v.code.clone(),
            delta,
            used_before: v.used,
            capacity: v.capacity,
            used_at: times[i],
        });
    }

    // R9/R13 at order level: refunded tickets take their uses out of what remains, and each
    // pending refund holds its tickets' uses against the uses dated at or after its own
    // request. The holds are nested in time, so checking every request time in turn is enough:
    // the uses dated at or after request k may not touch what requests 1..=k hold.
    let total = sum(deltas.iter().copied(), USES)?;
    let capacity = sold;
    let available = sub(
        sub(capacity, snapshot.used()?, USES)?,
        order.uses_of_tickets(order.refunded_tickets, capacity)?,
        USES,
    )?;
    if total > available {
        return Err(LedgerError::RefundedUsesExceeded {
            requested: total,
            remaining: available.max(0),
            refund_pending: snapshot.refund_pending(),
        });
    }
    let mut pending: Vec<&RefundRequest> = snapshot
        .refunds
        .iter()
        .filter(|r| r.state == RefundState::Pending)
        .collect();
    pending.sort_by_key(|r| r.requested_at);
    let dated_from = |since: DateTime<Utc>| -> Result<i64, LedgerError> {
        sum(
            deltas
                .iter()
                .zip(&times)
                .filter(|(_, t)| **t >= since)
                .map(|(d, _)| *d),
            USES,
        )
    };
    let mut held_tickets = 0;
    for request in &pending {
        held_tickets = add(held_tickets, request.quantity, TICKETS)?;
        let left = sub(
            available,
            order.uses_of_tickets(held_tickets, capacity)?,
            USES,
        )?;
        let late = dated_from(request.requested_at)?;
        if late > left {
            return Err(LedgerError::RefundedUsesExceeded {
                requested: late,
                remaining: left.max(0),
                refund_pending: true,
            });
        }
    }
    // Uses that took held tickets put the refunds holding them under review: those requested
    // after some of these uses happened.
    let free = sub(
        available,
        order.uses_of_tickets(held_tickets, capacity)?,
        USES,
    )?;
    let mut review_refunds = Vec::new();
    if total > free {
        for r in &pending {
            if sub(total, dated_from(r.requested_at)?, USES)? > 0 {
                review_refunds.push(r.flow_id.clone());
            }
        }
        flags.push(Flag::VerifyDuringRefund {
            flow_ids: review_refunds.clone(),
        });
    }

    let applied_uses = total;
    let kind = if applied_uses > 0 {
        OutcomeKind::Applied
    } else if replayed_entries > 0 {
        OutcomeKind::Replayed
    } else {
        OutcomeKind::NoChange
    };
    Ok(VerifyPlan {
        status: status_after_uses(snapshot, &deltas)?,
        review_refunds,
        changes,
        new_fingerprints,
        outcome: VerifyOutcome {
            order_id: order.order_id,
            kind,
            applied_uses,
            replayed_entries,
            flags,
        },
    })
}

/// What the checked arithmetic of a verify is about, for [`LedgerError::CountOverflow`].
const USES: &str = "the order's uses";
/// See [`USES`].
const TICKETS: &str = "tickets held by pending refunds";

/// R17/R18: a cumulative report raises the count to the reported total, never lowers it.
fn cumulative(
    voucher: &VoucherRecord,
    reported: i64,
    delta: &mut i64,
    flags: &mut Vec<Flag>,
) -> Result<(), LedgerError> {
    if reported > voucher.used {
        *delta = add(*delta, sub(reported, voucher.used, USES)?, USES)?;
    } else if reported < voucher.used {
        flags.push(Flag::CountRegressed {
            code: voucher.code.clone(),
            reported,
            recorded: voucher.used,
        });
    }
    Ok(())
}

/// R22–R26 for one use. `used_at` is `None` when the vendor sent no gate time.
fn check_used_date(
    order: &OrderRecord,
    cmd: &VerifyCommand,
    code: &ConfirmCode,
    used_at: Option<DateTime<Utc>>,
    flags: &mut Vec<Flag>,
) -> Result<(), LedgerError> {
    let at = used_at.unwrap_or_else(|| {
        // Legacy reports carry no gate time at all; flag only the voucher_infos entries that
        // left it out, where it was the vendor's choice.
        if matches!(cmd.uses, VerifyUses::Vouchers { .. }) {
            flags.push(Flag::ServerTimeUsed { code: code.clone() });
        }
        cmd.meta.received_at
    });
    let refuse = |why| {
        Err(LedgerError::UsedDateInvalid {
            used_date: top_time(at),
            why,
        })
    };
    if at > cmd.meta.received_at + cmd.policy.future_tolerance {
        return refuse(UsedDateProblem::InFuture);
    }
    if at < order.created_at {
        return refuse(UsedDateProblem::BeforeOrder);
    }
    if !cmd.policy.allow_before_valid_from && order.valid_from.is_some_and(|from| at < from) {
        return refuse(UsedDateProblem::BeforeValidFrom);
    }
    if order.valid_until.is_some_and(|until| at > until) {
        flags.push(Flag::LateRedemption { code: code.clone() });
    }
    Ok(())
}

/// Renders an instant the way TOP writes dates (`yyyy-MM-dd HH:mm:ss`, UTC+8), for messages.
fn top_time(at: DateTime<Utc>) -> String {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).map(|tz| at.with_timezone(&tz));
    match beijing {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => at.to_rfc3339(),
    }
}
