//! Reconciliation: the vendor's own per-code counts against the ledger, and the missing uses
//! recorded as cumulative reports would be.

use std::sync::Arc;

use chrono::Duration;

use ticket_ledger::{plan_verify, Flag, OutcomeKind, VerifyOrigin};
use ticket_ledger::{reconcile_diff, ReconcileLine};
use ticket_ledger::{AuditOutcome, OrderStatus};
use ticket_ledger::{LedgerError, LedgerStore};

use super::build::{code, order, received_at, reconcile_cmd, verify_cmd, Fresh};
use super::check::{
    applied, assert_appended, assert_used, given_app, given_order, outcome, snapshot_of,
    transitions, verify_expect, verify_ok, view,
};

cases! {
    reconciliation_records_missing_uses_and_never_decreases,
}

/// `reconcile_diff` against the ledger read through `order()` shows, per code, the uses the
/// vendor has and the ledger lacks; applying them as cumulative reports with origin
/// `Reconciliation` records each as an `admin.reconcile` event (with the status transition it
/// causes), raises the counts to the vendor's, and never decreases one: a code the vendor
/// counts lower keeps its count (and a lower count applied anyway changes nothing).
async fn reconciliation_records_missing_uses_and_never_decreases(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(
        &*store,
        order(
            f.id(1),
            &a,
            &[("REC-0001", 5), ("REC-0002", 3), ("REC-0003", 2)],
        ),
    )
    .await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1))
            .entry("REC-0001", 2)
            .entry("REC-0002", 2)
            .build(),
        &applied(f.id(1), 4, vec![]),
        "the ledger's uses",
    )
    .await;

    let vendor = [(code("REC-0001"), 5), (code("REC-0002"), 1)];
    let ledger = view(&*store, f.id(1), "before").await;
    let lines = reconcile_diff(&ledger.vouchers, &vendor).expect("known codes");
    let line = |c: &str, ledger_used, vendor_used| ReconcileLine {
        code: code(c),
        ledger_used,
        vendor_used,
    };
    assert_eq!(
        lines,
        [
            line("REC-0001", 2, 5),
            line("REC-0002", 2, 1),
            line("REC-0003", 0, 0)
        ],
        "the diff (an unlisted code counts 0 on the vendor's side)"
    );
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.missing(), l.excess()))
            .collect::<Vec<_>>(),
        [(3, 0), (0, 1), (0, 0)],
        "(missing, excess) per code"
    );

    let at = received_at() + Duration::hours(1);
    for l in lines.iter().filter(|l| l.missing() > 0) {
        let cmd = reconcile_cmd(&a, f.id(1), l.code.as_str(), l.vendor_used, at);
        assert_eq!(cmd.origin, VerifyOrigin::Reconciliation, "origin");
        let before = view(&*store, f.id(1), "before applying").await;
        let snapshot = snapshot_of(&before);
        let plan = plan_verify(&snapshot, &cmd).expect("the rules accept the missing uses");
        let want = plan.audit_entries(&snapshot, &cmd);
        let got = verify_ok(&*store, cmd.clone(), "apply").await;
        assert_eq!(
            got,
            applied(
                f.id(1),
                l.missing(),
                vec![Flag::ServerTimeUsed {
                    code: l.code.clone()
                }]
            ),
            "the missing uses applied"
        );
        let after = assert_appended(&*store, &before, &want, "the reconcile's events").await;
        let event = &after.events[before.events.len()];
        assert_eq!(
            (event.action.as_str(), event.outcome, event.reason.as_str()),
            ("admin.reconcile", AuditOutcome::Accepted, "applied"),
            "recorded as a reconciliation"
        );
    }
    assert_used(
        &*store,
        f.id(1),
        &[("REC-0001", 5), ("REC-0002", 2), ("REC-0003", 0)],
        "raised, never decreased",
    )
    .await;

    let lower = reconcile_cmd(&a, f.id(1), "REC-0002", 1, at);
    let got = verify_ok(&*store, lower, "a lower count applied anyway").await;
    assert_eq!(
        got,
        outcome(
            f.id(1),
            OutcomeKind::NoChange,
            0,
            0,
            vec![
                Flag::ServerTimeUsed {
                    code: code("REC-0002")
                },
                Flag::CountRegressed {
                    code: code("REC-0002"),
                    reported: 1,
                    recorded: 2
                }
            ]
        ),
        "nothing decreases"
    );
    let again = view(&*store, f.id(1), "after").await;
    let lines = reconcile_diff(&again.vouchers, &vendor).expect("known codes");
    assert!(
        lines.iter().all(|l| l.missing() == 0),
        "nothing is missing any more: {lines:?}"
    );
    assert_used(
        &*store,
        f.id(1),
        &[("REC-0001", 5), ("REC-0002", 2), ("REC-0003", 0)],
        "final",
    )
    .await;

    // A reconciliation that uses an order up moves its status like any verify.
    given_order(&*store, order(f.id(2), &a, &[("REC-0004", 2)])).await;
    verify_ok(
        &*store,
        reconcile_cmd(&a, f.id(2), "REC-0004", 2, at),
        "the vendor used it all",
    )
    .await;
    let used = view(&*store, f.id(2), "used").await;
    assert_eq!(used.status(), OrderStatus::Used, "status");
    assert_eq!(
        transitions(&used),
        [("issued".to_owned(), "used".to_owned())],
        "transition"
    );
    assert_eq!(
        used.events.last().map(|e| e.detail["cause"].clone()),
        Some(serde_json::json!("admin.reconcile")),
        "the transition names the reconciliation as its cause"
    );

    // The vendor's list must name the order's own codes, with counts that can be.
    assert_eq!(
        reconcile_diff(&again.vouchers, &[(code("REC-0009"), 1)]),
        Err(LedgerError::VoucherNotFound {
            code: code("REC-0009")
        }),
        "an unknown code"
    );
    assert!(
        matches!(
            reconcile_diff(&again.vouchers, &[(code("REC-0001"), -1)]),
            Err(LedgerError::InvalidOrder(_))
        ),
        "a negative count"
    );
}
