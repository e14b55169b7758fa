//! Every way a ledger operation can be refused or fail.
//!
//! Business refusals carry what the vendor needs to fix the report (which code, how much
//! remains); the gateway maps each variant to a TOP `sub_code` in one exhaustive `match`.

use crate::ids::ConfirmCode;

/// A refused or failed ledger operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// R4/R6: no such order, or it belongs to another app (the two are indistinguishable on
    /// purpose, so one vendor cannot probe another's orders).
    #[error("order does not exist")]
    OrderNotFound,
    /// R5: `out_order_id` does not match the order named by `order_id`.
    #[error("out_order_id does not match the order")]
    OutOrderIdMismatch,
    /// R7: the order has no issued codes yet.
    #[error("order has not been issued")]
    OrderNotIssued,
    /// R10: the code was not issued for this order.
    #[error("voucher {code} was not issued for this order")]
    VoucherNotFound {
        /// The unknown code.
        code: ConfirmCode,
    },
    /// R1: a legacy `confirm_code` sent beside `voucher_infos` is not in the list.
    #[error("confirm_code {code} is not in voucher_infos")]
    LegacyCodeNotInList {
        /// The stray legacy code.
        code: ConfirmCode,
    },
    /// R13/R19: the request would use a code beyond its capacity. Nothing was applied.
    #[error("voucher {code}: {requested} uses requested, {remaining} remain")]
    CapacityExceeded {
        /// The code that would overflow.
        code: ConfirmCode,
        /// Uses this request would add to it.
        requested: i64,
        /// Uses it has left.
        remaining: i64,
    },
    /// R2/R13: an order-level legacy report asks for more uses than the order has left.
    #[error("order: {requested} uses requested, {remaining} remain")]
    OrderCapacityExceeded {
        /// Uses requested.
        requested: i64,
        /// Uses left on the order.
        remaining: i64,
    },
    /// R27: legacy `total_num` claims more uses than were sold.
    #[error("total_num {reported} exceeds the {ledger} uses sold")]
    TotalNumExceeds {
        /// What the vendor sent.
        reported: i64,
        /// What the ledger has.
        ledger: i64,
    },
    /// R23/R24/R25: the gate time is impossible for this order.
    #[error("used_date {used_date} is invalid: {why}")]
    UsedDateInvalid {
        /// The instant checked, as TOP writes dates (UTC+8): the vendor's `used_date`, or the
        /// receive time for reports that carry none.
        used_date: String,
        /// Which rule: in the future, before the order was paid, before it is valid.
        why: UsedDateProblem,
    },
    /// R8: every ticket of the order is refunded; nothing can be used.
    #[error("every ticket of the order is refunded")]
    OrderRefunded,
    /// R9/R13: the codes have capacity left, but the order's remaining uses belong to refunded
    /// tickets (or to tickets a pending refund reserved, for uses dated after its request).
    #[error("{requested} uses requested, {remaining} remain that are not refunded")]
    RefundedUsesExceeded {
        /// Uses requested.
        requested: i64,
        /// Uses left that no refund holds.
        remaining: i64,
        /// Whether a pending refund holds some of the rest.
        refund_pending: bool,
    },
    /// An issuance report contradicts what was already reported.
    #[error("issuance conflict: {0}")]
    IssueConflict(String),
    /// A refund notification names no pending request (or none exists).
    #[error("no matching refund request")]
    RefundNotRequested,
    /// A refund notification contradicts how its request (or batch) was already settled.
    #[error("the refund was already settled differently")]
    RefundConflict,
    /// `refund_num` exceeds the tickets the request asked for.
    #[error("refund_num {requested} exceeds the {pending} tickets requested")]
    RefundNumExceeds {
        /// Tickets in the notification.
        requested: i64,
        /// Tickets in the request.
        pending: i64,
    },
    /// More tickets than remain unused (neither used, refunded nor reserved).
    #[error("{requested} tickets requested, {refundable} can be refunded")]
    RefundExceedsUnused {
        /// Tickets asked.
        requested: i64,
        /// Tickets that can be.
        refundable: i64,
    },
    /// A reversal asks for more uses than were recorded within the reversal window.
    #[error("{requested} uses to reverse, {reversible} reversible within the window")]
    ReversalNotAllowed {
        /// Uses asked.
        requested: i64,
        /// Uses recorded within the window and not yet reversed.
        reversible: i64,
    },
    /// A reconciliation names a code the vendor counts beyond the uses it allows: the counts
    /// cannot be right, so nothing of the reconciliation was recorded.
    #[error("voucher {code} allows {capacity} uses; the vendor reports {reported}")]
    VendorCountExceedsCapacity {
        /// The code.
        code: ConfirmCode,
        /// Uses it allows.
        capacity: i64,
        /// The vendor's count.
        reported: i64,
    },
    /// No anomaly with that id.
    #[error("no such anomaly")]
    AnomalyNotFound,
    /// The anomaly was already resolved.
    #[error("the anomaly is already resolved")]
    AnomalyResolved,
    /// The app key is already registered.
    #[error("app already exists")]
    AppExists,
    /// The order id is already in the ledger.
    #[error("order already exists")]
    OrderExists,
    /// Another order of the same app already has this `out_order_id`.
    #[error("out_order_id is already used by another order of this app")]
    OutOrderIdTaken,
    /// The order names an app that is not registered.
    #[error("unknown app")]
    UnknownApp,
    /// The order to create is inconsistent.
    #[error("invalid order: {0}")]
    InvalidOrder(String),
    /// A count in the request is above the ledger's bound for it ([`crate::limits`]). Nothing
    /// was applied. `field` names the count as the request named it (`quantity`,
    /// `voucher_infos[2].used_quantity`), so the gateway can answer 41 and the admin API 422
    /// naming it.
    #[error("{field} {value} exceeds the maximum {max}")]
    CountTooLarge {
        /// The request's name for the count.
        field: String,
        /// What the request asked for.
        value: i64,
        /// The bound.
        max: i64,
    },
    /// Arithmetic on the order's stored counts would overflow an `i64`: they are beyond the
    /// ledger's bounds (written before the bounds existed, or behind the ledger's back).
    /// Refused rather than computed with a wrapped number; nothing was applied.
    #[error("counts out of range: {what} overflows")]
    CountOverflow {
        /// Which computation.
        what: &'static str,
    },
    /// A write that must change exactly one row changed none: the database disagrees with what
    /// the planner read under the order's lock (a row changed behind the ledger's back, or a
    /// trigger or bug interfered). The whole operation was rolled back and nothing was applied;
    /// the store records an anomaly ([`crate::AnomalyKind::WriteChangedNoRow`]) naming the
    /// request. Sending the request again cannot make it worse: it is planned afresh.
    #[error("a write that must change one row changed none: {write}")]
    WriteChangedNoRow {
        /// The write, as `table.column` (`orders.refunded_tickets`), the same on every store.
        write: &'static str,
    },
    /// The store is temporarily unable to answer (locked, busy, unreachable). Nothing was
    /// written; the same request may be retried.
    #[error("ledger temporarily unavailable: {0}")]
    Unavailable(String),
    /// The store failed in a way a retry will not fix by itself. Nothing was written.
    #[error("ledger failure: {0}")]
    Internal(String),
    /// The connection to the database failed after `COMMIT` was sent, and the store could not
    /// find out in time whether the commit happened: the request may or may not be recorded.
    ///
    /// Not retryable, on purpose: a retry of a report that carries no gate time (legacy
    /// `confirm_code` + `check_num`) would count its use twice if the first commit did land.
    /// The store opens a `commit_outcome_unknown` anomaly naming the request, recorded as
    /// soon as the database answers again, so an operator can reconcile it.
    #[error("the outcome of request {request_id} is unknown: the database connection failed while committing")]
    OutcomeUnknown {
        /// The request whose write may or may not have been committed.
        request_id: String,
    },
}

/// Why a `used_date` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsedDateProblem {
    /// R23: later than now plus the tolerated clock skew.
    InFuture,
    /// R24: earlier than the order's payment.
    BeforeOrder,
    /// R25: earlier than the order's first valid day.
    BeforeValidFrom,
}

impl std::fmt::Display for UsedDateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InFuture => "in the future",
            Self::BeforeOrder => "before the order was paid",
            Self::BeforeValidFrom => "before the tickets are valid",
        })
    }
}

impl LedgerError {
    /// Whether the same request may succeed if simply sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
