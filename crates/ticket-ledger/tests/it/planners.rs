//! The planners that took decisions back from the stores and the admin API: an order's
//! creation, an anomaly's resolution, a reconciliation as a whole, and the refundable tickets
//! an order view shows.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use ticket_ledger::{
    plan_order_creation, plan_reconcile, plan_resolution, Anomaly, AnomalyKind, AppKey,
    AuditAction, AuditOutcome, ConfirmCode, Flag, IssueState, LedgerError, NewAnomaly, NewOrder,
    NewVoucher, OrderId, OrderOrigin, OrderRecord, OrderSnapshot, OrderView, OutcomeKind,
    ReconcileCommand, ReconcileLine, RefundRequest, RefundState, RequestMeta, Resolution,
    ResolveAnomaly, VendorCount, VerifyOrigin, VerifyPolicy, VoucherRecord, WriteOffType,
};

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0)
        .single()
        .expect("a valid instant")
}

fn code(c: &str) -> ConfirmCode {
    ConfirmCode::parse(c).expect("a valid code")
}

fn meta(request_id: &str) -> RequestMeta {
    RequestMeta {
        request_id: request_id.to_owned(),
        received_at: at(),
        client_ip: Some("192.0.2.7".to_owned()),
        summary: json!({}).into(),
    }
}

fn new_order(vouchers: &[(&str, i64)]) -> NewOrder {
    NewOrder {
        order_id: OrderId::new(7).expect("positive"),
        app_key: AppKey::parse("app").expect("a valid key"),
        quantity: 2,
        out_order_id: None,
        valid_from: None,
        valid_until: None,
        vouchers: vouchers
            .iter()
            .map(|(c, n)| NewVoucher {
                code: code(c),
                capacity: *n,
            })
            .collect(),
        created_at: at() - Duration::days(1),
    }
}

#[test]
fn an_order_created_with_codes_starts_issued_and_without_them_awaits_issuance() {
    let issued = plan_order_creation(
        &new_order(&[("ORD-0001", 2)]),
        OrderOrigin::Operator,
        &meta("r1"),
    )
    .expect("a valid order");
    assert_eq!(issued.issue_state, IssueState::Issued);
    assert_eq!(issued.audit.action, AuditAction::CreateOrder.as_str());
    assert_eq!(
        (
            issued.audit.request_id.as_str(),
            issued.audit.order_id,
            issued.audit.app_key.as_deref(),
            issued.audit.outcome,
            issued.audit.reason.as_str(),
        ),
        (
            "r1",
            Some(7),
            Some("app"),
            AuditOutcome::Accepted,
            "created_issued"
        )
    );
    assert_eq!(
        issued.audit.detail,
        json!({"quantity": 2, "vouchers": [{"confirm_code": "****0001", "capacity": 2}]})
    );

    let awaiting = plan_order_creation(&new_order(&[]), OrderOrigin::Operator, &meta("r2"))
        .expect("a valid order");
    assert_eq!(awaiting.issue_state, IssueState::Awaiting);
    assert_eq!(awaiting.audit.reason, "created_awaiting_issuance");

    let demo = plan_order_creation(
        &new_order(&[("ORD-0001", 2)]),
        OrderOrigin::DemoSeed,
        &meta("r3"),
    )
    .expect("a valid order");
    assert_eq!(
        (
            demo.issue_state,
            demo.audit.reason.as_str(),
            &demo.audit.detail
        ),
        (IssueState::Issued, "demo_seed", &json!({}))
    );
}

#[test]
fn an_invalid_order_is_refused_before_anything_is_planned() {
    let mut zero = new_order(&[]);
    zero.quantity = 0;
    assert!(matches!(
        plan_order_creation(&zero, OrderOrigin::Operator, &meta("r")),
        Err(LedgerError::InvalidOrder(_))
    ));
}

fn anomaly(resolution: Option<Resolution>) -> Anomaly {
    Anomaly {
        id: 4,
        anomaly: NewAnomaly {
            kind: AnomalyKind::LateRedemption,
            order_id: Some(7),
            app_key: Some("app".to_owned()),
            request_id: "r0".to_owned(),
            at: at() - Duration::hours(1),
            detail: json!({}),
            request: json!({}),
        },
        resolution,
        note: None,
        resolved_at: None,
    }
}

#[test]
fn a_resolution_records_how_and_why_under_the_anomalys_order() {
    let cmd = ResolveAnomaly {
        id: 4,
        resolution: Resolution::Accepted,
        note: "charged".to_owned(),
        meta: meta("r9"),
    };
    let plan = plan_resolution(&anomaly(None), &cmd).expect("an open anomaly");
    assert_eq!(
        (
            plan.resolved.resolution,
            plan.resolved.note.as_deref(),
            plan.resolved.resolved_at
        ),
        (Some(Resolution::Accepted), Some("charged"), Some(at()))
    );
    assert_eq!(
        plan.resolved.anomaly,
        anomaly(None).anomaly,
        "the fact stays"
    );
    let entry = &plan.audit;
    assert_eq!(
        (
            entry.action.as_str(),
            entry.request_id.as_str(),
            entry.order_id,
            entry.app_key.as_deref(),
            entry.reason.as_str()
        ),
        (
            "admin.resolve_anomaly",
            "r9",
            Some(7),
            Some("app"),
            "accepted"
        )
    );
    assert_eq!(
        entry.detail,
        json!({"anomaly_id": 4, "kind": "late_redemption", "note": "charged"})
    );
    assert_eq!(
        plan_resolution(&anomaly(Some(Resolution::Dismissed)), &cmd),
        Err(LedgerError::AnomalyResolved),
        "an anomaly is settled once"
    );
}

fn snapshot(vouchers: &[(&str, i64, i64)], quantity: i64, refunded: i64) -> OrderSnapshot {
    OrderSnapshot {
        order: OrderRecord {
            order_id: OrderId::new(7).expect("positive"),
            app_key: AppKey::parse("app").expect("a valid key"),
            out_order_id: None,
            quantity,
            valid_from: Some(at() + Duration::days(1)),
            valid_until: None,
            created_at: at() - Duration::days(1),
            issue_state: IssueState::Issued,
            issue_describe: None,
            refunded_tickets: refunded,
        },
        vouchers: vouchers
            .iter()
            .map(|(c, capacity, used)| VoucherRecord {
                code: code(c),
                capacity: *capacity,
                used: *used,
            })
            .collect(),
        seen: Default::default(),
        refunds: Vec::new(),
    }
}

fn reconciliation(counts: &[(&str, i64)], apply: bool) -> ReconcileCommand {
    ReconcileCommand {
        order_id: OrderId::new(7).expect("positive"),
        counts: counts
            .iter()
            .enumerate()
            .map(|(i, (c, used))| VendorCount {
                code: code(c),
                used: *used,
                request_id: format!("line-{i}"),
            })
            .collect(),
        apply,
        policy: VerifyPolicy::default(),
        meta: meta("rec"),
    }
}

#[test]
fn a_reconciliation_plans_one_cumulative_report_per_code_with_missing_uses() {
    let s = snapshot(&[("REC-A", 3, 1), ("REC-B", 2, 2), ("REC-C", 2, 0)], 7, 0);
    let cmd = reconciliation(&[("REC-C", 2), ("REC-A", 3), ("REC-B", 1)], true);
    let plan = plan_reconcile(&s, &cmd).expect("counts that can be");
    let line = |c: &str, ledger_used, vendor_used| ReconcileLine {
        code: code(c),
        ledger_used,
        vendor_used,
    };
    assert_eq!(
        plan.lines,
        [
            line("REC-A", 1, 3),
            line("REC-B", 2, 1),
            line("REC-C", 0, 2)
        ]
    );
    // In issuance order, each on the order the ones before it leave, under its own request,
    // admitted before `valid_from` (the vendor's gate already let the uses through).
    let steps: Vec<_> = plan
        .steps
        .iter()
        .map(|s| {
            (
                s.cmd.meta.request_id.as_str(),
                s.cmd.origin,
                s.cmd.mode,
                s.cmd.policy.allow_before_valid_from,
                s.plan.outcome.kind,
                s.plan.outcome.applied_uses,
            )
        })
        .collect();
    let step = |rid, uses| {
        (
            rid,
            VerifyOrigin::Reconciliation,
            WriteOffType::Cumulative,
            true,
            OutcomeKind::Applied,
            uses,
        )
    };
    assert_eq!(steps, [step("line-1", 2), step("line-0", 2)]);
    assert_eq!(
        plan.steps[1].cmd.meta.summary,
        json!({"confirm_code": "****-C", "used": 2})
    );
    assert_eq!(
        plan.steps[1].plan.outcome.flags,
        [Flag::ServerTimeUsed {
            code: code("REC-C")
        }]
    );
    let outcome = plan.outcome(cmd.order_id);
    assert_eq!((outcome.applied_uses(), outcome.lines), (4, plan.lines));

    let compared =
        plan_reconcile(&s, &reconciliation(&[("REC-A", 3)], false)).expect("a comparison");
    assert!(compared.steps.is_empty(), "a comparison records nothing");
}

#[test]
fn a_reconciliation_is_refused_whole_when_any_code_would_be() {
    let s = snapshot(&[("REC-A", 1, 0), ("REC-B", 1, 0), ("REC-C", 1, 0)], 3, 1);
    assert_eq!(
        plan_reconcile(
            &s,
            &reconciliation(&[("REC-A", 1), ("REC-B", 1), ("REC-C", 2)], true)
        )
        .err(),
        Some(LedgerError::VendorCountExceedsCapacity {
            code: code("REC-C"),
            capacity: 1,
            reported: 2
        }),
        "a count beyond capacity, checked before any report"
    );
    // One ticket of three is refunded: two uses remain, so the third report is refused, and
    // with it the reconciliation.
    let held = reconciliation(&[("REC-A", 1), ("REC-B", 1), ("REC-C", 1)], true);
    let refusal = LedgerError::RefundedUsesExceeded {
        requested: 1,
        remaining: 0,
        refund_pending: false,
    };
    assert_eq!(plan_reconcile(&s, &held).err(), Some(refusal.clone()));
    let kept = held.refusal_anomaly(&refusal).expect("it matters to money");
    assert_eq!(
        (
            kept.kind,
            kept.order_id,
            kept.app_key,
            kept.request_id.as_str()
        ),
        (AnomalyKind::VerifyAfterRefund, Some(7), None, "rec"),
        "the anomaly names the operator's request"
    );
    assert_eq!(
        plan_reconcile(&s, &reconciliation(&[("NOPE", 1)], false)).err(),
        Some(LedgerError::VoucherNotFound { code: code("NOPE") }),
        "the comparison's own refusals come first"
    );
}

#[test]
fn an_order_view_shows_the_tickets_a_refund_request_could_ask_for() {
    let s = snapshot(&[("REF-A", 4, 1)], 4, 1);
    let mut view = OrderView {
        order: s.order.clone(),
        vouchers: s.vouchers.clone(),
        events: Vec::new(),
        events_total: 0,
        refunds: vec![RefundRequest {
            flow_id: "RF1".to_owned(),
            quantity: 1,
            requested_at: at(),
            state: RefundState::Pending,
            refunded_tickets: 0,
            batch_no: None,
            failure_reason: None,
            settled_at: None,
            needs_review: false,
        }],
    };
    // Four tickets: one refunded, one held by the pending request, one touched by the use.
    assert_eq!(view.refundable_tickets(), 1);
    let mut with_refunds = s.clone();
    with_refunds.refunds = view.refunds.clone();
    assert_eq!(
        view.refundable_tickets(),
        with_refunds.refundable_tickets(),
        "the rule refund requests are planned with"
    );
    view.vouchers[0].used = i64::MAX;
    assert_eq!(
        view.refundable_tickets(),
        0,
        "counts out of range show none"
    );
}
