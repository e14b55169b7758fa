//! `taobao.travel.ticket.order.refund` (退票结果通知): the vendor reports whether a refund
//! succeeded and for how many tickets. docs/PROTOCOL.md §4.1 and §4.4 (`refund_type`,
//! `fliggy_refund_flow_id` from the current page; older SDKs send neither).

use top_protocol::{Params, TopError};

use ticket_ledger::limits::MAX_TICKETS;

use crate::wire::{opt, opt_choice, opt_count, req_int};

/// The TOP method name.
pub const METHOD: &str = "taobao.travel.ticket.order.refund";

/// Validated parameters of a refund notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundParams {
    /// Platform order id.
    pub order_id: i64,
    /// 1 refunded, 2 not refunded.
    pub refund_status: i64,
    /// Tickets refunded: 1 to [`MAX_TICKETS`].
    pub refund_num: Option<i64>,
    /// The vendor's batch number (idempotency key).
    pub refund_batch_no: Option<String>,
    /// Why a refund failed.
    pub refund_failure_reason: Option<String>,
    /// 1 full (the default), 3 partial.
    pub refund_type: i64,
    /// The platform's refund request id (required for a partial refund).
    pub fliggy_refund_flow_id: Option<String>,
}

impl RefundParams {
    /// Parses and shape-checks the merged request parameters.
    pub fn from_params(params: &Params) -> Result<Self, TopError> {
        let order_id = req_int(params, "order_id", 1)?;
        let refund_status = opt_choice(params, "refund_status", &[1, 2])?
            .ok_or_else(|| TopError::missing_argument("refund_status"))?;
        let refund_num = opt_count(params, "refund_num", 1, MAX_TICKETS)?;
        let refund_type = opt_choice(params, "refund_type", &[1, 3])?.unwrap_or(1);
        let fliggy_refund_flow_id = opt(params, "fliggy_refund_flow_id").map(str::to_owned);
        if refund_type == 3 && fliggy_refund_flow_id.is_none() {
            return Err(TopError::missing_argument("fliggy_refund_flow_id"));
        }
        Ok(Self {
            order_id,
            refund_status,
            refund_num,
            refund_batch_no: opt(params, "refund_batch_no").map(str::to_owned),
            refund_failure_reason: opt(params, "refund_failure_reason").map(str::to_owned),
            refund_type,
            fliggy_refund_flow_id,
        })
    }

    /// The parameters as a client sends them.
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("order_id", self.order_id.to_string()),
            ("refund_status", self.refund_status.to_string()),
        ];
        if let Some(n) = self.refund_num {
            out.push(("refund_num", n.to_string()));
        }
        for (name, v) in [
            ("refund_batch_no", &self.refund_batch_no),
            ("refund_failure_reason", &self.refund_failure_reason),
            ("fliggy_refund_flow_id", &self.fliggy_refund_flow_id),
        ] {
            if let Some(v) = v {
                out.push((name, v.clone()));
            }
        }
        if self.refund_type != 1 {
            out.push(("refund_type", self.refund_type.to_string()));
        }
        out
    }
}

/// The response: `is_success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundResponse {
    /// Whether the notification was recorded (or recognised as already recorded).
    pub is_success: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::wire::test_support::{params, refusal};

    fn err(pairs: &[(&str, &str)]) -> (u32, String) {
        refusal(RefundParams::from_params, pairs)
    }

    #[test]
    fn gv3_business_params_parse_and_round_trip() {
        let p = RefundParams::from_params(&params(&[
            ("order_id", "2983749123412345"),
            ("refund_status", "2"),
            ("refund_num", "1"),
            ("refund_batch_no", "RB-20240501-01"),
            ("refund_failure_reason", "门票已核销，无法退票"),
        ]))
        .unwrap();
        assert_eq!(p.refund_type, 1);
        let back: Params = p
            .to_params()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(RefundParams::from_params(&back).unwrap(), p);
    }

    #[test]
    fn shape_rules_refuse_precisely() {
        assert_eq!(
            err(&[("refund_status", "1")]),
            (40, "isv.missing-parameter:order_id".into())
        );
        assert_eq!(
            err(&[("order_id", "1")]),
            (40, "isv.missing-parameter:refund_status".into())
        );
        assert_eq!(
            err(&[("order_id", "1"), ("refund_status", "3")]),
            (41, "isv.invalid-parameter:refund_status".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("refund_status", "1"),
                ("refund_num", "0")
            ]),
            (41, "isv.invalid-parameter:refund_num".into())
        );
        for too_many in ["100001", "9223372036854775807"] {
            assert_eq!(
                err(&[
                    ("order_id", "1"),
                    ("refund_status", "1"),
                    ("refund_num", too_many)
                ]),
                (41, "isv.invalid-parameter:refund_num".into()),
                "{too_many}"
            );
        }
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("refund_status", "1"),
                ("refund_type", "2")
            ]),
            (41, "isv.invalid-parameter:refund_type".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("refund_status", "1"),
                ("refund_type", "3")
            ]),
            (40, "isv.missing-parameter:fliggy_refund_flow_id".into())
        );
    }
}
