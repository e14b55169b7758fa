//! The order lifecycle as data: which call moves which status, and what each refuses.
//!
//! `docs/LIFECYCLE.md` is rendered from these tables (a test fails when the file is stale), and
//! the integration tests walk every row against the real server, so the document cannot drift
//! from what ticketd does. Rows name their call with [`Call`] and each refusal with
//! [`Refused`], so the tests match on those enums rather than on copies of the document's text:
//! a new row fails to compile in the test driver until someone teaches it the row.

use ticket_ledger::{AnomalyKind, OrderStatus};

/// A call that creates an order, moves it or is refused: a TOP method or an admin route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `POST /admin/orders`.
    CreateOrder,
    /// `alitrip.travel.ticket.order.create`: the vendor reports issuance (发码).
    Issue,
    /// `taobao.travel.ticket.order.verify`: the vendor reports uses (核销).
    Verify,
    /// `POST /admin/orders/{id}/refunds`: a buyer's refund request (退票).
    RequestRefund,
    /// `taobao.travel.ticket.order.refund`: the vendor's refund notification.
    Refund,
    /// `POST /admin/orders/{id}/reversals`: an operator gives uses back (撤销核销).
    Reverse,
    /// `POST /admin/orders/{id}/reconcile`: the vendor's counts applied.
    Reconcile,
}

impl Call {
    /// The method or route, as the document names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateOrder => "POST /admin/orders",
            Self::Issue => "alitrip.travel.ticket.order.create",
            Self::Verify => "taobao.travel.ticket.order.verify",
            Self::RequestRefund => "POST /admin/orders/{id}/refunds",
            Self::Refund => "taobao.travel.ticket.order.refund",
            Self::Reverse => "POST /admin/orders/{id}/reversals",
            Self::Reconcile => "POST /admin/orders/{id}/reconcile",
        }
    }

    fn markdown(self) -> String {
        format!("`{}`", self.name())
    }
}

/// What a refused call is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A TOP business error (`code` 50) with this `sub_code`.
    Top {
        /// The `sub_code`.
        sub_code: &'static str,
    },
    /// An admin API refusal: this HTTP status and `error`.
    Admin {
        /// The HTTP status.
        status: u16,
        /// The `error` field of the body.
        error: &'static str,
    },
}

impl Answer {
    fn markdown(self) -> String {
        match self {
            Self::Top { sub_code } => format!("`{sub_code}`"),
            Self::Admin { status, error } => format!("{status} `{error}`"),
        }
    }
}

/// Each documented refusal by name: the situation a test builds to meet it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// A verify of an order that awaits issuance or whose issuance failed.
    VerifyNotIssued,
    /// A verify naming a code the order does not have.
    VerifyUnknownCode,
    /// A verify of more uses than a code or the order has left.
    VerifyTooMany,
    /// A verify of uses that belong to refunded tickets.
    VerifyRefunded,
    /// A verify dated after a pending refund's request that needs the tickets it holds.
    VerifyHeldByRefund,
    /// An issuance report contradicting the order's codes or an earlier success.
    IssueConflict,
    /// An issuance report with another `out_order_id`.
    IssueOutOrderIdMismatch,
    /// A refund request for more tickets than are refundable.
    RequestTooMany,
    /// A refund request on an order that is not issued.
    RequestNotIssued,
    /// A refund notification with no pending request to settle.
    RefundNotRequested,
    /// A refund notification contradicting an earlier settlement.
    RefundConflict,
    /// A refund notification of more tickets than the request holds.
    RefundNumExceedsRequest,
    /// A refund notification of more tickets than uses meanwhile left unused.
    RefundNumExceedsUnused,
    /// A reversal of more uses than the window allows.
    ReverseBeyondWindow,
}

impl Refused {
    /// Every case, each with one row in [`REFUSALS`].
    pub const ALL: &[Refused] = &[
        Self::VerifyNotIssued,
        Self::VerifyUnknownCode,
        Self::VerifyTooMany,
        Self::VerifyRefunded,
        Self::VerifyHeldByRefund,
        Self::IssueConflict,
        Self::IssueOutOrderIdMismatch,
        Self::RequestTooMany,
        Self::RequestNotIssued,
        Self::RefundNotRequested,
        Self::RefundConflict,
        Self::RefundNumExceedsRequest,
        Self::RefundNumExceedsUnused,
        Self::ReverseBeyondWindow,
    ];

    /// The call refused.
    pub fn call(self) -> Call {
        match self {
            Self::VerifyNotIssued
            | Self::VerifyUnknownCode
            | Self::VerifyTooMany
            | Self::VerifyRefunded
            | Self::VerifyHeldByRefund => Call::Verify,
            Self::IssueConflict | Self::IssueOutOrderIdMismatch => Call::Issue,
            Self::RequestTooMany | Self::RequestNotIssued => Call::RequestRefund,
            Self::RefundNotRequested
            | Self::RefundConflict
            | Self::RefundNumExceedsRequest
            | Self::RefundNumExceedsUnused => Call::Refund,
            Self::ReverseBeyondWindow => Call::Reverse,
        }
    }
}

/// One documented status transition.
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    /// The call that causes it.
    pub call: Call,
    /// The status before.
    pub from: OrderStatus,
    /// The status after.
    pub to: OrderStatus,
    /// The condition.
    pub when: &'static str,
}

/// How an order starts: creation is not a transition (there is no status before it), so it
/// writes its creation event and no `order.status` entry.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// The call that creates the order.
    pub call: Call,
    /// The status it starts in.
    pub status: OrderStatus,
    /// The condition.
    pub when: &'static str,
}

/// One documented refusal.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    /// Which refusal; its [`Refused::call`] is the call refused.
    pub case: Refused,
    /// When, as the document says it.
    pub when: &'static str,
    /// The answer.
    pub answer: Answer,
    /// The anomaly the refusal also stores, if any.
    pub anomaly: Option<AnomalyKind>,
}

const CREATE: Call = Call::CreateOrder;
const ISSUE: Call = Call::Issue;
const VERIFY: Call = Call::Verify;
const REQUEST: Call = Call::RequestRefund;
const REFUND: Call = Call::Refund;
const REVERSE: Call = Call::Reverse;
const RECONCILE: Call = Call::Reconcile;

/// How orders start.
pub const STARTS: &[Start] = &[
    Start {
        call: CREATE,
        status: OrderStatus::AwaitingIssuance,
        when: "created without `vouchers`: the order waits for the vendor's codes",
    },
    Start {
        call: CREATE,
        status: OrderStatus::Issued,
        when: "created with `vouchers`: already issued",
    },
];

/// Every documented transition.
pub const TRANSITIONS: &[Transition] = {
    use OrderStatus as S;
    &[
        Transition {
            call: ISSUE,
            from: S::AwaitingIssuance,
            to: S::Issued,
            when: "`issue_type` 1 with the codes",
        },
        Transition {
            call: ISSUE,
            from: S::AwaitingIssuance,
            to: S::IssueFailed,
            when: "`issue_type` 2 with `describe`",
        },
        Transition {
            call: ISSUE,
            from: S::IssueFailed,
            to: S::Issued,
            when: "`issue_type` 1: the vendor retried issuing",
        },
        Transition {
            call: VERIFY,
            from: S::Issued,
            to: S::PartlyUsed,
            when: "some uses recorded, some remain",
        },
        Transition {
            call: VERIFY,
            from: S::PartlyUsed,
            to: S::Used,
            when: "the last remaining use recorded",
        },
        Transition {
            call: VERIFY,
            from: S::Issued,
            to: S::Used,
            when: "every use recorded at once",
        },
        Transition {
            call: VERIFY,
            from: S::PartlyRefunded,
            to: S::Closed,
            when: "the uses left after the refund are all recorded",
        },
        Transition {
            call: REQUEST,
            from: S::Issued,
            to: S::Refunding,
            when: "a refund of unused tickets is requested",
        },
        Transition {
            call: REQUEST,
            from: S::PartlyUsed,
            to: S::Refunding,
            when: "a refund of the tickets still unused is requested",
        },
        Transition {
            call: REQUEST,
            from: S::PartlyRefunded,
            to: S::Refunding,
            when: "a further refund is requested",
        },
        Transition {
            call: REFUND,
            from: S::Refunding,
            to: S::Refunded,
            when: "`refund_status` 1 for every ticket of the order",
        },
        Transition {
            call: REFUND,
            from: S::Refunding,
            to: S::PartlyRefunded,
            when: "`refund_status` 1 for some tickets; uses remain",
        },
        Transition {
            call: REFUND,
            from: S::Refunding,
            to: S::Closed,
            when: "`refund_status` 1 and every other ticket is used",
        },
        Transition {
            call: REFUND,
            from: S::Refunding,
            to: S::PartlyUsed,
            when: "`refund_status` 2 after some uses: the held tickets are usable again",
        },
        Transition {
            call: REFUND,
            from: S::Refunding,
            to: S::Issued,
            when: "`refund_status` 2 with nothing used: the held tickets are usable again",
        },
        Transition {
            call: REFUND,
            from: S::Refunding,
            to: S::Used,
            when:
                "`refund_status` 2 after uses dated before the request took every held ticket (R9)",
        },
        Transition {
            call: REVERSE,
            from: S::Used,
            to: S::PartlyUsed,
            when: "uses recorded within the reversal window are given back",
        },
        Transition {
            call: REVERSE,
            from: S::PartlyUsed,
            to: S::Issued,
            when: "every recorded use is given back",
        },
        Transition {
            call: REVERSE,
            from: S::Used,
            to: S::Issued,
            when: "every use of a used-up order is given back",
        },
        Transition {
            call: REVERSE,
            from: S::Closed,
            to: S::PartlyRefunded,
            when: "a use of an order closed by uses and refunds is given back",
        },
        Transition {
            call: RECONCILE,
            from: S::Issued,
            to: S::PartlyUsed,
            when: "`\"apply\": true` records uses the ledger was missing",
        },
    ]
};

/// Every documented refusal.
pub const REFUSALS: &[Refusal] = {
    use AnomalyKind as K;
    use Refused as R;
    const fn top(sub_code: &'static str) -> Answer {
        Answer::Top { sub_code }
    }
    const fn admin(status: u16, error: &'static str) -> Answer {
        Answer::Admin { status, error }
    }
    &[
        Refusal { case: R::VerifyNotIssued, when: "the order awaits issuance or its issuance failed", answer: top("isv.order-status-invalid"), anomaly: None },
        Refusal { case: R::VerifyUnknownCode, when: "a code was not issued for the order", answer: top("isv.voucher-not-exist"), anomaly: None },
        Refusal { case: R::VerifyTooMany, when: "a code (or the order) has fewer uses left than reported", answer: top("isv.verify-num-exceed"), anomaly: None },
        Refusal { case: R::VerifyRefunded, when: "every ticket is refunded, or the uses left belong to refunded tickets", answer: top("isv.ticket-refunded"), anomaly: Some(K::VerifyAfterRefund) },
        Refusal { case: R::VerifyHeldByRefund, when: "a refund is pending and uses dated after its request need the tickets it holds", answer: top("isv.ticket-refunded"), anomaly: Some(K::VerifyAfterRefund) },
        Refusal { case: R::IssueConflict, when: "the order was issued with other codes or quantities, or a failure follows a success", answer: top("isv.issue-conflict"), anomaly: None },
        Refusal { case: R::IssueOutOrderIdMismatch, when: "`out_order_id` differs from the one the order has", answer: top("isv.out-order-id-mismatch"), anomaly: None },
        Refusal { case: R::RequestTooMany, when: "more tickets than are unused, unrefunded and not already requested", answer: admin(409, "refund_exceeds_unused"), anomaly: None },
        Refusal { case: R::RequestNotIssued, when: "the order is not issued", answer: admin(409, "refused"), anomaly: None },
        Refusal { case: R::RefundNotRequested, when: "no pending request (none named by `fliggy_refund_flow_id`, or none at all)", answer: top("isv.refund-not-requested"), anomaly: Some(K::RefundNotRequested) },
        Refusal { case: R::RefundConflict, when: "the request or `refund_batch_no` was already settled with another result", answer: top("isv.refund-conflict"), anomaly: None },
        Refusal { case: R::RefundNumExceedsRequest, when: "`refund_num` exceeds the request's tickets", answer: top("isv.refund-num-exceed"), anomaly: None },
        Refusal { case: R::RefundNumExceedsUnused, when: "uses recorded meanwhile leave fewer unused tickets than `refund_num`", answer: top("isv.refund-num-exceed"), anomaly: Some(K::RefundExceedsUnused) },
        Refusal { case: R::ReverseBeyondWindow, when: "more uses than were recorded within the window (`--reversal-window`, default 24 h) and not yet reversed", answer: admin(409, "reversal_not_allowed"), anomaly: None },
    ]
};

/// Renders `docs/LIFECYCLE.md`.
pub fn lifecycle_markdown() -> String {
    let mut out = String::from(
        "# The order lifecycle\n\n\
         <!-- Generated from crates/ticketd/src/lifecycle_doc.rs by \
         `UPDATE_DOCS=1 cargo test -p ticketd --lib`; do not edit by hand. Every row below is \
         also walked against the real server by the integration tests. -->\n\n\
         An order is paid on the platform, issued by the vendor (发码), used at the gate (核销) and \
         possibly refunded (退票). Its `status` (in `GET /admin/orders/{id}`) is derived from the \
         ledger's counters, so it can never disagree with them; every change of status is an \
         `order.status` event in the order's history, with the `request_id` of the call that \
         caused it (the order's `events` show the latest 100; \
         `GET /admin/orders/{id}/events` walks all of them).\n\n\
         ```mermaid\nstateDiagram-v2\n",
    );
    let mut edges = std::collections::BTreeSet::new();
    for t in TRANSITIONS {
        if t.from != t.to {
            edges.insert(format!("    {} --> {}\n", t.from.as_str(), t.to.as_str()));
        }
    }
    for start in STARTS {
        out.push_str(&format!("    [*] --> {}\n", start.status.as_str()));
    }
    for e in edges {
        out.push_str(&e);
    }
    out.push_str(
        "```\n\n## Which status wins\n\nWhen several apply, the first in this list wins:\n\n",
    );
    for (i, s) in OrderStatus::ALL.iter().enumerate() {
        out.push_str(&format!(
            "{}. `{}` — {}\n",
            i + 1,
            s.as_str(),
            status_meaning(*s)
        ));
    }
    out.push_str("\n## How an order starts\n\nCreation is not a transition: the creation event is its record, and no `order.status` entry is written.\n\n| call | status | when |\n|---|---|---|\n");
    for start in STARTS {
        out.push_str(&format!(
            "| {} | `{}` | {} |\n",
            start.call.markdown(),
            start.status.as_str(),
            start.when
        ));
    }
    out.push_str("\n## Transitions\n\n| call | from | to | when |\n|---|---|---|---|\n");
    for t in TRANSITIONS {
        out.push_str(&format!(
            "| {} | `{}` | `{}` | {} |\n",
            t.call.markdown(),
            t.from.as_str(),
            t.to.as_str(),
            t.when
        ));
    }
    out.push_str(
        "\n## Refusals\n\nA refused call changes nothing. Where the last column names an \
         anomaly kind, the fact is stored in `GET /admin/anomalies` with the raw request \
         although nothing was applied.\n\n\
         | call | refused when | answer | anomaly |\n|---|---|---|---|\n",
    );
    for r in REFUSALS {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.case.call().markdown(),
            r.when,
            r.answer.markdown(),
            r.anomaly
                .map_or("—".to_owned(), |a| format!("`{}`", a.as_str()))
        ));
    }
    out.push_str(ACCOUNTING);
    out
}

fn status_meaning(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::AwaitingIssuance => "paid; the vendor has not reported codes yet.",
        OrderStatus::IssueFailed => "the vendor reported that issuing failed; a later success may follow.",
        OrderStatus::Refunding => "a refund request is pending: someone must act, so this wins over the use-based statuses.",
        OrderStatus::Refunded => "every ticket is refunded.",
        OrderStatus::Closed => "nothing remains: every ticket is used or refunded, and both happened.",
        OrderStatus::Used => "every use is recorded.",
        OrderStatus::PartlyRefunded => "some tickets are refunded; uses remain.",
        OrderStatus::PartlyUsed => "some uses are recorded; uses remain.",
        OrderStatus::Issued => "codes issued, nothing used or refunded.",
    }
}

const ACCOUNTING: &str = "
## Accounting

- **Uses and tickets.** Each code allows `capacity` uses (the issuance `quantity`). Refunds count
  per order in tickets; a refunded ticket takes `capacity ÷ quantity` uses (rounded down, so
  refunding every ticket takes exactly the whole capacity) out of what the order can still use.
  A verify must fit both its code's capacity and the order's remaining uses.
- **Refundable tickets** are those neither refunded, nor held by a pending request, nor touched
  by a use (a ticket with at least one use cannot be refunded). `GET /admin/orders/{id}` shows
  `refundable_tickets`.
- **Bounds.** An order has at most 100,000 tickets and 999 codes, a code at most 1,000,000 uses,
  and every count a call reports is bounded the same way (the table in
  [`SECURITY.md`](SECURITY.md#bounds-on-counts)): above them a TOP call is refused with code 41
  `isv.invalid-parameter:<name>`, an admin call with 422 naming the field. All arithmetic on
  counts is checked: an order whose stored counts are beyond the bounds (written before they
  existed) is refused rather than computed with a wrapped number.
- **Settling a request.** A refund notification settles the request named by
  `fliggy_refund_flow_id`, or without one the oldest pending request. `refund_num` (default: the
  request's quantity) is what is refunded; `refund_type` is recorded but full and partial refunds
  are accounted alike. A notification is idempotent on `refund_batch_no` and on the flow id: the
  same result again is answered `is_success` true and changes nothing; a different one is refused.
  A notification without either key settles the oldest pending request, so its retry would
  settle the next one: vendors should always send `refund_batch_no`.

## A pending refund and the verifies that arrive meanwhile (DOMAIN.md R9)

A pending request **holds** its tickets' uses. A verify whose uses are dated (`used_date`, or
the receive time when none is sent) **before** the refund was requested may still take them:
the visitor was admitted before the buyer asked for the refund, and that is a fact the ledger
records. The request is then marked `needs_review` and a `verify_during_refund` anomaly is
stored, because the refund may no longer be payable in full; if the vendor later reports more
tickets refunded than remain unused, the notification is refused with `isv.refund-num-exceed`
and a `refund_exceeds_unused` anomaly. A verify dated **at or after** the request may use only
the uses no refund holds; beyond that it is refused with `isv.ticket-refunded` and a
`verify_after_refund` anomaly. A refund that fails (`refund_status` 2) releases what it held.

## Reversal (撤销核销)

`POST /admin/orders/{id}/reversals` `{\"confirm_code\",\"quantity\",\"reason\"}` gives back uses
recorded within the reversal window (`--reversal-window`, default 24 h, counted from when the
ledger recorded the use), newest first. A count never goes below zero. The reversal is its own
event; the verify it undoes stays in the history.

## Anomalies and reconciliation

Facts that cannot be applied but matter to money or trust are stored as typed anomalies with
the raw request (sanitized): `GET /admin/anomalies?status=open&order_id=&kind=`, settled with
`POST /admin/anomalies/{id}/resolve` `{\"resolution\",\"note\"}` (`accepted`, `reversed`,
`refund_adjusted` or `dismissed`). Resolving records the operator's decision; reversing a use or
adjusting a refund is done with its own call.

One kind is about the ledger rather than the vendor: `commit_outcome_unknown` (PostgreSQL and
MySQL/MariaDB only). The database connection failed while a call was being committed and ticketd
could not find out within a few seconds whether it was; the caller was answered
`isv.commit-outcome-unknown`, which no SDK resends by itself. The anomaly is recorded as soon as
the database answers again, and its `detail.landed` says what was then found: `true`, the call
is recorded exactly as if it had been answered (tell the vendor it succeeded; resolve
`accepted`); `false`, nothing of it is (the vendor should send it again; resolve `dismissed`).
See `docs/OPERATIONS.md`.

Every write that must change exactly one row checks that it did. One that changes none means the
database disagrees with what the ledger read under the order's lock (a trigger, a direct edit,
a bug): the whole call is rolled back and refused — `isp.service-error` to a vendor, 409
`write_changed_no_row` to an operator — and a `write_changed_no_row` anomaly names the request
and the write. It is never answered as a success that changed nothing.

`POST /admin/orders/{id}/reconcile` `{\"vouchers\":[{\"confirm_code\",\"used\"}],\"apply\":false}`
compares the vendor's per-code counts with the ledger (`missing` = vendor − ledger, `excess` =
ledger − vendor). With `\"apply\": true` the missing uses are recorded as cumulative reports
would be — one `admin.reconcile` event per code, never decreasing a count; a count beyond a
code's capacity refuses the whole reconciliation.
";

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/LIFECYCLE.md is generated; `UPDATE_DOCS=1 cargo test -p ticketd --lib` rewrites it.
    #[test]
    fn lifecycle_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/LIFECYCLE.md");
        let want = lifecycle_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).expect("write docs/LIFECYCLE.md");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/LIFECYCLE.md is stale: run UPDATE_DOCS=1 cargo test -p ticketd --lib"
        );
    }

    #[test]
    fn every_refusal_case_has_exactly_one_row() {
        for case in Refused::ALL {
            let rows = REFUSALS.iter().filter(|r| r.case == *case).count();
            assert_eq!(rows, 1, "{case:?} has {rows} rows");
        }
        assert_eq!(REFUSALS.len(), Refused::ALL.len());
    }

    #[test]
    fn every_status_is_reached_by_some_transition() {
        for s in OrderStatus::ALL {
            assert!(
                TRANSITIONS.iter().any(|t| t.to == *s) || STARTS.iter().any(|t| t.status == *s),
                "{} is never reached in the documented transitions",
                s.as_str()
            );
        }
    }
}
