//! The audit trail, refusals that write nothing, and reads after writes.

use std::collections::HashSet;
use std::sync::Arc;

use ticket_ledger::{plan_verify, OrderSnapshot};
use ticket_ledger::{AuditEntry, AuditFilter, AuditOutcome};
use ticket_ledger::{LedgerError, LedgerStore};

use super::build::{audit_entry, code, gate_time_plus, order, verify_cmd, Fresh};
use super::check::{
    applied, assert_stored, assert_used, audit, given_app, given_order, order_entries, refused,
    verify_expect, verify_ok, view,
};

cases! {
    recorded_entry_is_listed_by_audit,
    audit_lists_oldest_first_with_increasing_seq,
    audit_filters_by_order_app_outcome_after_seq_and_limit,
    order_events_are_its_audit_entries_oldest_first,
    order_events_newest_first_walk_back_from_the_newest_with_before_seq,
    verify_audit_entry_is_the_plans_entry,
    refused_verify_writes_nothing,
    committed_counts_are_seen_by_later_reads,
}

/// `record` appends an entry that `audit` lists unchanged (with its assigned `seq`), by app
/// and by the order it names — even an order the ledger does not have.
async fn recorded_entry_is_listed_by_audit(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    let entry = audit_entry(
        Some(&a),
        Some(f.id(1)),
        AuditOutcome::Rejected,
        "isv.order-not-exist",
    );
    store
        .record(entry.clone())
        .await
        .expect("record should succeed");

    for (what, filter) in [
        (
            "by app",
            AuditFilter {
                app_key: Some(a.clone()),
                ..AuditFilter::default()
            },
        ),
        (
            "by order",
            AuditFilter {
                order_id: Some(f.id(1)),
                ..AuditFilter::default()
            },
        ),
    ] {
        let got = audit(&*store, filter, what).await;
        assert_eq!(
            got.len(),
            1,
            "{what}: exactly the recorded entry, got {got:?}"
        );
        assert_stored(&got[0], &entry, what);
    }
}

/// Audit entries come oldest first with strictly increasing `seq`.
async fn audit_lists_oldest_first_with_increasing_seq(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    let mut recorded = Vec::new();
    for n in 0..6 {
        let outcome = [
            AuditOutcome::Rejected,
            AuditOutcome::Replayed,
            AuditOutcome::Accepted,
        ][n % 3];
        let entry = audit_entry(Some(&a), Some(f.id(1)), outcome, &format!("reason-{n}"));
        store
            .record(entry.clone())
            .await
            .expect("record should succeed");
        recorded.push(entry);
    }
    let got = audit(
        &*store,
        AuditFilter {
            app_key: Some(a.clone()),
            ..AuditFilter::default()
        },
        "audit by app",
    )
    .await;
    assert_eq!(
        got.len(),
        recorded.len(),
        "every recorded entry is listed: {got:?}"
    );
    for (n, (g, want)) in got.iter().zip(&recorded).enumerate() {
        assert_stored(g, want, &format!("entry {n} in recording order"));
    }
    for pair in got.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "seq must increase: {} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
}

/// `audit` filters by order, app, outcome, `after_seq` (paging) and `limit`, alone and
/// combined, keeping oldest-first order.
async fn audit_filters_by_order_app_outcome_after_seq_and_limit(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let (a, b) = (f.key("app-a"), f.key("app-b"));
    let (o1, o2) = (f.id(1), f.id(2));
    use AuditOutcome::{Accepted, Rejected, Replayed};
    // (app, order, outcome): a mix so that every filter selects a strict, non-empty subset.
    let plan: [(Option<&str>, Option<i64>, AuditOutcome); 9] = [
        (Some(&a), Some(o1), Accepted),
        (Some(&b), Some(o2), Rejected),
        (Some(&a), Some(o1), Rejected),
        (None, Some(o1), Rejected),
        (Some(&a), Some(o2), Replayed),
        (Some(&b), Some(o1), Rejected),
        (Some(&a), None, Rejected),
        (Some(&a), Some(o1), Replayed),
        (Some(&b), Some(o2), Accepted),
    ];
    let mut entries = Vec::new();
    for (n, (app, order, outcome)) in plan.into_iter().enumerate() {
        let e = audit_entry(app, order, outcome, &format!("step-{n}"));
        store
            .record(e.clone())
            .await
            .expect("record should succeed");
        entries.push(e);
    }
    // Read the stored seqs back through the two app filters plus the app-less entry.
    let by_order_o1 = audit(
        &*store,
        AuditFilter {
            order_id: Some(o1),
            ..AuditFilter::default()
        },
        "o1",
    )
    .await;
    let reasons = |v: &[AuditEntry]| v.iter().map(|e| e.reason.clone()).collect::<Vec<_>>();
    let steps = |ns: &[usize]| ns.iter().map(|n| format!("step-{n}")).collect::<Vec<_>>();
    assert_eq!(
        reasons(&by_order_o1),
        steps(&[0, 2, 3, 5, 7]),
        "order_id filter"
    );

    let by_app_a = audit(
        &*store,
        AuditFilter {
            app_key: Some(a.clone()),
            ..AuditFilter::default()
        },
        "a",
    )
    .await;
    assert_eq!(
        reasons(&by_app_a),
        steps(&[0, 2, 4, 6, 7]),
        "app_key filter"
    );

    let rejected_a = audit(
        &*store,
        AuditFilter {
            app_key: Some(a.clone()),
            outcome: Some(Rejected),
            ..AuditFilter::default()
        },
        "a rejected",
    )
    .await;
    assert_eq!(
        reasons(&rejected_a),
        steps(&[2, 6]),
        "app_key + outcome filter"
    );

    let rejected_o1 = audit(
        &*store,
        AuditFilter {
            order_id: Some(o1),
            outcome: Some(Rejected),
            ..AuditFilter::default()
        },
        "o1 rejected",
    )
    .await;
    assert_eq!(
        reasons(&rejected_o1),
        steps(&[2, 3, 5]),
        "order_id + outcome filter"
    );

    let a_o2 = audit(
        &*store,
        AuditFilter {
            app_key: Some(a.clone()),
            order_id: Some(o2),
            ..AuditFilter::default()
        },
        "a o2",
    )
    .await;
    assert_eq!(reasons(&a_o2), steps(&[4]), "app_key + order_id filter");

    let after = by_app_a[1].seq;
    let paged = audit(
        &*store,
        AuditFilter {
            app_key: Some(a.clone()),
            after_seq: Some(after),
            ..AuditFilter::default()
        },
        "a after",
    )
    .await;
    assert_eq!(
        reasons(&paged),
        steps(&[4, 6, 7]),
        "after_seq filter (strictly after)"
    );

    let limited = audit(
        &*store,
        AuditFilter {
            app_key: Some(a.clone()),
            limit: Some(2),
            ..AuditFilter::default()
        },
        "a limit 2",
    )
    .await;
    assert_eq!(reasons(&limited), steps(&[0, 2]), "limit keeps the oldest");

    let page = audit(
        &*store,
        AuditFilter {
            app_key: Some(a.clone()),
            after_seq: Some(limited[1].seq),
            limit: Some(2),
            ..AuditFilter::default()
        },
        "a second page",
    )
    .await;
    assert_eq!(
        reasons(&page),
        steps(&[4, 6]),
        "after_seq + limit: the next page"
    );

    let none = audit(
        &*store,
        AuditFilter {
            app_key: Some(b.clone()),
            order_id: Some(o1),
            outcome: Some(Accepted),
            ..AuditFilter::default()
        },
        "empty",
    )
    .await;
    assert!(
        none.is_empty(),
        "a filter nothing matches lists nothing, got {none:?}"
    );
    for (n, e) in by_order_o1.iter().enumerate() {
        let want = entries
            .iter()
            .find(|w| w.reason == e.reason)
            .unwrap_or_else(|| panic!("entry {n} should be one the case recorded"));
        assert_stored(e, want, &format!("o1 entry {n}"));
    }
}

/// An order's `events` are its audit entries, oldest first: its creation, then accepted and
/// replayed verifies (an accepted one followed by the status transition it caused), then
/// entries the gateway recorded for it.
async fn order_events_are_its_audit_entries_oldest_first(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 3)])).await;
    given_order(&*store, order(f.id(2), &a, &[("A", 3)])).await;
    let cmd = verify_cmd(&a, f.id(1)).entry("A", 1).build();
    verify_ok(&*store, cmd.clone(), "first verify").await;
    let mut retry = cmd.clone();
    retry.meta.request_id = super::build::request_id();
    verify_ok(&*store, retry, "retried verify").await;
    verify_ok(
        &*store,
        verify_cmd(&a, f.id(2)).entry("A", 1).build(),
        "the other order's verify",
    )
    .await;
    let rejected = audit_entry(
        Some(&a),
        Some(f.id(1)),
        AuditOutcome::Rejected,
        "isv.verify-num-exceed",
    );
    store.record(rejected).await.expect("record should succeed");

    let events = view(&*store, f.id(1), "order()").await.events;
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "created",
            "applied",
            "partly_used",
            "replayed",
            "isv.verify-num-exceed"
        ],
        "order 1's events (the first verify moves it issued -> partly_used)"
    );
    let listed = audit(
        &*store,
        AuditFilter {
            order_id: Some(f.id(1)),
            ..AuditFilter::default()
        },
        "audit",
    )
    .await;
    assert_eq!(
        events, listed,
        "order().events should equal audit(order_id)"
    );
}

/// `AuditFilter::order_events_newest_first` lists an order's entries newest first: a page of
/// `limit` from the newest, and each next page before the smallest `seq` seen, until an empty
/// page; the walk is the order's history reversed. `before_seq` alone also means newest first,
/// and the other filters still apply.
async fn order_events_newest_first_walk_back_from_the_newest_with_before_seq(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 9)])).await;
    given_order(&*store, order(f.id(2), &a, &[("A", 9)])).await;
    for n in 0..4 {
        let cmd = verify_cmd(&a, f.id(1))
            .entry_at("A", 1, Some(gate_time_plus(n)))
            .build();
        verify_ok(&*store, cmd, "a verify of order 1").await;
        let other = verify_cmd(&a, f.id(2))
            .entry_at("A", 1, Some(gate_time_plus(n)))
            .build();
        verify_ok(&*store, other, "a verify of order 2").await;
    }
    let oldest_first = audit(
        &*store,
        AuditFilter {
            order_id: Some(f.id(1)),
            limit: Some(1000),
            ..AuditFilter::default()
        },
        "order 1's history",
    )
    .await;
    assert!(oldest_first.len() >= 6, "{oldest_first:?}");
    let id = super::build::order_id(f.id(1));
    let mut walked: Vec<AuditEntry> = Vec::new();
    let mut before = None;
    for _ in 0..oldest_first.len() + 1 {
        let page = audit(
            &*store,
            AuditFilter::order_events_newest_first(id, before, 2),
            "a page back",
        )
        .await;
        assert!(page.len() <= 2, "at most the limit");
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        walked.extend(page);
    }
    let mut reversed = oldest_first.clone();
    reversed.reverse();
    assert_eq!(
        walked, reversed,
        "the history, newest first, each entry once"
    );

    let newest = oldest_first.last().expect("entries");
    let before_only = audit(
        &*store,
        AuditFilter {
            order_id: Some(f.id(1)),
            before_seq: Some(newest.seq),
            limit: Some(2),
            ..AuditFilter::default()
        },
        "before_seq alone",
    )
    .await;
    assert_eq!(before_only, reversed[1..3], "before_seq means newest first");
    let by_outcome = audit(
        &*store,
        AuditFilter {
            app_key: Some(a.clone()),
            outcome: Some(AuditOutcome::Accepted),
            newest_first: true,
            limit: Some(3),
            ..AuditFilter::default()
        },
        "the app's accepted entries, newest first",
    )
    .await;
    let seqs: Vec<i64> = by_outcome.iter().map(|e| e.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(seqs, sorted, "decreasing seq");
    assert_eq!(by_outcome.len(), 3);
    assert!(by_outcome
        .iter()
        .all(|e| e.app_key.as_deref() == Some(a.as_str()) && e.outcome == AuditOutcome::Accepted));
}

/// A verify's audit entries are the plan's own (`VerifyPlan::audit_entries`): the verify itself
/// (request id, receive time, app, order, outcome, reason and the detail with the changes and
/// flags), then the status transition it caused (issued → partly_used), in that order.
async fn verify_audit_entry_is_the_plans_entry(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 3), ("B", 2)])).await;
    let cmd = verify_cmd(&a, f.id(1))
        .entry("A", 2)
        .entry_at("B", 1, None)
        .total_num(4)
        .build();
    let before = view(&*store, f.id(1), "before").await;
    let snapshot = OrderSnapshot {
        order: before.order.clone(),
        vouchers: before.vouchers.clone(),
        seen: HashSet::new(),
        refunds: before.refunds.clone(),
    };
    let plan =
        plan_verify(&snapshot, &cmd).expect("the case's command should be accepted by the rules");
    let want = plan.audit_entries(&snapshot, &cmd);
    assert_eq!(
        want.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["taobao.travel.ticket.order.verify", "order.status"],
        "the plan's entries: the verify, then issued -> partly_used"
    );
    let got = verify_ok(&*store, cmd.clone(), "verify").await;
    assert_eq!(got, plan.outcome, "the store answers the plan's outcome");

    let after = view(&*store, f.id(1), "after").await;
    assert_eq!(
        after.events.len(),
        before.events.len() + want.len(),
        "the verify's entry and its status transition, nothing else"
    );
    let stored = &after.events[before.events.len()..];
    for (n, (got, want)) in stored.iter().zip(&want).enumerate() {
        assert_stored(got, want, &format!("the verify's entry {n}"));
    }
    assert!(
        stored[0].seq < stored[1].seq,
        "the verify's entry comes before its status transition"
    );
}

/// A refused verify writes nothing — no counter, no fingerprint, no audit entry (the gateway
/// records refusals with `record`) — whatever the reason.
async fn refused_verify_writes_nothing(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 2), ("B", 1)])).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).entry("A", 1).build(),
        &applied(f.id(1), 1, vec![]),
        "setup",
    )
    .await;
    let before = view(&*store, f.id(1), "before").await;

    let over = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(gate_time_plus(5)))
        .entry_at("B", 2, Some(gate_time_plus(5)))
        .build();
    let unknown = verify_cmd(&a, f.id(1))
        .entry_at("B", 1, Some(gate_time_plus(6)))
        .entry_at("Q", 1, Some(gate_time_plus(6)))
        .build();
    let future = verify_cmd(&a, f.id(1))
        .entry_at("B", 1, Some(gate_time_plus(7200)))
        .build();
    let refusals = [
        (
            over.clone(),
            LedgerError::CapacityExceeded {
                code: code("B"),
                requested: 2,
                remaining: 1,
            },
        ),
        (
            unknown.clone(),
            LedgerError::VoucherNotFound { code: code("Q") },
        ),
        (
            verify_cmd(&a, f.id(1)).order_level(3).build(),
            LedgerError::OrderCapacityExceeded {
                requested: 3,
                remaining: 2,
            },
        ),
        (
            verify_cmd(&a, f.id(1))
                .legacy_code("A", 1)
                .total_num(9)
                .build(),
            LedgerError::TotalNumExceeds {
                reported: 9,
                ledger: 3,
            },
        ),
    ];
    for (n, (cmd, err)) in refusals.into_iter().enumerate() {
        refused(&*store, Some(f.id(1)), cmd, &err, &format!("refusal {n}")).await;
    }
    let err = store
        .verify(future)
        .await
        .expect_err("a gate time two hours ahead should be refused");
    assert!(
        matches!(err, LedgerError::UsedDateInvalid { .. }),
        "future gate time: got {err:?}"
    );

    assert_eq!(
        view(&*store, f.id(1), "after").await,
        before,
        "counters and events after the refusals"
    );
    let rejected =
        order_entries(&*store, f.id(1), AuditOutcome::Rejected, "rejected entries").await;
    assert!(
        rejected.is_empty(),
        "the store itself records no rejection, got {rejected:?}"
    );
    // Nothing of the refused requests was remembered: their valid parts now apply in full.
    let a_part = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(gate_time_plus(5)))
        .entry_at("B", 1, Some(gate_time_plus(6)))
        .build();
    verify_expect(
        &*store,
        a_part,
        &applied(f.id(1), 2, vec![]),
        "the refused requests' valid entries",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2), ("B", 1)], "final").await;
}

/// What a verify commits is what later reads see: twice from the same handle and from another
/// task.
async fn committed_counts_are_seen_by_later_reads(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 4), ("B", 4)])).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).entry("A", 3).entry("B", 1).build(),
        &applied(f.id(1), 4, vec![]),
        "verify",
    )
    .await;
    let first = view(&*store, f.id(1), "first read").await;
    let second = view(&*store, f.id(1), "second read").await;
    assert_eq!(first, second, "two reads after the commit agree");
    assert_used(&*store, f.id(1), &[("A", 3), ("B", 1)], "read").await;

    let other = Arc::clone(&store);
    let id = f.id(1);
    let from_task = tokio::spawn(async move { view(&*other, id, "read from another task").await })
        .await
        .expect("the reading task should not panic");
    assert_eq!(from_task, first, "another task reads the committed counts");
}
