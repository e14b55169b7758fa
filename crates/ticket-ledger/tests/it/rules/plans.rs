//! What a single plan records: its audit entry, the code a late order-level redemption draws,
//! and the tickets each pending refund holds.

use super::*;

#[test]
fn plan_audit_entry_records_outcome_reason_and_request() {
    let s = snap(&[("A", 3, 0)]);
    let mut c = delta(&[("A", 1, Some(gate(0)))]);
    c.meta.summary =
        serde_json::json!({"order_id": "7", "voucher_infos": [{"code": "****"}]}).into();
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
    assert_eq!(
        e.detail,
        serde_json::json!({
            "applied_uses": 1,
            "replayed_entries": 0,
            "changes": [{"confirm_code": "****", "delta": 1, "used": 1, "capacity": 3}],
            "flags": [],
            "request": {"order_id": "7", "voucher_infos": [{"code": "****"}]},
        }),
        "the whole detail, the request's summary included"
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
/// request (docs/DOMAIN.md R9, `LedgerError::RefundedUsesExceeded`'s docs). Two uses dated between
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

/// R10 in a large report (more codes than a plan scans for; it looks them up in a map of the
/// order's codes): each entry lands on its own code wherever that code is in the order, and
/// one code the order lacks still refuses the whole report.
#[test]
fn a_large_report_finds_each_code_wherever_it_is_in_the_order() {
    let names: Vec<String> = (0..30).map(|i| format!("C{i:02}")).collect();
    // Capacities tell the codes apart: C00 allows 1 use, C29 allows 30.
    let vouchers: Vec<(&str, i64, i64)> = names
        .iter()
        .zip(1..)
        .map(|(name, capacity)| (name.as_str(), capacity, 0))
        .collect();
    let s = snap(&vouchers);
    let picked = [29, 0, 15, 1, 28, 7, 14, 2, 27, 9, 20, 3];
    let report: Vec<(&str, i64, Option<DateTime<Utc>>)> = picked
        .iter()
        .map(|&i| (names[i].as_str(), 1, None))
        .collect();
    let plan = plan_verify(&s, &delta(&report)).expect("every code is the order's");
    let mut landed: Vec<(String, i64, i64)> = plan
        .changes
        .iter()
        .map(|c| (c.code.as_str().to_owned(), c.delta, c.capacity))
        .collect();
    landed.sort();
    let mut expected: Vec<(String, i64, i64)> = picked
        .iter()
        .map(|&i| (names[i].clone(), 1, i64::try_from(i).expect("small") + 1))
        .collect();
    expected.sort();
    assert_eq!(landed, expected);

    let mut unknown = report.clone();
    unknown.insert(6, ("C99", 1, None));
    assert_eq!(
        plan_verify(&s, &delta(&unknown)).map(|p| p.changes.len()),
        Err(LedgerError::VoucherNotFound { code: code("C99") })
    );
}

/// A store writes a verify's entries as rendered from the plan's parts
/// (`rendered_audit_entries`); readers and the behaviour suite see `audit_entries`. The two
/// must be the same text, byte for byte: with flags, with several changes, with a status
/// transition after the verify's entry, for replays, and with a summary whose text needs
/// escaping.
#[test]
fn rendered_audit_entries_are_the_entries_as_text() {
    let summary = serde_json::json!({"order_id": "7", "memo": "门票 \"gate\"\n\u{2028}", "n": [1, 2.5, null]});
    let late = with(snap(&[("A", 1, 1), ("B", 2, 0)]), |s| {
        s.order.valid_until = Some(gate(0));
    });
    let cases = [
        (snap(&[("A", 3, 0)]), delta(&[("A", 1, Some(gate(0)))])),
        (
            snap(&[("A", 3, 0), ("B", 2, 1), ("C", 1, 0)]),
            delta(&[
                ("A", 2, Some(gate(0))),
                ("B", 1, None),
                ("C", 1, Some(gate(1))),
            ]),
        ),
        (snap(&[("A", 1, 0)]), delta(&[("A", 1, Some(gate(0)))])),
        (
            late,
            cmd(WriteOffType::Delta, VerifyUses::Order { check_num: 1 }),
        ),
        (
            with(snap(&[("A", 3, 1)]), |s| {
                s.seen.insert(fp("A", gate(0), 1));
            }),
            delta(&[("A", 1, Some(gate(0)))]),
        ),
        (snap(&[("A", 3, 1)]), cumul(&[("A", 1, None)])),
    ];
    let mut flagged = 0;
    let mut transitions = 0;
    for (s, c) in cases {
        let c = edit(c, |c| c.meta.summary = summary.clone().into());
        let plan = plan_verify(&s, &c).expect("planned");
        let want: Vec<_> = plan
            .audit_entries(&s, &c)
            .into_iter()
            .map(AuditEntry::rendered)
            .collect();
        let got = plan.rendered_audit_entries(&s, &c);
        assert_eq!(got, want, "{:?}", plan.outcome);
        flagged += usize::from(!plan.outcome.flags.is_empty());
        transitions += usize::from(got.len() > 1);
    }
    assert!(flagged > 0, "a case raises a flag");
    assert!(transitions > 0, "a case moves the order's status");
}
