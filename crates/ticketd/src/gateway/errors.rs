//! The one place where ledger errors become TOP `error_response`s.
//!
//! The `match` is exhaustive with no catch-all arm, so a new [`LedgerError`] variant does not
//! compile until someone decides what vendors see for it.

use ticket_api::BusinessError;
use ticket_ledger::LedgerError;
use top_protocol::TopError;

/// Maps a ledger refusal or failure to the answer a vendor receives.
pub fn ledger_to_top(e: &LedgerError) -> TopError {
    use BusinessError as B;
    match e {
        LedgerError::OrderNotFound => B::OrderNotExist.to_top_error(None),
        LedgerError::OutOrderIdMismatch => B::OutOrderIdMismatch.to_top_error(None),
        LedgerError::OrderNotIssued => B::OrderStatusInvalid.to_top_error(Some("订单尚未发码")),
        LedgerError::VoucherNotFound { code } => {
            B::VoucherNotExist.to_top_error(Some(&format!("核销码{}", code.masked())))
        }
        LedgerError::LegacyCodeNotInList { .. } => {
            TopError::invalid_argument("confirm_code", "confirm_code不在voucher_infos中")
        }
        LedgerError::CapacityExceeded {
            code,
            requested,
            remaining,
        } => B::VerifyNumExceed.to_top_error(Some(&format!(
            "核销码{}本次核销{}次, 剩余可核销{}次",
            code.masked(),
            requested,
            remaining
        ))),
        LedgerError::OrderCapacityExceeded {
            requested,
            remaining,
        } => B::VerifyNumExceed.to_top_error(Some(&format!(
            "订单本次核销{requested}次, 剩余可核销{remaining}次"
        ))),
        LedgerError::TotalNumExceeds { reported, ledger } => B::VerifyNumExceed.to_top_error(Some(
            &format!("total_num {reported} 超过订单可核销总数 {ledger}"),
        )),
        LedgerError::UsedDateInvalid { used_date, why } => {
            let why = match why {
                ticket_ledger::UsedDateProblem::InFuture => "晚于当前时间",
                ticket_ledger::UsedDateProblem::BeforeOrder => "早于下单时间",
                ticket_ledger::UsedDateProblem::BeforeValidFrom => "早于门票生效时间",
            };
            B::UsedDateInvalid.to_top_error(Some(&format!("{used_date} {why}")))
        }
        LedgerError::OrderRefunded => B::TicketRefunded.to_top_error(Some("订单门票已全部退票")),
        LedgerError::RefundedUsesExceeded {
            requested,
            remaining,
            refund_pending,
        } => B::TicketRefunded.to_top_error(Some(&format!(
            "本次核销{requested}次, 未退票的剩余可核销{remaining}次{}",
            if *refund_pending {
                " (有退票处理中)"
            } else {
                ""
            }
        ))),
        LedgerError::IssueConflict(why) => B::IssueConflict.to_top_error(Some(why)),
        LedgerError::OutOrderIdTaken => B::OutOrderIdDuplicate.to_top_error(None),
        LedgerError::RefundNotRequested => B::RefundNotRequested.to_top_error(None),
        LedgerError::RefundConflict => B::RefundConflict.to_top_error(None),
        LedgerError::RefundNumExceeds { requested, pending } => B::RefundNumExceed
            .to_top_error(Some(&format!("退票{requested}张, 申请退票{pending}张"))),
        LedgerError::RefundExceedsUnused {
            requested,
            refundable,
        } => B::RefundNumExceed.to_top_error(Some(&format!(
            "退票{requested}张, 未使用可退{refundable}张"
        ))),
        // The parsers refuse these first (41 from `ticket-api`); the ledger refuses them again
        // for every caller. `field` is the request's name (`voucher_infos[0].quantity`); the
        // sub_code names its parameter, like every 41.
        LedgerError::CountTooLarge { field, value, max } => {
            let param = field.split(['[', '.']).next().unwrap_or(field);
            TopError::invalid_argument(param, &format!("{field}最大为{max}, 实际为{value}"))
        }
        // The order's stored counts are beyond the bounds (older than them): the vendor's
        // request is not at fault and nothing was written, so the generic fault, logged for
        // the operator.
        LedgerError::CountOverflow { what } => {
            tracing::error!(what, "ledger counts out of range; request refused");
            B::ServiceError.to_top_error(None)
        }
        // Nothing was written and an anomaly records it; the request is planned afresh if sent
        // again, so a retry cannot make it worse. Not the vendor's fault either.
        LedgerError::WriteChangedNoRow { write } => {
            tracing::error!(write, "a ledger write changed no row; request refused");
            B::ServiceError.to_top_error(None)
        }
        LedgerError::Unavailable(msg) => {
            tracing::warn!(error = %msg, "ledger unavailable");
            B::ServiceBusy.to_top_error(None)
        }
        LedgerError::Internal(msg) => {
            tracing::error!(error = %msg, "ledger failure");
            B::ServiceError.to_top_error(None)
        }
        // Not `isp.*`: the official SDKs would resend it by themselves, and a resent legacy
        // report would count its use twice had the commit landed. The store has opened an
        // anomaly naming the request for the operator.
        LedgerError::OutcomeUnknown { request_id } => {
            tracing::error!(%request_id, "ledger commit outcome unknown; answered as such");
            B::CommitOutcomeUnknown.to_top_error(None)
        }
        // Operator-side refusals: a TOP call never creates apps or orders, so reaching these
        // from the gateway is a bug; answer the generic fault and log it.
        LedgerError::AppExists
        | LedgerError::OrderExists
        | LedgerError::UnknownApp
        | LedgerError::InvalidOrder(_)
        | LedgerError::ReversalNotAllowed { .. }
        | LedgerError::VendorCountExceedsCapacity { .. }
        | LedgerError::AnomalyNotFound
        | LedgerError::AnomalyResolved => {
            tracing::error!(error = %e, "admin-only ledger error reached the gateway");
            B::ServiceError.to_top_error(None)
        }
    }
}
