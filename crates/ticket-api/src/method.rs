//! The TOP methods ticketd answers.

/// A TOP method ticketd implements. Unknown names are refused by the gateway with code 22.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `taobao.travel.ticket.order.verify` (门票核销通知).
    Verify,
    /// `taobao.travel.ticket.order.refund` (退票结果通知).
    Refund,
    /// `alitrip.travel.ticket.order.create` (成功发码回调).
    Issue,
}

impl Method {
    /// Every implemented method.
    pub const ALL: &'static [Method] = &[Method::Verify, Method::Refund, Method::Issue];

    /// The TOP method name sent as `method`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Verify => crate::verify::METHOD,
            Self::Refund => crate::refund::METHOD,
            Self::Issue => crate::issue::METHOD,
        }
    }

    /// The business parameters the method reads, besides TOP's system parameters. Anything
    /// else a caller sends is ignored — and not kept in the audit trail, where an unknown
    /// parameter would only be room for a hostile caller to fill.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            Self::Verify => &[
                "order_id",
                "out_order_id",
                "confirm_code",
                "check_num",
                "total_num",
                "return_num",
                "voucher_infos",
                "write_off_type",
            ],
            Self::Refund => &[
                "order_id",
                "refund_status",
                "refund_num",
                "refund_batch_no",
                "refund_failure_reason",
                "refund_type",
                "fliggy_refund_flow_id",
            ],
            Self::Issue => &[
                "order_id",
                "out_order_id",
                "issue_type",
                "describe",
                "voucher_infos",
                "attribute_map",
            ],
        }
    }

    /// Looks a method up by its exact TOP name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|m| m.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.name()), Some(*m));
        }
        assert_eq!(Method::parse("TAOBAO.TRAVEL.TICKET.ORDER.VERIFY"), None);
        assert_eq!(Method::parse("taobao.travel.ticket.order.verify "), None);
    }

    #[test]
    fn every_parameter_a_client_sends_is_a_known_name() {
        use crate::{issue, refund, verify};
        let mut sent: Vec<(Method, &str)> = Vec::new();
        let full_verify = verify::VerifyParams {
            order_id: Some(1),
            out_order_id: Some("O".into()),
            confirm_code: Some("C".into()),
            check_num: Some(1),
            total_num: Some(1),
            return_num: Some(0),
            voucher_infos: Vec::new(),
            write_off_type: 0,
        };
        sent.extend(
            full_verify
                .to_params()
                .iter()
                .map(|(k, _)| (Method::Verify, *k)),
        );
        let full_refund = refund::RefundParams {
            order_id: 1,
            refund_status: 1,
            refund_num: Some(1),
            refund_batch_no: Some("B".into()),
            refund_failure_reason: Some("R".into()),
            refund_type: 3,
            fliggy_refund_flow_id: Some("F".into()),
        };
        sent.extend(
            full_refund
                .to_params()
                .iter()
                .map(|(k, _)| (Method::Refund, *k)),
        );
        let full_issue = issue::IssueParams {
            order_id: 1,
            out_order_id: "O".into(),
            issue_type: 2,
            describe: Some("D".into()),
            voucher_infos: Vec::new(),
            attribute_map: Some("{}".into()),
        };
        sent.extend(
            full_issue
                .to_params()
                .iter()
                .map(|(k, _)| (Method::Issue, *k)),
        );
        for (method, name) in sent {
            assert!(
                method.param_names().contains(&name),
                "{name} of {method:?} is not listed"
            );
        }
    }
}
