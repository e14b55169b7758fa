//! Where an order is in its life: its status, derived from its counters, and the transition an
//! operation causes, which every plan reports so stores record it as an event of the request
//! that caused it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::limits::add;
use crate::order::{IssueState, OrderRecord, VoucherRecord};
use crate::refund::{RefundRequest, RefundState};
use crate::snapshot::OrderSnapshot;
use crate::LedgerError;

/// Where an order is in its life, derived from its counters so it can never disagree with them.
///
/// When several apply, the first in this list wins: `awaiting_issuance`, `issue_failed`,
/// `refunding` (a refund is pending: someone must act), `refunded` (every ticket refunded),
/// `closed` (nothing left, some used and some refunded), `used` (every use recorded),
/// `partly_refunded`, `partly_used`, `issued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Paid; the vendor has not issued codes yet.
    AwaitingIssuance,
    /// The vendor reported that issuing failed.
    IssueFailed,
    /// Codes issued, nothing used or refunded.
    Issued,
    /// Some uses recorded, some remain.
    PartlyUsed,
    /// Every use is recorded.
    Used,
    /// A refund request is pending.
    Refunding,
    /// Some tickets refunded, some uses remain.
    PartlyRefunded,
    /// Every ticket refunded.
    Refunded,
    /// Nothing remains: every ticket is either used or refunded, and both happened.
    Closed,
}

impl OrderStatus {
    /// Derives the status. `pending_refund` says whether a refund request is pending.
    ///
    /// Every order has a status, also one whose stored counts are beyond the ledger's bounds
    /// (older than them), so this cannot refuse: the arithmetic is exact in `i128`, where a sum
    /// of `i64`s (fewer than 2⁶⁴ of them) and the quotient of a product of two cannot overflow.
    pub fn derive(order: &OrderRecord, vouchers: &[VoucherRecord], pending_refund: bool) -> Self {
        let capacity: i128 = vouchers.iter().map(|v| i128::from(v.capacity)).sum();
        let used: i128 = vouchers.iter().map(|v| i128::from(v.used)).sum();
        Self::derive_from_totals(order, capacity, used, pending_refund)
    }

    /// [`OrderStatus::derive`] from the sums of the order's voucher capacities and uses, for a
    /// reader that sums them itself instead of holding every voucher (the order list,
    /// [`crate::OrderSummary`]). The sums are `i128` so that they are exact for any stored
    /// counts, as in `derive`.
    pub fn derive_from_totals(
        order: &OrderRecord,
        capacity: i128,
        used: i128,
        pending_refund: bool,
    ) -> Self {
        let refunded = if order.quantity > 0 {
            i128::from(order.refunded_tickets) * capacity / i128::from(order.quantity)
        } else {
            0
        };
        let remaining = capacity - used - refunded;
        match order.issue_state {
            IssueState::Awaiting => return Self::AwaitingIssuance,
            IssueState::Failed => return Self::IssueFailed,
            IssueState::Issued => {}
        }
        if pending_refund {
            Self::Refunding
        } else if order.refunded_tickets >= order.quantity && used == 0 {
            Self::Refunded
        } else if remaining <= 0 && order.refunded_tickets > 0 && used > 0 {
            Self::Closed
        } else if remaining <= 0 && order.refunded_tickets == 0 {
            Self::Used
        } else if order.refunded_tickets > 0 {
            Self::PartlyRefunded
        } else if used > 0 {
            Self::PartlyUsed
        } else {
            Self::Issued
        }
    }

    /// The wire name (`partly_used`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingIssuance => "awaiting_issuance",
            Self::IssueFailed => "issue_failed",
            Self::Issued => "issued",
            Self::PartlyUsed => "partly_used",
            Self::Used => "used",
            Self::Refunding => "refunding",
            Self::PartlyRefunded => "partly_refunded",
            Self::Refunded => "refunded",
            Self::Closed => "closed",
        }
    }

    /// Parses the wire name; `None` for any other text.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|status| status.as_str() == s)
    }

    /// Every status, in precedence order.
    pub const ALL: &'static [OrderStatus] = &[
        Self::AwaitingIssuance,
        Self::IssueFailed,
        Self::Refunding,
        Self::Refunded,
        Self::Closed,
        Self::Used,
        Self::PartlyRefunded,
        Self::PartlyUsed,
        Self::Issued,
    ];
}

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
            action: AuditAction::StatusChange.as_str().to_owned(),
            app_key: Some(order.app_key.as_str().to_owned()),
            order_id: Some(order.order_id.get()),
            outcome: AuditOutcome::Accepted,
            reason: self.to.as_str().to_owned(),
            detail: json!({"from": self.from.as_str(), "to": self.to.as_str(), "cause": cause}),
            client_ip: None,
        })
    }
}

/// The status an order would have after `change` is applied to a copy of its state; `change`
/// refuses (with checked arithmetic) rather than wrap a counter.
pub(crate) fn status_after(
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
