//! Orders, vouchers, apps and audit records: the facts the ledger keeps.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{AppKey, ConfirmCode, OrderId, OutOrderId};
use crate::LedgerError;

/// A vendor application allowed to call the gateway.
#[derive(Clone)]
pub struct App {
    /// The key the vendor sends as `app_key`.
    pub app_key: AppKey,
    /// A human name for the operator's screens.
    pub name: String,
    /// The shared signing secret. Never printed by `Debug`.
    pub secret: String,
    /// When the operator registered it.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("app_key", &self.app_key)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// An app to register.
pub type NewApp = App;

/// A voucher to create with an order: the code and how many uses it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVoucher {
    /// The code the buyer shows.
    pub code: ConfirmCode,
    /// Uses allowed (the issuance `quantity`).
    pub capacity: i64,
}

/// An order as the operator (or, later, the platform's order flow) creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The platform's id.
    pub order_id: OrderId,
    /// The vendor app that fulfils it; only that app may verify it.
    pub app_key: AppKey,
    /// Tickets bought.
    pub quantity: i64,
    /// The vendor's id, when already known.
    pub out_order_id: Option<OutOrderId>,
    /// First instant the tickets may be used (play date), if restricted.
    pub valid_from: Option<DateTime<Utc>>,
    /// Last instant the tickets may be used, if restricted.
    pub valid_until: Option<DateTime<Utc>>,
    /// Codes already issued; empty means the order awaits issuance.
    pub vouchers: Vec<NewVoucher>,
    /// When the order was paid (created); uses before this instant are impossible (R24).
    pub created_at: DateTime<Utc>,
}

impl NewOrder {
    /// Checks what no store can check by constraint alone: positive quantities, distinct codes,
    /// a validity window that is not inside out.
    pub fn validate(&self) -> Result<(), LedgerError> {
        if self.quantity < 1 {
            return Err(LedgerError::InvalidOrder(
                "quantity must be at least 1".into(),
            ));
        }
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until) {
            if from > until {
                return Err(LedgerError::InvalidOrder(
                    "valid_from must not be after valid_until".into(),
                ));
            }
        }
        if self.vouchers.len() > 999 {
            return Err(LedgerError::InvalidOrder(
                "an order has at most 999 vouchers".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for v in &self.vouchers {
            if v.capacity < 1 {
                return Err(LedgerError::InvalidOrder(format!(
                    "voucher {} must allow at least 1 use",
                    v.code.masked()
                )));
            }
            if !seen.insert(v.code.as_str()) {
                return Err(LedgerError::InvalidOrder(format!(
                    "voucher {} is listed twice",
                    v.code.masked()
                )));
            }
        }
        Ok(())
    }
}

/// Where the vendor's issuance (发码) of an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueState {
    /// No report yet: the order waits for codes.
    Awaiting,
    /// Codes were issued; verify may draw them down.
    Issued,
    /// The vendor reported that issuing failed; a later success may still follow.
    Failed,
}

impl IssueState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Awaiting => "awaiting",
            Self::Issued => "issued",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "awaiting" => Some(Self::Awaiting),
            "issued" => Some(Self::Issued),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The order's own row, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    /// The platform's id.
    pub order_id: OrderId,
    /// The owning vendor app.
    pub app_key: AppKey,
    /// The vendor's id, if known.
    pub out_order_id: Option<OutOrderId>,
    /// Tickets bought.
    pub quantity: i64,
    /// Play window start, if any.
    pub valid_from: Option<DateTime<Utc>>,
    /// Play window end, if any.
    pub valid_until: Option<DateTime<Utc>>,
    /// When it was paid (created).
    pub created_at: DateTime<Utc>,
    /// Where issuance stands.
    pub issue_state: IssueState,
    /// The vendor's `describe` of a failed issuance.
    pub issue_describe: Option<String>,
    /// Tickets refunded (settled refunds only).
    pub refunded_tickets: i64,
}

impl OrderRecord {
    /// Uses that `tickets` refunded tickets take out of the order: each ticket carries
    /// `capacity ÷ quantity` uses. Rounded down, so refunding every ticket takes exactly the
    /// whole capacity and never more.
    pub fn uses_of_tickets(&self, tickets: i64, capacity: i64) -> i64 {
        if self.quantity <= 0 {
            return 0;
        }
        tickets.saturating_mul(capacity) / self.quantity
    }

    /// Tickets that have at least one use recorded (rounded up: a ticket partly used can no
    /// longer be refunded).
    pub fn tickets_touched(&self, used: i64, capacity: i64) -> i64 {
        if capacity <= 0 {
            return 0;
        }
        let n = used.saturating_mul(self.quantity);
        (n + capacity - 1) / capacity
    }
}

/// A voucher's counters, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherRecord {
    /// The code.
    pub code: ConfirmCode,
    /// Uses allowed.
    pub capacity: i64,
    /// Uses recorded so far.
    pub used: i64,
}

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
    pub fn derive(order: &OrderRecord, vouchers: &[VoucherRecord], pending_refund: bool) -> Self {
        let capacity: i64 = vouchers.iter().map(|v| v.capacity).sum();
        let used: i64 = vouchers.iter().map(|v| v.used).sum();
        let refunded = order.uses_of_tickets(order.refunded_tickets, capacity);
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

/// Everything the operator sees about one order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderView {
    /// The order's row.
    pub order: OrderRecord,
    /// Its vouchers in issuance order.
    pub vouchers: Vec<VoucherRecord>,
    /// Its history, oldest first.
    pub events: Vec<AuditEntry>,
    /// Its refund requests, oldest first.
    pub refunds: Vec<crate::lifecycle::RefundRequest>,
}

impl OrderView {
    /// The derived status.
    pub fn status(&self) -> OrderStatus {
        let pending = self
            .refunds
            .iter()
            .any(|r| r.state == crate::lifecycle::RefundState::Pending);
        OrderStatus::derive(&self.order, &self.vouchers, pending)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It changed the ledger.
    Accepted,
    /// It repeated something already recorded, or changed nothing by design; answered success.
    Replayed,
    /// It was refused; `reason` says why.
    Rejected,
}

impl AuditOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Replayed => "replayed",
            Self::Rejected => "rejected",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accepted),
            "replayed" => Some(Self::Replayed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// One line of the append-only audit trail: every attempt — accepted, replayed, rejected — and
/// every operator action leaves one.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Position in the trail, assigned by the store (0 before it is stored).
    pub seq: i64,
    /// The request that caused it (TOP `request_id`, or the admin request's id).
    pub request_id: String,
    /// When it was received.
    pub at: DateTime<Utc>,
    /// What was attempted: the TOP method name, or `admin.<action>`.
    pub action: String,
    /// The calling app, when the request named one.
    pub app_key: Option<String>,
    /// The order it named, when it named one (even an unknown or foreign one).
    pub order_id: Option<i64>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Why: `applied`, `replayed`, a TOP sub_code such as `isv.verify-num-exceed`, or a platform
    /// code such as `25 Invalid signature`.
    pub reason: String,
    /// Details as JSON: the uses applied, flags raised, the sanitized request.
    pub detail: serde_json::Value,
    /// The caller's address, when known.
    pub client_ip: Option<String>,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this order's.
    pub order_id: Option<i64>,
    /// Only this app's.
    pub app_key: Option<String>,
    /// Only with this outcome.
    pub outcome: Option<AuditOutcome>,
    /// Only entries with `seq` greater than this (paging).
    pub after_seq: Option<i64>,
    /// At most this many (the store caps it at 1000).
    pub limit: Option<u32>,
}
