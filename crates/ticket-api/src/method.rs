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
}
