//! The rule table: one row per verify rule `plan_verify` enforces (docs/DOMAIN.md §2.3), each
//! checked on a hand-built snapshot.

use super::*;

fn date_err(at: DateTime<Utc>, why: UsedDateProblem) -> Want {
    Want::Err(LedgerError::UsedDateInvalid {
        used_date: top_time(at),
        why,
    })
}

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
