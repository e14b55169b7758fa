//! What a store reads, inside the transaction that applies a plan, for the planners: the order,
//! its vouchers and refunds, and the counts every planner decides with.

use std::collections::HashSet;

use crate::limits::{sub, sum};
use crate::order::{OrderRecord, VoucherRecord};
use crate::refund::{RefundRequest, RefundState};
use crate::status::OrderStatus;
use crate::verify::Fingerprint;
use crate::LedgerError;

/// What the store read, inside the transaction, for a planner such as [`crate::plan_verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSnapshot {
    /// The order the request resolved to.
    pub order: OrderRecord,
    /// Its vouchers, in issuance order.
    pub vouchers: Vec<VoucherRecord>,
    /// Those of [`crate::VerifyCommand::fingerprints`] already recorded for this order.
    pub seen: HashSet<Fingerprint>,
    /// Its refund requests, oldest first.
    pub refunds: Vec<RefundRequest>,
}

impl OrderSnapshot {
    /// Whether a refund request is pending.
    pub fn refund_pending(&self) -> bool {
        refund_pending(&self.refunds)
    }

    /// The current status.
    pub fn status(&self) -> OrderStatus {
        OrderStatus::derive(&self.order, &self.vouchers, self.refund_pending())
    }

    /// Total uses issued; [`LedgerError::CountOverflow`] when the sum does not fit an `i64`.
    pub fn capacity(&self) -> Result<i64, LedgerError> {
        capacity(&self.vouchers)
    }

    /// Total uses recorded; [`LedgerError::CountOverflow`] when the sum does not fit an `i64`.
    pub fn used(&self) -> Result<i64, LedgerError> {
        used(&self.vouchers)
    }

    /// Tickets reserved by pending refund requests.
    pub fn pending_tickets(&self) -> Result<i64, LedgerError> {
        pending_tickets(&self.refunds)
    }

    /// Tickets that can still be asked to be refunded: neither refunded, nor reserved by a
    /// pending request, nor touched by a use. Refused with [`LedgerError::CountOverflow`] when
    /// the order's counts are beyond the ledger's bounds; what the planners decide with.
    pub fn checked_refundable_tickets(&self) -> Result<i64, LedgerError> {
        refundable_tickets(&self.order, &self.vouchers, &self.refunds)
    }

    /// [`OrderSnapshot::checked_refundable_tickets`] for a view: an order whose counts are out
    /// of range shows none, since every refund request for it is refused anyway.
    pub fn refundable_tickets(&self) -> i64 {
        self.checked_refundable_tickets().unwrap_or(0)
    }
}

// The counts below are computed from borrowed parts, so that the order view
// ([`crate::OrderView`]) answers with the same rules without copying itself into a snapshot.

pub(crate) fn refund_pending(refunds: &[RefundRequest]) -> bool {
    refunds.iter().any(|r| r.state == RefundState::Pending)
}

fn capacity(vouchers: &[VoucherRecord]) -> Result<i64, LedgerError> {
    sum(vouchers.iter().map(|v| v.capacity), "the order's capacity")
}

fn used(vouchers: &[VoucherRecord]) -> Result<i64, LedgerError> {
    sum(vouchers.iter().map(|v| v.used), "the order's uses")
}

fn pending_tickets(refunds: &[RefundRequest]) -> Result<i64, LedgerError> {
    sum(
        refunds
            .iter()
            .filter(|r| r.state == RefundState::Pending)
            .map(|r| r.quantity),
        "tickets held by pending refunds",
    )
}

/// See [`OrderSnapshot::checked_refundable_tickets`].
pub(crate) fn refundable_tickets(
    order: &OrderRecord,
    vouchers: &[VoucherRecord],
    refunds: &[RefundRequest],
) -> Result<i64, LedgerError> {
    const WHAT: &str = "refundable tickets";
    let touched = order.tickets_touched(used(vouchers)?, capacity(vouchers)?)?;
    let left = sub(order.quantity, order.refunded_tickets, WHAT)?;
    let left = sub(left, pending_tickets(refunds)?, WHAT)?;
    Ok(sub(left, touched, WHAT)?.max(0))
}
