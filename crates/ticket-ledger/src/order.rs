//! Orders and their vouchers as the ledger keeps them, the order as the operator sees it, and
//! the first step of an order's life: its creation ([`plan_order_creation`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::audit::{AuditAction, AuditEntry, AuditOutcome, RequestMeta};
use crate::ids::{AppKey, ConfirmCode, OrderId, OutOrderId};
use crate::limits::{self, MAX_CODE_USES, MAX_TICKETS, MAX_VOUCHERS};
use crate::refund::RefundRequest;
use crate::snapshot;
use crate::status::OrderStatus;
use crate::LedgerError;

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
    /// Checks what no store can check by constraint alone: quantities positive and within the
    /// ledger's bounds ([`crate::limits`]), distinct codes, a validity window that is not
    /// inside out. A count above its bound is [`LedgerError::CountTooLarge`] naming the field as
    /// `POST /admin/orders` names it (`quantity`, `vouchers[i].quantity`).
    pub fn validate(&self) -> Result<(), LedgerError> {
        if self.quantity < 1 {
            return Err(LedgerError::InvalidOrder(
                "quantity must be at least 1".into(),
            ));
        }
        limits::at_most(|| "quantity".into(), self.quantity, MAX_TICKETS)?;
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until) {
            if from > until {
                return Err(LedgerError::InvalidOrder(
                    "valid_from must not be after valid_until".into(),
                ));
            }
        }
        if self.vouchers.len() > MAX_VOUCHERS {
            return Err(LedgerError::InvalidOrder(format!(
                "an order has at most {MAX_VOUCHERS} vouchers"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, v) in self.vouchers.iter().enumerate() {
            if v.capacity < 1 {
                return Err(LedgerError::InvalidOrder(format!(
                    "voucher {} must allow at least 1 use",
                    v.code.masked()
                )));
            }
            limits::at_most(
                || format!("vouchers[{i}].quantity"),
                v.capacity,
                MAX_CODE_USES,
            )?;
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
    /// whole capacity and never more. Computed exactly (see [`crate::limits`]); a result that
    /// does not fit an `i64` is [`LedgerError::CountOverflow`].
    pub fn uses_of_tickets(&self, tickets: i64, capacity: i64) -> Result<i64, LedgerError> {
        if self.quantity <= 0 {
            return Ok(0);
        }
        limits::mul_div_floor(tickets, capacity, self.quantity, "uses of refunded tickets")
    }

    /// Tickets that have at least one use recorded (rounded up: a ticket partly used can no
    /// longer be refunded). Computed exactly: in `i64`, `used × quantity + capacity - 1`
    /// wrapped for a code of capacity near `i64::MAX` and made a 2-ticket order show 3
    /// refundable tickets.
    pub fn tickets_touched(&self, used: i64, capacity: i64) -> Result<i64, LedgerError> {
        if capacity <= 0 {
            return Ok(0);
        }
        limits::mul_div_ceil(used, self.quantity, capacity, "tickets touched by uses")
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

/// Everything the operator sees about one order.
///
/// The history is shown in part: an order's audit trail has no upper bound (every retried or
/// refused call of a busy gate adds to it), and a view that carried all of it would cost
/// memory and time in proportion to the order's age. `events` holds the latest
/// [`OrderView::EVENTS_SHOWN`] entries and `events_total` says how many there are; the whole
/// history is read page by page with [`crate::LedgerStore::order_events`].
#[derive(Debug, Clone, PartialEq)]
pub struct OrderView {
    /// The order's row.
    pub order: OrderRecord,
    /// Its vouchers in issuance order.
    pub vouchers: Vec<VoucherRecord>,
    /// Its latest [`OrderView::EVENTS_SHOWN`] audit entries (all of them when it has fewer),
    /// oldest first.
    pub events: Vec<AuditEntry>,
    /// How many audit entries name the order in all, `events` included.
    pub events_total: i64,
    /// Its refund requests, oldest first.
    pub refunds: Vec<RefundRequest>,
}

impl OrderView {
    /// How many of an order's latest events a view carries.
    pub const EVENTS_SHOWN: u32 = 100;

    /// Whether `events` is the order's whole history.
    pub fn events_complete(&self) -> bool {
        i64::try_from(self.events.len()).is_ok_and(|shown| shown >= self.events_total)
    }

    /// The derived status.
    pub fn status(&self) -> OrderStatus {
        OrderStatus::derive(
            &self.order,
            &self.vouchers,
            snapshot::refund_pending(&self.refunds),
        )
    }

    /// Tickets that can still be asked to be refunded, by the rule refund requests are planned
    /// with ([`crate::OrderSnapshot::checked_refundable_tickets`]); an order whose counts are
    /// out of range shows none, since every refund request for it is refused anyway.
    pub fn refundable_tickets(&self) -> i64 {
        snapshot::refundable_tickets(&self.order, &self.vouchers, &self.refunds).unwrap_or(0)
    }
}

/// Who creates an order, which the creation's audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderOrigin {
    /// The operator, through `POST /admin/orders` (or the platform's order flow).
    #[default]
    Operator,
    /// `ticketd serve --demo`, seeding its sample orders.
    DemoSeed,
}

/// What creating an order records: where its issuance starts and the creation's audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderCreationPlan {
    /// The first issuance state: issued when the order comes with its codes, otherwise
    /// awaiting the vendor's issuance report.
    pub issue_state: IssueState,
    /// The entry recording the creation, written in the same transaction as the order.
    pub audit: AuditEntry,
}

/// Decides an order's creation: refuses what [`NewOrder::validate`] refuses, and otherwise
/// names its first issuance state and the audit entry that records it. Whether the order id,
/// the app and the `out_order_id` are free is the store's constraints' decision, made when it
/// writes.
pub fn plan_order_creation(
    order: &NewOrder,
    origin: OrderOrigin,
    meta: &RequestMeta,
) -> Result<OrderCreationPlan, LedgerError> {
    order.validate()?;
    Ok(OrderCreationPlan {
        issue_state: order.first_issue_state(),
        audit: creation_entry(order, origin, meta),
    })
}

impl NewOrder {
    /// Where issuance starts: an order created with its codes is issued, one without them
    /// awaits the vendor's report. What [`plan_order_creation`] plans and every store writes.
    pub fn first_issue_state(&self) -> IssueState {
        if self.vouchers.is_empty() {
            IssueState::Awaiting
        } else {
            IssueState::Issued
        }
    }
}

/// The audit entry recording an order's creation: the operator's says what was created, the
/// demo's only that it was seeded.
fn creation_entry(order: &NewOrder, origin: OrderOrigin, meta: &RequestMeta) -> AuditEntry {
    let (reason, detail) = match (origin, order.first_issue_state()) {
        (OrderOrigin::DemoSeed, _) => ("demo_seed", json!({})),
        (OrderOrigin::Operator, state) => (
            if state == IssueState::Issued {
                "created_issued"
            } else {
                "created_awaiting_issuance"
            },
            json!({
                "quantity": order.quantity,
                "vouchers": order.vouchers.iter().map(|v| json!({
                    "confirm_code": v.code.masked(), "capacity": v.capacity}))
                    .collect::<Vec<_>>(),
            }),
        ),
    };
    AuditEntry {
        seq: 0,
        request_id: meta.request_id.clone(),
        at: meta.received_at,
        action: AuditAction::CreateOrder.as_str().to_owned(),
        app_key: Some(order.app_key.as_str().to_owned()),
        order_id: Some(order.order_id.get()),
        outcome: AuditOutcome::Accepted,
        reason: reason.to_owned(),
        detail,
        client_ip: meta.client_ip.clone(),
    }
}
