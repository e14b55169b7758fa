//! Pure tests of [`plan_verify`] on hand-built snapshots: no store, no runtime.
//!
//! The table walks every verify rule `plan_verify` enforces (DOMAIN.md §2.3). Rules not here,
//! and where they are held:
//! - R3 (no order key), R11 (a code twice in `voucher_infos`), R12 (quantity ≤ 0, list > 999),
//!   R20 (`write_off_type` other than 0/1), R21 (malformed `used_date`): wire-shape rules,
//!   checked when `ticket-api` parses the TOP parameters into a `VerifyCommand`.
//! - R4 (unknown order) and R5's "out_order_id alone resolves within the app": resolution is
//!   the store's (there is no snapshot to plan from); the behaviour suite holds them
//!   (`verify_of_unknown_order_is_order_not_found`,
//!   `out_order_id_alone_resolves_within_the_calling_app`). The R4 row below checks the part
//!   the plan owns: a foreign order is refused exactly as an unknown one.
//! - R28: the store's transaction (the suite's race cases). R29: gateway authentication. R30:
//!   the wire mapping of outcomes and errors. R8/R9 are here as far as the plan decides them;
//!   refund requests and notifications themselves are the behaviour suite's (`refunds`).

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use ticket_ledger::{
    plan_verify, AppKey, ConfirmCode, Fingerprint, Flag, IssueState, LedgerError, OrderId,
    OrderRecord, OrderRef, OrderSnapshot, OutOrderId, OutcomeKind, RefundRequest, RefundState,
    RequestMeta, UsedDateProblem, VerifyCommand, VerifyOrigin, VerifyPlan, VerifyPolicy,
    VerifyUses, VoucherRecord, VoucherUse, WriteOffType,
};

// ---------------------------------------------------------------------------------------------
// Builders

const APP: &str = "app-own";
const OTHER_APP: &str = "app-other";
const OUT: &str = "OUT-1";
const ORDER: i64 = 1001;

fn created() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 2, 0, 0)
        .single()
        .expect("valid date")
}

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 15, 6, 0, 0)
        .single()
        .expect("valid date")
}

/// Gate time `n` seconds after one hour before [`received`].
fn gate(n: i64) -> DateTime<Utc> {
    received() - Duration::hours(1) + Duration::seconds(n)
}

fn code(s: &str) -> ConfirmCode {
    ConfirmCode::parse(s).expect("valid code")
}

/// A snapshot of order [`ORDER`] owned by `APP` with `out_order_id` [`OUT`] and the given
/// `(code, capacity, used)` vouchers.
fn snap(vouchers: &[(&str, i64, i64)]) -> OrderSnapshot {
    OrderSnapshot {
        order: OrderRecord {
            order_id: OrderId::new(ORDER).expect("positive"),
            app_key: AppKey::parse(APP).expect("valid key"),
            out_order_id: OutOrderId::parse(OUT),
            quantity: vouchers.iter().map(|v| v.1).sum::<i64>().max(1),
            valid_from: None,
            valid_until: None,
            created_at: created(),
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

/// A pending refund request `flow` for `quantity` tickets, asked at `at`.
fn pending(flow: &str, quantity: i64, at: DateTime<Utc>) -> RefundRequest {
    RefundRequest {
        flow_id: flow.into(),
        quantity,
        requested_at: at,
        state: RefundState::Pending,
        refunded_tickets: 0,
        batch_no: None,
        failure_reason: None,
        settled_at: None,
        needs_review: false,
    }
}

fn with(mut s: OrderSnapshot, edit: impl FnOnce(&mut OrderSnapshot)) -> OrderSnapshot {
    edit(&mut s);
    s
}

fn fp(c: &str, at: DateTime<Utc>, quantity: i64) -> Fingerprint {
    Fingerprint {
        code: code(c),
        used_at_ms: at.timestamp_millis(),
        quantity,
    }
}

fn cmd(mode: WriteOffType, uses: VerifyUses) -> VerifyCommand {
    VerifyCommand {
        origin: VerifyOrigin::Vendor,
        app_key: AppKey::parse(APP).expect("valid key"),
        order: OrderRef::Id(OrderId::new(ORDER).expect("positive")),
        mode,
        uses,
        total_num: None,
        return_num: None,
        policy: VerifyPolicy::default(),
        meta: RequestMeta {
            request_id: "req-1".into(),
            received_at: received(),
            client_ip: None,
            summary: serde_json::json!({}),
        },
    }
}

/// `voucher_infos` entries `(code, quantity, used_at)`.
fn entries(list: &[(&str, i64, Option<DateTime<Utc>>)]) -> VerifyUses {
    VerifyUses::Vouchers {
        entries: list
            .iter()
            .map(|&(c, quantity, used_at)| VoucherUse {
                code: code(c),
                quantity,
                used_at,
            })
            .collect(),
        legacy_code: None,
    }
}

fn delta(list: &[(&str, i64, Option<DateTime<Utc>>)]) -> VerifyCommand {
    cmd(WriteOffType::Delta, entries(list))
}

fn cumul(list: &[(&str, i64, Option<DateTime<Utc>>)]) -> VerifyCommand {
    cmd(WriteOffType::Cumulative, entries(list))
}

fn edit(mut c: VerifyCommand, f: impl FnOnce(&mut VerifyCommand)) -> VerifyCommand {
    f(&mut c);
    c
}

fn top_time(at: DateTime<Utc>) -> String {
    let tz = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    tz.from_utc_datetime(&at.naive_utc())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn date_err(at: DateTime<Utc>, why: UsedDateProblem) -> Want {
    Want::Err(LedgerError::UsedDateInvalid {
        used_date: top_time(at),
        why,
    })
}

// ---------------------------------------------------------------------------------------------
// The rule table

/// What a row expects.
#[derive(Debug)]
enum Want {
    /// Accepted: kind, `(code, delta)` changes, replayed entries, flags, new fingerprints.
    Ok {
        kind: OutcomeKind,
        changes: Vec<(&'static str, i64)>,
        replayed: usize,
        flags: Vec<Flag>,
        new_fingerprints: usize,
    },
    Err(LedgerError),
}

fn applied(changes: Vec<(&'static str, i64)>, new_fingerprints: usize) -> Want {
    Want::Ok {
        kind: OutcomeKind::Applied,
        changes,
        replayed: 0,
        flags: vec![],
        new_fingerprints,
    }
}

fn applied_flagged(
    changes: Vec<(&'static str, i64)>,
    new_fingerprints: usize,
    flags: Vec<Flag>,
) -> Want {
    Want::Ok {
        kind: OutcomeKind::Applied,
        changes,
        replayed: 0,
        flags,
        new_fingerprints,
    }
}

fn no_change(flags: Vec<Flag>) -> Want {
    Want::Ok {
        kind: OutcomeKind::NoChange,
        changes: vec![],
        replayed: 0,
        flags,
        new_fingerprints: 0,
    }
}

struct Row {
    rule: &'static str,
    what: &'static str,
    snap: OrderSnapshot,
    cmd: VerifyCommand,
    want: Want,
}

fn row(
    rule: &'static str,
    what: &'static str,
    snap: OrderSnapshot,
    cmd: VerifyCommand,
    want: Want,
) -> Row {
    Row {
        rule,
        what,
        snap,
        cmd,
        want,
    }
}

#[allow(clippy::too_many_lines)] // one row per rule reads best as one table
fn table() -> Vec<Row> {
    let g = Some(gate(0));
    let two = snap(&[("A", 3, 0), ("B", 2, 0)]);
    let tol = VerifyPolicy::default().future_tolerance;
    vec![
        // R1: voucher_infos win; a legacy code beside them must be listed.
        row(
            "R1",
            "legacy code in the list",
            two.clone(),
            edit(delta(&[("B", 2, g)]), |c| {
                if let VerifyUses::Vouchers { legacy_code, .. } = &mut c.uses {
                    *legacy_code = Some(code("B"));
                }
            }),
            applied(vec![("B", 2)], 1),
        ),
        row(
            "R1",
            "legacy code not in the list",
            two.clone(),
            edit(delta(&[("A", 1, g)]), |c| {
                if let VerifyUses::Vouchers { legacy_code, .. } = &mut c.uses {
                    *legacy_code = Some(code("B"));
                }
            }),
            Want::Err(LedgerError::LegacyCodeNotInList { code: code("B") }),
        ),
        // R2: order-level check_num draws codes in issuance order.
        row(
            "R2",
            "draws in issuance order",
            snap(&[("C", 2, 1), ("A", 3, 0), ("B", 1, 0)]),
            cmd(WriteOffType::Delta, VerifyUses::Order { check_num: 3 }),
            applied(vec![("C", 1), ("A", 2)], 0),
        ),
        row(
            "R2",
            "beyond the order's remaining uses",
            snap(&[("A", 2, 1), ("B", 1, 0)]),
            cmd(WriteOffType::Delta, VerifyUses::Order { check_num: 3 }),
            Want::Err(LedgerError::OrderCapacityExceeded {
                requested: 3,
                remaining: 2,
            }),
        ),
        row(
            "R2",
            "cumulative order total raised",
            snap(&[("A", 2, 2), ("B", 2, 0)]),
            cmd(WriteOffType::Cumulative, VerifyUses::Order { check_num: 3 }),
            applied(vec![("B", 1)], 0),
        ),
        row(
            "R2",
            "cumulative order total lower",
            snap(&[("A", 2, 2), ("B", 2, 1)]),
            cmd(WriteOffType::Cumulative, VerifyUses::Order { check_num: 1 }),
            no_change(vec![Flag::OrderCountRegressed {
                reported: 1,
                recorded: 3,
            }]),
        ),
        // Legacy single code.
        row(
            "R2",
            "legacy confirm_code + check_num",
            two.clone(),
            cmd(
                WriteOffType::Delta,
                VerifyUses::Code {
                    code: code("B"),
                    check_num: 2,
                },
            ),
            applied(vec![("B", 2)], 0),
        ),
        // R4/R6: the plan refuses a foreign order exactly as the store refuses an unknown one.
        row(
            "R4",
            "foreign order answers like an unknown one",
            two.clone(),
            edit(delta(&[("A", 1, g)]), |c| {
                c.app_key = AppKey::parse(OTHER_APP).expect("key")
            }),
            Want::Err(LedgerError::OrderNotFound),
        ),
        // R5: both keys must agree.
        row(
            "R5",
            "out_order_id contradicts order_id",
            two.clone(),
            edit(delta(&[("A", 1, g)]), |c| {
                c.order = OrderRef::Both(
                    OrderId::new(ORDER).expect("id"),
                    OutOrderId::parse("OUT-2").expect("out"),
                );
            }),
            Want::Err(LedgerError::OutOrderIdMismatch),
        ),
        row(
            "R5",
            "both keys agree",
            two.clone(),
            edit(delta(&[("A", 1, g)]), |c| {
                c.order = OrderRef::Both(
                    OrderId::new(ORDER).expect("id"),
                    OutOrderId::parse(OUT).expect("out"),
                );
            }),
            applied(vec![("A", 1)], 1),
        ),
        row(
            "R5",
            "no recorded out_order_id cannot contradict",
            with(two.clone(), |s| s.order.out_order_id = None),
            edit(delta(&[("A", 1, g)]), |c| {
                c.order = OrderRef::Both(
                    OrderId::new(ORDER).expect("id"),
                    OutOrderId::parse("OUT-9").expect("out"),
                );
            }),
            applied(vec![("A", 1)], 1),
        ),
        // R6: ownership is checked before anything that would reveal the order.
        row(
            "R6",
            "foreign order with a mismatching out_order_id",
            two.clone(),
            edit(delta(&[("A", 1, g)]), |c| {
                c.app_key = AppKey::parse(OTHER_APP).expect("key");
                c.order = OrderRef::Both(
                    OrderId::new(ORDER).expect("id"),
                    OutOrderId::parse("OUT-2").expect("out"),
                );
            }),
            Want::Err(LedgerError::OrderNotFound),
        ),
        row(
            "R6",
            "foreign unissued order",
            snap(&[]),
            edit(delta(&[("A", 1, g)]), |c| {
                c.app_key = AppKey::parse(OTHER_APP).expect("key")
            }),
            Want::Err(LedgerError::OrderNotFound),
        ),
        // R7: nothing to use before codes exist.
        row(
            "R7",
            "order not issued",
            snap(&[]),
            delta(&[("A", 1, g)]),
            Want::Err(LedgerError::OrderNotIssued),
        ),
        row(
            "R7",
            "order not issued, order-level",
            snap(&[]),
            cmd(WriteOffType::Delta, VerifyUses::Order { check_num: 1 }),
            Want::Err(LedgerError::OrderNotIssued),
        ),
        row(
            "R7",
            "issuance failed",
            with(snap(&[]), |s| {
                s.order.issue_state = IssueState::Failed;
                s.order.issue_describe = Some("sold out".into());
            }),
            delta(&[("A", 1, g)]),
            Want::Err(LedgerError::OrderNotIssued),
        ),
        row(
            "R7",
            "awaiting issuance",
            with(snap(&[]), |s| s.order.issue_state = IssueState::Awaiting),
            delta(&[("A", 1, g)]),
            Want::Err(LedgerError::OrderNotIssued),
        ),
        // R8: every ticket refunded; nothing can be used.
        row(
            "R8",
            "every ticket refunded",
            with(two.clone(), |s| s.order.refunded_tickets = s.order.quantity),
            delta(&[("A", 1, g)]),
            Want::Err(LedgerError::OrderRefunded),
        ),
        // R9: refunded tickets take their uses; a pending refund reserves its tickets against
        // uses dated after its request.
        row(
            "R9",
            "uses held by refunded tickets",
            with(snap(&[("A", 4, 0)]), |s| {
                s.order.quantity = 2;
                s.order.refunded_tickets = 1;
            }),
            delta(&[("A", 3, g)]),
            Want::Err(LedgerError::RefundedUsesExceeded {
                requested: 3,
                remaining: 2,
                refund_pending: false,
            }),
        ),
        row(
            "R9",
            "use before a pending request takes its reserved uses",
            with(snap(&[("A", 1, 0), ("B", 1, 0)]), |s| {
                s.refunds.push(pending("RF-1", 1, gate(100)));
            }),
            delta(&[("A", 1, g), ("B", 1, g)]),
            applied_flagged(
                vec![("A", 1), ("B", 1)],
                2,
                vec![Flag::VerifyDuringRefund {
                    flow_ids: vec!["RF-1".into()],
                }],
            ),
        ),
        row(
            "R9",
            "use before a pending request within the unreserved uses",
            with(snap(&[("A", 1, 0), ("B", 1, 0)]), |s| {
                s.refunds.push(pending("RF-1", 1, gate(100)));
            }),
            delta(&[("A", 1, g)]),
            applied(vec![("A", 1)], 1),
        ),
        row(
            "R9",
            "use after a pending request",
            with(snap(&[("A", 1, 0), ("B", 1, 0)]), |s| {
                s.refunds.push(pending("RF-1", 1, gate(100)));
            }),
            delta(&[("A", 1, Some(gate(200))), ("B", 1, Some(gate(200)))]),
            Want::Err(LedgerError::RefundedUsesExceeded {
                requested: 2,
                remaining: 1,
                refund_pending: true,
            }),
        ),
        row(
            "R9",
            "a settled refund reserves nothing",
            with(snap(&[("A", 1, 0), ("B", 1, 0)]), |s| {
                let mut failed = pending("RF-1", 1, gate(100));
                failed.state = RefundState::Failed;
                s.refunds.push(failed);
            }),
            delta(&[("A", 1, Some(gate(200))), ("B", 1, Some(gate(200)))]),
            applied(vec![("A", 1), ("B", 1)], 2),
        ),
        // R10: one unknown code refuses the whole request.
        row(
            "R10",
            "unknown code among valid ones",
            two.clone(),
            delta(&[("A", 1, g), ("Z", 1, g), ("B", 1, g)]),
            Want::Err(LedgerError::VoucherNotFound { code: code("Z") }),
        ),
        row(
            "R10",
            "unknown legacy code",
            two.clone(),
            cmd(
                WriteOffType::Delta,
                VerifyUses::Code {
                    code: code("Z"),
                    check_num: 1,
                },
            ),
            Want::Err(LedgerError::VoucherNotFound { code: code("Z") }),
        ),
        // R13: any code overflowing refuses the whole request.
        row(
            "R13",
            "one of two entries overflows",
            snap(&[("A", 3, 0), ("B", 2, 1)]),
            delta(&[("A", 1, g), ("B", 2, g)]),
            Want::Err(LedgerError::CapacityExceeded {
                code: code("B"),
                requested: 2,
                remaining: 1,
            }),
        ),
        row(
            "R13",
            "a full code",
            snap(&[("A", 2, 2)]),
            delta(&[("A", 1, g)]),
            Want::Err(LedgerError::CapacityExceeded {
                code: code("A"),
                requested: 1,
                remaining: 0,
            }),
        ),
        // R14: partial use.
        row(
            "R14",
            "partial use",
            two.clone(),
            delta(&[("A", 2, g)]),
            applied(vec![("A", 2)], 1),
        ),
        // R15: multi-use code up to its capacity.
        row(
            "R15",
            "last use of a multi-use code",
            snap(&[("A", 3, 2)]),
            delta(&[("A", 1, g)]),
            applied(vec![("A", 1)], 1),
        ),
        // R16: delta retries are replayed by fingerprint.
        row(
            "R16",
            "retried entry",
            with(snap(&[("A", 3, 2)]), |s| {
                s.seen.insert(fp("A", gate(0), 2));
            }),
            delta(&[("A", 2, g)]),
            Want::Ok {
                kind: OutcomeKind::Replayed,
                changes: vec![],
                replayed: 1,
                flags: vec![],
                new_fingerprints: 0,
            },
        ),
        row(
            "R16",
            "old entry beside a new one",
            with(snap(&[("A", 3, 1), ("B", 2, 0)]), |s| {
                s.seen.insert(fp("A", gate(0), 1));
            }),
            delta(&[("A", 1, g), ("B", 2, g)]),
            Want::Ok {
                kind: OutcomeKind::Applied,
                changes: vec![("B", 2)],
                replayed: 1,
                flags: vec![],
                new_fingerprints: 1,
            },
        ),
        row(
            "R16",
            "same code at another used_date",
            with(snap(&[("A", 3, 1)]), |s| {
                s.seen.insert(fp("A", gate(0), 1));
            }),
            delta(&[("A", 1, Some(gate(1)))]),
            applied(vec![("A", 1)], 1),
        ),
        row(
            "R16",
            "same code and date, another quantity",
            with(snap(&[("A", 3, 1)]), |s| {
                s.seen.insert(fp("A", gate(0), 1));
            }),
            delta(&[("A", 2, g)]),
            applied(vec![("A", 2)], 1),
        ),
        row(
            "R16",
            "a replayed entry is not re-checked for capacity",
            with(snap(&[("A", 2, 2)]), |s| {
                s.seen.insert(fp("A", gate(0), 2));
            }),
            delta(&[("A", 2, g)]),
            Want::Ok {
                kind: OutcomeKind::Replayed,
                changes: vec![],
                replayed: 1,
                flags: vec![],
                new_fingerprints: 0,
            },
        ),
        // R17: cumulative equal is a no-op.
        row(
            "R17",
            "cumulative equal",
            snap(&[("A", 3, 2)]),
            cumul(&[("A", 2, g)]),
            no_change(vec![]),
        ),
        row(
            "R17",
            "cumulative raises to the total",
            snap(&[("A", 3, 1)]),
            cumul(&[("A", 3, g)]),
            applied(vec![("A", 2)], 0),
        ),
        // R18: cumulative lower never decreases.
        row(
            "R18",
            "cumulative lower",
            snap(&[("A", 3, 2)]),
            cumul(&[("A", 1, g)]),
            no_change(vec![Flag::CountRegressed {
                code: code("A"),
                reported: 1,
                recorded: 2,
            }]),
        ),
        // R19: cumulative beyond capacity.
        row(
            "R19",
            "cumulative beyond capacity",
            snap(&[("A", 3, 1)]),
            cumul(&[("A", 5, g)]),
            Want::Err(LedgerError::CapacityExceeded {
                code: code("A"),
                requested: 4,
                remaining: 2,
            }),
        ),
        // R22: no used_date → server time, flagged, no fingerprint.
        row(
            "R22",
            "missing used_date",
            two.clone(),
            delta(&[("A", 1, None)]),
            applied_flagged(
                vec![("A", 1)],
                0,
                vec![Flag::ServerTimeUsed { code: code("A") }],
            ),
        ),
        // R23: future beyond the tolerance.
        row(
            "R23",
            "beyond the tolerance",
            two.clone(),
            delta(&[("A", 1, Some(received() + tol + Duration::seconds(1)))]),
            date_err(
                received() + tol + Duration::seconds(1),
                UsedDateProblem::InFuture,
            ),
        ),
        row(
            "R23",
            "at the tolerance",
            two.clone(),
            delta(&[("A", 1, Some(received() + tol))]),
            applied(vec![("A", 1)], 1),
        ),
        // R24: before the order.
        row(
            "R24",
            "before the order",
            two.clone(),
            delta(&[("A", 1, Some(created() - Duration::seconds(1)))]),
            date_err(
                created() - Duration::seconds(1),
                UsedDateProblem::BeforeOrder,
            ),
        ),
        // R25: before valid_from, unless allowed.
        row(
            "R25",
            "before valid_from",
            with(two.clone(), |s| s.order.valid_from = Some(gate(10))),
            delta(&[("A", 1, g)]),
            date_err(gate(0), UsedDateProblem::BeforeValidFrom),
        ),
        row(
            "R25",
            "before valid_from, allowed",
            with(two.clone(), |s| s.order.valid_from = Some(gate(10))),
            edit(delta(&[("A", 1, g)]), |c| {
                c.policy.allow_before_valid_from = true
            }),
            applied(vec![("A", 1)], 1),
        ),
        // R26: after valid_until: accepted, flagged.
        row(
            "R26",
            "after valid_until",
            with(two.clone(), |s| s.order.valid_until = Some(gate(-1))),
            delta(&[("A", 1, g)]),
            applied_flagged(
                vec![("A", 1)],
                1,
                vec![Flag::LateRedemption { code: code("A") }],
            ),
        ),
        // R27: the ledger is authoritative for capacity.
        row(
            "R27",
            "total_num above the uses sold",
            two.clone(),
            edit(
                cmd(
                    WriteOffType::Delta,
                    VerifyUses::Code {
                        code: code("A"),
                        check_num: 1,
                    },
                ),
                |c| c.total_num = Some(6),
            ),
            Want::Err(LedgerError::TotalNumExceeds {
                reported: 6,
                ledger: 5,
            }),
        ),
        row(
            "R27",
            "total_num below the uses sold",
            two.clone(),
            edit(
                cmd(
                    WriteOffType::Delta,
                    VerifyUses::Code {
                        code: code("A"),
                        check_num: 1,
                    },
                ),
                |c| c.total_num = Some(4),
            ),
            applied_flagged(
                vec![("A", 1)],
                0,
                vec![Flag::TotalNumMismatch {
                    reported: 4,
                    ledger: 5,
                }],
            ),
        ),
        row(
            "R27",
            "return_num not zero",
            two.clone(),
            edit(
                cmd(
                    WriteOffType::Delta,
                    VerifyUses::Code {
                        code: code("A"),
                        check_num: 1,
                    },
                ),
                |c| c.return_num = Some(1),
            ),
            applied_flagged(
                vec![("A", 1)],
                0,
                vec![Flag::ReturnNumMismatch {
                    reported: 1,
                    ledger: 0,
                }],
            ),
        ),
    ]
}

fn check_row(r: &Row) {
    let ctx = format!("{} ({})", r.rule, r.what);
    let got = plan_verify(&r.snap, &r.cmd);
    match (&r.want, got) {
        (Want::Err(want), Err(got)) => assert_eq!(&got, want, "{ctx}"),
        (Want::Err(want), Ok(plan)) => panic!("{ctx}: expected Err({want:?}), got {plan:?}"),
        (Want::Ok { .. }, Err(got)) => panic!("{ctx}: expected acceptance, got Err({got:?})"),
        (
            Want::Ok {
                kind,
                changes,
                replayed,
                flags,
                new_fingerprints,
            },
            Ok(plan),
        ) => {
            let got_changes: Vec<(&str, i64)> = plan
                .changes
                .iter()
                .map(|c| (c.code.as_str(), c.delta))
                .collect();
            assert_eq!(plan.outcome.kind, *kind, "{ctx}: kind");
            assert_eq!(&got_changes, changes, "{ctx}: changes");
            assert_eq!(
                plan.outcome.replayed_entries, *replayed,
                "{ctx}: replayed entries"
            );
            assert_eq!(&plan.outcome.flags, flags, "{ctx}: flags");
            assert_eq!(
                plan.new_fingerprints.len(),
                *new_fingerprints,
                "{ctx}: new fingerprints"
            );
            assert_eq!(
                plan.outcome.applied_uses,
                changes.iter().map(|c| c.1).sum::<i64>(),
                "{ctx}: applied_uses"
            );
            assert_eq!(
                plan.outcome.order_id, r.snap.order.order_id,
                "{ctx}: order id"
            );
            for c in &plan.changes {
                let v = r
                    .snap
                    .vouchers
                    .iter()
                    .find(|v| v.code == c.code)
                    .expect("changes name snapshot vouchers");
                assert_eq!(
                    (c.used_before, c.capacity),
                    (v.used, v.capacity),
                    "{ctx}: change base"
                );
            }
        }
    }
}

#[test]
fn every_verify_rule_holds_on_its_row() {
    let rows = table();
    for r in &rows {
        check_row(r);
    }
    let covered: BTreeSet<&str> = rows.iter().map(|r| r.rule).collect();
    let rules = [
        "R1", "R2", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R13", "R14", "R15", "R16", "R17",
        "R18", "R19", "R22", "R23", "R24", "R25", "R26", "R27",
    ];
    for rule in rules {
        assert!(covered.contains(rule), "no row for {rule}");
    }
}

#[test]
fn plan_audit_entry_records_outcome_reason_and_request() {
    let s = snap(&[("A", 3, 0)]);
    let c = delta(&[("A", 1, Some(gate(0)))]);
    let plan = plan_verify(&s, &c).expect("accepted");
    let e = plan.audit_entry(&c);
    assert_eq!(
        (e.outcome.as_str(), e.reason.as_str()),
        ("accepted", "applied")
    );
    assert_eq!(
        (e.request_id.as_str(), e.at, e.order_id),
        ("req-1", received(), Some(ORDER))
    );
    assert_eq!(e.detail["applied_uses"], 1);
    assert_eq!(
        e.detail["changes"][0]["confirm_code"], "****",
        "codes are masked"
    );

    let replay = plan_verify(
        &with(s.clone(), |s| {
            s.seen.insert(fp("A", gate(0), 1));
        }),
        &c,
    )
    .expect("replay");
    let e = replay.audit_entry(&c);
    assert_eq!(
        (e.outcome.as_str(), e.reason.as_str()),
        ("replayed", "replayed")
    );
    let equal = plan_verify(&snap(&[("A", 3, 1)]), &cumul(&[("A", 1, None)])).expect("no change");
    let e = equal.audit_entry(&c);
    assert_eq!(
        (e.outcome.as_str(), e.reason.as_str()),
        ("replayed", "no_change")
    );
}

/// R2 with R26: an order-level report drawn from a later code flags that code as late, not the
/// order's first (full, untouched) code.
#[test]
fn order_level_late_redemption_names_the_code_drawn() {
    let s = with(snap(&[("A", 1, 1), ("B", 2, 0)]), |s| {
        s.order.valid_until = Some(gate(0));
    });
    let plan = plan_verify(
        &s,
        &cmd(WriteOffType::Delta, VerifyUses::Order { check_num: 1 }),
    )
    .expect("one use fits");
    let drawn: Vec<&str> = plan.changes.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(drawn, ["B"], "the use is drawn from B");
    // Compare whole codes: `ConfirmCode`'s Debug masks short codes entirely.
    let late: Vec<&str> = plan
        .outcome
        .flags
        .iter()
        .filter_map(|f| match f {
            Flag::LateRedemption { code } => Some(code.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        late,
        ["B"],
        "the late use is B's; A was not used by this report"
    );
}

/// R9 with two pending refunds: each holds its tickets against uses dated after *its own*
/// request (DOMAIN.md R9, `LedgerError::RefundedUsesExceeded`'s docs). Two uses dated between
/// the first request (gate 0) and the second (gate 200), on three one-use tickets: one ticket
/// is free, the second request's ticket may be taken (flagged for review), the first's may not.
/// `plan_verify` instead compares every use dated after the *first* pending request with the
/// uses left once *all* pending requests are held, and refuses.
#[test]
fn r9_each_pending_refund_holds_its_tickets_from_its_own_request() {
    let s = with(snap(&[("A", 1, 0), ("B", 1, 0), ("C", 1, 0)]), |s| {
        s.refunds.push(pending("RF-1", 1, gate(0)));
        s.refunds.push(pending("RF-2", 1, gate(200)));
    });
    let c = delta(&[("A", 1, Some(gate(100))), ("B", 1, Some(gate(100)))]);
    let plan = plan_verify(&s, &c);
    assert!(
        plan.is_ok(),
        "uses dated before RF-2 may take RF-2's ticket, got {plan:?}"
    );
    if let Ok(plan) = plan {
        assert_eq!(plan.outcome.applied_uses, 2);
        assert_eq!(
            plan.review_refunds,
            ["RF-2"],
            "only RF-2's ticket was taken (RF-1 was asked before these uses)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Properties over random report sequences

/// One random report, in terms of voucher indexes (index == number of vouchers names an
/// unknown code).
#[derive(Debug, Clone)]
enum Op {
    /// Delta `voucher_infos`: (voucher, quantity, gate time offset or none).
    Delta(Vec<(usize, i64, Option<i64>)>),
    /// Cumulative `voucher_infos`: (voucher, total).
    Cumulative(Vec<(usize, i64)>),
    /// Legacy code form.
    Code(usize, i64, WriteOffType),
    /// Legacy order-level form.
    Order(i64, WriteOffType),
}

fn mode() -> impl Strategy<Value = WriteOffType> {
    prop_oneof![Just(WriteOffType::Delta), Just(WriteOffType::Cumulative)]
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    // Indexes 0..=n: n is an unknown code (R10), so refusals are exercised too.
    let idx = proptest::sample::subsequence((0..=n).collect::<Vec<_>>(), 1..=(n + 1).min(3));
    prop_oneof![
        4 => idx.clone().prop_flat_map(|ix| {
            let k = ix.len();
            (Just(ix), proptest::collection::vec((1_i64..=3, prop_oneof![4 => (0_i64..4).prop_map(Some), 1 => Just(None)]), k))
        }).prop_map(|(ix, qs)| Op::Delta(ix.into_iter().zip(qs).map(|(i, (q, t))| (i, q, t)).collect())),
        2 => idx.prop_flat_map(|ix| {
            let k = ix.len();
            (Just(ix), proptest::collection::vec(0_i64..=6, k))
        }).prop_map(|(ix, qs)| Op::Cumulative(ix.into_iter().zip(qs).collect())),
        1 => (0..=n, 0_i64..=4, mode()).prop_map(|(i, q, m)| Op::Code(i, if m == WriteOffType::Delta { q.max(1) } else { q }, m)),
        1 => (0_i64..=8, mode()).prop_map(|(q, m)| Op::Order(if m == WriteOffType::Delta { q.max(1) } else { q }, m)),
    ]
}

fn scenario() -> impl Strategy<Value = (Vec<i64>, Vec<Op>)> {
    proptest::collection::vec(1_i64..=5, 1..=4).prop_flat_map(|caps| {
        let n = caps.len();
        (Just(caps), proptest::collection::vec(op(n), 1..40))
    })
}

const CODES: [&str; 5] = ["V0", "V1", "V2", "V3", "UNKNOWN"];

fn code_of(i: usize, n: usize) -> &'static str {
    if i >= n {
        CODES[4]
    } else {
        CODES[i]
    }
}

fn command(op: &Op, n: usize) -> VerifyCommand {
    match op {
        Op::Delta(es) => cmd(
            WriteOffType::Delta,
            entries(
                &es.iter()
                    .map(|&(i, q, t)| (code_of(i, n), q, t.map(gate)))
                    .collect::<Vec<_>>(),
            ),
        ),
        Op::Cumulative(es) => cmd(
            WriteOffType::Cumulative,
            entries(
                &es.iter()
                    .map(|&(i, q)| (code_of(i, n), q, Some(gate(0))))
                    .collect::<Vec<_>>(),
            ),
        ),
        Op::Code(i, q, m) => cmd(
            *m,
            VerifyUses::Code {
                code: code(code_of(*i, n)),
                check_num: *q,
            },
        ),
        Op::Order(q, m) => cmd(*m, VerifyUses::Order { check_num: *q }),
    }
}

/// The ledger a store would keep: counters and remembered fingerprints.
struct Model {
    snap: OrderSnapshot,
    seen: HashSet<Fingerprint>,
}

impl Model {
    fn new(caps: &[i64]) -> Self {
        let vouchers: Vec<(&str, i64, i64)> = caps
            .iter()
            .enumerate()
            .map(|(i, &c)| (CODES[i], c, 0))
            .collect();
        Self {
            snap: snap(&vouchers),
            seen: HashSet::new(),
        }
    }

    /// Plans `c` the way a store does: `seen` holds only the command's own fingerprints.
    fn plan(&self, c: &VerifyCommand) -> Result<VerifyPlan, LedgerError> {
        let mut s = self.snap.clone();
        s.seen = c
            .fingerprints()
            .into_iter()
            .filter(|f| self.seen.contains(f))
            .collect();
        plan_verify(&s, c)
    }

    /// Applies an accepted plan, checking every change against the counters it was planned on.
    fn apply(&mut self, plan: &VerifyPlan) -> Result<(), TestCaseError> {
        for c in &plan.changes {
            let v = self
                .snap
                .vouchers
                .iter_mut()
                .find(|v| v.code == c.code)
                .expect("known code");
            prop_assert!(c.delta > 0, "changes only add: {c:?}");
            prop_assert_eq!(c.used_before, v.used, "planned on the current count");
            prop_assert_eq!(c.capacity, v.capacity);
            v.used += c.delta;
        }
        for f in &plan.new_fingerprints {
            prop_assert!(
                self.seen.insert(f.clone()),
                "a new fingerprint was already recorded: {f:?}"
            );
        }
        Ok(())
    }

    fn used(&self) -> Vec<i64> {
        self.snap.vouchers.iter().map(|v| v.used).collect()
    }
}

fn assert_replayed(model: &Model, c: &VerifyCommand) -> Result<(), TestCaseError> {
    let n = match &c.uses {
        VerifyUses::Vouchers { entries, .. } => entries.len(),
        _ => 0,
    };
    let plan = model.plan(c);
    prop_assert!(plan.is_ok(), "a replay must be accepted, got {plan:?}");
    if let Ok(plan) = plan {
        prop_assert_eq!(
            plan.outcome.kind,
            OutcomeKind::Replayed,
            "replay of {:?}",
            c.uses
        );
        prop_assert!(
            plan.changes.is_empty(),
            "a replay changes nothing: {:?}",
            plan.changes
        );
        prop_assert!(plan.new_fingerprints.is_empty());
        prop_assert_eq!(plan.outcome.replayed_entries, n);
        prop_assert_eq!(plan.outcome.applied_uses, 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// For any sequence of delta and cumulative reports applied as planned: no voucher is used
    /// beyond its capacity, no count ever decreases, cumulative reports leave the count at
    /// max(previous, reported), and replaying any accepted delta report (with gate times) is
    /// `Replayed` with no changes — right away and after everything else.
    #[test]
    fn random_reports_never_overuse_never_decrease_and_replay_cleanly((caps, ops) in scenario()) {
        let n = caps.len();
        let mut model = Model::new(&caps);
        let mut replayable = Vec::new();
        for op in &ops {
            let c = command(op, n);
            let before = model.used();
            let planned = model.plan(&c);
            if let Ok(plan) = &planned {
                // What a store applies to the snapshot it keeps is what the model applies.
                let mut kept = model.snap.clone();
                prop_assert!(plan.apply_to(&mut kept), "a plan fits its own snapshot");
                model.apply(plan)?;
                prop_assert_eq!(&kept.vouchers, &model.snap.vouchers);
                prop_assert_eq!(plan.outcome.applied_uses, plan.changes.iter().map(|c| c.delta).sum::<i64>());
                prop_assert_eq!(plan.outcome.kind == OutcomeKind::Applied, plan.outcome.applied_uses > 0);
            }
            let after = model.used();
            for (i, v) in model.snap.vouchers.iter().enumerate() {
                prop_assert!(v.used <= v.capacity, "{:?} over capacity after {:?}", v, op);
                prop_assert!(after[i] >= before[i], "count decreased after {:?}: {:?} -> {:?}", op, before, after);
            }
            match (op, &planned) {
                (Op::Cumulative(es), Ok(_)) => {
                    for &(i, q) in es {
                        prop_assert_eq!(after[i], before[i].max(q), "cumulative {:?}", op);
                    }
                }
                (Op::Delta(es), Ok(_)) if es.iter().all(|e| e.2.is_some()) => {
                    assert_replayed(&model, &c)?;
                    replayable.push(c);
                }
                (_, Err(_)) => prop_assert_eq!(&after, &before, "a refusal changes nothing"),
                _ => {}
            }
        }
        for c in &replayable {
            assert_replayed(&model, c)?;
        }
    }

    /// An order-level report never overuses either: draws stay within each code's capacity and
    /// sum to what was asked (delta) or to the raise (cumulative).
    #[test]
    fn order_level_reports_draw_exactly_what_they_ask(caps in proptest::collection::vec(1_i64..=5, 1..=4), used in proptest::collection::vec(0_i64..=5, 4), ask in 1_i64..=12, m in mode()) {
        let vouchers: Vec<(&str, i64, i64)> = caps.iter().enumerate().map(|(i, &c)| (CODES[i], c, used[i].min(c))).collect();
        let s = snap(&vouchers);
        let sold: i64 = caps.iter().sum();
        let recorded: i64 = vouchers.iter().map(|v| v.2).sum();
        let wanted = match m { WriteOffType::Delta => ask, WriteOffType::Cumulative => (ask - recorded).max(0) };
        match plan_verify(&s, &cmd(m, VerifyUses::Order { check_num: ask })) {
            Ok(plan) => {
                prop_assert!(wanted <= sold - recorded);
                prop_assert_eq!(plan.outcome.applied_uses, wanted);
                for c in &plan.changes {
                    prop_assert!(c.used_before + c.delta <= c.capacity);
                }
                // Issuance order: a code is drawn only once every earlier code is full.
                let drawn: Vec<usize> = plan.changes.iter().map(|c| s.vouchers.iter().position(|v| v.code == c.code).expect("known")).collect();
                if let Some(&first) = drawn.first() {
                    for v in &s.vouchers[..first] {
                        prop_assert_eq!(v.used, v.capacity, "codes before the first drawn must be full");
                    }
                }
                for (k, &i) in drawn.iter().enumerate().skip(1) {
                    let prev = drawn[k - 1];
                    let change = &plan.changes[k - 1];
                    prop_assert!(prev < i);
                    prop_assert_eq!(change.used_before + change.delta, change.capacity, "earlier code filled before the next");
                    for v in &s.vouchers[prev + 1..i] {
                        prop_assert_eq!(v.used, v.capacity, "a skipped code must be full");
                    }
                }
            }
            Err(e) => prop_assert_eq!(e, LedgerError::OrderCapacityExceeded { requested: wanted, remaining: sold - recorded }),
        }
    }
}

#[test]
fn a_plan_applies_to_its_own_snapshot_and_not_to_another() {
    let s = snap(&[("CODE0001", 3, 1), ("CODE0002", 2, 0)]);
    let plan = plan_verify(
        &s,
        &delta(&[
            ("CODE0002", 2, Some(gate(1))),
            ("CODE0001", 1, Some(gate(2))),
        ]),
    )
    .expect("accepted");
    let mut kept = s.clone();
    assert!(plan.apply_to(&mut kept));
    let used: Vec<i64> = kept.vouchers.iter().map(|v| v.used).collect();
    assert_eq!(used, vec![2, 2]);
    // Applied once more, the counts it was planned on no longer match: refused.
    assert!(!plan.apply_to(&mut kept));
}
