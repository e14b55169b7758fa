//! The ledger's bounds (`ticket_ledger::limits`) in every planner, and the checked arithmetic
//! behind them: a count above its bound is refused naming the field; a stored state beyond the
//! bounds (a code of capacity `i64::MAX`, accepted before the bounds existed) is planned with
//! exact arithmetic or refused with `CountOverflow` — never wrapped, never a panic.

use std::collections::HashSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ticket_ledger::limits::{MAX_CODE_USES, MAX_ORDER_USES, MAX_TICKETS, MAX_VOUCHERS};
use ticket_ledger::{
    plan_issue, plan_refund, plan_refund_request, plan_reversal, plan_verify, reconcile_diff,
    AppKey, ConfirmCode, IssueCommand, IssueResult, IssueState, IssuedVoucher, LedgerError,
    NewOrder, NewVoucher, OrderId, OrderRecord, OrderRef, OrderSnapshot, OrderStatus, OutOrderId,
    RefundCommand, RefundOutcomeStatus, RefundRequest, RefundRequestCommand, RefundState,
    RequestMeta, ReversalCommand, UseRecord, VerifyCommand, VerifyOrigin, VerifyPolicy, VerifyUses,
    VoucherRecord, VoucherUse, WriteOffType,
};

const APP: &str = "app-bounds";
const ORDER: i64 = 4242;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 15, 6, 0, 0)
        .single()
        .expect("valid date")
}

fn code(s: &str) -> ConfirmCode {
    ConfirmCode::parse(s).expect("valid code")
}

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: "req-bounds".into(),
        received_at: at(),
        client_ip: None,
        summary: serde_json::json!({}).into(),
    }
}

/// An issued order of `quantity` tickets with `(code, capacity, used)` vouchers.
fn snap(quantity: i64, vouchers: &[(&str, i64, i64)]) -> OrderSnapshot {
    OrderSnapshot {
        order: OrderRecord {
            order_id: OrderId::new(ORDER).expect("positive"),
            app_key: AppKey::parse(APP).expect("valid key"),
            out_order_id: None,
            quantity,
            valid_from: None,
            valid_until: None,
            created_at: at() - Duration::days(1),
            issue_state: IssueState::Issued,
            issue_describe: None,
            refunded_tickets: 0,
        },
        vouchers: vouchers
            .iter()
            .map(|&(c, capacity, used)| VoucherRecord {
                code: code(c),
                capacity,
                used,
            })
            .collect(),
        seen: HashSet::new(),
        refunds: Vec::new(),
    }
}

fn verify(mode: WriteOffType, uses: VerifyUses) -> VerifyCommand {
    VerifyCommand {
        origin: VerifyOrigin::Vendor,
        app_key: AppKey::parse(APP).expect("valid key"),
        order: OrderRef::Id(OrderId::new(ORDER).expect("positive")),
        mode,
        uses,
        total_num: None,
        return_num: None,
        policy: VerifyPolicy::default(),
        meta: meta(),
    }
}

fn delta(c: &str, quantity: i64) -> VerifyCommand {
    verify(
        WriteOffType::Delta,
        VerifyUses::Vouchers {
            entries: vec![VoucherUse {
                code: code(c),
                quantity,
                used_at: Some(at() - Duration::hours(1)),
            }],
            legacy_code: None,
        },
    )
}

fn too_large(field: &str, value: i64, max: i64) -> LedgerError {
    LedgerError::CountTooLarge {
        field: field.into(),
        value,
        max,
    }
}

fn pending(flow: &str, quantity: i64) -> RefundRequest {
    RefundRequest {
        flow_id: flow.into(),
        quantity,
        requested_at: at() - Duration::minutes(30),
        state: RefundState::Pending,
        refunded_tickets: 0,
        batch_no: None,
        failure_reason: None,
        settled_at: None,
        needs_review: false,
    }
}

fn refund_request(quantity: i64) -> RefundRequestCommand {
    RefundRequestCommand {
        order_id: OrderId::new(ORDER).expect("positive"),
        quantity,
        meta: meta(),
    }
}

fn refund(refund_num: Option<i64>) -> RefundCommand {
    RefundCommand {
        app_key: AppKey::parse(APP).expect("valid key"),
        order_id: OrderId::new(ORDER).expect("positive"),
        status: RefundOutcomeStatus::Succeeded,
        refund_num,
        batch_no: None,
        failure_reason: None,
        partial: false,
        flow_id: None,
        meta: meta(),
    }
}

fn reversal(quantity: i64) -> ReversalCommand {
    ReversalCommand {
        order_id: OrderId::new(ORDER).expect("positive"),
        code: code("BIG"),
        quantity,
        reason: "gate fault".into(),
        window: Duration::hours(24),
        meta: meta(),
    }
}

fn issue(codes: &[(&str, i64)]) -> IssueCommand {
    IssueCommand {
        app_key: AppKey::parse(APP).expect("valid key"),
        order_id: OrderId::new(ORDER).expect("positive"),
        out_order_id: OutOrderId::parse("OUT-BOUNDS").expect("valid id"),
        result: IssueResult::Issued(
            codes
                .iter()
                .map(|&(c, capacity)| IssuedVoucher {
                    code: code(c),
                    capacity,
                    voucher_type: None,
                    extras: None,
                })
                .collect(),
        ),
        attributes: None,
        meta: meta(),
    }
}

#[test]
fn every_planner_refuses_a_count_above_its_bound_naming_the_field() {
    let s = snap(MAX_TICKETS, &[("BIG", MAX_CODE_USES, 0)]);
    let over_code = MAX_CODE_USES + 1;
    assert_eq!(
        plan_verify(&s, &delta("BIG", over_code)).err(),
        Some(too_large(
            "voucher_infos[0].used_quantity",
            over_code,
            MAX_CODE_USES
        ))
    );
    assert_eq!(
        plan_verify(&s, &delta("BIG", i64::MAX)).err(),
        Some(too_large(
            "voucher_infos[0].used_quantity",
            i64::MAX,
            MAX_CODE_USES
        )),
        "refused by its bound before any arithmetic"
    );
    let cumulative = verify(
        WriteOffType::Cumulative,
        VerifyUses::Code {
            code: code("BIG"),
            check_num: over_code,
        },
    );
    assert_eq!(
        plan_verify(&s, &cumulative).err(),
        Some(too_large("check_num", over_code, MAX_CODE_USES))
    );
    let order_level = verify(
        WriteOffType::Delta,
        VerifyUses::Order {
            check_num: MAX_ORDER_USES + 1,
        },
    );
    assert_eq!(
        plan_verify(&s, &order_level).err(),
        Some(too_large("check_num", MAX_ORDER_USES + 1, MAX_ORDER_USES))
    );
    let mut totals = delta("BIG", 1);
    totals.total_num = Some(MAX_ORDER_USES + 1);
    assert_eq!(
        plan_verify(&s, &totals).err(),
        Some(too_large("total_num", MAX_ORDER_USES + 1, MAX_ORDER_USES))
    );
    let mut returned = delta("BIG", 1);
    returned.return_num = Some(MAX_TICKETS + 1);
    assert_eq!(
        plan_verify(&s, &returned).err(),
        Some(too_large("return_num", MAX_TICKETS + 1, MAX_TICKETS))
    );
    // At the bounds everything is planned.
    assert!(plan_verify(&s, &delta("BIG", MAX_CODE_USES)).is_ok());

    let awaiting = {
        let mut a = snap(2, &[]);
        a.order.issue_state = IssueState::Awaiting;
        a
    };
    assert_eq!(
        plan_issue(&awaiting, &issue(&[("A", 1), ("HUGE", i64::MAX)])).err(),
        Some(too_large(
            "voucher_infos[1].quantity",
            i64::MAX,
            MAX_CODE_USES
        ))
    );
    let many: Vec<(String, i64)> = (0..=MAX_VOUCHERS).map(|i| (format!("C{i}"), 1)).collect();
    let many: Vec<(&str, i64)> = many.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    assert_eq!(
        plan_issue(&awaiting, &issue(&many)).err(),
        Some(too_large("voucher_infos", 1000, 999))
    );
    assert!(plan_issue(&awaiting, &issue(&[("A", MAX_CODE_USES)])).is_ok());

    assert_eq!(
        plan_refund_request(&s, &refund_request(MAX_TICKETS + 1)).err(),
        Some(too_large("quantity", MAX_TICKETS + 1, MAX_TICKETS))
    );
    let refunding = OrderSnapshot {
        refunds: vec![pending("RF1", 2)],
        ..snap(2, &[("BIG", 2, 0)])
    };
    assert_eq!(
        plan_refund(&refunding, &refund(Some(MAX_TICKETS + 1))).err(),
        Some(too_large("refund_num", MAX_TICKETS + 1, MAX_TICKETS))
    );
    assert_eq!(
        plan_reversal(&s, &[], &reversal(MAX_CODE_USES + 1)).err(),
        Some(too_large("quantity", MAX_CODE_USES + 1, MAX_CODE_USES))
    );
    assert_eq!(
        reconcile_diff(&s.vouchers, &[(code("BIG"), MAX_CODE_USES + 1)]).err(),
        Some(too_large(
            "vouchers[0].used",
            MAX_CODE_USES + 1,
            MAX_CODE_USES
        ))
    );
}

#[test]
fn an_order_above_the_bounds_is_refused_naming_the_admin_field() {
    let order = |quantity: i64, capacities: &[i64]| NewOrder {
        order_id: OrderId::new(ORDER).expect("positive"),
        app_key: AppKey::parse(APP).expect("valid key"),
        quantity,
        out_order_id: None,
        valid_from: None,
        valid_until: None,
        vouchers: capacities
            .iter()
            .enumerate()
            .map(|(i, &capacity)| NewVoucher {
                code: code(&format!("V{i}")),
                capacity,
            })
            .collect(),
        created_at: at(),
    };
    assert_eq!(
        order(MAX_TICKETS + 1, &[1]).validate(),
        Err(too_large("quantity", MAX_TICKETS + 1, MAX_TICKETS))
    );
    assert_eq!(
        order(2, &[1, i64::MAX]).validate(),
        Err(too_large("vouchers[1].quantity", i64::MAX, MAX_CODE_USES))
    );
    let largest = vec![MAX_CODE_USES; MAX_VOUCHERS];
    assert_eq!(order(MAX_TICKETS, &largest).validate(), Ok(()));
}

/// The issue's order: 2 tickets, one code of capacity `i64::MAX` (stored before the bounds),
/// one use recorded.
fn legacy_order() -> OrderSnapshot {
    snap(2, &[("BIG", i64::MAX, 1)])
}

#[test]
fn a_legacy_order_beyond_the_bounds_is_counted_exactly_not_wrapped() {
    let s = legacy_order();
    // In i64, `1 × 2 + i64::MAX - 1` wrapped and the order showed 3 refundable tickets.
    assert_eq!(s.order.tickets_touched(1, i64::MAX), Ok(1));
    assert_eq!(s.refundable_tickets(), 1);
    assert_eq!(s.status(), OrderStatus::PartlyUsed);
    assert_eq!(
        plan_refund_request(&s, &refund_request(3)).err(),
        Some(LedgerError::RefundExceedsUnused {
            requested: 3,
            refundable: 1
        })
    );
    let one = plan_refund_request(&s, &refund_request(1)).expect("the unused ticket");
    assert_eq!(one.request.quantity, 1);
    // A refund settled on it refunds one ticket, and takes ⌊1 × i64::MAX ÷ 2⌋ uses.
    let settling = OrderSnapshot {
        refunds: vec![one.request],
        ..legacy_order()
    };
    let plan = plan_refund(&settling, &refund(None)).expect("settles");
    assert_eq!(plan.refunded_tickets, 1);
    assert_eq!(
        settling.order.uses_of_tickets(1, i64::MAX),
        Ok(i64::MAX / 2)
    );
}

#[test]
fn sums_that_overflow_are_refused_before_anything_is_planned() {
    let overflow = |what| Some(LedgerError::CountOverflow { what });
    // Two codes of capacity i64::MAX: the order's capacity does not fit an i64.
    let two = snap(2, &[("BIG", i64::MAX, 0), ("BIG2", i64::MAX, 0)]);
    assert_eq!(
        plan_verify(&two, &delta("BIG", 1)).err(),
        overflow("the order's capacity")
    );
    assert_eq!(
        plan_refund_request(&two, &refund_request(1)).err(),
        overflow("the order's capacity")
    );
    assert_eq!(
        two.refundable_tickets(),
        0,
        "a view shows none rather than fail"
    );
    assert_eq!(two.status(), OrderStatus::Issued, "the status is exact");

    // Pending refunds whose tickets sum past i64::MAX.
    let held = OrderSnapshot {
        refunds: vec![pending("RF1", i64::MAX), pending("RF2", i64::MAX)],
        ..snap(i64::MAX, &[("BIG", MAX_CODE_USES, 0)])
    };
    assert_eq!(
        plan_verify(&held, &delta("BIG", 1)).err(),
        overflow("tickets held by pending refunds")
    );
    assert_eq!(
        held.checked_refundable_tickets().err(),
        overflow("tickets held by pending refunds")
    );

    // Uses recorded on the legacy code, reversible together beyond i64::MAX.
    let used = snap(2, &[("BIG", i64::MAX, i64::MAX)]);
    let uses: Vec<UseRecord> = (1..=2)
        .map(|id| UseRecord {
            id,
            code: code("BIG"),
            quantity: i64::MAX,
            reversed: 0,
            recorded_at: at() - Duration::minutes(id),
        })
        .collect();
    assert_eq!(
        plan_reversal(&used, &uses, &reversal(1)).err(),
        overflow("reversible uses")
    );
}
