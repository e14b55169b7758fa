//! SQLite-specific behaviour of reads and conversions (the suite covers the shared contract).

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use ticket_ledger::{AuditFilter, AuditOutcome, LedgerError, LedgerStore, OrderRef};
use ticket_store::SqliteStore;

use crate::support::{
    assert_totals_beyond_i64, entry, gate, given, key, new_app, new_order, oid, temp_path,
    temp_store, Verify, BEYOND_THE_BOUNDS,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_registered_through_another_handle_on_the_file_is_found() {
    // Two stores on one file stand for the server and an operator's CLI process.
    let (_dir, path) = temp_path();
    let server = SqliteStore::open(&path).expect("server");
    let cli = SqliteStore::open(&path).expect("cli");
    assert!(server
        .app(&key("late-app"))
        .await
        .expect("lookup")
        .is_none());
    cli.create_app(new_app("late-app")).await.expect("create");
    let found = server.app(&key("late-app")).await.expect("lookup");
    assert_eq!(found.map(|a| a.name), Some("app late-app".to_owned()));
    assert_eq!(
        cli.create_app(new_app("late-app")).await.map(|a| a.name),
        Err(LedgerError::AppExists)
    );
    assert_eq!(
        server.create_app(new_app("late-app")).await.map(|a| a.name),
        Err(LedgerError::AppExists)
    );
    cli.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_limit_defaults_to_100_is_capped_at_1000_and_pages_by_seq() {
    let store = temp_store();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..1005 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .record(entry(
                    "probe",
                    Some("app-x"),
                    Some(n),
                    AuditOutcome::Rejected,
                    "25",
                ))
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("join").expect("record");
    }
    let page = |after_seq, limit| {
        let store = Arc::clone(&store);
        async move {
            store
                .audit(AuditFilter {
                    after_seq,
                    limit,
                    ..AuditFilter::default()
                })
                .await
                .expect("audit")
        }
    };
    assert_eq!(page(None, None).await.len(), 100);
    let all = page(None, Some(u32::MAX)).await;
    assert_eq!(all.len(), 1000);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    let rest = page(Some(all[999].seq), Some(1000)).await;
    assert_eq!(rest.len(), 5);
    assert!(page(None, Some(0)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_filters_combine() {
    let store = temp_store();
    for (app, order, outcome) in [
        ("a1", 1, AuditOutcome::Accepted),
        ("a1", 2, AuditOutcome::Rejected),
        ("a2", 1, AuditOutcome::Rejected),
        ("a1", 1, AuditOutcome::Rejected),
    ] {
        store
            .record(entry("probe", Some(app), Some(order), outcome, "r"))
            .await
            .expect("record");
    }
    store
        .record(entry("probe", None, None, AuditOutcome::Rejected, "25"))
        .await
        .expect("record");
    let count = |filter: AuditFilter| {
        let store = Arc::clone(&store);
        async move { store.audit(filter).await.expect("audit").len() }
    };
    assert_eq!(count(AuditFilter::default()).await, 5);
    let f = |order_id, app_key: Option<&str>, outcome| AuditFilter {
        order_id,
        app_key: app_key.map(str::to_owned),
        outcome,
        ..AuditFilter::default()
    };
    assert_eq!(count(f(Some(1), None, None)).await, 3);
    assert_eq!(count(f(Some(1), Some("a1"), None)).await, 2);
    assert_eq!(
        count(f(Some(1), Some("a1"), Some(AuditOutcome::Rejected))).await,
        1
    );
    assert_eq!(count(f(None, None, Some(AuditOutcome::Rejected))).await, 4);
    assert_eq!(count(f(None, Some("nobody"), None)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instants_are_kept_to_the_millisecond() {
    let store = temp_store();
    store.create_app(new_app("app-a")).await.expect("app");
    let mut order = new_order(1, "app-a", &[("CODE0001", 1)]);
    let precise = Utc
        .timestamp_opt(1_740_794_400, 123_456_789)
        .single()
        .expect("instant");
    order.created_at = precise;
    order.valid_until = Some(precise + Duration::days(30));
    let audit = crate::support::created_entry(&order);
    let view = store.create_order(order, audit).await.expect("create");
    let ms = Utc
        .timestamp_opt(1_740_794_400, 123_000_000)
        .single()
        .expect("instant");
    assert_eq!(view.order.created_at, ms);
    assert_eq!(view.order.valid_until, Some(ms + Duration::days(30)));
    // What create_order answers is exactly what a later read returns.
    assert_eq!(store.order(oid(1)).await.expect("order"), Some(view));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_ids_beyond_2_pow_53_round_trip_exactly() {
    let store = temp_store();
    let id = (1_i64 << 53) + 1;
    given(&*store, "app-a", id, &[("CODE0001", 2)]).await;
    let outcome = store
        .verify(
            Verify::of("app-a", id)
                .entry("CODE0001", 1, Some(gate(0)))
                .build(),
        )
        .await
        .expect("verify");
    assert_eq!(outcome.order_id, oid(id));
    let view = store.order(oid(id)).await.expect("order").expect("exists");
    assert_eq!(view.order.order_id.get(), id);
    assert!(view.events.iter().all(|e| e.order_id == Some(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_order_id_lookup_is_scoped_to_the_caller_and_unknown_is_not_found() {
    let store = temp_store();
    store.create_app(new_app("app-a")).await.expect("a");
    store.create_app(new_app("app-b")).await.expect("b");
    for (id, app) in [(1, "app-a"), (2, "app-b")] {
        let mut order = new_order(id, app, &[(&format!("CODE000{id}"), 1)]);
        order.out_order_id = ticket_ledger::OutOrderId::parse("SHARED-OUT");
        let audit = crate::support::created_entry(&order);
        store.create_order(order, audit).await.expect("order");
    }
    let cmd = Verify::by_out("app-b", "SHARED-OUT")
        .entry("CODE0002", 1, Some(gate(0)))
        .build();
    assert!(matches!(cmd.order, OrderRef::Out(_)));
    let outcome = store.verify(cmd).await.expect("verify");
    assert_eq!(outcome.order_id, oid(2));
    let missing = store
        .verify(
            Verify::by_out("app-a", "NOPE")
                .entry("CODE0001", 1, None)
                .build(),
        )
        .await;
    assert_eq!(missing, Err(LedgerError::OrderNotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers_while_open() {
    let store = temp_store();
    store.ping().await.expect("ping");
}

/// `/metrics` reads its totals as doubles: a ledger from before the bounds, whose sums are
/// beyond `i64` (written here behind the store's back), is still counted, never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_totals_beyond_i64_are_read_not_refused() {
    let store = temp_store();
    given(&*store, "big-app", 1, &[("BIG-1", 1)]).await;
    given(&*store, "big-app", 2, &[("BIG-2", 1)]).await;
    let shell = rusqlite::Connection::open(store.store.path()).expect("shell");
    for sql in BEYOND_THE_BOUNDS {
        // On SQLite `vouchers` is a view; the stored counts are `counted_vouchers`.
        let sql = sql.replace("UPDATE vouchers ", "UPDATE counted_vouchers ");
        shell.execute_batch(&sql).expect(&sql);
    }
    drop(shell);
    let metrics = store
        .metrics()
        .await
        .expect("the totals read, whatever the ledger holds");
    assert_totals_beyond_i64(&metrics);
}
