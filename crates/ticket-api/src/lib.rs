//! The vocabulary ticketd's server and SDK share: which TOP methods exist, their typed
//! parameters and responses, and the catalogue of business errors.
//!
//! Both sides use these types — the server to parse and refuse, the SDK to build requests and
//! read answers — so the two cannot drift apart, as mini-redis's server and client share one
//! set of command types.
//! Wire names keep TOP's spelling (`order_id`, `voucher_infos`, `used_quantity`).
//!
//! Not here: signing and envelopes (`top-protocol`), the rules that need the ledger
//! (`ticket-ledger`), transport (`ticketd`, `top-client`). The bounds on counts are the
//! ledger's (`ticket_ledger::limits`): the parsers refuse a count above them with code 41
//! `isv.invalid-parameter:<name>`, so an impossible count never reaches the ledger.
//!
//! # Modules
//! - [`method`]: the TOP methods ticketd answers.
//! - [`verify`]: `taobao.travel.ticket.order.verify` parameters, with every shape rule that
//!   needs no ledger (R3, R11, R12, R20, R21 and the 999-entry limit).
//! - [`issue`]: `alitrip.travel.ticket.order.create` (成功发码回调) parameters.
//! - [`refund`]: `taobao.travel.ticket.order.refund` (退票结果通知) parameters.
//! - [`catalogue`]: business `sub_code`s with their Chinese `sub_msg`, meaning and retry advice;
//!   `docs/ERRORS.md` is generated from it.

pub mod catalogue;
pub mod issue;
pub mod method;
pub mod refund;
pub mod verify;
mod wire;

pub use catalogue::BusinessError;
pub use issue::{IssueParams, IssueType, IssueVoucher};
pub use method::Method;
pub use refund::{RefundParams, RefundStatus, RefundType};
pub use verify::{VerifyParams, VoucherInfo, WriteOffType};
