//! `taobao.travel.ticket.order.refund` (退票结果通知): the vendor reports whether a refund
//! succeeded and for how many tickets. docs/PROTOCOL.md §4.1 and §4.4 (`refund_type`,
//! `fliggy_refund_flow_id` from the current page; older SDKs send neither).

use top_protocol::{Params, TopError};

use ticket_ledger::limits::MAX_TICKETS;

use crate::wire::{opt, opt_choice, opt_count, req_int};

/// The TOP method name.
pub const METHOD: &str = "taobao.travel.ticket.order.refund";

/// `refund_status`: whether the vendor refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    /// 1: refunded.
    Refunded,
    /// 2: not refunded.
    NotRefunded,
}

impl RefundStatus {
    /// Every status, in wire order.
    pub const ALL: [RefundStatus; 2] = [Self::Refunded, Self::NotRefunded];

    /// The wire number.
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Refunded => 1,
            Self::NotRefunded => 2,
        }
    }

    /// The status a wire number names; `None` for any other number.
    pub fn from_wire(n: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_i64() == n)
    }
}

/// `refund_type`: whether the whole order or part of it is refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefundType {
    /// 1: the whole order (the default).
    #[default]
    Full,
    /// 3: part of it, naming the request it settles (`fliggy_refund_flow_id`).
    Partial,
}

impl RefundType {
    /// Every type, in wire order.
    pub const ALL: [RefundType; 2] = [Self::Full, Self::Partial];

    /// The wire number.
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Full => 1,
            Self::Partial => 3,
        }
    }

    /// The type a wire number names; `None` for any other number.
    pub fn from_wire(n: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_i64() == n)
    }
}

/// The refusal of a number outside `allowed`, as `opt_choice` words it.
fn not_one_of(name: &str, allowed: [i64; 2]) -> TopError {
    TopError::invalid_argument(name, &format!("只能为{}/{}之一", allowed[0], allowed[1]))
}

/// Validated parameters of a refund notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundParams {
    /// Platform order id.
    pub order_id: i64,
    /// 1 refunded, 2 not refunded: [`RefundParams::status`] reads it as a [`RefundStatus`]. A
    /// number, because a client may send what the server refuses.
    pub refund_status: i64,
    /// Tickets refunded: 1 to [`MAX_TICKETS`].
    pub refund_num: Option<i64>,
    /// The vendor's batch number (idempotency key).
    pub refund_batch_no: Option<String>,
    /// Why a refund failed.
    pub refund_failure_reason: Option<String>,
    /// 1 full (the default), 3 partial: [`RefundParams::kind`] reads it as a [`RefundType`].
    pub refund_type: i64,
    /// The platform's refund request id (required for a partial refund).
    pub fliggy_refund_flow_id: Option<String>,
}

impl RefundParams {
    /// Parses and shape-checks the merged request parameters.
    pub fn from_params(params: &Params) -> Result<Self, TopError> {
        let order_id = req_int(params, "order_id", 1)?;
        let refund_status = opt_choice(
            params,
            "refund_status",
            &RefundStatus::ALL.map(RefundStatus::as_i64),
        )?
        .ok_or_else(|| TopError::missing_argument("refund_status"))?;
        let refund_num = opt_count(params, "refund_num", 1, MAX_TICKETS)?;
        let refund_type = opt_choice(
            params,
            "refund_type",
            &RefundType::ALL.map(RefundType::as_i64),
        )?
        .unwrap_or(RefundType::default().as_i64());
        let fliggy_refund_flow_id = opt(params, "fliggy_refund_flow_id").map(str::to_owned);
        if RefundType::from_wire(refund_type) == Some(RefundType::Partial)
            && fliggy_refund_flow_id.is_none()
        {
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

    /// `refund_status` as the status it names; refused as the parser refuses it when the
    /// number names none.
    pub fn status(&self) -> Result<RefundStatus, TopError> {
        RefundStatus::from_wire(self.refund_status)
            .ok_or_else(|| not_one_of("refund_status", RefundStatus::ALL.map(RefundStatus::as_i64)))
    }

    /// `refund_type` as the type it names; refused as the parser refuses it when the number
    /// names none.
    pub fn kind(&self) -> Result<RefundType, TopError> {
        RefundType::from_wire(self.refund_type)
            .ok_or_else(|| not_one_of("refund_type", RefundType::ALL.map(RefundType::as_i64)))
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
        if self.refund_type != RefundType::default().as_i64() {
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
    fn wire_numbers_name_their_status_and_type() {
        for status in RefundStatus::ALL {
            assert_eq!(RefundStatus::from_wire(status.as_i64()), Some(status));
        }
        for kind in RefundType::ALL {
            assert_eq!(RefundType::from_wire(kind.as_i64()), Some(kind));
        }
        assert_eq!(
            (RefundStatus::from_wire(3), RefundType::from_wire(2)),
            (None, None)
        );
        let mut p = RefundParams::from_params(&params(&[
            ("order_id", "1"),
            ("refund_status", "2"),
            ("refund_type", "3"),
            ("fliggy_refund_flow_id", "RF1"),
        ]))
        .unwrap();
        assert_eq!(p.status().unwrap(), RefundStatus::NotRefunded);
        assert_eq!(p.kind().unwrap(), RefundType::Partial);
        p.refund_status = 7;
        assert_eq!(
            p.status().unwrap_err().sub_code.as_deref(),
            Some("isv.invalid-parameter:refund_status"),
            "a number a client set by hand is refused as the parser refuses it"
        );
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
