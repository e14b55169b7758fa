//! The business error catalogue: every `code` 50 refusal ticketd sends, with a stable
//! `sub_code`, the Chinese `sub_msg` vendors see, what it means, and whether a retry can help.
//!
//! The server maps each domain error to exactly one entry; `docs/ERRORS.md` is generated from
//! [`BusinessError::ALL`] (a test fails when the file is stale), so the documentation cannot
//! drift from what is sent.

use top_protocol::{PlatformCode, TopError};

/// A business refusal or internal fault, answered as `code` 50 `Remote service error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusinessError {
    /// R4/R6: no such order for this app.
    OrderNotExist,
    /// R5: `out_order_id` names another order than `order_id`.
    OutOrderIdMismatch,
    /// R7: the order cannot be verified in its current state (not issued yet).
    OrderStatusInvalid,
    /// R10: the code was not issued for this order.
    VoucherNotExist,
    /// R13/R19/R27: more uses than the vouchers (or the order) have left.
    VerifyNumExceed,
    /// R23–R25: the gate time is impossible.
    UsedDateInvalid,
    /// R8/R9: the uses asked for belong to refunded (or refunding) tickets.
    TicketRefunded,
    /// An issuance report contradicts the one already recorded.
    IssueConflict,
    /// The `out_order_id` already names another order of the app.
    OutOrderIdDuplicate,
    /// A refund notification with no refund request to settle.
    RefundNotRequested,
    /// A refund notification contradicting how the request was already settled.
    RefundConflict,
    /// More tickets refunded than were asked for or remain unused.
    RefundNumExceed,
    /// The ledger is busy or unreachable right now; nothing was recorded.
    ServiceBusy,
    /// An internal fault; nothing was recorded.
    ServiceError,
    /// The database connection failed while committing and ticketd could not find out in time
    /// whether the request was recorded. Deliberately not `isp.*`: SDKs retry those by
    /// themselves, and a retried legacy report would count its use twice had the commit landed.
    CommitOutcomeUnknown,
}

/// How an entry is documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The `sub_code`.
    pub sub_code: &'static str,
    /// The Chinese `sub_msg` (details may be appended after a colon).
    pub sub_msg: &'static str,
    /// What it means, in English.
    pub meaning: &'static str,
    /// When ticketd sends it.
    pub when: &'static str,
    /// Whether sending the same request again later can succeed.
    pub retryable: bool,
}

impl BusinessError {
    /// Every entry, in documentation order.
    pub const ALL: &'static [BusinessError] = &[
        Self::OrderNotExist,
        Self::OutOrderIdMismatch,
        Self::OrderStatusInvalid,
        Self::VoucherNotExist,
        Self::VerifyNumExceed,
        Self::UsedDateInvalid,
        Self::TicketRefunded,
        Self::IssueConflict,
        Self::OutOrderIdDuplicate,
        Self::RefundNotRequested,
        Self::RefundConflict,
        Self::RefundNumExceed,
        Self::ServiceBusy,
        Self::ServiceError,
        Self::CommitOutcomeUnknown,
    ];

    /// The documented entry.
    pub fn entry(self) -> Entry {
        match self {
            Self::OrderNotExist => Entry {
                sub_code: "isv.order-not-exist",
                sub_msg: "订单不存在",
                meaning: "No order with this order_id (or out_order_id) exists for the calling app.",
                when: "The order is unknown, or belongs to another vendor app (answered identically, so \
                       order ids cannot be probed).",
                retryable: false,
            },
            Self::OutOrderIdMismatch => Entry {
                sub_code: "isv.out-order-id-mismatch",
                sub_msg: "外部订单号与订单不匹配",
                meaning: "order_id and out_order_id name different orders.",
                when: "Both keys were sent and the order's recorded out_order_id differs.",
                retryable: false,
            },
            Self::OrderStatusInvalid => Entry {
                sub_code: "isv.order-status-invalid",
                sub_msg: "订单状态不允许核销",
                meaning: "The order cannot be verified in its current state.",
                when: "No codes have been issued for the order yet.",
                retryable: false,
            },
            Self::VoucherNotExist => Entry {
                sub_code: "isv.voucher-not-exist",
                sub_msg: "核销码不存在",
                meaning: "A confirm_code was not issued for this order. Nothing in the request was applied.",
                when: "Any entry of voucher_infos, or the legacy confirm_code, is not one of the order's codes.",
                retryable: false,
            },
            Self::VerifyNumExceed => Entry {
                sub_code: "isv.verify-num-exceed",
                sub_msg: "核销数量超过可用数量",
                meaning: "The request would use a code (or the order) beyond what remains. Nothing in the \
                          request was applied; sub_msg says how many uses remain.",
                when: "Delta or cumulative counts beyond a code's capacity, an order-level check_num beyond \
                       the order's remaining uses, or a total_num above the uses sold.",
                retryable: false,
            },
            Self::UsedDateInvalid => Entry {
                sub_code: "isv.used-date-invalid",
                sub_msg: "核销时间无效",
                meaning: "A used_date is impossible for this order.",
                when: "used_date lies more than the allowed clock skew in the future, before the order was \
                       paid, or before the tickets' first valid day.",
                retryable: false,
            },
            Self::TicketRefunded => Entry {
                sub_code: "isv.ticket-refunded",
                sub_msg: "门票已退票，不可核销",
                meaning: "The uses asked for belong to refunded tickets, or to tickets a pending refund \
                          holds. Nothing was applied; the attempt is recorded as an anomaly for the operator.",
                when: "Every ticket of the order is refunded, or the order's uses left after refunds do not \
                       cover the request, or a refund is pending and the uses are dated after it was requested.",
                retryable: false,
            },
            Self::IssueConflict => Entry {
                sub_code: "isv.issue-conflict",
                sub_msg: "发码结果与已记录的不一致",
                meaning: "The issuance report contradicts the one already recorded.",
                when: "Codes or quantities differ from an earlier successful report, a code is listed twice, \
                       or a failure is reported after a success.",
                retryable: false,
            },
            Self::OutOrderIdDuplicate => Entry {
                sub_code: "isv.out-order-id-duplicate",
                sub_msg: "外部订单号已被其他订单使用",
                meaning: "The out_order_id already names another order of the same vendor app.",
                when: "An issuance report gives an order the out_order_id of another order.",
                retryable: false,
            },
            Self::RefundNotRequested => Entry {
                sub_code: "isv.refund-not-requested",
                sub_msg: "没有对应的退票申请",
                meaning: "No refund request matches the notification. Nothing was applied; it is recorded as \
                          an anomaly.",
                when: "fliggy_refund_flow_id names no request of the order, or none is given and no request \
                       is pending.",
                retryable: false,
            },
            Self::RefundConflict => Entry {
                sub_code: "isv.refund-conflict",
                sub_msg: "退票结果与已记录的不一致",
                meaning: "The request (or refund_batch_no) was already settled with another result.",
                when: "A second notification for the same flow id or batch number differs in refund_status \
                       or refund_num.",
                retryable: false,
            },
            Self::RefundNumExceed => Entry {
                sub_code: "isv.refund-num-exceed",
                sub_msg: "退票数量超过可退数量",
                meaning: "More tickets than were requested, or than remain unused, would be refunded.",
                when: "refund_num exceeds the request's quantity, or uses recorded meanwhile leave fewer \
                       unused tickets (recorded as an anomaly).",
                retryable: false,
            },
            Self::ServiceBusy => Entry {
                sub_code: "isp.service-busy",
                sub_msg: "服务繁忙，请稍后重试",
                meaning: "The ledger could not take the request right now. Nothing was recorded.",
                when: "The database is locked, timed out or unreachable, or its disk is full.",
                retryable: true,
            },
            Self::ServiceError => Entry {
                sub_code: "isp.service-error",
                sub_msg: "系统错误，请稍后重试",
                meaning: "An internal fault. Nothing was recorded; the operator's logs carry the request_id.",
                when: "An unexpected storage failure; the database disagreed with what the ledger read \
                       (a write that must change one row changed none: recorded as an anomaly); or the \
                       order's stored counts are beyond the ledger's bounds.",
                retryable: true,
            },
            Self::CommitOutcomeUnknown => Entry {
                sub_code: "isv.commit-outcome-unknown",
                sub_msg: "处理结果未知，请勿自动重试，请联系平台核对",
                meaning: "The ledger's database connection failed while the request was being committed, and \
                          ticketd could not find out within a few seconds whether it was recorded: it may or may \
                          not have been. An anomaly naming the request_id is opened for the operator, who \
                          reconciles it. Not an isp. code, so SDKs do not retry it by themselves.",
                when: "PostgreSQL or MySQL/MariaDB only: the connection dropped between COMMIT and its \
                       answer, and the database stayed unreachable (or the request's rows locked) past the \
                       resolution bound. A report with used_date (or write_off_type 1) may be sent again \
                       safely; a legacy confirm_code + check_num report must not be, until the operator has \
                       checked.",
                retryable: false,
            },
        }
    }

    /// The `error_response` to send, with an optional detail appended to `sub_msg`.
    pub fn to_top_error(self, detail: Option<&str>) -> TopError {
        let e = self.entry();
        let sub_msg = match detail {
            Some(d) if !d.is_empty() => format!("{}: {d}", e.sub_msg),
            _ => e.sub_msg.to_owned(),
        };
        TopError::business(e.sub_code, sub_msg)
    }

    /// Finds the entry a `sub_code` belongs to (for clients explaining an answer).
    pub fn from_sub_code(sub_code: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|b| b.entry().sub_code == sub_code)
    }
}

/// Renders `docs/ERRORS.md`: the platform codes ticketd sends and the business catalogue.
pub fn errors_markdown() -> String {
    let mut out = String::from(
        "# ticketd error reference\n\n\
         <!-- Generated from crates/ticket-api/src/catalogue.rs by \
         `UPDATE_DOCS=1 cargo test -p ticket-api`; do not edit by hand. -->\n\n\
         Every refusal is an `error_response` with HTTP status 200 (TOP clients break on any other \
         status). Its `code` says which layer refused; business refusals are `code` 50 with a \
         `sub_code`. A `sub_code` starting with `isv.` is the caller's to fix: sending the same \
         request again gives the same answer. One starting with `isp.` is ticketd's: nothing was \
         recorded and the same request may be retried after a pause. One answer is neither: \
         `isv.commit-outcome-unknown` means ticketd cannot tell whether the request was recorded, \
         so it must not be retried blindly (see its row).\n\n\
         ## Platform codes\n\n\
         Checked in this order: HTTP verb → method → format → app_key → sign → signature → \
         timestamp → version → business parameters → ledger.\n\n\
         | code | msg | when ticketd sends it | retry? |\n|---|---|---|---|\n",
    );
    let platform: &[(PlatformCode, &str)] = &[
        (PlatformCode::HttpActionNotAllowed, "HTTP verb other than GET or POST"),
        (PlatformCode::MissingMethod, "no `method`"),
        (PlatformCode::InvalidMethod, "`method` is not one ticketd implements"),
        (PlatformCode::InvalidFormat, "`format` is neither `json` nor `xml` (answered in XML)"),
        (PlatformCode::MissingAppKey, "no `app_key`"),
        (PlatformCode::InvalidAppKey, "`app_key` is not registered"),
        (PlatformCode::MissingSignature, "no `sign`"),
        (PlatformCode::InvalidSignature, "the signature does not match, or `sign_method` is not `md5`, `hmac` or `hmac-sha256`"),
        (PlatformCode::MissingTimestamp, "no `timestamp`"),
        (PlatformCode::InvalidTimestamp, "`timestamp` is neither `yyyy-MM-dd HH:mm:ss` (UTC+8) nor epoch milliseconds, or is more than the allowed window (default 600 s) away from the server's clock"),
        (PlatformCode::MissingVersion, "no `v`"),
        (PlatformCode::UnsupportedVersion, "`v` is not `2.0`"),
        (PlatformCode::MissingRequiredArguments, "a required business parameter is missing; `sub_code` is `isv.missing-parameter:<name>`"),
        (PlatformCode::InvalidArguments, "a business parameter is malformed, or a parameter is repeated; `sub_code` is `isv.invalid-parameter:<name>` and `sub_msg` says what is wrong"),
        (PlatformCode::ParameterError, "the request body cannot be parsed (broken multipart, unsupported content type, too many parameters)"),
        (PlatformCode::InvalidEncoding, "a charset other than UTF-8 is declared, or the parameters are not valid UTF-8"),
        (PlatformCode::RemoteServiceError, "business refusal or internal fault: see the catalogue below"),
    ];
    for (code, when) in platform {
        let retry = if *code == PlatformCode::RemoteServiceError {
            "see sub_code"
        } else {
            "no"
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            code.code(),
            code.msg(),
            when,
            retry
        ));
    }
    out.push_str(
        "\n## Business catalogue (`code` 50, `msg` \"Remote service error\")\n\n\
         | sub_code | sub_msg | meaning | when | retry? |\n|---|---|---|---|---|\n",
    );
    for b in BusinessError::ALL {
        let e = b.entry();
        let when: String = e.when.split_whitespace().collect::<Vec<_>>().join(" ");
        let meaning: String = e.meaning.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            e.sub_code,
            e.sub_msg,
            meaning,
            when,
            if e.retryable {
                "yes, after a pause"
            } else {
                "no"
            }
        ));
    }
    out.push_str(
        "\n## Replays are not errors\n\n\
         A retried `voucher_infos` entry (same order, code, `used_date` and `used_quantity`) is \
         answered `is_success` true and changes nothing, as is a cumulative report \
         (`write_off_type` 1) equal to or below the recorded count. A legacy report \
         (`confirm_code` + `check_num`) carries no gate time, so its retry cannot be told from a \
         new use and is counted again: vendors that retry should send `voucher_infos` with \
         `used_date`, or `write_off_type` 1.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_codes_are_unique_and_classified_by_prefix() {
        let mut seen = std::collections::HashSet::new();
        for b in BusinessError::ALL {
            let e = b.entry();
            assert!(seen.insert(e.sub_code), "duplicate {}", e.sub_code);
            assert_eq!(
                e.retryable,
                e.sub_code.starts_with("isp."),
                "{}",
                e.sub_code
            );
            assert_eq!(BusinessError::from_sub_code(e.sub_code), Some(*b));
            let top = b.to_top_error(Some("detail"));
            assert_eq!((top.code, top.msg.as_str()), (50, "Remote service error"));
            assert_eq!(top.is_retryable(), e.retryable);
        }
    }

    /// docs/PROTOCOL.md §5.2: taobaopy retries, by itself, exactly these sub codes (its
    /// `RETRY_SUB_CODES`, plus the rate limit ones). An unknown commit outcome must be none of
    /// them, nor any `isp.*` code, or a legacy report would be sent — and counted — again.
    #[test]
    fn an_unknown_commit_outcome_is_not_retried_by_the_sdks() {
        const RETRY_SUB_CODES: &[&str] = &[
            "isp.top-remote-connection-timeout",
            "isp.top-remote-service-unavailable",
            "isp.top-remote-connection-control-error",
            "isp.top-remote-unknown-error",
            "isp.remote-connection-error",
            "isp.service-error",
            "isp.unknown-error",
            "isp.call-limited",
            "accesscontrol.limited-by-api-access-count",
        ];
        let e = BusinessError::CommitOutcomeUnknown.entry();
        assert!(!RETRY_SUB_CODES.contains(&e.sub_code));
        assert!(!e.sub_code.starts_with("isp."));
        assert!(!e.retryable);
        assert!(!BusinessError::CommitOutcomeUnknown
            .to_top_error(None)
            .is_retryable());
    }

    /// docs/ERRORS.md is generated; `UPDATE_DOCS=1 cargo test -p ticket-api` rewrites it.
    #[test]
    fn errors_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ERRORS.md");
        let want = errors_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).expect("write docs/ERRORS.md");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/ERRORS.md is stale: run UPDATE_DOCS=1 cargo test -p ticket-api"
        );
    }
}
