//! Racing gates (R28): verifies of one order at the same time, on the caller's runtime.

use std::sync::Arc;

use ticket_ledger::AuditOutcome;
use ticket_ledger::{LedgerError, LedgerStore};
use ticket_ledger::{OutcomeKind, VerifyCommand, VerifyOutcome};

use super::build::{code, gate_time_plus, order, retry_of, verify_cmd, Fresh};
use super::check::{applied, assert_used, given_app, given_order, order_entries, outcome, view};

cases! {
    concurrent_verifies_never_exceed_capacity,
    concurrent_identical_delta_retries_apply_exactly_once,
}

/// The order's accepted verify entries (the creation entry is accepted too, with its own reason).
async fn applied_entries(store: &dyn LedgerStore, id: i64) -> usize {
    order_entries(store, id, AuditOutcome::Accepted, "accepted entries")
        .await
        .iter()
        .filter(|e| e.reason == "applied")
        .count()
}

/// Starts every command at once on its own task and collects the results in command order.
pub(super) async fn race(
    store: &Arc<dyn LedgerStore>,
    cmds: Vec<VerifyCommand>,
) -> Vec<Result<VerifyOutcome, LedgerError>> {
    // A barrier makes the tasks start their verify together rather than as they are spawned.
    let barrier = Arc::new(tokio::sync::Barrier::new(cmds.len()));
    let tasks = cmds.into_iter().map(|cmd| {
        let store = Arc::clone(store);
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            barrier.wait().await;
            store.verify(cmd).await
        })
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("a racing verify task should not panic"))
        .collect()
}

/// R13 under R28: 64 gates verify one code of capacity 10 at once (64 distinct uses): exactly
/// 10 are applied, 54 are refused with `CapacityExceeded` (nothing left), the code's count is
/// 10 and exactly 10 accepted audit entries exist.
async fn concurrent_verifies_never_exceed_capacity(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("HOT", 10)])).await;
    let cmds = (0..64)
        .map(|n| {
            verify_cmd(&a, f.id(1))
                .entry_at("HOT", 1, Some(gate_time_plus(n)))
                .build()
        })
        .collect();
    let results = race(&store, cmds).await;

    let want_ok = applied(f.id(1), 1, vec![]);
    let want_err = LedgerError::CapacityExceeded {
        code: code("HOT"),
        requested: 1,
        remaining: 0,
    };
    let mut ok = 0;
    let mut refused = 0;
    for (n, r) in results.iter().enumerate() {
        match r {
            Ok(o) if *o == want_ok => ok += 1,
            Err(e) if *e == want_err => refused += 1,
            other => panic!(
                "racing verify {n}: expected {want_ok:?} or Err({want_err:?}), got {other:?}"
            ),
        }
    }
    assert_eq!(
        (ok, refused),
        (10, 54),
        "(applied, refused) among 64 racing verifies"
    );
    assert_used(&*store, f.id(1), &[("HOT", 10)], "after the race").await;
    let accepted = applied_entries(&*store, f.id(1)).await;
    assert_eq!(accepted, 10, "one accepted audit entry per applied verify");
    let events = view(&*store, f.id(1), "after the race").await.events;
    assert_eq!(
        events.len(),
        13,
        "creation + 10 applied verifies + issued -> partly_used -> used, no entry for refusals"
    );
    assert_eq!(
        super::check::transitions(&view(&*store, f.id(1), "after the race").await),
        [
            ("issued".to_owned(), "partly_used".to_owned()),
            ("partly_used".to_owned(), "used".to_owned())
        ],
        "the race's status transitions"
    );
}

/// R16 under R28: 32 copies of one delta report (same fingerprint) arrive at once: exactly one
/// is applied, the other 31 are replays, and the uses are counted once.
async fn concurrent_identical_delta_retries_apply_exactly_once(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 5), ("B", 5)])).await;
    let original = verify_cmd(&a, f.id(1)).entry("A", 2).entry("B", 1).build();
    let cmds = (0..32).map(|n| retry_of(&original, n)).collect();
    let results = race(&store, cmds).await;

    let want_applied = applied(f.id(1), 3, vec![]);
    let want_replayed = outcome(f.id(1), OutcomeKind::Replayed, 0, 2, vec![]);
    let mut counts = (0, 0);
    for (n, r) in results.iter().enumerate() {
        match r {
            Ok(o) if *o == want_applied => counts.0 += 1,
            Ok(o) if *o == want_replayed => counts.1 += 1,
            other => panic!(
                "identical retry {n}: expected Applied(3) or Replayed(2 entries), got {other:?}"
            ),
        }
    }
    assert_eq!(
        counts,
        (1, 31),
        "(applied, replayed) among 32 identical reports"
    );
    assert_used(&*store, f.id(1), &[("A", 2), ("B", 1)], "after the race").await;
    let accepted = applied_entries(&*store, f.id(1)).await;
    let replayed = order_entries(&*store, f.id(1), AuditOutcome::Replayed, "replayed").await;
    assert_eq!(
        (accepted, replayed.len()),
        (1, 31),
        "(accepted, replayed) verify audit entries"
    );
}
