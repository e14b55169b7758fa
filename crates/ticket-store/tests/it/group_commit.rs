//! Racing writes through the single writer: capacity holds, refusals stay isolated.

use std::sync::Arc;

use ticket_ledger::{
    AuditFilter, AuditOutcome, LedgerError, LedgerStore, OutcomeKind, VerifyCommand, VerifyOutcome,
};

use crate::support::{code, gate, given, temp_store, used, TempStore, Verify};

/// Starts every command together (behind a barrier) and returns the results in order.
async fn race(
    store: &Arc<TempStore>,
    cmds: Vec<VerifyCommand>,
) -> Vec<Result<VerifyOutcome, LedgerError>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(cmds.len()));
    let handles: Vec<_> = cmds
        .into_iter()
        .map(|cmd| {
            let store = Arc::clone(store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                store.verify(cmd).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("join"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_racing_verifies_of_a_ten_use_code_apply_exactly_ten() {
    let store = temp_store();
    given(&*store, "app-a", 1, &[("HOTCODE1", 10)]).await;
    let before = store.store.writer_stats();
    let cmds = (0..64)
        .map(|n| {
            Verify::of("app-a", 1)
                .entry("HOTCODE1", 1, Some(gate(n)))
                .request_id(&format!("race-{n}"))
                .build()
        })
        .collect();
    let results = race(&store, cmds).await;

    let applied = results
        .iter()
        .filter(|r| matches!(r, Ok(o) if o.kind == OutcomeKind::Applied && o.applied_uses == 1))
        .count();
    let refused = results
        .iter()
        .filter(|r| {
            **r == Err(LedgerError::CapacityExceeded {
                code: code("HOTCODE1"),
                requested: 1,
                remaining: 0,
            })
        })
        .count();
    assert_eq!((applied, refused), (10, 54), "{results:?}");
    assert_eq!(used(&*store, 1).await, vec![("HOTCODE1".to_owned(), 10)]);
    let accepted = store
        .audit(AuditFilter {
            order_id: Some(1),
            outcome: Some(AuditOutcome::Accepted),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(
        accepted.iter().filter(|e| e.reason == "applied").count(),
        10,
        "one accepted entry per applied verify, none for refusals"
    );
    assert_eq!(
        accepted.len(),
        13,
        "plus the creation entry and the issued -> partly_used -> used transitions"
    );

    let after = store.store.writer_stats();
    assert_eq!(after.jobs - before.jobs, 64);
    assert_eq!(after.failed_batches, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_verify_among_racing_ones_leaves_its_neighbours_committed() {
    let store = temp_store();
    for id in 1..=8 {
        given(&*store, "app-a", id, &[(&format!("CODE{id:04}"), 2)]).await;
    }
    // Eight good reports on eight orders, and one asking for more than order 1 holds.
    let mut cmds: Vec<_> = (1..=8)
        .map(|id| {
            Verify::of("app-a", id)
                .entry(&format!("CODE{id:04}"), 1, Some(gate(id)))
                .build()
        })
        .collect();
    cmds.push(
        Verify::of("app-a", 1)
            .entry("CODE0001", 5, Some(gate(100)))
            .build(),
    );
    let results = race(&store, cmds).await;
    for (n, r) in results.iter().take(8).enumerate() {
        assert!(
            matches!(r, Ok(o) if o.applied_uses == 1),
            "verify {n}: {r:?}"
        );
    }
    assert!(
        matches!(
            &results[8],
            Err(LedgerError::CapacityExceeded { requested: 5, .. })
        ),
        "{:?}",
        results[8]
    );
    for id in 1..=8 {
        assert_eq!(used(&*store, id).await, vec![(format!("CODE{id:04}"), 1)]);
    }
    // The refusal left no trace: no fingerprint (the same report is refused again, not
    // replayed) and no audit entry.
    let again = store
        .verify(
            Verify::of("app-a", 1)
                .entry("CODE0001", 5, Some(gate(100)))
                .build(),
        )
        .await;
    assert!(matches!(again, Err(LedgerError::CapacityExceeded { .. })));
    let rejected = store
        .audit(AuditFilter {
            outcome: Some(AuditOutcome::Rejected),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert!(rejected.is_empty(), "{rejected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_order_creations_with_one_id_create_exactly_one() {
    let store = temp_store();
    given(&*store, "app-a", 1, &[("CODE0001", 1)]).await;
    let mut handles = Vec::new();
    for n in 0..16 {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let order = crate::support::new_order(2, "app-a", &[(&format!("RACE{n:04}"), 1)]);
            let audit = crate::support::created_entry(&order);
            store.create_order(order, audit).await
        }));
    }
    let mut created = 0;
    for h in handles {
        match h.await.expect("join") {
            Ok(_) => created += 1,
            Err(LedgerError::OrderExists) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 1);
    let view = store
        .order(crate::support::oid(2))
        .await
        .expect("order")
        .expect("exists");
    assert_eq!(view.vouchers.len(), 1, "only the winner's vouchers exist");
    assert_eq!(view.events.len(), 1, "only the winner's audit entry exists");
}
