//! The ticket ledger: what ticketd knows about every order's vouchers, and the rules that decide
//! whether a vendor's redemption report may change it.
//!
//! This crate is the domain. It knows nothing of HTTP, TOP envelopes or SQL: the gateway turns
//! wire parameters into a [`VerifyCommand`], a [`LedgerStore`] loads an [`OrderSnapshot`], and
//! [`plan_verify`] decides — as a pure function — what changes. Keeping the decision pure is what
//! lets one rule set serve SQLite, PostgreSQL and MySQL alike, and lets the behaviour suite
//! (the `ticket-ledger-suite` crate) hold every store to the same answers.
//!
//! # Glossary
//!
//! | English (code) | 中文 | Meaning |
//! |---|---|---|
//! | order | 订单 | A paid Fliggy order, named by `order_id` (platform) and `out_order_id` (vendor). |
//! | ticket | 门票 | One admission right bought; an order has `quantity` tickets. |
//! | voucher / confirm code | 凭证 / 核销码 | A code the buyer shows at the gate; it allows `capacity` uses. |
//! | issue | 发码 | The vendor creates the codes for a paid order. |
//! | verify | 核销 | The vendor reports that codes were used at the gate. |
//! | use | 核销次数 | One redemption of capacity 1. |
//! | refund | 退票 | Unused tickets are given back to the buyer. |
//! | reverse | 撤销核销 | An operator gives a wrongly recorded use back. |
//! | delta / cumulative | `write_off_type` 0 / 1 | A report of this time's uses / of the total so far. |
//!
//! # Modules
//!
//! The facts the ledger keeps:
//!
//! - [`ids`]: identifier newtypes parsed from untrusted text.
//! - [`limits`]: the bound of every count that enters the ledger, and checked arithmetic.
//! - [`app`]: vendor apps, their secrets, rate limits and IP allow-lists.
//! - [`order`]: orders and vouchers as stored, the operator's order view, and order creation
//!   ([`plan_order_creation`]).
//! - [`status`]: an order's derived status and the transitions plans report.
//! - [`audit`]: the audit trail, its actions ([`AuditAction`]) and request metadata.
//! - [`listing`]: the operator's list of orders ([`OrderFilter`], [`OrderPage`]), paged newest
//!   first, and the walk every store makes to answer it ([`OrderScan`]).
//! - [`metrics`]: ledger totals and batching counters for `/metrics`.
//!
//! Every step of an order's life, each a pure planner over an [`OrderSnapshot`] ([`snapshot`])
//! that a store loads inside the transaction applying the plan, so all backends share one set
//! of rules:
//!
//! - [`issue`]: issuance reports ([`plan_issue`]).
//! - [`verify`]: the verify command and the rule table R1–R30 as [`plan_verify`].
//! - [`refund`]: refund requests and notifications ([`plan_refund_request`], [`plan_refund`]).
//! - [`reversal`]: operator reversals ([`plan_reversal`]).
//! - [`reconcile`]: the vendor's counts compared and applied whole ([`plan_reconcile`]).
//! - [`anomaly`]: anomalies raised by plans and refusals, and their resolution
//!   ([`plan_resolution`]).
//!
//! And around them:
//!
//! - [`rejected`]: calls refused before the caller was authenticated, kept apart and bounded.
//! - [`text`]: the bounds on untrusted text the ledger keeps.
//! - [`store`]: the [`LedgerStore`] trait every backend implements.
//! - [`error`]: [`LedgerError`], every way a ledger operation can be refused or fail.

pub mod anomaly;
pub mod app;
pub mod audit;
pub mod error;
pub mod events;
pub mod ids;
pub mod issue;
pub mod limits;
pub mod listing;
pub mod metrics;
pub mod order;
pub mod reconcile;
pub mod refund;
pub mod rejected;
pub mod reversal;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod text;
pub mod verify;

pub use anomaly::{
    flag_anomalies, plan_resolution, refusal_anomaly, Anomaly, AnomalyFilter, AnomalyKind,
    NewAnomaly, Resolution, ResolutionPlan, ResolveAnomaly,
};
pub use app::{
    App, AppAccess, IpRange, NewApp, PreviousSecret, RateLimit, RatePeriod, SecretRotation,
};
pub use audit::{
    AuditAction, AuditEntry, AuditFilter, AuditOutcome, RequestMeta, Summary, ISSUE_ACTION,
    REFUND_ACTION,
};
pub use error::{LedgerError, UsedDateProblem};
pub use events::{Event, EventPage, EventType, NewEvent};
pub use ids::{
    mask_code, mask_json_code, AppKey, ConfirmCode, OrderId, OutOrderId, MASK_SHOWN_MAX,
};
pub use issue::{plan_issue, IssueCommand, IssuePlan, IssueResult, IssuedVoucher};
pub use listing::{
    apps_page_size, OrderCursor, OrderCursorError, OrderFilter, OrderPage, OrderQuery, OrderRead,
    OrderScan, OrderSummary, MAX_APPS_LISTED,
};
pub use metrics::{BatchStats, StoreMetrics};
pub use order::{
    plan_order_creation, IssueState, NewOrder, NewVoucher, OrderCreationPlan, OrderOrigin,
    OrderRecord, OrderView, VoucherRecord,
};
pub use reconcile::{
    plan_reconcile, reconcile_diff, ReconcileCommand, ReconcileLine, ReconcileOutcome,
    ReconcilePlan, ReconcileStep, VendorCount,
};
pub use refund::{
    plan_refund, plan_refund_request, RefundCommand, RefundOutcomeStatus, RefundPlan,
    RefundRequest, RefundRequestCommand, RefundRequestPlan, RefundState,
};
pub use rejected::{RejectedCall, RejectedCallFilter};
pub use reversal::{plan_reversal, ReversalCommand, ReversalPlan, UseRecord};
pub use snapshot::OrderSnapshot;
pub use status::{OrderStatus, StatusChange};
pub use store::LedgerStore;
pub use verify::{
    plan_verify, Fingerprint, Flag, OrderRef, OutcomeKind, VerifyCommand, VerifyOrigin,
    VerifyOutcome, VerifyPlan, VerifyPolicy, VerifyUses, VoucherChange, VoucherUse, WriteOffType,
};
