//! The rest of an order's life around verify: issuance (发码), refunds (退票), reversal
//! (撤销核销), anomalies and reconciliation.
//!
//! Like [`crate::plan_verify`], every operation is a pure planner over an [`OrderSnapshot`]:
//! the store loads the snapshot inside the transaction that applies the plan, so all backends
//! share one set of rules. Every plan reports the order's status before and after, so stores
//! record each transition as an event of the request that caused it.
//!
//! Accounting (DOMAIN.md §2.2): refunds count per order in tickets; a refunded ticket takes its
//! uses (`capacity ÷ quantity`) out of what the order can still use. A verify must fit both its
//! code's capacity and the order's remaining uses. A pending refund reserves its tickets' uses
//! against verifies dated after the request (R9); see `docs/LIFECYCLE.md`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::ids::{AppKey, ConfirmCode, OrderId, OutOrderId};
use crate::limits::{self, add, sub, sum, MAX_CODE_USES, MAX_TICKETS, MAX_VOUCHERS};
use crate::model::{AuditEntry, AuditOutcome, IssueState, OrderRecord, OrderStatus, VoucherRecord};
use crate::text::{clip_chars, MAX_KEPT_TEXT};
use crate::verify::{Flag, OrderSnapshot, OutcomeKind, RequestMeta};
use crate::LedgerError;

// ---------------------------------------------------------------------------------------------
// Status transitions
// ---------------------------------------------------------------------------------------------

/// An order's status before and after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    /// Before.
    pub from: OrderStatus,
    /// After.
    pub to: OrderStatus,
}

impl StatusChange {
    /// The audit entry recording the transition, or `None` when the status did not move.
    pub fn audit_entry(
        &self,
        order: &OrderRecord,
        request_id: &str,
        at: DateTime<Utc>,
        cause: &str,
    ) -> Option<AuditEntry> {
        (self.from != self.to).then(|| AuditEntry {
            seq: 0,
            request_id: request_id.to_owned(),
            at,
            action: "order.status".to_owned(),
            app_key: Some(order.app_key.as_str().to_owned()),
            order_id: Some(order.order_id.get()),
            outcome: AuditOutcome::Accepted,
            reason: self.to.as_str().to_owned(),
            detail: json!({"from": self.from.as_str(), "to": self.to.as_str(), "cause": cause}),
            client_ip: None,
        })
    }
}

impl RequestMeta {
    /// An audit entry of this request: every plan records itself through here, so all entries
    /// carry the same request id, time and caller.
    pub fn audit_entry(
        &self,
        action: &str,
        order: &OrderRecord,
        outcome: AuditOutcome,
        reason: &str,
        detail: Value,
    ) -> AuditEntry {
        AuditEntry {
            seq: 0,
            request_id: self.request_id.clone(),
            at: self.received_at,
            action: action.to_owned(),
            app_key: Some(order.app_key.as_str().to_owned()),
            order_id: Some(order.order_id.get()),
            outcome,
            reason: reason.to_owned(),
            detail,
            client_ip: self.client_ip.clone(),
        }
    }

    /// `entry`, followed by the status transition it caused (if the status moved).
    pub(crate) fn with_status(
        &self,
        entry: AuditEntry,
        status: &StatusChange,
        order: &OrderRecord,
    ) -> Vec<AuditEntry> {
        let cause = entry.action.clone();
        let mut entries = vec![entry];
        entries.extend(status.audit_entry(order, &self.request_id, self.received_at, &cause));
        entries
    }
}

impl OrderSnapshot {
    /// Whether a refund request is pending.
    pub fn refund_pending(&self) -> bool {
        self.refunds.iter().any(|r| r.state == RefundState::Pending)
    }

    /// The current status.
    pub fn status(&self) -> OrderStatus {
        OrderStatus::derive(&self.order, &self.vouchers, self.refund_pending())
    }

    /// Total uses issued; [`LedgerError::CountOverflow`] when the sum does not fit an `i64`.
    pub fn capacity(&self) -> Result<i64, LedgerError> {
        sum(
            self.vouchers.iter().map(|v| v.capacity),
            "the order's capacity",
        )
    }

    /// Total uses recorded; [`LedgerError::CountOverflow`] when the sum does not fit an `i64`.
    pub fn used(&self) -> Result<i64, LedgerError> {
        sum(self.vouchers.iter().map(|v| v.used), "the order's uses")
    }

    /// Tickets reserved by pending refund requests.
    pub fn pending_tickets(&self) -> Result<i64, LedgerError> {
        sum(
            self.refunds
                .iter()
                .filter(|r| r.state == RefundState::Pending)
                .map(|r| r.quantity),
            "tickets held by pending refunds",
        )
    }

    /// Tickets that can still be asked to be refunded: neither refunded, nor reserved by a
    /// pending request, nor touched by a use. Refused with [`LedgerError::CountOverflow`] when
    /// the order's counts are beyond the ledger's bounds; what the planners decide with.
    pub fn checked_refundable_tickets(&self) -> Result<i64, LedgerError> {
        const WHAT: &str = "refundable tickets";
        let touched = self.order.tickets_touched(self.used()?, self.capacity()?)?;
        let left = sub(self.order.quantity, self.order.refunded_tickets, WHAT)?;
        let left = sub(left, self.pending_tickets()?, WHAT)?;
        Ok(sub(left, touched, WHAT)?.max(0))
    }

    /// [`OrderSnapshot::checked_refundable_tickets`] for a view: an order whose counts are out
    /// of range shows none, since every refund request for it is refused anyway.
    pub fn refundable_tickets(&self) -> i64 {
        self.checked_refundable_tickets().unwrap_or(0)
    }
}

/// The status an order would have after `change` is applied to a copy of its state; `change`
/// refuses (with checked arithmetic) rather than wrap a counter.
fn status_after(
    snapshot: &OrderSnapshot,
    change: impl FnOnce(
        &mut OrderRecord,
        &mut Vec<VoucherRecord>,
        &mut Vec<RefundRequest>,
    ) -> Result<(), LedgerError>,
) -> Result<StatusChange, LedgerError> {
    let mut order = snapshot.order.clone();
    let mut vouchers = snapshot.vouchers.clone();
    let mut refunds = snapshot.refunds.clone();
    change(&mut order, &mut vouchers, &mut refunds)?;
    let pending = refunds.iter().any(|r| r.state == RefundState::Pending);
    Ok(StatusChange {
        from: snapshot.status(),
        to: OrderStatus::derive(&order, &vouchers, pending),
    })
}

/// The status after a verify plan's increments.
pub(crate) fn status_after_uses(
    snapshot: &OrderSnapshot,
    deltas: &[i64],
) -> Result<StatusChange, LedgerError> {
    status_after(snapshot, |_, vouchers, _| {
        for (v, d) in vouchers.iter_mut().zip(deltas) {
            v.used = add(v.used, *d, "a code's uses")?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Issuance
// ---------------------------------------------------------------------------------------------

/// One issued code of an `alitrip.travel.ticket.order.create` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedVoucher {
    /// The code.
    pub code: ConfirmCode,
    /// Uses it allows (`quantity`).
    pub capacity: i64,
    /// `type`: 1 one code per ticket, 2 one code for many.
    pub voucher_type: Option<i64>,
    /// Optional extras (`assist_code`, `url`, `pdf_url`, `img`) as received, JSON text.
    pub extras: Option<String>,
}

/// What the vendor reports about issuing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueResult {
    /// `issue_type` 1: these codes were issued.
    Issued(Vec<IssuedVoucher>),
    /// `issue_type` 2: issuing failed, with the vendor's `describe`.
    Failed {
        /// Why.
        describe: String,
    },
}

/// An issuance report.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueCommand {
    /// The calling app.
    pub app_key: AppKey,
    /// The order.
    pub order_id: OrderId,
    /// The vendor's order id (required by the method).
    pub out_order_id: OutOrderId,
    /// The result.
    pub result: IssueResult,
    /// `attribute_map` as received (JSON text).
    pub attributes: Option<String>,
    /// Request metadata.
    pub meta: RequestMeta,
}

/// What an accepted issuance report changes.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuePlan {
    /// The order's `out_order_id` to record, when it had none.
    pub set_out_order_id: Option<OutOrderId>,
    /// Codes to insert, in report order.
    pub vouchers: Vec<IssuedVoucher>,
    /// The issuance state after.
    pub state: IssueState,
    /// The failure description to store (`None` keeps what is stored).
    pub describe: Option<String>,
    /// Applied or replayed.
    pub kind: OutcomeKind,
    /// Status transition.
    pub status: StatusChange,
}

/// Decides an issuance report: the first success fills the ledger; the same report again is a
/// replay; a different one is refused; a success may follow a failure; a failure after a
/// success is refused. A code allowing more than [`MAX_CODE_USES`] uses, or more than
/// [`MAX_VOUCHERS`] codes, is refused first ([`LedgerError::CountTooLarge`]).
pub fn plan_issue(snapshot: &OrderSnapshot, cmd: &IssueCommand) -> Result<IssuePlan, LedgerError> {
    if let IssueResult::Issued(codes) = &cmd.result {
        if codes.len() > MAX_VOUCHERS {
            return Err(LedgerError::CountTooLarge {
                field: "voucher_infos".into(),
                value: i64::try_from(codes.len()).unwrap_or(i64::MAX),
                max: MAX_VOUCHERS as i64,
            });
        }
        for (i, c) in codes.iter().enumerate() {
            limits::at_most(
                || format!("voucher_infos[{i}].quantity"),
                c.capacity,
                MAX_CODE_USES,
            )?;
        }
    }
    let order = &snapshot.order;
    if order.app_key != cmd.app_key {
        return Err(LedgerError::OrderNotFound);
    }
    let set_out_order_id = match &order.out_order_id {
        Some(known) if known != &cmd.out_order_id => return Err(LedgerError::OutOrderIdMismatch),
        Some(_) => None,
        None => Some(cmd.out_order_id.clone()),
    };
    match (&cmd.result, order.issue_state) {
        (IssueResult::Issued(codes), IssueState::Issued) => {
            // The same codes with the same uses is a retry; anything else contradicts what the
            // buyer was already shown.
            let same = codes.len() == snapshot.vouchers.len()
                && codes.iter().all(|c| {
                    snapshot
                        .vouchers
                        .iter()
                        .any(|v| v.code == c.code && v.capacity == c.capacity)
                });
            if !same {
                return Err(LedgerError::IssueConflict(
                    "the order was already issued with other codes".into(),
                ));
            }
            Ok(IssuePlan {
                set_out_order_id,
                vouchers: Vec::new(),
                state: IssueState::Issued,
                describe: None,
                kind: OutcomeKind::Replayed,
                status: status_after(snapshot, |_, _, _| Ok(()))?,
            })
        }
        (IssueResult::Issued(codes), IssueState::Awaiting | IssueState::Failed) => {
            let mut seen = std::collections::HashSet::new();
            for c in codes {
                if c.capacity < 1 || !seen.insert(c.code.as_str()) {
                    return Err(LedgerError::IssueConflict(format!(
                        "voucher {} is listed twice or allows no use",
                        c.code.masked()
                    )));
                }
            }
            let status = status_after(snapshot, |o, v, _| {
                o.issue_state = IssueState::Issued;
                v.extend(codes.iter().map(|c| VoucherRecord {
                    code: c.code.clone(),
                    capacity: c.capacity,
                    used: 0,
                }));
                Ok(())
            })?;
            Ok(IssuePlan {
                set_out_order_id,
                vouchers: codes.clone(),
                state: IssueState::Issued,
                describe: None,
                kind: OutcomeKind::Applied,
                status,
            })
        }
        (IssueResult::Failed { .. }, IssueState::Issued) => Err(LedgerError::IssueConflict(
            "the order was already issued; a failure cannot follow".into(),
        )),
        (IssueResult::Failed { describe }, state) => {
            let replay =
                state == IssueState::Failed && order.issue_describe.as_deref() == Some(describe);
            Ok(IssuePlan {
                set_out_order_id,
                vouchers: Vec::new(),
                state: IssueState::Failed,
                describe: Some(describe.clone()),
                kind: if replay {
                    OutcomeKind::Replayed
                } else {
                    OutcomeKind::Applied
                },
                status: status_after(snapshot, |o, _, _| {
                    o.issue_state = IssueState::Failed;
                    Ok(())
                })?,
            })
        }
    }
}

impl IssuePlan {
    /// The audit entries recording this plan.
    pub fn audit_entries(&self, snapshot: &OrderSnapshot, cmd: &IssueCommand) -> Vec<AuditEntry> {
        let (outcome, reason) = match self.kind {
            OutcomeKind::Applied => (
                AuditOutcome::Accepted,
                match self.state {
                    IssueState::Failed => "issue_failed",
                    _ => "issued",
                },
            ),
            OutcomeKind::Replayed | OutcomeKind::NoChange => (AuditOutcome::Replayed, "replayed"),
        };
        let detail = json!({
            "vouchers": self.vouchers.iter().map(|v| json!({
                "confirm_code": v.code.masked(), "capacity": v.capacity,
                "type": v.voucher_type})).collect::<Vec<_>>(),
            "describe": self.describe.as_deref().map(|d| clip_chars(d, MAX_KEPT_TEXT)),
            "request": cmd.meta.summary,
        });
        let entry = cmd
            .meta
            .audit_entry(ISSUE_ACTION, &snapshot.order, outcome, reason, detail);
        cmd.meta.with_status(entry, &self.status, &snapshot.order)
    }
}

/// The audit action of an issuance report.
pub const ISSUE_ACTION: &str = "alitrip.travel.ticket.order.create";
/// The audit action of a refund notification.
pub const REFUND_ACTION: &str = "taobao.travel.ticket.order.refund";

// ---------------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------------

/// Where a refund request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundState {
    /// Asked on the platform; the vendor has not answered.
    Pending,
    /// The vendor refunded.
    Succeeded,
    /// The vendor refused or failed to refund.
    Failed,
}

impl RefundState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A refund request started on the platform side and settled by the vendor's notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// `fliggy_refund_flow_id`: the request's id.
    pub flow_id: String,
    /// Tickets asked to be refunded.
    pub quantity: i64,
    /// When it was asked.
    pub requested_at: DateTime<Utc>,
    /// Where it stands.
    pub state: RefundState,
    /// Tickets refunded when it succeeded.
    pub refunded_tickets: i64,
    /// The vendor's `refund_batch_no` that settled it.
    pub batch_no: Option<String>,
    /// The vendor's `refund_failure_reason`.
    pub failure_reason: Option<String>,
    /// When it was settled.
    pub settled_at: Option<DateTime<Utc>>,
    /// Set when a verify used tickets this request had reserved (R9): the operator should
    /// check it before the refund is paid.
    pub needs_review: bool,
}

/// The operator (or the platform's buyer flow) asks for a refund.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundRequestCommand {
    /// The order.
    pub order_id: OrderId,
    /// Tickets to refund.
    pub quantity: i64,
    /// Request metadata.
    pub meta: RequestMeta,
}

/// What creating a refund request changes.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundRequestPlan {
    /// The new pending request.
    pub request: RefundRequest,
    /// Status transition.
    pub status: StatusChange,
}

/// Decides a refund request: only unused, unrefunded, unreserved tickets can be asked for, and
/// never more than [`MAX_TICKETS`] ([`LedgerError::CountTooLarge`]).
pub fn plan_refund_request(
    snapshot: &OrderSnapshot,
    cmd: &RefundRequestCommand,
) -> Result<RefundRequestPlan, LedgerError> {
    limits::at_most(|| "quantity".into(), cmd.quantity, MAX_TICKETS)?;
    if snapshot.order.issue_state != IssueState::Issued {
        return Err(LedgerError::OrderNotIssued);
    }
    let refundable = snapshot.checked_refundable_tickets()?;
    if cmd.quantity < 1 || cmd.quantity > refundable {
        return Err(LedgerError::RefundExceedsUnused {
            requested: cmd.quantity,
            refundable,
        });
    }
    let request = RefundRequest {
        flow_id: format!(
            "RF{}{:03}",
            snapshot.order.order_id.get(),
            snapshot.refunds.len() + 1
        ),
        quantity: cmd.quantity,
        requested_at: cmd.meta.received_at,
        state: RefundState::Pending,
        refunded_tickets: 0,
        batch_no: None,
        failure_reason: None,
        settled_at: None,
        needs_review: false,
    };
    let status = status_after(snapshot, |_, _, r| {
        r.push(request.clone());
        Ok(())
    })?;
    Ok(RefundRequestPlan { request, status })
}

impl RefundRequestPlan {
    /// The audit entries recording this plan.
    pub fn audit_entries(
        &self,
        snapshot: &OrderSnapshot,
        cmd: &RefundRequestCommand,
    ) -> Vec<AuditEntry> {
        let detail = json!({"fliggy_refund_flow_id": self.request.flow_id,
                            "quantity": self.request.quantity});
        let entry = cmd.meta.audit_entry(
            "admin.request_refund",
            &snapshot.order,
            AuditOutcome::Accepted,
            "refund_requested",
            detail,
        );
        cmd.meta.with_status(entry, &self.status, &snapshot.order)
    }
}

/// `refund_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundOutcomeStatus {
    /// 1: refunded.
    Succeeded,
    /// 2: not refunded.
    Failed,
}

/// The vendor's refund notification (`taobao.travel.ticket.order.refund`).
#[derive(Debug, Clone, PartialEq)]
pub struct RefundCommand {
    /// The calling app.
    pub app_key: AppKey,
    /// The order.
    pub order_id: OrderId,
    /// `refund_status`.
    pub status: RefundOutcomeStatus,
    /// `refund_num`: tickets refunded (defaults to the request's quantity).
    pub refund_num: Option<i64>,
    /// `refund_batch_no`: the vendor's idempotency key.
    pub batch_no: Option<String>,
    /// `refund_failure_reason`.
    pub failure_reason: Option<String>,
    /// `refund_type` 3 (partial) rather than 1 (full).
    pub partial: bool,
    /// `fliggy_refund_flow_id`: which request it settles.
    pub flow_id: Option<String>,
    /// Request metadata.
    pub meta: RequestMeta,
}

/// What an accepted refund notification changes.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundPlan {
    /// The request it settles.
    pub flow_id: String,
    /// Its state after.
    pub state: RefundState,
    /// Tickets refunded by it (0 when it failed or was a replay).
    pub refunded_tickets: i64,
    /// Applied or replayed.
    pub kind: OutcomeKind,
    /// Status transition.
    pub status: StatusChange,
}

/// Decides a refund notification. Idempotent on `refund_batch_no` and on the flow id: a
/// notification that repeats how a request was settled is a replay; one that contradicts it
/// is refused. A `refund_num` above [`MAX_TICKETS`] is refused first
/// ([`LedgerError::CountTooLarge`]).
pub fn plan_refund(
    snapshot: &OrderSnapshot,
    cmd: &RefundCommand,
) -> Result<RefundPlan, LedgerError> {
    if let Some(n) = cmd.refund_num {
        limits::at_most(|| "refund_num".into(), n, MAX_TICKETS)?;
    }
    let order = &snapshot.order;
    if order.app_key != cmd.app_key {
        return Err(LedgerError::OrderNotFound);
    }
    let settled_as = |r: &RefundRequest| -> bool {
        let same_status = match cmd.status {
            RefundOutcomeStatus::Succeeded => r.state == RefundState::Succeeded,
            RefundOutcomeStatus::Failed => r.state == RefundState::Failed,
        };
        let same_num = match (cmd.status, cmd.refund_num) {
            (RefundOutcomeStatus::Succeeded, Some(n)) => n == r.refunded_tickets,
            _ => true,
        };
        same_status && same_num
    };
    let replay = |r: &RefundRequest| -> Result<RefundPlan, LedgerError> {
        if settled_as(r) {
            Ok(RefundPlan {
                flow_id: r.flow_id.clone(),
                state: r.state,
                refunded_tickets: 0,
                kind: OutcomeKind::Replayed,
                status: status_after(snapshot, |_, _, _| Ok(()))?,
            })
        } else {
            Err(LedgerError::RefundConflict)
        }
    };
    // A batch number already used settles nothing new.
    if let Some(batch) = &cmd.batch_no {
        if let Some(r) = snapshot
            .refunds
            .iter()
            .find(|r| r.batch_no.as_deref() == Some(batch.as_str()))
        {
            return replay(r);
        }
    }
    let target = match &cmd.flow_id {
        Some(flow) => snapshot
            .refunds
            .iter()
            .find(|r| &r.flow_id == flow)
            .ok_or(LedgerError::RefundNotRequested)?,
        None => snapshot
            .refunds
            .iter()
            .filter(|r| r.state == RefundState::Pending)
            .min_by_key(|r| r.requested_at)
            .ok_or(LedgerError::RefundNotRequested)?,
    };
    if target.state != RefundState::Pending {
        return replay(target);
    }
    let (state, refunded) = match cmd.status {
        RefundOutcomeStatus::Failed => (RefundState::Failed, 0),
        RefundOutcomeStatus::Succeeded => {
            let n = cmd.refund_num.unwrap_or(target.quantity);
            if n < 1 || n > target.quantity {
                return Err(LedgerError::RefundNumExceeds {
                    requested: n,
                    pending: target.quantity,
                });
            }
            // Verifies dated before the request may have used reserved tickets (R9): what
            // remains unused bounds what can be refunded.
            const WHAT: &str = "refundable tickets";
            let touched = order.tickets_touched(snapshot.used()?, snapshot.capacity()?)?;
            let others = sub(snapshot.pending_tickets()?, target.quantity, WHAT)?;
            let refundable = sub(order.quantity, order.refunded_tickets, WHAT)?;
            let refundable = sub(sub(refundable, others, WHAT)?, touched, WHAT)?;
            if n > refundable {
                return Err(LedgerError::RefundExceedsUnused {
                    requested: n,
                    refundable: refundable.max(0),
                });
            }
            (RefundState::Succeeded, n)
        }
    };
    let flow_id = target.flow_id.clone();
    let status = status_after(snapshot, |o, _, requests| {
        o.refunded_tickets = add(o.refunded_tickets, refunded, "refunded tickets")?;
        if let Some(r) = requests.iter_mut().find(|r| r.flow_id == flow_id) {
            r.state = state;
        }
        Ok(())
    })?;
    Ok(RefundPlan {
        flow_id,
        state,
        refunded_tickets: refunded,
        kind: OutcomeKind::Applied,
        status,
    })
}

impl RefundPlan {
    /// The audit entries recording this plan.
    pub fn audit_entries(&self, snapshot: &OrderSnapshot, cmd: &RefundCommand) -> Vec<AuditEntry> {
        let (outcome, reason) = match (self.kind, self.state) {
            (OutcomeKind::Applied, RefundState::Succeeded) => (AuditOutcome::Accepted, "refunded"),
            (OutcomeKind::Applied, _) => (AuditOutcome::Accepted, "refund_failed"),
            _ => (AuditOutcome::Replayed, "replayed"),
        };
        let detail = json!({
            "fliggy_refund_flow_id": self.flow_id,
            "refunded_tickets": self.refunded_tickets,
            "request": cmd.meta.summary,
        });
        let entry = cmd
            .meta
            .audit_entry(REFUND_ACTION, &snapshot.order, outcome, reason, detail);
        cmd.meta.with_status(entry, &self.status, &snapshot.order)
    }
}

// ---------------------------------------------------------------------------------------------
// Reversal
// ---------------------------------------------------------------------------------------------

/// One applied use, as recorded by a verify: what a reversal can take back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseRecord {
    /// Store id.
    pub id: i64,
    /// The code.
    pub code: ConfirmCode,
    /// Uses recorded.
    pub quantity: i64,
    /// Uses already reversed.
    pub reversed: i64,
    /// When the ledger recorded it (the reversal window counts from here).
    pub recorded_at: DateTime<Utc>,
}

/// The operator gives uses back (撤销核销).
#[derive(Debug, Clone, PartialEq)]
pub struct ReversalCommand {
    /// The order.
    pub order_id: OrderId,
    /// The code.
    pub code: ConfirmCode,
    /// Uses to give back.
    pub quantity: i64,
    /// Why (kept in the event).
    pub reason: String,
    /// How long after a use it may be reversed.
    pub window: chrono::Duration,
    /// Request metadata.
    pub meta: RequestMeta,
}

/// What an accepted reversal changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReversalPlan {
    /// The code.
    pub code: ConfirmCode,
    /// Uses given back.
    pub quantity: i64,
    /// Per use record: (id, how many of its uses are reversed now), newest first.
    pub takes: Vec<(i64, i64)>,
    /// The code's count after.
    pub used_after: i64,
    /// Status transition.
    pub status: StatusChange,
}

/// Decides a reversal: only uses recorded within the window can be given back, newest first,
/// a count never goes below zero, and never more than [`MAX_CODE_USES`] at once
/// ([`LedgerError::CountTooLarge`]).
pub fn plan_reversal(
    snapshot: &OrderSnapshot,
    uses: &[UseRecord],
    cmd: &ReversalCommand,
) -> Result<ReversalPlan, LedgerError> {
    const WHAT: &str = "reversible uses";
    limits::at_most(|| "quantity".into(), cmd.quantity, MAX_CODE_USES)?;
    let index = snapshot
        .vouchers
        .iter()
        .position(|v| v.code == cmd.code)
        .ok_or_else(|| LedgerError::VoucherNotFound {
            code: cmd.code.clone(),
        })?;
    let since = cmd.meta.received_at - cmd.window;
    let mut candidates: Vec<&UseRecord> = uses
        .iter()
        .filter(|u| u.code == cmd.code && u.recorded_at >= since && u.quantity > u.reversed)
        .collect();
    candidates.sort_by(|a, b| b.recorded_at.cmp(&a.recorded_at).then(b.id.cmp(&a.id)));
    let reversible = sum(
        candidates
            .iter()
            .map(|u| sub(u.quantity, u.reversed, WHAT))
            .collect::<Result<Vec<_>, _>>()?,
        WHAT,
    )?
    .min(snapshot.vouchers[index].used);
    if cmd.quantity < 1 || cmd.quantity > reversible {
        return Err(LedgerError::ReversalNotAllowed {
            requested: cmd.quantity,
            reversible,
        });
    }
    let mut left = cmd.quantity;
    let mut takes = Vec::new();
    for u in candidates {
        if left == 0 {
            break;
        }
        // Both were subtracted without overflow when `reversible` was summed.
        let take = left.min(u.quantity - u.reversed);
        takes.push((u.id, take));
        left -= take;
    }
    let used_after = sub(snapshot.vouchers[index].used, cmd.quantity, WHAT)?;
    let status = status_after(snapshot, |_, v, _| {
        v[index].used = used_after;
        Ok(())
    })?;
    Ok(ReversalPlan {
        code: cmd.code.clone(),
        quantity: cmd.quantity,
        takes,
        used_after,
        status,
    })
}

impl ReversalPlan {
    /// The audit entries recording this plan (the original verifies stay in the history).
    pub fn audit_entries(
        &self,
        snapshot: &OrderSnapshot,
        cmd: &ReversalCommand,
    ) -> Vec<AuditEntry> {
        let detail = json!({"confirm_code": self.code.masked(), "quantity": self.quantity,
                            "used": self.used_after, "reason": cmd.reason});
        let entry = cmd.meta.audit_entry(
            "admin.reverse",
            &snapshot.order,
            AuditOutcome::Accepted,
            "reversed",
            detail,
        );
        cmd.meta.with_status(entry, &self.status, &snapshot.order)
    }
}

// ---------------------------------------------------------------------------------------------
// Anomalies
// ---------------------------------------------------------------------------------------------

/// A fact that could not be applied as reported, or was applied but matters to money or trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    /// A verify of a refunded ticket (or one that needed uses held by refunded tickets).
    VerifyAfterRefund,
    /// A verify used tickets a pending refund had reserved (R9).
    VerifyDuringRefund,
    /// A cumulative count went backwards (R18).
    CountRegressed,
    /// A use dated after the tickets expired (R26).
    LateRedemption,
    /// Legacy `total_num` disagrees with the ledger (R27).
    TotalNumMismatch,
    /// Legacy `return_num` disagrees with the ledger (R27).
    ReturnNumMismatch,
    /// A refund notification for which no refund was requested.
    RefundNotRequested,
    /// A refund notification for more tickets than remain unused.
    RefundExceedsUnused,
    /// A write whose `COMMIT` got no answer (the database connection failed) and whose outcome
    /// the store could not find out in time: its caller was told the outcome is unknown. The
    /// detail's `landed` says what the store found once the database answered again.
    CommitOutcomeUnknown,
    /// A write that must change exactly one row changed none
    /// ([`LedgerError::WriteChangedNoRow`]): the database disagreed with what the ledger read,
    /// so the request was refused and nothing applied. Someone or something changed the
    /// database behind the ledger's back; find out what before resolving.
    WriteChangedNoRow,
}

impl AnomalyKind {
    /// Every kind.
    pub const ALL: &'static [AnomalyKind] = &[
        Self::VerifyAfterRefund,
        Self::VerifyDuringRefund,
        Self::CountRegressed,
        Self::LateRedemption,
        Self::TotalNumMismatch,
        Self::ReturnNumMismatch,
        Self::RefundNotRequested,
        Self::RefundExceedsUnused,
        Self::CommitOutcomeUnknown,
        Self::WriteChangedNoRow,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyAfterRefund => "verify_after_refund",
            Self::VerifyDuringRefund => "verify_during_refund",
            Self::CountRegressed => "count_regressed",
            Self::LateRedemption => "late_redemption",
            Self::TotalNumMismatch => "total_num_mismatch",
            Self::ReturnNumMismatch => "return_num_mismatch",
            Self::RefundNotRequested => "refund_not_requested",
            Self::RefundExceedsUnused => "refund_exceeds_unused",
            Self::CommitOutcomeUnknown => "commit_outcome_unknown",
            Self::WriteChangedNoRow => "write_changed_no_row",
        }
    }

    /// Parses the name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// How an operator settled an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The fact stands as recorded (e.g. the late use is charged).
    Accepted,
    /// The use was reversed (with `POST /admin/orders/{id}/reversals`).
    Reversed,
    /// The refund was adjusted.
    RefundAdjusted,
    /// Not an issue.
    Dismissed,
}

impl Resolution {
    /// Every resolution.
    pub const ALL: &'static [Resolution] = &[
        Self::Accepted,
        Self::Reversed,
        Self::RefundAdjusted,
        Self::Dismissed,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Reversed => "reversed",
            Self::RefundAdjusted => "refund_adjusted",
            Self::Dismissed => "dismissed",
        }
    }

    /// Parses the name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// An anomaly to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnomaly {
    /// What kind.
    pub kind: AnomalyKind,
    /// The order it concerns.
    pub order_id: Option<i64>,
    /// The app that reported it.
    pub app_key: Option<String>,
    /// The request that revealed it.
    pub request_id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// What was found (counts, codes masked).
    pub detail: Value,
    /// The raw request (sanitized: no signature, codes masked).
    pub request: Value,
}

/// A stored anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// Store id.
    pub id: i64,
    /// What was stored.
    pub anomaly: NewAnomaly,
    /// `None` while open.
    pub resolution: Option<Resolution>,
    /// The operator's note.
    pub note: Option<String>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Which anomalies to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnomalyFilter {
    /// Only open (`Some(true)`) or only resolved (`Some(false)`).
    pub open: Option<bool>,
    /// Only this order's.
    pub order_id: Option<i64>,
    /// Only this kind.
    pub kind: Option<AnomalyKind>,
    /// Only anomalies with an id below this (paging: the list is newest first, so the next
    /// page starts below the last id seen).
    pub before_id: Option<i64>,
    /// At most this many (capped at 1000; default 100).
    pub limit: Option<u32>,
}

/// The operator settles an anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolveAnomaly {
    /// Which.
    pub id: i64,
    /// How.
    pub resolution: Resolution,
    /// Why.
    pub note: String,
    /// When and by which request.
    pub meta: RequestMeta,
}

/// The anomalies an accepted verify raises from its flags.
pub fn flag_anomalies(
    flags: &[Flag],
    order_id: OrderId,
    app_key: &AppKey,
    meta: &RequestMeta,
) -> Vec<NewAnomaly> {
    flags
        .iter()
        .filter_map(|f| {
            let kind = match f {
                Flag::CountRegressed { .. } | Flag::OrderCountRegressed { .. } => {
                    AnomalyKind::CountRegressed
                }
                Flag::LateRedemption { .. } => AnomalyKind::LateRedemption,
                Flag::TotalNumMismatch { .. } => AnomalyKind::TotalNumMismatch,
                Flag::ReturnNumMismatch { .. } => AnomalyKind::ReturnNumMismatch,
                Flag::VerifyDuringRefund { .. } => AnomalyKind::VerifyDuringRefund,
                Flag::ServerTimeUsed { .. } => return None,
            };
            Some(NewAnomaly {
                kind,
                order_id: Some(order_id.get()),
                app_key: Some(app_key.as_str().to_owned()),
                request_id: meta.request_id.clone(),
                at: meta.received_at,
                detail: f.to_json(),
                request: meta.summary.clone(),
            })
        })
        .collect()
}

/// The anomaly a refusal raises, if it is one that matters to money or trust: the refused
/// request changes nothing, but the fact it reports must reach the operator. `app_key` is the
/// calling app's, when a vendor called (operator requests name none).
pub fn refusal_anomaly(
    err: &LedgerError,
    order_id: Option<OrderId>,
    app_key: Option<&AppKey>,
    meta: &RequestMeta,
) -> Option<NewAnomaly> {
    let (kind, detail) = match err {
        LedgerError::WriteChangedNoRow { write } => (
            AnomalyKind::WriteChangedNoRow,
            json!({"write": write,
                   "reason": "a write that must change one row changed none; nothing was applied"}),
        ),
        LedgerError::RefundedUsesExceeded {
            requested,
            remaining,
            refund_pending,
        } => (
            AnomalyKind::VerifyAfterRefund,
            json!({"requested": requested, "remaining": remaining,
                   "refund_pending": refund_pending}),
        ),
        LedgerError::OrderRefunded => (
            AnomalyKind::VerifyAfterRefund,
            json!({"reason": "every ticket of the order is refunded"}),
        ),
        LedgerError::RefundNotRequested => (
            AnomalyKind::RefundNotRequested,
            json!({"reason": "no matching refund request"}),
        ),
        LedgerError::RefundExceedsUnused {
            requested,
            refundable,
        } if meta.summary.get("refund_status").is_some() => (
            AnomalyKind::RefundExceedsUnused,
            json!({"requested": requested, "refundable": refundable}),
        ),
        _ => return None,
    };
    Some(NewAnomaly {
        kind,
        order_id: order_id.map(OrderId::get),
        app_key: app_key.map(|k| k.as_str().to_owned()),
        request_id: meta.request_id.clone(),
        at: meta.received_at,
        detail,
        request: meta.summary.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Reconciliation
// ---------------------------------------------------------------------------------------------

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
    /// Uses the vendor has and the ledger lacks (what `apply` records). Both counts are
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
