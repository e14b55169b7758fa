#![doc = include_str!("../README.md")]
//!
//! # What it is for, and what not
//!
//! For vendors' systems calling a TOP gateway: the travel-ticket methods typed
//! ([`TopClient::verify`], [`TopClient::refund`], [`TopClient::issue`]), any other method
//! through [`TopClient::execute`]. The parameter and response types are `ticket-api`'s, the same
//! ones ticketd's server parses, so the two cannot drift apart; the signature, timestamp and
//! envelope rules are `top-protocol`'s. Not here: anything a server does (verifying signatures,
//! the ledger).
//!
//! # Requests
//!
//! Every call is one `POST` of a form-urlencoded body
//! (`Content-Type: application/x-www-form-urlencoded;charset=UTF-8`) carrying the system
//! parameters (`method`, `app_key`, `sign_method`, `timestamp`, `v=2.0`, `format`, and
//! `simplify`, `session`, `partner_id` when configured), the business parameters and `sign`.
//! Empty business values are neither sent nor signed, the form every gateway verifies
//! (docs/PROTOCOL.md §3.2). [`TopClient::signed_params`] shows exactly what would be sent for a
//! given timestamp.
//!
//! # Errors
//!
//! Every failure is a [`ClientError`]. An `error_response` is [`ClientError::Api`], keeping
//! `code`, `msg`, `sub_code`, `sub_msg` and `request_id` ([`ApiError`]);
//! [`ClientError::explain`] gives the meaning of a business `sub_code` from ticketd's error
//! catalogue. Transport failures, non-200 statuses and unreadable bodies have their own
//! variants. [`ClientError::is_retryable`] says whether sending again can help.
//!
//! # Retries
//!
//! TOP has no request nonce: a gateway cannot tell a retry from a new request unless the
//! request itself identifies the event. So the client retries automatically only when **both**
//! hold:
//!
//! 1. the failure is retryable: a transport failure (connection refused or reset, timeout…),
//!    a 429 or 5xx status from something in front of the gateway, or a TOP answer with an
//!    `isp.*` `sub_code` or code 7 (call limit) or 10 (unavailable). `isv.*` answers are the
//!    caller's to fix and are never retried;
//! 2. the call is idempotent on the server:
//!    - **verify** with `write_off_type` 1 (cumulative counts never decrease), or with
//!      `voucher_infos` whose every entry has a `used_date` (the server recognises a repeat by
//!      order, code, `used_date` and `used_quantity`) — see [`retry::verify_is_idempotent`].
//!      A legacy `confirm_code` + `check_num` report is **never** retried: a repeat would be
//!      counted as a new use;
//!    - **refund** with a `refund_batch_no` or a `fliggy_refund_flow_id` (the server answers
//!      a repeat of either as the first time) — see [`retry::refund_is_idempotent`];
//!    - **issue**, always: reporting the same codes again changes nothing, and a different
//!      report is refused, never applied twice;
//!    - **execute** of any other method: never, unless the caller opts in with
//!      [`Call::idempotent`] and [`TopClient::send`].
//!
//! Retries follow [`RetryPolicy`]: exponential backoff with jitter, bounded by a number of
//! attempts and a total time (default: 4 attempts, 200 ms doubling to 5 s, 30 s in all). Each
//! attempt is signed again with a fresh timestamp. When the retries are exhausted the last
//! error is returned.
//!
//! # Modules
//!
//! - [`TopClient`], [`TopClientBuilder`], [`Call`]: configuring and sending.
//! - [`ClientError`], [`ApiError`]: failures.
//! - [`retry`]: [`RetryPolicy`] and which calls are idempotent.

mod client;
mod error;
mod request;
mod response;
pub mod retry;

pub use client::{Call, TopClient, TopClientBuilder};
pub use error::{ApiError, ClientError};
pub use request::Format;
pub use retry::RetryPolicy;
pub use ticket_api;
pub use ticket_api::issue::{IssueParams, IssueResponse, IssueVoucher};
pub use ticket_api::refund::{RefundParams, RefundResponse};
pub use ticket_api::verify::{VerifyParams, VerifyResponse, VoucherInfo};
pub use top_protocol::{Params, SignMethod};
