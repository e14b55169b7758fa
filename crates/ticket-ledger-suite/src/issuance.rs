//! Issuance (发码): `alitrip.travel.ticket.order.create` fills the ledger verify draws down.

use std::sync::Arc;

use ticket_ledger::OutcomeKind;
use ticket_ledger::ISSUE_ACTION;
use ticket_ledger::{plan_issue, IssueCommand};
use ticket_ledger::{AuditOutcome, IssueState, OrderStatus, OrderView, VoucherRecord};
use ticket_ledger::{LedgerError, LedgerStore};

use super::build::{code, issue_cmd, order, out, verify_cmd, Fresh};
use super::check::{
    applied, assert_appended, assert_refusal, given_app, given_order, ledger, refused, snapshot_of,
    transitions, verify_expect, view,
};

cases! {
    issuance_fills_an_awaiting_order_and_moves_it_to_issued,
    same_issuance_report_again_is_replayed_and_changes_nothing,
    issuance_with_other_codes_is_refused_with_issue_conflict,
    failed_issuance_marks_issue_failed_and_a_later_success_issues,
    failure_after_success_is_refused_with_issue_conflict,
    issuance_with_another_out_order_id_is_refused,
    issuance_of_another_apps_order_is_order_not_found,
}

/// Registers an app and creates order `f.id(1)` of `quantity` tickets awaiting issuance (no
/// vouchers, no `out_order_id`); returns the app key.
async fn awaiting(store: &dyn LedgerStore, f: &Fresh, quantity: i64) -> String {
    let a = f.key("app");
    given_app(store, &a).await;
    let mut o = order(f.id(1), &a, &[]);
    o.quantity = quantity;
    given_order(store, o).await;
    a
}

/// Runs an issuance the case expects to be accepted with `kind`; asserts the events appended
/// are exactly the plan's (the report, then the status transition if any) and returns the
/// order afterwards.
async fn issue_ok(
    store: &dyn LedgerStore,
    cmd: IssueCommand,
    kind: OutcomeKind,
    ctx: &str,
) -> OrderView {
    let before = view(store, cmd.order_id.get(), ctx).await;
    let snapshot = snapshot_of(&before);
    let plan = plan_issue(&snapshot, &cmd)
        .unwrap_or_else(|e| panic!("{ctx}: the rules should accept the report, got {e:?}"));
    let want = plan.audit_entries(&snapshot, &cmd);
    let got = store
        .issue(cmd)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: issue should be accepted, got Err({e:?})"));
    assert_eq!(got, kind, "{ctx}: issue's outcome");
    assert_appended(store, &before, &want, ctx).await
}

/// Runs an issuance the case expects to be refused with `expected` (compared exactly, or only
/// by variant for `IssueConflict`, whose message is prose); asserts it wrote nothing at all —
/// no event, no anomaly.
async fn issue_refused(
    store: &dyn LedgerStore,
    cmd: IssueCommand,
    expected: &LedgerError,
    ctx: &str,
) {
    let id = cmd.order_id.get();
    let a = cmd.app_key.as_str().to_owned();
    let before = ledger(store, id, &a, ctx).await;
    let got = store.issue(cmd).await;
    match (expected, got) {
        (LedgerError::IssueConflict(_), Err(LedgerError::IssueConflict(why))) => {
            assert!(!why.is_empty(), "{ctx}: IssueConflict says why");
        }
        (_, got) => assert_refusal(got, expected, ctx),
    }
    assert_eq!(
        ledger(store, id, &a, ctx).await,
        before,
        "{ctx}: a refused issuance writes nothing (order, events, anomalies)"
    );
}

fn vouchers(list: &[(&str, i64)]) -> Vec<VoucherRecord> {
    list.iter()
        .map(|&(c, capacity)| VoucherRecord {
            code: code(c),
            capacity,
            used: 0,
        })
        .collect()
}

/// An order created without vouchers awaits issuance; a success report fills its vouchers in
/// report order, records the vendor's `out_order_id`, marks it issued and moves its status
/// `awaiting_issuance` → `issued` — the report and the transition are events of the report's
/// request — after which verify draws the codes down.
async fn issuance_fills_an_awaiting_order_and_moves_it_to_issued(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = awaiting(&*store, &f, 3).await;
    let vendor = f.key("vendor");
    let cmd = issue_cmd(&a, f.id(1), &vendor)
        .codes(&[("ZED-0001", 2), ("ALF-0002", 1)])
        .build();
    let request_id = cmd.meta.request_id.clone();
    let after = issue_ok(&*store, cmd, OutcomeKind::Applied, "issue").await;

    assert_eq!(
        after.vouchers,
        vouchers(&[("ZED-0001", 2), ("ALF-0002", 1)]),
        "the issued codes in report order, nothing used"
    );
    assert_eq!(
        (
            after.order.issue_state,
            after.order.out_order_id.clone(),
            after.order.issue_describe.clone()
        ),
        (IssueState::Issued, Some(out(&vendor)), None),
        "(issue_state, out_order_id, issue_describe)"
    );
    assert_eq!(after.status(), OrderStatus::Issued, "status");
    assert_eq!(
        transitions(&after),
        [("awaiting_issuance".to_owned(), "issued".to_owned())],
        "the one status transition"
    );
    let report = &after.events[1];
    assert_eq!(
        (
            report.action.as_str(),
            report.outcome,
            report.reason.as_str(),
            report.request_id.as_str()
        ),
        (
            ISSUE_ACTION,
            AuditOutcome::Accepted,
            "issued",
            request_id.as_str()
        ),
        "the report's event"
    );
    assert_eq!(
        after.events[2].request_id, request_id,
        "the transition names the report's request"
    );

    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).entry("ZED-0001", 2).build(),
        &applied(f.id(1), 2, vec![]),
        "verify after issuance",
    )
    .await;
}

/// The same success report again (same codes and quantities, in any order, a new request) is
/// `Replayed`: the order, its vouchers and status are unchanged, and the only new event is the
/// replayed report — no status transition.
async fn same_issuance_report_again_is_replayed_and_changes_nothing(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = awaiting(&*store, &f, 2).await;
    let vendor = f.key("vendor");
    let codes = [("SAME-0001", 1), ("SAME-0002", 1)];
    let first = issue_ok(
        &*store,
        issue_cmd(&a, f.id(1), &vendor).codes(&codes).build(),
        OutcomeKind::Applied,
        "first report",
    )
    .await;
    let again = issue_ok(
        &*store,
        issue_cmd(&a, f.id(1), &vendor)
            .codes(&[codes[1], codes[0]])
            .build(),
        OutcomeKind::Replayed,
        "the same report again",
    )
    .await;
    assert_eq!(
        (&again.order, &again.vouchers, again.status()),
        (&first.order, &first.vouchers, OrderStatus::Issued),
        "a replayed report changes nothing"
    );
    let last = again.events.last().expect("the replayed report's event");
    assert_eq!(
        (last.action.as_str(), last.outcome, last.reason.as_str()),
        (ISSUE_ACTION, AuditOutcome::Replayed, "replayed"),
        "the replayed report's event"
    );
}

/// A second success report that contradicts the first — another code, another quantity for the
/// same code, a code missing — is refused with `IssueConflict` and writes nothing.
async fn issuance_with_other_codes_is_refused_with_issue_conflict(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = awaiting(&*store, &f, 2).await;
    let vendor = f.key("vendor");
    issue_ok(
        &*store,
        issue_cmd(&a, f.id(1), &vendor)
            .codes(&[("ONE-0001", 1), ("TWO-0002", 1)])
            .build(),
        OutcomeKind::Applied,
        "first report",
    )
    .await;
    for (what, codes) in [
        ("another code", &[("ONE-0001", 1), ("NEW-0003", 1)][..]),
        ("another quantity", &[("ONE-0001", 1), ("TWO-0002", 2)][..]),
        ("a code missing", &[("ONE-0001", 1)][..]),
        (
            "a code more",
            &[("ONE-0001", 1), ("TWO-0002", 1), ("NEW-0003", 1)][..],
        ),
    ] {
        issue_refused(
            &*store,
            issue_cmd(&a, f.id(1), &vendor).codes(codes).build(),
            &LedgerError::IssueConflict(String::new()),
            what,
        )
        .await;
    }
}

/// A failure report (`issue_type` 2) marks the order `issue_failed` with the vendor's
/// `describe` (status `awaiting_issuance` → `issue_failed`); the same failure again is
/// `Replayed`; verify is refused with `OrderNotIssued`; a later success issues the order
/// (`issue_failed` → `issued`) and verify works.
async fn failed_issuance_marks_issue_failed_and_a_later_success_issues(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = awaiting(&*store, &f, 1).await;
    let vendor = f.key("vendor");
    let failed = issue_ok(
        &*store,
        issue_cmd(&a, f.id(1), &vendor).failed("库存不足").build(),
        OutcomeKind::Applied,
        "failure",
    )
    .await;
    assert_eq!(
        (
            failed.order.issue_state,
            failed.order.issue_describe.as_deref(),
            failed.vouchers.len(),
            failed.status()
        ),
        (
            IssueState::Failed,
            Some("库存不足"),
            0,
            OrderStatus::IssueFailed
        ),
        "(issue_state, issue_describe, vouchers, status) after the failure"
    );
    assert_eq!(
        failed.events.last().map(|e| e.reason.as_str()),
        Some("issue_failed"),
        "the transition to issue_failed is the last event"
    );
    issue_ok(
        &*store,
        issue_cmd(&a, f.id(1), &vendor).failed("库存不足").build(),
        OutcomeKind::Replayed,
        "the same failure again",
    )
    .await;
    refused(
        &*store,
        Some(f.id(1)),
        verify_cmd(&a, f.id(1)).entry("RETRY-0001", 1).build(),
        &LedgerError::OrderNotIssued,
        "verify after a failed issuance",
    )
    .await;

    let issued = issue_ok(
        &*store,
        issue_cmd(&a, f.id(1), &vendor)
            .codes(&[("RETRY-0001", 1)])
            .build(),
        OutcomeKind::Applied,
        "success after the failure",
    )
    .await;
    assert_eq!(
        (issued.order.issue_state, issued.status()),
        (IssueState::Issued, OrderStatus::Issued),
        "(issue_state, status) after the success"
    );
    assert_eq!(issued.vouchers, vouchers(&[("RETRY-0001", 1)]), "vouchers");
    assert_eq!(
        transitions(&issued),
        [
            ("awaiting_issuance".to_owned(), "issue_failed".to_owned()),
            ("issue_failed".to_owned(), "issued".to_owned())
        ],
        "status transitions"
    );
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).entry("RETRY-0001", 1).build(),
        &applied(f.id(1), 1, vec![]),
        "verify after the retried issuance",
    )
    .await;
}

/// A failure report after a success contradicts codes the buyer already holds: refused with
/// `IssueConflict`, and the order stays issued.
async fn failure_after_success_is_refused_with_issue_conflict(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = awaiting(&*store, &f, 1).await;
    let vendor = f.key("vendor");
    issue_ok(
        &*store,
        issue_cmd(&a, f.id(1), &vendor)
            .codes(&[("KEEP-0001", 1)])
            .build(),
        OutcomeKind::Applied,
        "success",
    )
    .await;
    issue_refused(
        &*store,
        issue_cmd(&a, f.id(1), &vendor).failed("too late").build(),
        &LedgerError::IssueConflict(String::new()),
        "failure after success",
    )
    .await;
    // An order created with its codes is issued too.
    given_order(&*store, order(f.id(2), &a, &[("HAD-0001", 1)])).await;
    issue_refused(
        &*store,
        issue_cmd(&a, f.id(2), &vendor).failed("too late").build(),
        &LedgerError::IssueConflict(String::new()),
        "failure for an order created with codes",
    )
    .await;
}

/// An issuance report whose `out_order_id` differs from the one the order already has — given
/// at creation, or recorded by an earlier report — is refused with `OutOrderIdMismatch` and
/// writes nothing.
async fn issuance_with_another_out_order_id_is_refused(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    let known = f.key("known");
    let mut with_out = order(f.id(1), &a, &[]);
    with_out.out_order_id = Some(out(&known));
    given_order(&*store, with_out).await;
    given_order(&*store, order(f.id(2), &a, &[])).await;

    issue_refused(
        &*store,
        issue_cmd(&a, f.id(1), &f.key("other"))
            .codes(&[("C-0001", 1)])
            .build(),
        &LedgerError::OutOrderIdMismatch,
        "out_order_id given at creation",
    )
    .await;
    issue_ok(
        &*store,
        issue_cmd(&a, f.id(1), &known)
            .codes(&[("C-0001", 1)])
            .build(),
        OutcomeKind::Applied,
        "the matching out_order_id",
    )
    .await;

    let first = f.key("first");
    issue_ok(
        &*store,
        issue_cmd(&a, f.id(2), &first).failed("busy").build(),
        OutcomeKind::Applied,
        "a failure records out_order_id",
    )
    .await;
    for (what, cmd) in [
        (
            "success with another out_order_id",
            issue_cmd(&a, f.id(2), &f.key("second"))
                .codes(&[("C-0002", 1)])
                .build(),
        ),
        (
            "failure with another out_order_id",
            issue_cmd(&a, f.id(2), &f.key("second"))
                .failed("busy")
                .build(),
        ),
    ] {
        issue_refused(&*store, cmd, &LedgerError::OutOrderIdMismatch, what).await;
    }
    assert_eq!(
        view(&*store, f.id(2), "after").await.order.out_order_id,
        Some(out(&first)),
        "the recorded out_order_id"
    );
}

/// An issuance report for another app's order is refused exactly like one for an unknown
/// order (`OrderNotFound`) and writes nothing.
async fn issuance_of_another_apps_order_is_order_not_found(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let (owner, intruder) = (f.key("owner"), f.key("intruder"));
    given_app(&*store, &owner).await;
    given_app(&*store, &intruder).await;
    given_order(&*store, order(f.id(1), &owner, &[])).await;
    let vendor = f.key("vendor");
    assert_refusal(
        store
            .issue(
                issue_cmd(&intruder, f.id(9), &vendor)
                    .codes(&[("X-0001", 1)])
                    .build(),
            )
            .await,
        &LedgerError::OrderNotFound,
        "unknown order",
    );
    issue_refused(
        &*store,
        issue_cmd(&intruder, f.id(1), &vendor)
            .codes(&[("X-0001", 1)])
            .build(),
        &LedgerError::OrderNotFound,
        "another app's order",
    )
    .await;
    assert_eq!(
        view(&*store, f.id(1), "the owner's order").await.status(),
        OrderStatus::AwaitingIssuance,
        "still awaiting issuance"
    );
}
