//! An order's history, bounded: the view's latest events with their total, and the walk over
//! all of them with `order_events`, also while new ones are written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;

use crate::LedgerStore;
use crate::{AuditEntry, AuditOutcome, OrderView};

use super::build::{audit_entry, gate_time_plus, order, order_id, verify_cmd, Fresh};
use super::check::{given_app, given_order, history, verify_ok, view};

/// Records `n` rejected entries naming `order` (and one naming `other` after each), a few at a
/// time.
async fn record_many(store: &Arc<dyn LedgerStore>, app: &str, order: i64, other: i64, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(8, |i| {
            let store = Arc::clone(store);
            async move {
                for id in [order, other] {
                    let entry = audit_entry(
                        Some(app),
                        Some(id),
                        AuditOutcome::Rejected,
                        &format!("isv.verify-num-exceed-{i}"),
                    );
                    store.record(entry).await.expect("record should succeed");
                }
            }
        })
        .await;
}

/// Asserts `entries` come in strictly increasing `seq` and all name `id`.
fn assert_ascending_of(entries: &[AuditEntry], id: i64, ctx: &str) {
    for pair in entries.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "{ctx}: seq must increase, got {} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
    assert!(
        entries.iter().all(|e| e.order_id == Some(id)),
        "{ctx}: every entry names order {id}"
    );
}

/// `order()` carries the latest [`OrderView::EVENTS_SHOWN`] entries of a long history, oldest
/// first, and `events_total` counts them all; a history of at most that many is shown whole.
/// Entries of other orders count for nothing.
pub async fn order_view_shows_its_latest_events_oldest_first_and_counts_them_all(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = f.key("app");
    let (long, edge, other) = (f.id(1), f.id(2), f.id(3));
    let shown = usize::try_from(OrderView::EVENTS_SHOWN).expect("a small constant");
    given_app(&*store, &a).await;
    given_order(&*store, order(long, &a, &[("A", 5)])).await;
    given_order(&*store, order(edge, &a, &[("A", 5)])).await;
    given_order(&*store, order(other, &a, &[("A", 5)])).await;

    let fresh = view(&*store, other, "a new order").await;
    assert_eq!(
        (
            fresh.events.len(),
            fresh.events_total,
            fresh.events_complete()
        ),
        (1, 1, true),
        "a new order shows its one event, complete"
    );

    // Real events among the recorded ones: a verify and the transition it causes.
    verify_ok(
        &*store,
        verify_cmd(&a, long).entry("A", 1).build(),
        "a verify",
    )
    .await;
    record_many(&store, &a, long, other, 240).await;
    verify_ok(
        &*store,
        verify_cmd(&a, long)
            .entry_at("A", 1, Some(gate_time_plus(60)))
            .build(),
        "a later verify",
    )
    .await;

    let all = history(&*store, long, "the whole history").await;
    assert_ascending_of(&all, long, "the whole history");
    assert_eq!(
        all.len(),
        1 + 2 + 240 + 1,
        "creation, a verify and its transition, 240 recorded, a verify"
    );
    let v = view(&*store, long, "the long order").await;
    assert_eq!(
        v.events_total,
        i64::try_from(all.len()).expect("a small count"),
        "events_total counts the whole history"
    );
    assert_eq!(v.events.len(), shown, "the view carries {shown} events");
    assert_eq!(
        v.events,
        all[all.len() - shown..],
        "the view's events are the latest {shown}, oldest first"
    );
    assert!(!v.events_complete(), "a partial history is not complete");
    assert_eq!(
        v.events.last().map(|e| e.reason.as_str()),
        Some("applied"),
        "the latest event is the last verify"
    );

    // The edge: exactly EVENTS_SHOWN events is the whole history; one more is not.
    record_many(&store, &a, edge, other, shown - 1).await;
    let v = view(&*store, edge, "exactly at the bound").await;
    assert_eq!(
        (v.events.len(), v.events_total, v.events_complete()),
        (shown, i64::try_from(shown).expect("small"), true),
        "{shown} events are shown whole"
    );
    let at_bound = v.events;
    store
        .record(audit_entry(
            Some(&a),
            Some(edge),
            AuditOutcome::Rejected,
            "one more",
        ))
        .await
        .expect("record should succeed");
    let v = view(&*store, edge, "one past the bound").await;
    assert_eq!(
        (v.events.len(), v.events_total, v.events_complete()),
        (shown, i64::try_from(shown + 1).expect("small"), false),
        "one past the bound: {shown} shown of {}",
        shown + 1
    );
    assert_eq!(
        v.events[..shown - 1],
        at_bound[1..],
        "the oldest event gave way to the newest"
    );
    assert_eq!(v.events[shown - 1].reason, "one more");

    let others = view(&*store, other, "the other order").await;
    assert_eq!(
        others.events_total,
        1 + 240 + i64::try_from(shown - 1).expect("small"),
        "the other order counts only its own entries"
    );
}

/// Walking `order_events` page by page (`after_seq` = the last `seq` seen) while other tasks
/// record entries of the order and verify it returns every entry exactly once, in increasing
/// `seq`: the walk equals the history read afterwards. An unknown order is `None`.
pub async fn walking_an_orders_events_returns_each_once_in_seq_order_while_they_are_written(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = f.key("app");
    let (id, other) = (f.id(1), f.id(2));
    given_app(&*store, &a).await;
    given_order(&*store, order(id, &a, &[("A", 100)])).await;
    given_order(&*store, order(other, &a, &[("A", 1)])).await;
    assert_eq!(
        store
            .order_events(order_id(f.id(3)), None, 10)
            .await
            .expect("order_events should answer"),
        None,
        "an unknown order has no history to walk"
    );

    let done = Arc::new(AtomicBool::new(false));
    let writers = {
        let store = Arc::clone(&store);
        let a = a.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let recorders = (0..3).map(|_| {
                let store = Arc::clone(&store);
                let a = a.clone();
                tokio::spawn(async move { record_many(&store, &a, id, other, 40).await })
            });
            let verifier = {
                let store = Arc::clone(&store);
                let a = a.clone();
                tokio::spawn(async move {
                    for n in 0..30 {
                        let cmd = verify_cmd(&a, id)
                            .entry_at("A", 1, Some(gate_time_plus(n)))
                            .build();
                        store.verify(cmd).await.expect("the verify should apply");
                    }
                })
            };
            for task in recorders.chain([verifier]) {
                task.await.expect("a writing task should not panic");
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let mut walked: Vec<AuditEntry> = Vec::new();
    loop {
        // Read `done` before the page: a page read after the writers finished that comes back
        // empty means the walk has reached the end for good.
        let finished = done.load(Ordering::SeqCst);
        let after = walked.last().map(|e| e.seq);
        let page = store
            .order_events(order_id(id), after, 7)
            .await
            .expect("order_events should answer")
            .expect("the order exists");
        assert!(page.len() <= 7, "a page holds at most its limit");
        if page.is_empty() {
            if finished {
                break;
            }
            tokio::task::yield_now().await;
            continue;
        }
        walked.extend(page);
    }
    writers.await.expect("the writers should not panic");

    assert_ascending_of(&walked, id, "the walk");
    let all = history(&*store, id, "after the writers").await;
    assert_eq!(
        all.len(),
        1 + 3 * 40 + 30 + 1,
        "creation, 120 recorded, 30 verifies and one transition"
    );
    let seqs = |v: &[AuditEntry]| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(&walked),
        seqs(&all),
        "the walk saw every entry exactly once"
    );
    assert_eq!(walked, all, "the walk saw each entry as stored");
    let v = view(&*store, id, "after the writers").await;
    assert_eq!(
        v.events_total,
        i64::try_from(all.len()).expect("small"),
        "the view counts the same history"
    );
}
