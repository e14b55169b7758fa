//! Batches made deterministic: a gate job holds the writer while the test queues the jobs
//! it wants in the next batch, so these tests do not depend on timing.

use chrono::{TimeZone, Utc};
use serde_json::json;
use std::collections::BTreeMap;
use ticket_ledger::{
    AuditOutcome, ConfirmCode, Fingerprint, NewEvent, NewVoucher, OrderRef, OutcomeKind,
    RequestMeta, VerifyPolicy, VerifyUses, VoucherUse, WriteOffType,
};

use super::*;
use crate::statements;

fn at(s: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 15, 5, 0, s)
        .single()
        .expect("instant")
}

fn code(c: &str) -> ConfirmCode {
    ConfirmCode::parse(c).expect("code")
}

async fn store_with_orders(dir: &Path, orders: &[(i64, &str, i64)]) -> Arc<SqliteStore> {
    let orders: Vec<_> = orders
        .iter()
        .map(|&(id, c, capacity)| (id, vec![(c.to_owned(), capacity)]))
        .collect();
    store_with_vouchers(dir, &orders).await
}

/// A store whose app `app-a` holds `orders`: each an id and its codes with their capacities.
async fn store_with_vouchers(dir: &Path, orders: &[(i64, Vec<(String, i64)>)]) -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::open(&dir.join("ledger.db")).expect("open"));
    let app_key = AppKey::parse("app-a").expect("key");
    store
        .create_app(App::new(
            app_key.clone(),
            "a".into(),
            "s".into(),
            at(0) - chrono::Duration::days(30),
        ))
        .await
        .expect("app");
    for (id, vouchers) in orders {
        let id = *id;
        let order = NewOrder {
            order_id: OrderId::new(id).expect("id"),
            app_key: app_key.clone(),
            quantity: vouchers.iter().map(|(_, capacity)| capacity).sum(),
            out_order_id: None,
            valid_from: None,
            valid_until: None,
            vouchers: vouchers
                .iter()
                .map(|(c, capacity)| NewVoucher {
                    code: code(c),
                    capacity: *capacity,
                })
                .collect(),
            created_at: at(0) - chrono::Duration::days(1),
        };
        let audit = AuditEntry {
            seq: 0,
            request_id: format!("create-{id}"),
            at: order.created_at,
            action: "admin.create_order".into(),
            app_key: Some("app-a".into()),
            order_id: Some(id),
            outcome: AuditOutcome::Accepted,
            reason: "created".into(),
            detail: json!({}),
            client_ip: None,
        };
        store.create_order(order, audit).await.expect("order");
    }
    store
}

fn verify(id: i64, c: &str, quantity: i64, second: u32) -> VerifyCommand {
    VerifyCommand {
        origin: ticket_ledger::VerifyOrigin::Vendor,
        app_key: AppKey::parse("app-a").expect("key"),
        order: OrderRef::Id(OrderId::new(id).expect("id")),
        mode: WriteOffType::Delta,
        uses: VerifyUses::Vouchers {
            entries: vec![VoucherUse {
                code: code(c),
                quantity,
                used_at: Some(at(second)),
            }],
            legacy_code: None,
        },
        total_num: None,
        return_num: None,
        policy: VerifyPolicy::default(),
        meta: RequestMeta {
            request_id: format!("verify-{id}-{second}"),
            received_at: at(59),
            client_ip: None,
            summary: json!({}).into(),
        },
    }
}

/// Holds the writer inside a job until the returned sender is used.
async fn hold(
    store: &Arc<SqliteStore>,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), LedgerError>>,
) {
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (entered_tx, entered) = tokio::sync::oneshot::channel();
    let s = Arc::clone(store);
    let handle = tokio::spawn(async move {
        s.writer
            .submit(move |_: &mut writer::Tx<'_>| {
                let _ = entered_tx.send(());
                gate.recv()
                    .map_err(|_| LedgerError::Internal("gate".into()))
            })
            .await
    });
    entered.await.expect("the writer took the gate job");
    (release, handle)
}

/// Waits until every task has queued its job. The writer is held, so they will all be in
/// its next batch.
async fn until_queued(store: &SqliteStore, tasks: &[tokio::task::JoinHandle<()>]) {
    store.writer.until_queued(tasks.len()).await;
}

/// Order `id` as a reader sees it.
async fn view_of(store: &SqliteStore, id: i64) -> OrderView {
    store
        .order(OrderId::new(id).expect("id"))
        .await
        .expect("read")
        .expect("order")
}

fn used(view: &OrderView) -> i64 {
    view.vouchers.iter().map(|v| v.used).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_verify_rolls_back_alone_and_its_batch_neighbours_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 1), (2, "CODE-B", 1)]).await;
    let (release, gate) = hold(&store).await;
    let before = store.writer_stats();

    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // Two reports of the only use of CODE-A (different gate times, so not a retry): the
    // second in the batch must see the first's uncommitted use and be refused.
    for cmd in [
        verify(1, "CODE-A", 1, 1),
        verify(1, "CODE-A", 1, 2),
        verify(2, "CODE-B", 1, 3),
    ] {
        let s = Arc::clone(&store);
        let results = Arc::clone(&results);
        tasks.push(tokio::spawn(async move {
            let r = s.verify(cmd).await;
            results.lock().expect("results").push(r);
        }));
    }
    until_queued(&store, &tasks).await;
    release.send(()).expect("release");
    gate.await.expect("join").expect("gate");
    for t in tasks {
        t.await.expect("join");
    }

    let results = results.lock().expect("results").clone();
    let applied = results
        .iter()
        .filter(|r| matches!(r, Ok(o) if o.kind == OutcomeKind::Applied))
        .count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(applied, 2, "{results:?}");
    assert_eq!(
        refused,
        vec![&LedgerError::CapacityExceeded {
            code: code("CODE-A"),
            requested: 1,
            remaining: 0
        }]
    );
    let after = store.writer_stats();
    assert_eq!(
        after.commits - before.commits,
        2,
        "the gate's, then one for all three"
    );
    assert_eq!(after.largest_batch, 3);

    let one = store
        .order(OrderId::new(1).expect("id"))
        .await
        .expect("read");
    let one = one.expect("order 1");
    assert_eq!(used(&one), 1);
    assert_eq!(
        one.events.len(),
        3,
        "creation + the applied verify + its issued -> used transition only"
    );
    let two = store
        .order(OrderId::new(2).expect("id"))
        .await
        .expect("read");
    assert_eq!(used(&two.expect("order 2")), 1);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_every_verify_in_the_batch_with_an_error_and_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 5)]).await;
    let (release, gate) = hold(&store).await;

    let s = Arc::clone(&store);
    let good = tokio::spawn(async move { s.verify(verify(1, "CODE-A", 2, 1)).await });
    // A neighbour whose change is only refused at COMMIT: a voucher of an order that does
    // not exist, with the foreign key check deferred to the end of the transaction.
    let s = Arc::clone(&store);
    let poison = tokio::spawn(async move {
        s.writer
            .submit(|tx| {
                tx.conn
                    .execute_batch(
                        "PRAGMA defer_foreign_keys = ON;
                     INSERT INTO vouchers (order_id, confirm_code, seq, capacity, used)
                     VALUES (999, 'DANGLING', 0, 1, 0);",
                    )
                    .during("poisoning the batch")
            })
            .await
    });
    store.writer.until_queued(2).await;
    release.send(()).expect("release");
    gate.await.expect("join").expect("gate");

    let good = good.await.expect("join");
    let poison = poison.await.expect("join");
    assert!(matches!(good, Err(LedgerError::Internal(_))), "{good:?}");
    assert!(
        matches!(poison, Err(LedgerError::Internal(_))),
        "{poison:?}"
    );
    assert_eq!(store.writer_stats().failed_batches, 1);

    let view = view_of(&store, 1).await;
    assert_eq!(used(&view), 0, "the failed batch's verify was not kept");
    assert_eq!(view.events.len(), 1, "nor its audit entry");
    // The writer recovered: the same report now applies (its fingerprint was not kept).
    let retry = store
        .verify(verify(1, "CODE-A", 2, 1))
        .await
        .expect("retry");
    assert_eq!(retry.kind, OutcomeKind::Applied);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifies_of_a_known_order_are_planned_from_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 5)]).await;
    let before = store.writer_stats();
    for second in 1..=3 {
        let outcome = store
            .verify(verify(1, "CODE-A", 1, second))
            .await
            .expect("verify");
        assert_eq!(outcome.kind, OutcomeKind::Applied);
    }
    let after = store.writer_stats();
    assert_eq!(
        after.snapshot_misses - before.snapshot_misses,
        1,
        "{after:?}"
    );
    assert_eq!(after.snapshot_hits - before.snapshot_hits, 2, "{after:?}");
    let view = view_of(&store, 1).await;
    assert_eq!(used(&view), 3);
    store.close().await;
}

/// A pass later than every recorded pass of its order is new without a lookup (`fold::Horizon`);
/// one that is not — a retry, or an earlier pass reported late — is looked up, and a retry is
/// answered as one: while the order is held, once another connection's commit made the
/// writer forget everything and read the pending fingerprints again, and once a fold moved
/// them (the store folds what is pending when it opens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_pass_not_later_than_its_orders_latest_is_looked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 10)]).await;
    let expect = |store: &Arc<SqliteStore>, second: u32, kind: OutcomeKind, lookups: u64| {
        let store = Arc::clone(store);
        async move {
            let before = store.writer_stats().fingerprint_lookups;
            let outcome = store
                .verify(verify(1, "CODE-A", 1, second))
                .await
                .expect("verify");
            assert_eq!(outcome.kind, kind, "the pass at {second} s");
            let after = store.writer_stats().fingerprint_lookups;
            assert_eq!(
                after - before,
                lookups,
                "lookups for the pass at {second} s"
            );
        }
    };
    expect(&store, 5, OutcomeKind::Applied, 0).await;
    expect(&store, 7, OutcomeKind::Applied, 0).await;
    expect(&store, 5, OutcomeKind::Replayed, 1).await;
    expect(&store, 6, OutcomeKind::Applied, 1).await;
    expect(&store, 7, OutcomeKind::Replayed, 1).await;

    // Another connection commits: the writer forgets its orders and its pending fingerprints,
    // and reads the horizon again, from the pending table.
    let shell = Connection::open(dir.path().join("ledger.db")).expect("shell");
    shell
        .execute_batch("CREATE TABLE nudge (x); DROP TABLE nudge")
        .expect("external commit");
    drop(shell);
    expect(&store, 7, OutcomeKind::Replayed, 1).await;
    expect(&store, 9, OutcomeKind::Applied, 0).await;
    store.close().await;
    drop(store);

    // Opened again: everything was folded, and the horizon comes from the folded table.
    let store = Arc::new(SqliteStore::open(&dir.path().join("ledger.db")).expect("reopen"));
    let pending: i64 = Connection::open(dir.path().join("ledger.db"))
        .expect("shell")
        .query_row("SELECT count(*) FROM pending_fingerprints", [], |row| {
            row.get(0)
        })
        .expect("count");
    assert_eq!(pending, 0, "folded at open");
    expect(&store, 9, OutcomeKind::Replayed, 1).await;
    expect(&store, 8, OutcomeKind::Applied, 1).await;
    expect(&store, 11, OutcomeKind::Applied, 0).await;
    let view = view_of(&store, 1).await;
    assert_eq!(used(&view), 6, "the passes at 5, 6, 7, 8, 9 and 11 s");
    store.close().await;
}

/// A verify that carries no gate time (a cumulative report) reads no horizon, so neither the
/// order's latest folded pass nor the pending fingerprints behind it: shown by hiding the
/// pending table for one batch, which a read would fail on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_without_gate_times_reads_no_horizon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 10)]).await;
    let (release, gate) = hold(&store).await;
    let rename = |sql: &'static str| {
        let s = Arc::clone(&store);
        tokio::spawn(async move { behind_the_snapshots(&s, sql).await })
    };
    let hide = rename("ALTER TABLE pending_fingerprints RENAME TO hidden_fingerprints");
    store.writer.until_queued(1).await;
    let s = Arc::clone(&store);
    let mut cumulative = verify(1, "CODE-A", 2, 1);
    cumulative.mode = WriteOffType::Cumulative;
    let report = tokio::spawn(async move { s.verify(cumulative).await });
    store.writer.until_queued(2).await;
    let show = rename("ALTER TABLE hidden_fingerprints RENAME TO pending_fingerprints");
    store.writer.until_queued(3).await;
    release.send(()).expect("release");
    gate.await.expect("join").expect("gate");
    hide.await.expect("join");
    let outcome = report
        .await
        .expect("join")
        .expect("the report read no fingerprints");
    assert_eq!(outcome.kind, OutcomeKind::Applied);
    show.await.expect("join");
    assert_eq!(store.writer_stats().fingerprint_lookups, 0);
    // The same order with a gate time reads it, and finds the pass new.
    let delta = store
        .verify(verify(1, "CODE-A", 1, 2))
        .await
        .expect("verify");
    assert_eq!(delta.kind, OutcomeKind::Applied);
    assert_eq!(used(&view_of(&store, 1).await), 3);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_committed_by_another_connection_is_seen_by_the_next_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 2)]).await;
    store
        .verify(verify(1, "CODE-A", 2, 1))
        .await
        .expect("both uses");
    // Held in memory now: the code is used up.
    let full = store.verify(verify(1, "CODE-A", 1, 2)).await;
    assert!(
        matches!(full, Err(LedgerError::CapacityExceeded { .. })),
        "{full:?}"
    );

    // An operator's shell gives both uses back, behind the store's back: in the use log,
    // whose uses past the counters' mark the view `vouchers` adds, and in the stored counter.
    let shell = Connection::open(dir.path().join("ledger.db")).expect("shell");
    shell
        .execute_batch(
            "UPDATE voucher_uses SET reversed = quantity WHERE order_id = 1; \
             UPDATE counted_vouchers SET used = 0 WHERE order_id = 1",
        )
        .expect("external write");
    drop(shell);

    let after = store
        .verify(verify(1, "CODE-A", 1, 3))
        .await
        .expect("the next verify sees the external change");
    assert_eq!(after.kind, OutcomeKind::Applied);
    let view = view_of(&store, 1).await;
    assert_eq!(used(&view), 1);
    store.close().await;
}

/// Runs `sql` on the writer's own connection, as a job that forgets no snapshot: a change
/// the writer's memory of orders cannot see (`data_version` only moves for other
/// connections), like a trigger or a bug would make.
async fn behind_the_snapshots(store: &SqliteStore, sql: &'static str) {
    store
        .writer
        .submit(move |tx| tx.conn.execute_batch(sql).during("tampering"))
        .await
        .expect(sql);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_changes_no_row_is_undone_recorded_and_leaves_no_stale_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 10)]).await;
    store
        .verify(verify(1, "CODE-A", 1, 1))
        .await
        .expect("the writer now remembers order 1 with 1 use");
    // The database moves on without the writer's memory: 5 uses (the logged one given back,
    // the stored counter set), and a trigger that silently skips every verify's event.
    behind_the_snapshots(
        &store,
        "UPDATE voucher_uses SET reversed = quantity WHERE order_id = 1; \
         UPDATE counted_vouchers SET used = 5 WHERE order_id = 1",
    )
    .await;
    behind_the_snapshots(
        &store,
        "CREATE TRIGGER skip_events BEFORE INSERT ON event_rows \
         WHEN NEW.event_type = 'ticketd.voucher.used' BEGIN SELECT RAISE(IGNORE); END",
    )
    .await;

    let refused = store.verify(verify(1, "CODE-A", 1, 2)).await;
    assert_eq!(
        refused,
        Err(LedgerError::WriteChangedNoRow {
            write: "ledger_events"
        }),
        "the event changed no row: refused, not applied"
    );
    let anomalies = store
        .anomalies(ticket_ledger::AnomalyFilter::default())
        .await
        .expect("anomalies");
    assert_eq!(
        anomalies
            .iter()
            .map(|a| (a.anomaly.kind.as_str(), a.anomaly.request_id.as_str()))
            .collect::<Vec<_>>(),
        [("write_changed_no_row", "verify-1-2")],
        "the refusal kept its anomaly and nothing else"
    );
    let view = view_of(&store, 1).await;
    assert_eq!(used(&view), 5, "nothing of the refused verify was kept");
    assert_eq!(
        view.events.len(),
        3,
        "creation, first verify, its transition"
    );

    behind_the_snapshots(&store, "DROP TRIGGER skip_events").await;
    let before = store.writer_stats();
    let outcome = store
        .verify(verify(1, "CODE-A", 1, 3))
        .await
        .expect("the next verify applies");
    assert_eq!(outcome.kind, OutcomeKind::Applied);
    assert_eq!(
        store.writer_stats().snapshot_misses - before.snapshot_misses,
        1,
        "the snapshot the refusal found stale was dropped, so the order was read again"
    );
    let view = view_of(&store, 1).await;
    assert_eq!(used(&view), 6);
    let last = view.events.last().expect("the verify's event");
    assert_eq!(
        last.detail["changes"][0]["used"], 6,
        "planned from the stored 5 uses, not the remembered 1: {last:?}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_by_another_connection_keeps_the_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 5)]).await;
    store
        .verify(verify(1, "CODE-A", 1, 1))
        .await
        .expect("verify");
    let shell = Connection::open(dir.path().join("ledger.db")).expect("shell");
    let _: (i64, i64, i64) = shell
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("checkpoint");
    drop(shell);
    let before = store.writer_stats();
    store
        .verify(verify(1, "CODE-A", 1, 2))
        .await
        .expect("verify");
    let after = store.writer_stats();
    assert_eq!(after.snapshot_hits - before.snapshot_hits, 1, "{after:?}");
    store.close().await;
}

/// The stored counter, the counters' mark and the newest use, read behind the store.
/// A ledger in `dir` with order 1 (`CODE-A`, `capacity` uses) used `quantity` times by one
/// verify, and the store closed.
async fn verified_and_closed(dir: &Path, capacity: i64, quantity: i64) {
    let store = store_with_orders(dir, &[(1, "CODE-A", capacity)]).await;
    store
        .verify(verify(1, "CODE-A", quantity, 1))
        .await
        .expect("verify");
    store.close().await;
}

/// Every stored counter, `(order, code) -> used`, and the counters' mark against the newest
/// use: what the file holds, not what a reader (which adds the uses past the mark) sees.
fn stored_counters(dir: &Path) -> (BTreeMap<(i64, String), i64>, i64, i64) {
    let conn = Connection::open(dir.join("ledger.db")).expect("shell");
    let stored = conn
        .prepare("SELECT order_id, confirm_code, used FROM counted_vouchers")
        .expect("counters")
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .expect("counters")
        .collect::<Result<_, _>>()
        .expect("counters");
    let (mark, newest) = fold::count_marks(&conn).expect("marks");
    (stored, mark, newest)
}

/// [`stored_counters`] of a ledger whose order 1 holds the one code `CODE-A`: its stored
/// count, the mark and the newest use.
fn counted(dir: &Path) -> (i64, i64, i64) {
    let (stored, mark, newest) = stored_counters(dir);
    (stored[&(1, "CODE-A".to_owned())], mark, newest)
}

/// Runs `cmd` (a verify of order 1, applied) and a reversal of `quantity` uses of its `code`
/// in one batch of the writer, the verify first, and checks the reversal leaves `after` uses of
/// the code. In one batch, the verify's uses are past the counters' mark when the reversal
/// runs: it must count them before it takes any back.
async fn verify_then_reverse_in_one_batch(
    store: &Arc<SqliteStore>,
    cmd: VerifyCommand,
    code: &str,
    quantity: i64,
    after: i64,
) {
    let (release, gate) = hold(store).await;
    let s = Arc::clone(store);
    let verified = tokio::spawn(async move {
        let outcome = s.verify(cmd).await.expect("verify");
        assert_eq!(outcome.kind, OutcomeKind::Applied);
    });
    until_queued(store, std::slice::from_ref(&verified)).await;
    let (s, code) = (Arc::clone(store), code.to_owned());
    let reversed = tokio::spawn(async move {
        let left = s
            .reverse(ticket_ledger_suite::build::reversal(
                1,
                &code,
                quantity,
                chrono::Duration::hours(1),
                at(2),
            ))
            .await
            .expect("reversal");
        assert_eq!(left, after, "{code}: uses left after the reversal");
    });
    let tasks = [verified, reversed];
    until_queued(store, &tasks).await;
    release.send(()).expect("release");
    gate.await.expect("gate").expect("gate job");
    for task in tasks {
        task.await.expect("answered as asserted");
    }
    assert_eq!(store.writer_stats().largest_batch, 2, "one batch held both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_in_the_batch_of_the_uses_it_takes_back_counts_them_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 5)]).await;
    // 3 uses, 2 given back.
    verify_then_reverse_in_one_batch(&store, verify(1, "CODE-A", 3, 1), "CODE-A", 2, 1).await;
    let view = view_of(&store, 1).await;
    assert_eq!(used(&view), 1);
    let (stored, mark, newest) = counted(dir.path());
    assert_eq!(
        (stored, mark),
        (1, newest),
        "the reversal counted the verify's uses, then took 2 back from the stored count"
    );
    store.close().await;
}

/// The `i`-th code of [`codes`].
fn nth_code(i: usize) -> String {
    format!("V{i:04}")
}

/// `n` codes, `V0000` on, each of capacity `capacity`.
fn codes(n: usize, capacity: i64) -> Vec<(String, i64)> {
    (0..n).map(|i| (nth_code(i), capacity)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_behind_several_slices_of_uncounted_uses_counts_them_all_first() {
    // Two whole count slices and part of a third, logged in the reversal's own batch: the
    // writer has counted none of them when the reversal runs.
    let n = usize::try_from(2 * fold::COUNT_SLICE + 88).expect("n");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_vouchers(dir.path(), &[(1, codes(n, 1))]).await;
    let mut every = verify(1, "V0000", 1, 1);
    every.uses = VerifyUses::Vouchers {
        entries: (0..n)
            .map(|i| VoucherUse {
                code: code(&nth_code(i)),
                quantity: 1,
                used_at: Some(at(1)),
            })
            .collect(),
        legacy_code: None,
    };
    // The last code's use is in the third slice. A count that stopped after the first would
    // leave that code's stored counter at 0, and the reversal could not take the use back.
    let last = nth_code(n - 1);
    verify_then_reverse_in_one_batch(&store, every, &last, 1, 0).await;
    assert_eq!(
        used(&view_of(&store, 1).await),
        i64::try_from(n - 1).expect("n")
    );
    store.close().await;

    let (stored, mark, newest) = stored_counters(dir.path());
    assert_eq!(mark, newest, "every use counted");
    assert_eq!(stored.len(), n);
    for ((_, c), used) in &stored {
        let expected = i64::from(*c != last);
        assert_eq!(
            *used, expected,
            "{c}: its use counted once, the reversed one taken back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_opened_with_several_slices_of_uncounted_uses_counts_every_one() {
    let slice = usize::try_from(fold::COUNT_SLICE).expect("slice");
    let n = 300;
    // A tail that ends inside a slice, and one that ends on a slice's edge (the count then
    // needs an empty slice to know it is done).
    for tail in [2 * slice + 37, 3 * slice] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_vouchers(dir.path(), &[(1, codes(n, 10)), (2, codes(n, 10))]).await;
        store
            .verify(verify(1, "V0000", 1, 1))
            .await
            .expect("verify");
        store.close().await;
        let conn = Connection::open(dir.path().join("ledger.db")).expect("shell");
        fold::count_slice(&conn, fold::COUNT_SLICE).expect("count");
        let (mut expected, first_mark, _) = stored_counters(dir.path());
        assert_eq!(
            expected[&(1, "V0000".to_owned())],
            1,
            "the mark starts past a use"
        );

        // What a writer killed between its commit and its count leaves (a batch of large
        // verifies logs thousands of uses at once): uses past the mark, some of them partly or
        // wholly reversed before they were counted.
        for i in 0..tail {
            let (order, c) = (1 + i64::try_from(i % 2).expect("i"), nth_code((i * 7) % n));
            let quantity = 1 + i64::try_from(i % 3).expect("i");
            let reversed = if i % 11 == 0 {
                quantity
            } else if i % 5 == 0 {
                1
            } else {
                0
            };
            conn.execute(
                "INSERT INTO voucher_uses (order_id, confirm_code, quantity, reversed, \
                 used_at_ms, recorded_at_ms, request_id) VALUES (?, ?, ?, ?, 0, 0, ?)",
                rusqlite::params![order, c, quantity, reversed, format!("stopped-{i}")],
            )
            .expect("log a use");
            *expected.get_mut(&(order, c)).expect("a code of the order") += quantity - reversed;
        }
        drop(conn);
        let (_, mark, newest) = stored_counters(dir.path());
        assert_eq!(
            (mark, newest - mark),
            (first_mark, i64::try_from(tail).expect("tail")),
            "the tail is past the mark"
        );

        let store = SqliteStore::open(&dir.path().join("ledger.db")).expect("reopen");
        for order in [1, 2] {
            let view = view_of(&store, order).await;
            for v in &view.vouchers {
                assert_eq!(
                    v.used,
                    expected[&(order, v.code.as_str().to_owned())],
                    "a reader sees order {order}'s {}",
                    v.code.as_str()
                );
            }
        }
        store.close().await;
        let (stored, mark, newest) = stored_counters(dir.path());
        assert_eq!(
            mark, newest,
            "a tail of {tail}: the store counted every use when it opened"
        );
        assert_eq!(
            stored, expected,
            "a tail of {tail}: each counter holds its uses once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uses_are_added_to_the_stored_counters_and_a_counter_that_does_not_fit_stays_in_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    verified_and_closed(dir.path(), 5, 2).await;

    let conn = Connection::open(dir.path().join("ledger.db")).expect("shell");
    // Whatever the writer had not counted when it stopped.
    fold::count_slice(&conn, fold::COUNT_SLICE).expect("count");
    let (stored, mark, newest) = counted(dir.path());
    assert_eq!(
        (stored, mark),
        (2, newest),
        "the stored counter holds both uses"
    );

    // One more use logged, and the stored counter made full behind the store's back (a bug, or
    // a write by hand): adding the use would take the code past its capacity.
    conn.execute_batch(
        "INSERT INTO voucher_uses (order_id, confirm_code, quantity, used_at_ms, \
         recorded_at_ms, request_id) VALUES (1, 'CODE-A', 1, 0, 0, 'by-hand'); \
         UPDATE counted_vouchers SET used = 5 WHERE order_id = 1",
    )
    .expect("tamper");
    assert_eq!(
        fold::count_slice(&conn, fold::COUNT_SLICE),
        Err(LedgerError::WriteChangedNoRow {
            write: "vouchers.used"
        }),
        "a counter that would pass its capacity is not changed"
    );
    let (stored, mark, newest) = counted(dir.path());
    assert_eq!(stored, 5, "the failed count changed nothing");
    assert!(mark < newest, "the use stays past the mark");
    let seen: i64 = conn
        .query_row("SELECT used FROM vouchers WHERE order_id = 1", [], |r| {
            r.get(0)
        })
        .expect("view");
    assert_eq!(seen, 6, "every reader still sees every logged use");

    // The store still opens (the count at open is logged, not fatal), and counts once the
    // counter is mended.
    conn.execute_batch("UPDATE counted_vouchers SET used = 4 WHERE order_id = 1")
        .expect("mend");
    let store = SqliteStore::open(&dir.path().join("ledger.db")).expect("reopen");
    let (stored, mark, newest) = counted(dir.path());
    assert_eq!((stored, mark), (5, newest), "counted when the store opened");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entrys_event_names_its_entry_and_reads_back_as_the_data_it_would_have_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 5)]).await;
    // Every printable ASCII character JSON copies as it is, which SQLite's `json_quote` in the
    // view must copy alike; and one of everything JSON escapes, and what it need not.
    let printable: String = (' '..='~').filter(|c| !matches!(c, '"' | '\\')).collect();
    let odd = "q\"b\\s/\u{1}\n\t\u{7f}é\u{2028}😀";
    for (second, request_id) in [(1, "verify-1-1"), (2, printable.as_str()), (3, odd)] {
        let mut cmd = verify(1, "CODE-A", 1, second);
        cmd.meta.request_id = request_id.into();
        store.verify(cmd).await.expect("verify");
    }
    let view = view_of(&store, 1).await;
    let page = store.events(0, 100).await.expect("events");
    // Every event of the order (its creation, the uses, the status transitions, several of
    // them written together with their entries) reads as its own entry's data.
    for event in &page.events {
        let entry = view
            .events
            .iter()
            .find(|e| NewEvent::entry_data_json(*e, &e.detail.to_string()) == event.data.get())
            .unwrap_or_else(|| panic!("no entry reads as event {event:?}"));
        assert_eq!(
            (
                ticket_ledger::EventType::of_entry(entry).map(|t| t.as_str()),
                entry.at
            ),
            (Some(event.kind.as_str()), event.at)
        );
    }
    let used: Vec<_> = page
        .events
        .iter()
        .filter(|e| e.kind == "ticketd.voucher.used")
        .collect();
    assert_eq!(used.len(), 3);
    for (event, request_id) in used.iter().zip(["verify-1-1", printable.as_str(), odd]) {
        let entry = view
            .events
            .iter()
            .find(|e| e.request_id == request_id)
            .expect("the verify's entry");
        assert_eq!(
            event.data.get(),
            NewEvent::entry_data_json(entry, &entry.detail.to_string()),
            "the event reads as the data it would have stored, byte for byte"
        );
    }
    let shell = Connection::open(dir.path().join("ledger.db")).expect("shell");
    let stored: Vec<(bool, bool)> = shell
        .prepare(
            "SELECT e.data IS NULL, a.request_id IS NOT NULL FROM event_rows e \
             LEFT JOIN audit_log a ON a.seq = e.audit_seq \
             WHERE e.event_type = 'ticketd.voucher.used' ORDER BY e.seq",
        )
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("event rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        stored,
        [(true, true), (true, true), (false, false)],
        "the first two name their entries; the one whose request id JSON escapes keeps its data"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entrys_event_names_its_own_entry_whatever_is_written_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 10)]).await;
    store
        .verify(verify(1, "CODE-A", 1, 1))
        .await
        .expect("the first verify");
    // Another entry of the same request appended right after each verify's own, as a trigger
    // could: the newest entry is no longer the verify's when its event is written.
    behind_the_snapshots(
        &store,
        "CREATE TRIGGER interloper AFTER INSERT ON audit_log WHEN NEW.reason = 'applied' \
         BEGIN INSERT INTO audit_log \
         (request_id, at_ms, action, app_key, order_id, outcome, reason, detail) \
         VALUES (NEW.request_id, NEW.at_ms, NEW.action, NEW.app_key, NEW.order_id, 'accepted', \
         'interloper', '{}'); END",
    )
    .await;
    store
        .verify(verify(1, "CODE-A", 1, 2))
        .await
        .expect("the second verify");
    let view = view_of(&store, 1).await;
    let own = view
        .events
        .iter()
        .find(|e| e.request_id == "verify-1-2" && e.reason == "applied")
        .expect("the verify's entry");
    assert!(
        view.events.iter().any(|e| e.reason == "interloper"),
        "the interloper was written after it: {:?}",
        view.events
    );
    let page = store.events(0, 100).await.expect("events");
    let last = page.events.last().expect("the verify's event");
    assert_eq!(
        last.data.get(),
        NewEvent::entry_data_json(own, &own.detail.to_string()),
        "the event reads as its own entry's data"
    );
    let shell = Connection::open(dir.path().join("ledger.db")).expect("shell");
    let (data_stored, named): (bool, i64) = shell
        .query_row(
            "SELECT data IS NOT NULL, audit_seq FROM event_rows ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the event row");
    assert_eq!(
        (data_stored, named),
        (false, own.seq),
        "a reference to the entry, not to the newest"
    );
    store.close().await;
}

/// Without the event counter's row (a damaged ledger) a verify is refused as a write of the
/// counter that changed no row, as on PostgreSQL and MariaDB (`tests/it/engines.rs`), and
/// nothing of it is kept: each of SQLite's three event inserts reads the row (an entry's event
/// by reference, one whose data is stored, and the anomaly's that the refusal would keep).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_without_an_event_counter_is_refused_and_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 10)]).await;
    store
        .verify(verify(1, "CODE-A", 1, 1))
        .await
        .expect("a verify with the counter");
    let count = |dir: &Path| {
        let shell = Connection::open(dir.join("ledger.db")).expect("shell");
        [
            "SELECT count(*) FROM audit_log",
            "SELECT count(*) FROM event_rows",
            "SELECT count(*) FROM anomalies",
            "SELECT count(*) FROM voucher_uses",
        ]
        .map(|sql| rows(&shell, sql))
    };
    let before = count(dir.path());
    behind_the_snapshots(&store, "DELETE FROM ledger_event_seq").await;
    // An entry's event by reference, and (a request id JSON escapes) with its data stored.
    for request_id in ["verify-1-2", "verify-\"quoted\""] {
        let mut cmd = verify(1, "CODE-A", 1, 2);
        cmd.meta.request_id = request_id.to_owned();
        assert_eq!(
            store.verify(cmd).await.err(),
            Some(LedgerError::WriteChangedNoRow {
                write: "ledger_event_seq"
            }),
            "{request_id}"
        );
    }
    assert_eq!(
        count(dir.path()),
        before,
        "nothing of the refused verifies kept"
    );
    assert_eq!(used(&view_of(&store, 1).await), 1);

    behind_the_snapshots(
        &store,
        "INSERT INTO ledger_event_seq (id, last, ledger_id) VALUES (1, 0, 'restored')",
    )
    .await;
    store
        .verify(verify(1, "CODE-A", 1, 3))
        .await
        .expect("a verify with the counter back");
    assert_eq!(used(&view_of(&store, 1).await), 2);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_entry_rebuilds_keeps_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 5)]).await;
    store.close().await;
    drop(store);
    let conn = Connection::open(dir.path().join("ledger.db")).expect("shell");
    let data = r#"{"request_id":"not-an-entry","detail":{}}"#;
    let written = conn
        .execute(
            crate::statements::SQLITE_INSERT_EVENT,
            rusqlite::params!["ticketd.voucher.used", 1, 0, data],
        )
        .expect("insert");
    assert_eq!(written, 1);
    let (stored, entry, read): (Option<String>, Option<i64>, String) = conn
        .query_row(
            "SELECT r.data, r.audit_seq, e.data FROM event_rows r JOIN ledger_events e USING (seq) \
             WHERE r.seq = (SELECT max(seq) FROM event_rows)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the event");
    assert_eq!((stored.as_deref(), entry), (Some(data), None));
    assert_eq!(read, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_readers_add_its_own_uses_past_the_mark_as_the_view_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_orders(dir.path(), &[(1, "CODE-A", 5), (2, "CODE-A", 5)]).await;
    for cmd in [
        verify(1, "CODE-A", 1, 1),
        verify(1, "CODE-A", 2, 2),
        verify(2, "CODE-A", 1, 3),
    ] {
        store.verify(cmd).await.expect("verify");
    }
    store.close().await;
    drop(store);

    // Every use past the mark, none in the stored counters, and one use partly given back; both
    // orders have a code `CODE-A`, so a read that took another order's uses would show it.
    let conn = Connection::open(dir.path().join("ledger.db")).expect("shell");
    conn.execute_batch(
        "UPDATE counted_vouchers SET used = 0; UPDATE ledger_fold SET counted_use_id = 0; \
         UPDATE voucher_uses SET reversed = 1 WHERE order_id = 1 AND quantity = 2",
    )
    .expect("uncount");
    let read = |sql: &str, order: i64, used_at: usize| -> Vec<i64> {
        conn.prepare(sql)
            .expect("prepare")
            .query_map([order], |r| r.get(used_at))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    };
    for (order, used) in [(1, 2), (2, 1)] {
        let view = read("SELECT used FROM vouchers WHERE order_id = ?1", order, 0);
        assert_eq!(view, [used], "the view, order {order}");
        assert_eq!(
            read(crate::statements::SQLITE_SELECT_VOUCHERS, order, 2),
            view,
            "the order's vouchers, order {order}"
        );
        assert_eq!(
            read(crate::statements::SQLITE_SELECT_VOUCHER_COUNTS, order, 2),
            view,
            "the order list's counts, order {order}"
        );
    }
}

/// A ledger with 5,001 pending fingerprints of order 1 (`CODE-A`) whose ids start at 50
/// million, every other id, as a ledger busy since it was created leaves them: their ids never
/// restart while verifies keep coming (the table is never empty). Returns the connection and
/// the first id; gate times are `1_000_000 + n` for the `n`th (from 0).
async fn busy_pending_fingerprints(dir: &Path) -> (Connection, i64) {
    verified_and_closed(dir, 100_000, 1).await;
    let conn = Connection::open(dir.join("ledger.db")).expect("shell");
    let first_id: i64 = 50_000_000;
    conn.execute("DELETE FROM pending_fingerprints", [])
        .expect("forget the verify's fingerprint");
    {
        let mut insert = conn
            .prepare(
                "INSERT INTO pending_fingerprints \
                 (id, order_id, confirm_code, used_at_ms, quantity, request_id) \
                 VALUES (?1, 1, 'CODE-A', ?2, 1, 'busy')",
            )
            .expect("prepare");
        for n in 0..BUSY_PENDING {
            insert
                .execute([first_id + 2 * n, 1_000_000 + n])
                .expect("insert");
        }
    }
    (conn, first_id)
}

const BUSY_PENDING: i64 = 5_001;

fn gate_fingerprint(used_at_ms: i64) -> Fingerprint {
    Fingerprint {
        code: code("CODE-A"),
        used_at_ms,
        quantity: 1,
    }
}

fn rows(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// A staged fold reads the pending fingerprints from the oldest, whatever their ids, takes
/// each copied slice out of the writer's memory at once, and forgets them in the table a slice
/// at a time, each still found by a lookup in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_fold_starts_at_the_oldest_pending_fingerprint_and_forgets_them_in_slices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, _) = busy_pending_fingerprints(dir.path()).await;
    let pending = || rows(&conn, "SELECT count(*) FROM pending_fingerprints");
    let folded_before = rows(&conn, "SELECT count(*) FROM folded_fingerprints");
    let total = BUSY_PENDING;
    assert_eq!(pending(), total);
    let id = OrderId::new(1).expect("id");
    let samples = [1_000_000, 1_002_500, 1_000_000 + total - 1];

    let mut staged = fold::Staged::start(&conn)
        .expect("start")
        .expect("something to fold");
    let mut memory = fold::Pending::default();
    // The writer's memory, trusted: read from the table by a first lookup.
    assert!(fold::seen(&conn, &mut memory, id, &gate_fingerprint(samples[0])).expect("lookup"));
    assert_eq!(memory.len(), usize::try_from(total).expect("count"));
    let mut steps = 0;
    let mut left = pending();
    let mut remembered = memory.len();
    // Whether the memory let go of every fingerprint while the table still held them all:
    // it forgets each slice once it is copied, not all of them at the fold's end.
    let mut emptied_first = false;
    let folded = loop {
        steps += 1;
        assert!(
            steps <= 200,
            "a fold of {total} fingerprints took more than 200 steps"
        );
        let step = staged.step(&conn, &mut memory).expect("step");
        let now = pending();
        assert!(
            left - now <= fold::FORGET / 2,
            "one step forgot {} pending fingerprints",
            left - now
        );
        left = now;
        assert!(
            remembered - memory.len() <= fold::SLICE,
            "one step took {} fingerprints out of the writer's memory",
            remembered - memory.len()
        );
        remembered = memory.len();
        emptied_first |= remembered == 0 && now == total;
        // Whatever has been forgotten so far is found folded, by the writer's memory as it
        // is now and by a fresh one that reads the table.
        for used_at in samples {
            let mut fresh = fold::Pending::default();
            assert!(
                fold::seen(&conn, &mut fresh, id, &gate_fingerprint(used_at)).expect("lookup"),
                "fingerprint {used_at} lost after step {steps}"
            );
            assert!(
                fold::seen(&conn, &mut memory, id, &gate_fingerprint(used_at)).expect("lookup"),
                "fingerprint {used_at} lost from the writer's view after step {steps}"
            );
        }
        if let fold::Step::Done(folded) = step {
            break folded;
        }
    };
    assert_eq!(folded.fingerprints, u64::try_from(total).expect("count"));
    assert_eq!(pending(), 0);
    assert!(
        emptied_first,
        "the writer's memory held copied fingerprints until the table forgot them"
    );
    assert_eq!(
        rows(&conn, "SELECT count(*) FROM folded_fingerprints"),
        folded_before + total
    );
    assert!(
        !fold::seen(&conn, &mut memory, id, &gate_fingerprint(999)).expect("lookup"),
        "a fingerprint never recorded is not seen"
    );
}

/// A pending fingerprint the fold did not copy is never forgotten: a slice whose range holds
/// one rolls back, and the fold stops with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_fold_never_forgets_a_pending_fingerprint_it_did_not_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, first_id) = busy_pending_fingerprints(dir.path()).await;
    let folded_before = rows(&conn, "SELECT count(*) FROM folded_fingerprints");
    let mut staged = fold::Staged::start(&conn)
        .expect("start")
        .expect("something to fold");
    let mut memory = fold::Pending::default();
    // Step until every fingerprint is copied: the next step forgets.
    for _ in 0..200 {
        if rows(&conn, "SELECT count(*) FROM folded_fingerprints") == folded_before + BUSY_PENDING {
            break;
        }
        staged.step(&conn, &mut memory).expect("step");
    }
    assert_eq!(
        rows(&conn, "SELECT count(*) FROM folded_fingerprints"),
        folded_before + BUSY_PENDING
    );
    // A row the fold never read, in a gap of the first slice's range (a write from outside
    // the store, or a bug).
    conn.execute(
        "INSERT INTO pending_fingerprints \
         (id, order_id, confirm_code, used_at_ms, quantity, request_id) \
         VALUES (?1, 1, 'CODE-A', 7, 1, 'stray')",
        [first_id + 3],
    )
    .expect("stray");
    let refused = staged.step(&conn, &mut memory);
    assert!(
        matches!(&refused, Err(LedgerError::Internal(m)) if m.contains("would forget")),
        "{refused:?}"
    );
    assert_eq!(
        rows(&conn, "SELECT count(*) FROM pending_fingerprints"),
        BUSY_PENDING + 1,
        "the slice rolled back"
    );
    let mut fresh = fold::Pending::default();
    assert!(
        fold::seen(
            &conn,
            &mut fresh,
            OrderId::new(1).expect("id"),
            &gate_fingerprint(7)
        )
        .expect("lookup"),
        "the stray fingerprint is still pending"
    );
}

/// A closed ledger of `orders` orders of `codes` codes each (`CODE-0`, …), every code used
/// once, at gate times that differ within an order (for up to 59 codes).
async fn ledger_with_each_code_used_once(dir: &Path, orders: i64, codes: i64) {
    let vouchers: Vec<(i64, Vec<(String, i64)>)> = (1..=orders)
        .map(|order| {
            (
                order,
                (0..codes).map(|c| (format!("CODE-{c}"), 5)).collect(),
            )
        })
        .collect();
    let store = store_with_vouchers(dir, &vouchers).await;
    for (n, (order, code)) in (1..=orders)
        .flat_map(|order| (0..codes).map(move |c| (order, c)))
        .enumerate()
    {
        let second = u32::try_from(n % 59).expect("second");
        store
            .verify(verify(order, &format!("CODE-{code}"), 1, second))
            .await
            .expect("verify");
    }
    store.close().await;
}

/// Moves every folded fingerprint back to `pending_fingerprints`, as if no fold had copied it.
const UNFOLD_FINGERPRINTS: &str = "INSERT INTO pending_fingerprints \
         (order_id, confirm_code, used_at_ms, quantity, request_id) \
     SELECT order_id, confirm_code, used_at_ms, quantity, request_id \
     FROM folded_fingerprints ORDER BY request_id; \
     DELETE FROM folded_fingerprints;";

/// A staged fold copies every fingerprint, use, entry and app entry past the marks exactly
/// once, in slices and statements of many rows and the rows left over one at a time, and
/// skips the copies an interrupted fold left, wherever they fall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_fold_copies_every_row_once_in_bulk_and_one_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 301 verifies, more than a slice and not a multiple of a bulk statement's rows.
    ledger_with_each_code_used_once(dir.path(), 7, 43).await;

    // Unfold everything, as a ledger whose writer stopped before its first fold would be,
    // except a few copies an interrupted fold left past the marks: in the first bulk
    // statement's rows, in the second slice, and among the rows left over (the fingerprints
    // go back to the pending table, and the copies are picked in their folded order).
    let conn = Connection::open(dir.path().join("ledger.db")).expect("shell");
    conn.execute_batch(UNFOLD_FINGERPRINTS).expect("unfold");
    conn.execute_batch(
        "DELETE FROM uses_by_code; DELETE FROM audit_by_order; DELETE FROM audit_by_app; \
         UPDATE ledger_fold SET use_id = 0, audit_seq = 0, app_seq = 0;",
    )
    .expect("unfold");
    let fingerprints = "SELECT order_id, confirm_code, used_at_ms, quantity, request_id \
         FROM pending_fingerprints";
    let uses = "SELECT order_id, confirm_code, recorded_at_ms, id FROM voucher_uses";
    let entries = "SELECT order_id, seq FROM audit_log WHERE order_id IS NOT NULL";
    let apps = "SELECT app_key, seq FROM audit_log WHERE app_key IS NOT NULL";
    conn.execute_batch(&format!("CREATE TEMP TABLE was_pending AS {fingerprints}"))
        .expect("keep what is pending");
    for (table, source, key) in [
        (
            "folded_fingerprints (order_id, confirm_code, used_at_ms, quantity, request_id)",
            fingerprints,
            // The fold's order (order, then gate time), as one number: each of these
            // fingerprints has its own pair.
            "order_id * 1000000000000000 + used_at_ms",
        ),
        (
            "uses_by_code (order_id, confirm_code, recorded_at_ms, use_id)",
            uses,
            "id",
        ),
        ("audit_by_order (order_id, seq)", entries, "seq"),
        ("audit_by_app (app_key, seq)", apps, "seq"),
    ] {
        let total = rows(&conn, &format!("SELECT count(*) FROM ({source})"));
        assert!(total > 300, "{table}: {total} rows to fold");
        conn.execute(
            &format!(
                "INSERT INTO {table} SELECT * FROM ({source}) WHERE {key} IN \
                 (SELECT {key} FROM ({source}) ORDER BY {key} LIMIT 3 OFFSET 10) \
                 OR {key} IN (SELECT {key} FROM ({source}) ORDER BY {key} LIMIT 2 OFFSET 280) \
                 OR {key} = (SELECT max({key}) FROM ({source}))"
            ),
            [],
        )
        .expect(table);
        let table = table.split(' ').next().unwrap_or(table);
        assert_eq!(rows(&conn, &format!("SELECT count(*) FROM {table}")), 6);
    }

    let mut staged = fold::Staged::start(&conn)
        .expect("start")
        .expect("something to fold");
    let mut memory = fold::Pending::default();
    let folded = loop {
        if let fold::Step::Done(folded) = staged.step(&conn, &mut memory).expect("step") {
            break folded;
        }
    };
    assert_eq!(
        rows(&conn, "SELECT count(*) FROM pending_fingerprints"),
        0,
        "every copied fingerprint is forgotten"
    );
    let fingerprints = "SELECT * FROM temp.was_pending";
    for (table, columns, source, folded) in [
        (
            "folded_fingerprints",
            "order_id, confirm_code, used_at_ms, quantity, request_id",
            fingerprints,
            folded.fingerprints,
        ),
        (
            "uses_by_code",
            "order_id, confirm_code, recorded_at_ms, use_id",
            uses,
            folded.uses,
        ),
        ("audit_by_order", "order_id, seq", entries, folded.entries),
        ("audit_by_app", "app_key, seq", apps, folded.app_entries),
    ] {
        let total = rows(&conn, &format!("SELECT count(*) FROM ({source})"));
        assert_eq!(
            folded,
            u64::try_from(total).expect("count"),
            "{table} folded"
        );
        assert_eq!(
            rows(&conn, &format!("SELECT count(*) FROM {table}")),
            total,
            "{table} holds each row once"
        );
        assert_eq!(
            rows(
                &conn,
                &format!("SELECT count(*) FROM ({source} EXCEPT SELECT {columns} FROM {table})")
            ),
            0,
            "{table} lacks a row"
        );
    }
}

/// The fold's bulk copies contain nothing that may stop them halfway (`HaltIfNull`, a
/// foreign key's counter), so SQLite keeps no statement journal for them
/// (`statements::STAGE_COPY_ROWS` says why that matters), and build no temporary B-tree
/// (see `the_writers_statements_build_no_temporary_b_tree`).
#[test]
fn the_folds_bulk_copies_cannot_abort_halfway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = Connection::open(dir.path().join("ledger.db")).expect("open");
    migrate::migrate(&mut conn).expect("migrate");
    conn.pragma_update(None, "foreign_keys", "ON")
        .expect("foreign keys");
    for sql in [
        &*statements::SQLITE_STAGE_COPY_USES,
        &*statements::SQLITE_STAGE_COPY_ENTRIES,
        &*statements::SQLITE_STAGE_COPY_APP_ENTRIES,
    ] {
        let ops = explain(&conn, sql);
        assert_eq!(
            ops.iter().filter(|(op, _)| op == "Variable").count() % statements::STAGE_COPY_ROWS,
            0,
            "{sql} binds whole rows"
        );
        for (op, p4) in &ops {
            assert!(
                !matches!(
                    op.as_str(),
                    "HaltIfNull" | "FkCounter" | "FkIfZero" | "OpenEphemeral"
                ),
                "{op} {p4:?} in {sql}"
            );
        }
    }
}

/// A fingerprint whose voucher is missing stops the copy of its slice, and the slice's
/// transaction leaves none of the slice's rows: `folded_fingerprints`' foreign key holds for a
/// staged fold's copies, and a slice stopped halfway is undone with its transaction.
#[tokio::test]
async fn a_dangling_fingerprint_stops_its_slice_and_leaves_none_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    ledger_with_each_code_used_once(dir.path(), 3, 40).await;

    // Everything pending again, and among it, second in the fold's order (in the middle of
    // the first slice), a fingerprint of a code the order does not have, written with the
    // foreign keys off, as only a write from outside the store could.
    let conn = Connection::open(dir.path().join("ledger.db")).expect("shell");
    conn.pragma_update(None, "foreign_keys", "OFF")
        .expect("foreign keys off");
    conn.execute_batch(UNFOLD_FINGERPRINTS).expect("unfold");
    conn.execute_batch(
        "INSERT INTO pending_fingerprints \
             (order_id, confirm_code, used_at_ms, quantity, request_id) \
         SELECT 1, 'CODE-GONE', min(used_at_ms), 1, 'dangling' \
         FROM pending_fingerprints WHERE order_id = 1;",
    )
    .expect("the dangling fingerprint");
    let pending = rows(&conn, "SELECT count(*) FROM pending_fingerprints");
    assert_eq!(pending, 121);
    configure_writer(&conn, Duration::from_secs(1)).expect("the writer's settings");

    let mut staged = fold::Staged::start(&conn)
        .expect("start")
        .expect("something to fold");
    let mut memory = fold::Pending::default();
    let failed = loop {
        match staged.step(&conn, &mut memory) {
            Ok(fold::Step::More) => {}
            Ok(fold::Step::Done(folded)) => panic!("folded a dangling fingerprint: {folded:?}"),
            Err(e) => break e,
        }
    };
    assert!(
        failed.to_string().contains("FOREIGN KEY"),
        "stopped by the foreign key: {failed}"
    );
    assert_eq!(
        rows(&conn, "SELECT count(*) FROM folded_fingerprints"),
        0,
        "the slice's copies are undone"
    );
    assert_eq!(
        rows(&conn, "SELECT count(*) FROM pending_fingerprints"),
        pending,
        "nothing pending is forgotten"
    );
    assert!(
        conn.is_autocommit(),
        "the failed slice's transaction is over"
    );
}

#[test]
fn sqlite_is_built_without_process_wide_locks_on_its_caches_and_allocations() {
    // `.cargo/config.toml` sets these (why is there); a build that lost the setting would
    // still pass every other test, only slower.
    let conn = Connection::open_in_memory().expect("open");
    let options: Vec<String> = conn
        .prepare("PRAGMA compile_options")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("options");
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "allocation statistics compiled in: {options:?}"
    );
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "one page cache group for the process: {options:?}"
    );
}

/// The instructions SQLite compiles `sql` into, as `EXPLAIN` lists them: each opcode with its
/// `p4` operand where it is text (a called function's name, for one).
fn explain(conn: &Connection, sql: &str) -> Vec<(String, Option<String>)> {
    let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).expect(sql);
    let mut rows = stmt.raw_query();
    let mut ops = Vec::new();
    while let Some(row) = rows.next().expect(sql) {
        ops.push((
            row.get::<_, String>(1).expect(sql),
            row.get::<_, Option<String>>(5).ok().flatten(),
        ));
    }
    ops
}

/// The opcodes SQLite compiles `sql` into.
fn opcodes(conn: &Connection, sql: &str) -> Vec<String> {
    explain(conn, sql).into_iter().map(|(op, _)| op).collect()
}

#[test]
fn the_writers_statements_build_no_temporary_b_tree() {
    // A temporary B-tree is opened, filled and dropped every time its statement runs: a
    // `CHECK (x IN ('a', 'b', 'c'))` of the table written (migration 0017) or a subquery SQLite
    // materializes (the event insert's first form). Each was about a twentieth of the writer's
    // instructions per verify (docs/PERFORMANCE.md, "Tenth session").
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("ledger.db")).expect("open");
    drop(store);
    let conn = Connection::open(dir.path().join("ledger.db")).expect("shell");
    for (name, sql) in [
        ("INSERT_AUDIT", crate::statements::INSERT_AUDIT),
        ("INSERT_VOUCHER_USE", crate::statements::INSERT_VOUCHER_USE),
        (
            "SQLITE_INSERT_PENDING_FINGERPRINT",
            crate::statements::SQLITE_INSERT_PENDING_FINGERPRINT,
        ),
        (
            "SQLITE_INSERT_EVENT",
            crate::statements::SQLITE_INSERT_EVENT,
        ),
        (
            "SQLITE_INSERT_ENTRY_EVENT",
            crate::statements::SQLITE_INSERT_ENTRY_EVENT,
        ),
        (
            "SQLITE_INSERT_ANOMALY_EVENT",
            crate::statements::SQLITE_INSERT_ANOMALY_EVENT,
        ),
        ("INSERT_ANOMALY", crate::statements::INSERT_ANOMALY),
        ("RESOLVE_ANOMALY", crate::statements::RESOLVE_ANOMALY),
        ("INSERT_ORDER", crate::statements::INSERT_ORDER),
        ("INSERT_VOUCHER", crate::statements::INSERT_VOUCHER),
        ("UPDATE_ISSUE", crate::statements::UPDATE_ISSUE),
        (
            "INSERT_REFUND_REQUEST",
            crate::statements::INSERT_REFUND_REQUEST,
        ),
        ("SETTLE_REFUND", crate::statements::SETTLE_REFUND),
        ("MARK_REFUND_REVIEW", crate::statements::MARK_REFUND_REVIEW),
        (
            "INSERT_REJECTED_CALL",
            crate::statements::INSERT_REJECTED_CALL,
        ),
    ] {
        let ops = opcodes(&conn, sql);
        assert!(ops.len() > 3, "{name}: {ops:?}");
        assert!(
            !ops.iter().any(|op| op == "OpenEphemeral"),
            "{name} opens a temporary B-tree: {ops:?}"
        );
    }
}

#[test]
fn the_audit_insert_parses_no_detail() {
    // `CHECK (json_valid(detail))` parsed every entry's detail, about 400 bytes of JSON, and
    // threw the parse away: a twentieth of the writer's instructions per verify (migration
    // 0019; docs/PERFORMANCE.md, "Twenty-fourth session"). Every detail is `serde_json`'s text
    // of a value, JSON by construction.
    let dir = tempfile::tempdir().expect("tempdir");
    drop(SqliteStore::open(&dir.path().join("ledger.db")).expect("open"));
    let conn = Connection::open(dir.path().join("ledger.db")).expect("shell");
    let functions: Vec<Option<String>> = explain(&conn, crate::statements::INSERT_AUDIT)
        .into_iter()
        .filter(|(op, _)| op == "Function" || op == "PureFunc")
        .map(|(_, p4)| p4)
        .collect();
    assert_eq!(functions, Vec::<Option<String>>::new());
}

#[test]
fn a_bound_limit_does_not_send_a_statement_back_to_the_compiler() {
    use rusqlite::config::DbConfig;
    use rusqlite::StatementStatus;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.db");
    drop(SqliteStore::open(&path).expect("open"));
    // A count slice's read, `LIMIT ?` bound at every run as the fold steps' and the paged
    // reads' are, run with three limits; how often SQLite compiled it again.
    let recompiled = |conn: &Connection| -> i32 {
        let mut stmt = conn
            .prepare_cached(crate::statements::SQLITE_UNCOUNTED_USES)
            .expect("prepare");
        for limit in [1_i64, 2, 3] {
            let mut rows = stmt.query(rusqlite::params![0_i64, limit]).expect("query");
            while rows.next().expect("row").is_some() {}
        }
        stmt.get_status(StatementStatus::RePrepare)
    };
    let plain = Connection::open(&path).expect("plain");
    assert!(
        recompiled(&plain) >= 2,
        "without the QPSG SQLite compiles it again when the limit is bound"
    );
    let writer = Connection::open(&path).expect("writer");
    configure_writer(&writer, Duration::from_secs(1)).expect("configure");
    assert!(writer
        .db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
        .expect("qpsg"));
    assert_eq!(recompiled(&writer), 0);
    let readers = readers::Readers::new(&path, Duration::from_secs(1)).expect("readers");
    let reader = readers
        .with(|conn| {
            Ok((
                conn.db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
                    .expect("qpsg"),
                recompiled(conn),
            ))
        })
        .expect("read");
    assert_eq!(reader, (true, 0));
}
