//! Refunds (退票): a request opened on the platform side reserves tickets, and the vendor's
//! notification (`taobao.travel.ticket.order.refund`) settles it.
//!
//! Accounting (docs/DOMAIN.md §2.2): refunds count per order in tickets; a refunded ticket takes its
//! uses (`capacity ÷ quantity`) out of what the order can still use. A pending refund reserves
//! its tickets' uses against verifies dated after the request (R9); see `docs/LIFECYCLE.md`.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::{AuditAction, AuditEntry, AuditOutcome, RequestMeta};
use crate::ids::{AppKey, OrderId};
use crate::limits::{self, add, sub, MAX_TICKETS};
use crate::order::IssueState;
use crate::snapshot::OrderSnapshot;
use crate::status::{status_after, StatusChange};
use crate::verify::OutcomeKind;
use crate::LedgerError;

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
            AuditAction::RequestRefund,
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
            "request": cmd.meta.summary.value(),
        });
        let entry = cmd.meta.audit_entry(
            AuditAction::Refund,
            &snapshot.order,
            outcome,
            reason,
            detail,
        );
        cmd.meta.with_status(entry, &self.status, &snapshot.order)
    }
}
