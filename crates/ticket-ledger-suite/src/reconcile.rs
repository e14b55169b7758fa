//! Reconciliation: the vendor's own per-code counts against the ledger, and the missing uses
//! recorded as cumulative reports would be.

use std::sync::Arc;

use chrono::Duration;

use ticket_ledger::{
    plan_reconcile, LedgerError, LedgerStore, ReconcileCommand, VendorCount, VerifyPolicy,
};
use ticket_ledger::{plan_verify, Flag, OutcomeKind, VerifyOrigin};
use ticket_ledger::{reconcile_diff, ReconcileLine};
use ticket_ledger::{AuditOutcome, OrderStatus};

use super::build::{
    code, meta_at, order, received_at, reconcile_cmd, refund_cmd, refund_request, request_id,
    verify_cmd, Fresh,
};
use super::check::{
    anomalies_of, applied, assert_appended, assert_open_anomaly, assert_refusal, assert_used,
    given_app, given_order, ledger, outcome, snapshot_of, transitions, verify_expect, verify_ok,
    view,
};

cases! {
    reconciliation_records_missing_uses_and_never_decreases,
    reconciliation_refused_at_its_last_code_changes_nothing,
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

/// An applied reconciliation of `order_id` with the vendor's `counts`, received an hour after
/// [`received_at`].
fn reconciliation(order_id: i64, counts: &[(&str, i64)]) -> ReconcileCommand {
    ReconcileCommand {
        order_id: super::build::order_id(order_id),
        counts: counts
            .iter()
            .map(|(c, used)| VendorCount {
                code: code(c),
                used: *used,
                request_id: request_id(),
            })
            .collect(),
        apply: true,
        policy: VerifyPolicy::default(),
        meta: meta_at(received_at() + Duration::hours(1), serde_json::json!({})),
    }
}

/// A reconciliation is applied whole or not at all. When its last code is refused — counted
/// beyond the code's capacity, or needing uses the order's refunded tickets hold — nothing of
/// it is recorded: no count moves, no event or audit entry is written, and only the anomaly the
/// refusal names is kept. Without the refused code the rest is applied in one call, each
/// healed code its own event as the plan says.
async fn reconciliation_refused_at_its_last_code_changes_nothing(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    let mut three = order(
        f.id(1),
        &a,
        &[("RW-0001", 1), ("RW-0002", 1), ("RW-0003", 1)],
    );
    three.quantity = 3;
    given_order(&*store, three).await;
    // One of the three tickets is refunded: its use is out of the order's reach.
    let asked = received_at() - Duration::minutes(30);
    store
        .request_refund(refund_request(f.id(1), 1, asked))
        .await
        .expect("setup: the refund request is accepted");
    store
        .refund(refund_cmd(&a, f.id(1)).build())
        .await
        .expect("setup: the refund is settled");

    // The last code counted beyond what it allows.
    let before = ledger(&*store, f.id(1), &a, "before").await;
    let beyond = reconciliation(f.id(1), &[("RW-0001", 1), ("RW-0002", 1), ("RW-0003", 2)]);
    assert_refusal(
        store.reconcile(beyond).await,
        &LedgerError::VendorCountExceedsCapacity {
            code: code("RW-0003"),
            capacity: 1,
            reported: 2,
        },
        "a count beyond the last code's capacity",
    );
    assert_eq!(
        ledger(&*store, f.id(1), &a, "after the count beyond capacity").await,
        before,
        "nothing changed: counts, events, audit entries, anomalies"
    );

    // Every code within its capacity, but the last one's use is held by the refunded ticket:
    // the first two reports alone would be accepted.
    let held = reconciliation(f.id(1), &[("RW-0001", 1), ("RW-0002", 1), ("RW-0003", 1)]);
    let refusal = LedgerError::RefundedUsesExceeded {
        requested: 1,
        remaining: 0,
        refund_pending: false,
    };
    let snapshot = snapshot_of(&view(&*store, f.id(1), "planning").await);
    assert_eq!(
        plan_reconcile(&snapshot, &held).err(),
        Some(refusal.clone()),
        "the rules refuse the last code's report"
    );
    let anomaly = held
        .refusal_anomaly(&refusal)
        .expect("a use held by a refunded ticket matters to money");
    assert_refusal(
        store.reconcile(held).await,
        &refusal,
        "the last code needs a refunded ticket's use",
    );
    let after = ledger(&*store, f.id(1), &a, "after the refused report").await;
    let mut want = before;
    let anomalies = anomalies_of(&*store, f.id(1), "the kept anomaly").await;
    assert_eq!(
        anomalies.len(),
        want.anomalies.len() + 1,
        "the refusal keeps exactly its anomaly: {anomalies:?}"
    );
    assert_open_anomaly(&anomalies[0], &anomaly, "the refusal's anomaly");
    want.anomalies.insert(0, anomalies[0].clone());
    assert_eq!(
        after, want,
        "nothing else changed: no count moved, no event or audit entry was written"
    );
    assert_used(
        &*store,
        f.id(1),
        &[("RW-0001", 0), ("RW-0002", 0), ("RW-0003", 0)],
        "no code counts a use",
    )
    .await;

    // Without the refused code, the rest is applied in one call, one event per healed code.
    let fits = reconciliation(f.id(1), &[("RW-0001", 1), ("RW-0002", 1)]);
    let before = view(&*store, f.id(1), "before applying").await;
    let snapshot = snapshot_of(&before);
    let plan = plan_reconcile(&snapshot, &fits).expect("the rules accept both reports");
    let want: Vec<_> = plan
        .steps
        .iter()
        .flat_map(|s| s.plan.audit_entries(&snapshot, &s.cmd))
        .collect();
    let got = store
        .reconcile(fits.clone())
        .await
        .expect("the reconciliation is applied");
    assert_eq!(got, plan.outcome(fits.order_id), "the answer is the plan's");
    assert_eq!(got.applied_uses(), 2, "two uses recorded");
    let after = assert_appended(&*store, &before, &want, "the healing events").await;
    let healed: Vec<_> = after.events[before.events.len()..]
        .iter()
        .filter(|e| e.action == VerifyOrigin::Reconciliation.action())
        .map(|e| (e.request_id.clone(), e.outcome, e.reason.clone()))
        .collect();
    assert_eq!(
        healed,
        fits.counts
            .iter()
            .map(|c| (
                c.request_id.clone(),
                AuditOutcome::Accepted,
                "applied".to_owned()
            ))
            .collect::<Vec<_>>(),
        "each healed code is its own event, under its own request"
    );
    assert_used(
        &*store,
        f.id(1),
        &[("RW-0001", 1), ("RW-0002", 1), ("RW-0003", 0)],
        "the two codes healed",
    )
    .await;
}
