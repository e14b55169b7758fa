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
//! - [`ids`]: identifier newtypes parsed from untrusted text.
//! - [`limits`]: the bound of every count that enters the ledger, and checked arithmetic.
//! - [`model`]: orders, vouchers, apps, audit records and the views the admin API shows.
//! - [`verify`]: the verify command and the rule table R1–R30 as [`plan_verify`].
//! - [`lifecycle`]: issuance, refunds, reversal, anomalies and reconciliation as planners.
//! - [`rejected`]: calls refused before the caller was authenticated, kept apart and bounded.
//! - [`text`]: the bounds on untrusted text the ledger keeps.
//! - [`store`]: the [`LedgerStore`] trait every backend implements.
//! - [`error`]: [`LedgerError`], every way a ledger operation can be refused or fail.

pub mod error;
pub mod ids;
pub mod lifecycle;
pub mod limits;
pub mod model;
pub mod rejected;
pub mod store;
pub mod text;
pub mod verify;

pub use error::{LedgerError, UsedDateProblem};
pub use ids::{
    mask_code, mask_json_code, AppKey, ConfirmCode, OrderId, OutOrderId, MASK_SHOWN_MAX,
};
pub use lifecycle::{
    flag_anomalies, plan_issue, plan_refund, plan_refund_request, plan_reversal, reconcile_diff,
    refusal_anomaly, Anomaly, AnomalyFilter, AnomalyKind, IssueCommand, IssuePlan, IssueResult,
    IssuedVoucher, NewAnomaly, ReconcileLine, RefundCommand, RefundOutcomeStatus, RefundPlan,
    RefundRequest, RefundRequestCommand, RefundRequestPlan, RefundState, Resolution,
    ResolveAnomaly, ReversalCommand, ReversalPlan, StatusChange, UseRecord,
};
pub use model::{
    App, AppAccess, AuditEntry, AuditFilter, AuditOutcome, BatchStats, IpRange, IssueState, NewApp,
    NewOrder, NewVoucher, OrderRecord, OrderStatus, OrderView, PreviousSecret, RateLimit,
    RatePeriod, SecretRotation, StoreMetrics, VoucherRecord,
};
pub use rejected::{RejectedCall, RejectedCallFilter};
pub use store::LedgerStore;
pub use verify::{
    plan_verify, Fingerprint, Flag, OrderRef, OrderSnapshot, OutcomeKind, RequestMeta,
    VerifyCommand, VerifyOrigin, VerifyOutcome, VerifyPlan, VerifyPolicy, VerifyUses,
    VoucherChange, VoucherUse, WriteOffType,
};
