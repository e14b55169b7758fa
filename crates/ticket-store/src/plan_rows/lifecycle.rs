//! The rows of every write of an order's life but verifies (order creation, issuance, refund
//! requests and notifications, reversals) and of an anomaly's resolution.

use ticket_ledger::{
    AuditEntry, ConfirmCode, IssueCommand, IssuePlan, IssueResult, LedgerError, NewOrder,
    OrderSnapshot, OutOrderId, OutcomeKind, RefundCommand, RefundPlan, RefundRequestCommand,
    RefundRequestPlan, ResolutionPlan, ResolveAnomaly, ReversalCommand, ReversalPlan,
};

use super::{event_steps, AuditRow, Check, Param, Rows, Step, WriteRow};
use crate::rows::{
    ms, WRITE_ANOMALY_RESOLUTION, WRITE_ISSUE_STATE, WRITE_REFUNDED_TICKETS, WRITE_REFUND_STATE,
    WRITE_USE_REVERSED, WRITE_VOUCHER_USED,
};
use crate::statements;

/// A new order: its row, its codes (in list order) and its creation entry.
#[derive(Debug, Clone)]
pub(crate) struct OrderRows {
    pub(crate) order: OrderRow,
    pub(crate) vouchers: Vec<VoucherRow>,
    pub(crate) audit: AuditRow,
}

impl OrderRows {
    pub(crate) fn of(order: &NewOrder, audit: &AuditEntry) -> Self {
        let order_id = order.order_id.get();
        Self {
            order: OrderRow {
                order_id,
                app_key: order.app_key.as_str().to_owned(),
                out_order_id: order.out_order_id.as_ref().map(|o| o.as_str().to_owned()),
                quantity: order.quantity,
                valid_from_ms: order.valid_from.map(ms),
                valid_until_ms: order.valid_until.map(ms),
                created_at_ms: ms(order.created_at),
                issue_state: order.first_issue_state().as_str(),
            },
            vouchers: order
                .vouchers
                .iter()
                .enumerate()
                .map(|(seq, v)| VoucherRow::new(order_id, seq, &v.code, v.capacity, None, None))
                .collect(),
            audit: AuditRow::of(0, audit.clone()),
        }
    }
}

impl Rows for OrderRows {
    fn steps(&self) -> Vec<Step<'_>> {
        std::iter::once(Step::of(&self.order, Check::NewOrder))
            .chain(Step::each(&self.vouchers, |_| Check::Nothing))
            .chain([Step::of(&self.audit, Check::Nothing)])
            .chain(event_steps(std::slice::from_ref(&self.audit), &[]))
            .collect()
    }
}

/// An order's own row as created.
#[derive(Debug, Clone)]
pub(crate) struct OrderRow {
    order_id: i64,
    app_key: String,
    out_order_id: Option<String>,
    quantity: i64,
    valid_from_ms: Option<i64>,
    valid_until_ms: Option<i64>,
    created_at_ms: i64,
    issue_state: &'static str,
}

impl WriteRow for OrderRow {
    const SQL: &'static str = statements::INSERT_ORDER;
    const DURING: &'static str = "creating an order";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::int(self.order_id),
            Param::text(&self.app_key),
            Param::opt_text(self.out_order_id.as_ref()),
            Param::int(self.quantity),
            Param::Int(self.valid_from_ms),
            Param::Int(self.valid_until_ms),
            Param::int(self.created_at_ms),
            Param::text(self.issue_state),
        ]
    }
}

/// An issued code, unused.
#[derive(Debug, Clone)]
pub(crate) struct VoucherRow {
    order_id: i64,
    code: ConfirmCode,
    /// Its place among the order's codes (issuance order).
    seq: i64,
    capacity: i64,
    voucher_type: Option<i64>,
    /// JSON text.
    extras: Option<String>,
}

impl VoucherRow {
    fn new(
        order_id: i64,
        seq: usize,
        code: &ConfirmCode,
        capacity: i64,
        voucher_type: Option<i64>,
        extras: Option<String>,
    ) -> Self {
        Self {
            order_id,
            code: code.clone(),
            seq: i64::try_from(seq).unwrap_or(i64::MAX),
            capacity,
            voucher_type,
            extras,
        }
    }
}

impl WriteRow for VoucherRow {
    const SQL: &'static str = statements::INSERT_VOUCHER;
    const DURING: &'static str = "issuing a voucher";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::int(self.order_id),
            Param::text(self.code.as_str()),
            Param::int(self.seq),
            Param::int(self.capacity),
            Param::Int(self.voucher_type),
            Param::opt_text(self.extras.as_ref()),
        ]
    }
}

/// What an issuance report writes: the order's issuance (when it changes), the codes after
/// those the order holds, the entries.
#[derive(Debug, Clone)]
pub(crate) struct IssueRows {
    pub(crate) state: Option<IssueStateRow>,
    pub(crate) vouchers: Vec<VoucherRow>,
    pub(crate) audit: Vec<AuditRow>,
}

impl IssueRows {
    pub(crate) fn of(snapshot: &OrderSnapshot, plan: &IssuePlan, cmd: &IssueCommand) -> Self {
        let order_id = cmd.order_id.get();
        let changes = plan.kind == OutcomeKind::Applied || plan.set_out_order_id.is_some();
        let first = snapshot.vouchers.len();
        Self {
            state: changes.then(|| IssueStateRow {
                order_id,
                state: plan.state.as_str(),
                describe: plan.describe.clone(),
                attributes: match &cmd.result {
                    IssueResult::Issued(_) => cmd.attributes.clone(),
                    IssueResult::Failed { .. } => None,
                },
                out_order_id: plan
                    .set_out_order_id
                    .as_ref()
                    .map(|o| OutOrderId::as_str(o).to_owned()),
            }),
            vouchers: plan
                .vouchers
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    VoucherRow::new(
                        order_id,
                        first + i,
                        &v.code,
                        v.capacity,
                        v.voucher_type,
                        v.extras.clone(),
                    )
                })
                .collect(),
            audit: AuditRow::all(plan.audit_entries(snapshot, cmd)),
        }
    }
}

impl Rows for IssueRows {
    fn steps(&self) -> Vec<Step<'_>> {
        let state = self.state.iter().map(|state| {
            Step::of(
                state,
                Check::OneRowUnique(WRITE_ISSUE_STATE, LedgerError::OutOrderIdTaken),
            )
        });
        state
            .chain(Step::each(&self.vouchers, |_| Check::Nothing))
            .chain(Step::each(&self.audit, |_| Check::Nothing))
            .chain(event_steps(&self.audit, &[]))
            .collect()
    }
}

/// An order's issuance; a `None` keeps what is stored.
#[derive(Debug, Clone)]
pub(crate) struct IssueStateRow {
    order_id: i64,
    state: &'static str,
    describe: Option<String>,
    /// `attribute_map` as received (JSON text).
    attributes: Option<String>,
    out_order_id: Option<String>,
}

impl WriteRow for IssueStateRow {
    const SQL: &'static str = statements::UPDATE_ISSUE;
    const DURING: &'static str = "recording an issuance";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::text(self.state),
            Param::opt_text(self.describe.as_ref()),
            Param::opt_text(self.attributes.as_ref()),
            Param::opt_text(self.out_order_id.as_ref()),
            Param::int(self.order_id),
        ]
    }
}

/// A refund request opened, and its entries.
#[derive(Debug, Clone)]
pub(crate) struct RefundRequestRows {
    pub(crate) request: RefundRequestRow,
    pub(crate) audit: Vec<AuditRow>,
}

impl RefundRequestRows {
    pub(crate) fn of(
        snapshot: &OrderSnapshot,
        plan: &RefundRequestPlan,
        cmd: &RefundRequestCommand,
    ) -> Self {
        let r = &plan.request;
        Self {
            request: RefundRequestRow {
                flow_id: r.flow_id.clone(),
                order_id: cmd.order_id.get(),
                quantity: r.quantity,
                requested_at_ms: ms(r.requested_at),
                request_id: cmd.meta.request_id.clone(),
            },
            audit: AuditRow::all(plan.audit_entries(snapshot, cmd)),
        }
    }
}

impl Rows for RefundRequestRows {
    fn steps(&self) -> Vec<Step<'_>> {
        std::iter::once(Step::of(&self.request, Check::Nothing))
            .chain(Step::each(&self.audit, |_| Check::Nothing))
            .chain(event_steps(&self.audit, &[]))
            .collect()
    }
}

/// A pending refund request.
#[derive(Debug, Clone)]
pub(crate) struct RefundRequestRow {
    flow_id: String,
    order_id: i64,
    quantity: i64,
    requested_at_ms: i64,
    request_id: String,
}

impl WriteRow for RefundRequestRow {
    const SQL: &'static str = statements::INSERT_REFUND_REQUEST;
    const DURING: &'static str = "opening a refund request";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::text(&self.flow_id),
            Param::int(self.order_id),
            Param::int(self.quantity),
            Param::int(self.requested_at_ms),
            Param::text(&self.request_id),
        ]
    }
}

/// What a refund notification writes: when applied, the request settled and the order's
/// refunded tickets counted; the entries always.
#[derive(Debug, Clone)]
pub(crate) struct RefundRows {
    pub(crate) settlement: Option<(SettlementRow, RefundedTicketsRow)>,
    pub(crate) audit: Vec<AuditRow>,
}

impl RefundRows {
    pub(crate) fn of(snapshot: &OrderSnapshot, plan: &RefundPlan, cmd: &RefundCommand) -> Self {
        let settlement = (plan.kind == OutcomeKind::Applied).then(|| {
            (
                SettlementRow {
                    flow_id: plan.flow_id.clone(),
                    state: plan.state.as_str(),
                    refunded_tickets: plan.refunded_tickets,
                    batch_no: cmd.batch_no.clone(),
                    failure_reason: cmd.failure_reason.clone(),
                    settled_at_ms: ms(cmd.meta.received_at),
                    settled_by: cmd.meta.request_id.clone(),
                },
                RefundedTicketsRow {
                    order_id: cmd.order_id.get(),
                    tickets: plan.refunded_tickets,
                },
            )
        });
        Self {
            settlement,
            audit: AuditRow::all(plan.audit_entries(snapshot, cmd)),
        }
    }
}

/// Both writes of a settlement must change their row: the request is pending and the
/// refunded tickets fit the order, as planned.
impl Rows for RefundRows {
    fn steps(&self) -> Vec<Step<'_>> {
        let settlement = self.settlement.iter().flat_map(|(settlement, refunded)| {
            [
                Step::of(
                    settlement,
                    Check::OneRowUnique(WRITE_REFUND_STATE, LedgerError::RefundConflict),
                ),
                Step::of(refunded, Check::OneRow(WRITE_REFUNDED_TICKETS)),
            ]
        });
        settlement
            .chain(Step::each(&self.audit, |_| Check::Nothing))
            .chain(event_steps(&self.audit, &[]))
            .collect()
    }
}

/// A pending refund request settled.
#[derive(Debug, Clone)]
pub(crate) struct SettlementRow {
    flow_id: String,
    state: &'static str,
    refunded_tickets: i64,
    batch_no: Option<String>,
    failure_reason: Option<String>,
    settled_at_ms: i64,
    /// The request that settled it.
    settled_by: String,
}

impl WriteRow for SettlementRow {
    const SQL: &'static str = statements::SETTLE_REFUND;
    const DURING: &'static str = "settling a refund";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::text(self.state),
            Param::int(self.refunded_tickets),
            Param::opt_text(self.batch_no.as_ref()),
            Param::opt_text(self.failure_reason.as_ref()),
            Param::int(self.settled_at_ms),
            Param::text(&self.settled_by),
            Param::text(&self.flow_id),
        ]
    }
}

/// Tickets counted as refunded on an order, only while they fit its quantity.
#[derive(Debug, Clone)]
pub(crate) struct RefundedTicketsRow {
    order_id: i64,
    tickets: i64,
}

impl WriteRow for RefundedTicketsRow {
    const SQL: &'static str = statements::COUNT_REFUNDED_TICKETS;
    const DURING: &'static str = "counting refunded tickets";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::int(self.tickets),
            Param::int(self.order_id),
            Param::int(self.tickets),
        ]
    }
}

/// What a reversal writes: the code's count, the logged uses it takes back, the entries.
#[derive(Debug, Clone)]
pub(crate) struct ReversalRows {
    pub(crate) count: ReversalCountRow,
    pub(crate) reversed: Vec<UseReversedRow>,
    pub(crate) audit: Vec<AuditRow>,
}

impl ReversalRows {
    pub(crate) fn of(snapshot: &OrderSnapshot, plan: &ReversalPlan, cmd: &ReversalCommand) -> Self {
        Self {
            count: ReversalCountRow {
                order_id: cmd.order_id.get(),
                code: plan.code.clone(),
                uses: plan.quantity,
            },
            reversed: plan
                .takes
                .iter()
                .map(|&(use_id, uses)| UseReversedRow { use_id, uses })
                .collect(),
            audit: AuditRow::all(plan.audit_entries(snapshot, cmd)),
        }
    }
}

impl Rows for ReversalRows {
    fn steps(&self) -> Vec<Step<'_>> {
        std::iter::once(Step::of(&self.count, Check::OneRow(WRITE_VOUCHER_USED)))
            .chain(Step::each(&self.reversed, |_| {
                Check::OneRow(WRITE_USE_REVERSED)
            }))
            .chain(Step::each(&self.audit, |_| Check::Nothing))
            .chain(event_steps(&self.audit, &[]))
            .collect()
    }
}

/// Uses of a voucher given back, never below zero.
#[derive(Debug, Clone)]
pub(crate) struct ReversalCountRow {
    order_id: i64,
    code: ConfirmCode,
    uses: i64,
}

impl WriteRow for ReversalCountRow {
    const SQL: &'static str = statements::REVERSE_USES;
    const DURING: &'static str = "reversing uses";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::int(self.uses),
            Param::int(self.order_id),
            Param::text(self.code.as_str()),
            Param::int(self.uses),
        ]
    }
}

/// Uses of one logged use marked reversed, never more than it logged.
#[derive(Debug, Clone)]
pub(crate) struct UseReversedRow {
    use_id: i64,
    uses: i64,
}

impl WriteRow for UseReversedRow {
    const SQL: &'static str = statements::MARK_USES_REVERSED;
    const DURING: &'static str = "marking uses reversed";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::int(self.uses),
            Param::int(self.use_id),
            Param::int(self.uses),
        ]
    }
}

/// An operator's resolution of an open anomaly, and its entry.
#[derive(Debug, Clone)]
pub(crate) struct ResolutionRows {
    pub(crate) resolution: ResolutionRow,
    pub(crate) audit: AuditRow,
}

impl ResolutionRows {
    /// The rows of the ledger's decision on `cmd` ([`ticket_ledger::plan_resolution`]).
    pub(crate) fn of(plan: &ResolutionPlan, cmd: &ResolveAnomaly) -> Self {
        let entry = plan.audit.clone();
        Self {
            resolution: ResolutionRow {
                id: cmd.id,
                resolution: cmd.resolution.as_str(),
                note: cmd.note.clone(),
                resolved_at_ms: ms(cmd.meta.received_at),
                resolved_by: cmd.meta.request_id.clone(),
            },
            audit: AuditRow::of(0, entry),
        }
    }
}

impl Rows for ResolutionRows {
    fn steps(&self) -> Vec<Step<'_>> {
        [
            Step::of(&self.resolution, Check::OneRow(WRITE_ANOMALY_RESOLUTION)),
            Step::of(&self.audit, Check::Nothing),
        ]
        .into_iter()
        .chain(event_steps(std::slice::from_ref(&self.audit), &[]))
        .collect()
    }
}

/// An open anomaly resolved.
#[derive(Debug, Clone)]
pub(crate) struct ResolutionRow {
    id: i64,
    resolution: &'static str,
    note: String,
    resolved_at_ms: i64,
    /// The resolving request.
    resolved_by: String,
}

impl WriteRow for ResolutionRow {
    const SQL: &'static str = statements::RESOLVE_ANOMALY;
    const DURING: &'static str = "resolving an anomaly";

    fn params(&self) -> impl IntoIterator<Item = Param<'_>> {
        [
            Param::text(self.resolution),
            Param::text(&self.note),
            Param::int(self.resolved_at_ms),
            Param::text(&self.resolved_by),
            Param::int(self.id),
        ]
    }
}
