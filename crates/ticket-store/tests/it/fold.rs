//! The fold (issue 14): lookups keyed by order built in bulk, read the same before, across and
//! after a fold, and a ledger written by the schema before it upgraded in place.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use rusqlite::Connection;
use ticket_ledger::{AuditEntry, AuditFilter, LedgerStore, OutcomeKind};
use ticket_ledger_suite::build::reversal;
use ticket_store::SqliteStore;

use crate::support::{gate, given, oid, received_at, temp_path, used, Verify};

/// Every entry `filter` selects, oldest first, read `limit` at a time: forwards with
/// `after_seq`, or (`newest_first`) back from the newest with `before_seq` and then reversed.
async fn paged(
    store: &SqliteStore,
    filter: AuditFilter,
    limit: u32,
    newest_first: bool,
) -> Vec<AuditEntry> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let mut page_filter = AuditFilter {
            limit: Some(limit),
            newest_first,
            ..filter.clone()
        };
        if newest_first {
            page_filter.before_seq = cursor;
        } else {
            page_filter.after_seq = cursor;
        }
        let page = store.audit(page_filter).await.expect("audit page");
        let Some(last) = page.last() else { break };
        cursor = Some(last.seq);
        all.extend(page);
    }
    if newest_first {
        all.reverse();
    }
    all
}

/// Every entry naming `order`, oldest first, read without the order filter.
async fn entries_of(store: &SqliteStore, order: i64) -> Vec<AuditEntry> {
    let mut all = paged(store, AuditFilter::default(), 1000, false).await;
    all.retain(|e| e.order_id == Some(order));
    all
}

/// The order's history as the order filter pages it, `limit` at a time.
async fn paged_by_order(store: &SqliteStore, order: i64, limit: u32) -> Vec<AuditEntry> {
    let filter = AuditFilter {
        order_id: Some(order),
        ..AuditFilter::default()
    };
    paged(store, filter, limit, false).await
}

/// Asserts that every way of reading order `id`'s history gives the same entries.
async fn history_reads_agree(store: &SqliteStore, id: i64) -> usize {
    let expected = entries_of(store, id).await;
    assert!(!expected.is_empty());
    assert_eq!(paged_by_order(store, id, 2).await, expected, "paged by 2");
    assert_eq!(paged_by_order(store, id, 1000).await, expected, "one page");
    let view = store.order(oid(id)).await.expect("order").expect("exists");
    assert_eq!(view.events_total, expected.len() as i64, "events_total");
    let shown = view.events.len();
    assert_eq!(
        view.events[..],
        expected[expected.len() - shown..],
        "latest events"
    );
    let events = store
        .order_events(oid(id), None, 1000)
        .await
        .expect("order events")
        .expect("order exists");
    assert_eq!(events, expected, "order_events");
    expected.len()
}

/// Every entry of `app`, oldest first, read without the app filter.
async fn all_entries_of_app(store: &SqliteStore, app: &str) -> Vec<AuditEntry> {
    let mut all = paged(store, AuditFilter::default(), 1000, false).await;
    all.retain(|e| e.app_key.as_deref() == Some(app));
    all
}

/// `app`'s entries as the app filter pages them, `limit` at a time (see [`paged`]).
async fn paged_by_app(
    store: &SqliteStore,
    app: &str,
    limit: u32,
    newest_first: bool,
) -> Vec<AuditEntry> {
    let filter = AuditFilter {
        app_key: Some(app.to_owned()),
        ..AuditFilter::default()
    };
    paged(store, filter, limit, newest_first).await
}

/// Asserts that every way of reading `app`'s entries gives the same entries; returns how
/// many.
async fn app_reads_agree(store: &SqliteStore, app: &str) -> usize {
    let expected = all_entries_of_app(store, app).await;
    assert!(!expected.is_empty());
    assert_eq!(paged_by_app(store, app, 3, false).await, expected, "by 3");
    assert_eq!(
        paged_by_app(store, app, 1000, false).await,
        expected,
        "one page"
    );
    assert_eq!(
        paged_by_app(store, app, 3, true).await,
        expected,
        "back by 3"
    );
    expected.len()
}

fn verify_at(app: &str, id: i64, code: &str, at: DateTime<Utc>, request: &str) -> Verify {
    Verify::of(app, id)
        .entry(code, 1, Some(at))
        .request_id(request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_histories_and_reversals_read_the_same_across_a_fold_and_a_restart() {
    let (_dir, path) = temp_path();
    let store = SqliteStore::open(&path).expect("open");
    given(&store, "app-f", 1, &[("CODE0001", 10), ("CODE0002", 10)]).await;
    let created = entries_of(&store, 1).await.len();
    let apply = |n: i64| verify_at("app-f", 1, "CODE0001", gate(n), &format!("req-{n}")).build();

    // A, then an idle second so that the writer folds after the next commit, then B (folded
    // with A), then C (left in the tail).
    assert_eq!(
        store.verify(apply(1)).await.expect("A").kind,
        OutcomeKind::Applied
    );
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    assert_eq!(
        store.verify(apply(2)).await.expect("B").kind,
        OutcomeKind::Applied
    );
    // The writer folds after B's commit, maybe after B was answered.
    for _ in 0..500 {
        if store.writer_stats().folds > 0 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    assert_eq!(store.writer_stats().folds, 1, "A and B folded");
    assert_eq!(
        store.verify(apply(3)).await.expect("C").kind,
        OutcomeKind::Applied
    );
    assert_eq!(store.writer_stats().folds, 1, "C is in the tail");
    let raw = Connection::open(&path).expect("raw");
    let pending: i64 = raw
        .query_row("SELECT count(*) FROM pending_fingerprints", [], |r| {
            r.get(0)
        })
        .expect("pending");
    let folded: i64 = raw
        .query_row("SELECT count(*) FROM folded_fingerprints", [], |r| r.get(0))
        .expect("folded");
    assert_eq!(
        (folded, pending),
        (2, 1),
        "two fingerprints folded, one pending"
    );

    // Each retry is found, whichever side of the fold its fingerprint is on.
    for n in 1..=3 {
        let retry = store.verify(apply(n)).await.expect("retry");
        assert_eq!(retry.kind, OutcomeKind::Replayed, "retry of report {n}");
    }
    assert_eq!(
        used(&store, 1).await,
        [("CODE0001".to_owned(), 3), ("CODE0002".to_owned(), 0)]
    );
    let entries = history_reads_agree(&store, 1).await;
    // Three uses, three replays, and the status change of the first use.
    assert!(entries >= created + 6, "{entries} entries");

    // A reversal finds the folded uses and the one in the tail: all three come back.
    let used_after = store
        .reverse(reversal(
            1,
            "CODE0001",
            3,
            Duration::days(3650),
            received_at(),
        ))
        .await
        .expect("reversal of uses on both sides of the fold");
    assert_eq!(used_after, 0);
    assert_eq!(used(&store, 1).await[0].1, 0);
    let more = store
        .reverse(reversal(
            1,
            "CODE0001",
            1,
            Duration::days(3650),
            received_at(),
        ))
        .await;
    assert!(more.is_err(), "nothing is left to reverse: {more:?}");

    // After a restart (which folds what was pending) every retry is still a retry.
    store.close().await;
    drop(store);
    let store = SqliteStore::open(&path).expect("reopen");
    let pending: i64 = raw
        .query_row("SELECT count(*) FROM pending_fingerprints", [], |r| {
            r.get(0)
        })
        .expect("pending");
    assert_eq!(pending, 0, "opening folds the tail");
    for n in 1..=3 {
        let retry = store.verify(apply(n)).await.expect("retry after restart");
        assert_eq!(retry.kind, OutcomeKind::Replayed, "retry of report {n}");
    }
    assert_eq!(
        store.verify(apply(4)).await.expect("D").kind,
        OutcomeKind::Applied
    );
    history_reads_agree(&store, 1).await;
    store.close().await;
}

/// What the fixture held before the upgrade, read with a plain connection.
struct Before {
    app: String,
    used: BTreeMap<(i64, String), i64>,
    fingerprints: Vec<(i64, String, i64, i64)>,
    entries: BTreeMap<i64, i64>,
}

fn read_before(raw: &Connection) -> Before {
    let app: String = raw
        .query_row("SELECT app_key FROM apps", [], |r| r.get(0))
        .expect("the fixture's app");
    let used = raw
        .prepare("SELECT order_id, confirm_code, used FROM vouchers")
        .expect("vouchers")
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .expect("vouchers")
        .collect::<Result<_, _>>()
        .expect("vouchers");
    let fingerprints = raw
        .prepare(
            "SELECT order_id, confirm_code, used_at_ms, quantity FROM verify_fingerprints \
             ORDER BY order_id, confirm_code, used_at_ms",
        )
        .expect("fingerprints")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("fingerprints")
        .collect::<Result<_, _>>()
        .expect("fingerprints");
    let entries = raw
        .prepare("SELECT order_id, count(*) FROM audit_log WHERE order_id IS NOT NULL GROUP BY 1")
        .expect("entries")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("entries")
        .collect::<Result<_, _>>()
        .expect("entries");
    Before {
        app,
        used,
        fingerprints,
        entries,
    }
}

/// Sends the report of fingerprint `(order, code, gate time, quantity)` again as request
/// `retry-<i>` of `app`, and asserts that it is answered as a retry.
async fn sent_again_is_a_retry(
    store: &SqliteStore,
    app: &str,
    i: usize,
    (id, code, at_ms, quantity): (i64, &str, i64, i64),
) {
    let at = DateTime::from_timestamp_millis(at_ms).expect("gate time");
    let mut cmd = Verify::of(app, id)
        .entry(code, quantity, Some(at))
        .request_id(&format!("retry-{i}"))
        .build();
    cmd.meta.received_at = Utc::now();
    let outcome = store.verify(cmd).await.expect("retry");
    assert_eq!(outcome.kind, OutcomeKind::Replayed, "{id} {code} {at}");
}

/// `tests/fixtures/ledger-schema-4.db` was written by `ticketd` at commit 938eeb3 (schema
/// version 4, the last before the fold): `ticketd bench --spawn process --data-dir DIR
/// --orders 3 --vouchers-per-order 4 --capacity 50 --requests 120 --warmup 0s --concurrency 4`,
/// then checkpointed and vacuumed. 3 orders, 12 codes, 120 uses, 120 fingerprints, 127
/// audit entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_written_by_schema_4_is_upgraded_in_place_and_keeps_every_fact() {
    let (_dir, path) = fixture("ledger-schema-4.db");
    let raw = Connection::open(&path).expect("raw");
    let version: i64 = raw
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .expect("version");
    assert_eq!(version, 4, "the fixture is a schema 4 ledger");
    let before = read_before(&raw);
    assert_eq!(before.fingerprints.len(), 120);
    assert_eq!(before.used.values().sum::<i64>(), 120);

    let store = SqliteStore::open(&path).expect("open upgrades");
    assert_eq!(store.schema_version(), 19);
    let (counted, logged): (i64, i64) = raw
        .query_row(
            "SELECT counted_use_id, (SELECT max(id) FROM voucher_uses) FROM ledger_fold",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the counters' mark");
    assert_eq!(
        counted, logged,
        "every use the old schema counted is counted by the stored counters"
    );
    let gone: i64 = raw
        .query_row(
            "SELECT count(*) FROM sqlite_schema \
             WHERE name IN ('voucher_uses_by_code', 'audit_log_by_order')",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    assert_eq!(gone, 0, "the per-verify indexes are gone");

    // Every count and every history is as it was.
    for (&id, &count) in &before.entries {
        let view = store.order(oid(id)).await.expect("order").expect("exists");
        for v in &view.vouchers {
            assert_eq!(
                Some(&v.used),
                before.used.get(&(id, v.code.as_str().to_owned())),
                "{id} {}",
                v.code.as_str()
            );
        }
        assert_eq!(view.events_total, count, "history of {id}");
        assert_eq!(history_reads_agree(&store, id).await as i64, count);
    }

    // Every report the old schema recorded is a retry now, and changes nothing.
    let now = Utc::now();
    for (i, (id, code, at_ms, quantity)) in before.fingerprints.iter().enumerate() {
        sent_again_is_a_retry(&store, &before.app, i, (*id, code, *at_ms, *quantity)).await;
    }
    for (&(id, ref code), &count) in &before.used {
        let now_used = used(&store, id).await;
        assert!(now_used.contains(&(code.clone(), count)), "{id} {code}");
    }

    // And a new use is counted, once.
    let (id, code, at_ms, _) = &before.fingerprints[0];
    let mut fresh = Verify::of(&before.app, *id)
        .entry(code, 1, DateTime::from_timestamp_millis(at_ms + 1))
        .request_id("fresh")
        .build();
    fresh.meta.received_at = now;
    assert_eq!(
        store.verify(fresh.clone()).await.expect("fresh").kind,
        OutcomeKind::Applied
    );
    assert_eq!(
        store.verify(fresh).await.expect("its retry").kind,
        OutcomeKind::Replayed
    );
    let after = used(&store, *id).await;
    assert!(after.contains(&(code.clone(), before.used[&(*id, code.clone())] + 1)));
    store.close().await;
}

/// Waits until the writer has folded `n` times (it folds after a commit, maybe after that
/// commit's job was answered, and paces its steps: a fold lasts about eight times the
/// writer's time it takes).
async fn folded(store: &SqliteStore, n: u64) {
    for _ in 0..1000 {
        if store.writer_stats().folds >= n {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    panic!(
        "the writer folded {} times, not {n}",
        store.writer_stats().folds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_report_folds_its_own_rows_and_every_read_counts_them_once() {
    let (_dir, path) = temp_path();
    let store = SqliteStore::open(&path).expect("open");
    let codes: Vec<String> = (0..40).map(|i| format!("BIG{i:05}")).collect();
    let vouchers: Vec<(&str, i64)> = codes.iter().map(|c| (c.as_str(), 5)).collect();
    given(&store, "app-g", 7, &vouchers).await;
    let large = codes
        .iter()
        .fold(Verify::of("app-g", 7).request_id("large"), |v, c| {
            v.entry(c, 1, Some(gate(1)))
        })
        .build();
    assert_eq!(
        store.verify(large.clone()).await.expect("large").kind,
        OutcomeKind::Applied
    );
    let raw = Connection::open(&path).expect("raw");
    let count = |sql: &str| -> i64 { raw.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(
        count("SELECT count(*) FROM pending_fingerprints"),
        0,
        "folded at once"
    );
    assert_eq!(count("SELECT count(*) FROM folded_fingerprints"), 40);
    assert_eq!(
        count("SELECT count(*) FROM uses_by_code"),
        40,
        "its uses are folded"
    );
    assert_eq!(
        count("SELECT count(*) FROM voucher_uses WHERE id > (SELECT use_id FROM ledger_fold)"),
        0,
        "the marks moved past them: nothing is left in the tail"
    );
    let small = verify_at("app-g", 7, &codes[0], gate(2), "small").build();
    assert_eq!(
        store.verify(small.clone()).await.expect("small").kind,
        OutcomeKind::Applied
    );
    let before_fold = history_reads_agree(&store, 7).await;
    // Before the fold too, code 3's one use is given back once.
    let window = Duration::days(3650);
    let first = store
        .reverse(reversal(7, &codes[3], 1, window, received_at()))
        .await;
    assert_eq!(first.expect("one use back"), 0);
    let second = store
        .reverse(reversal(7, &codes[3], 1, window, received_at()))
        .await;
    assert!(second.is_err(), "{second:?}");
    let before_fold = before_fold + 1;

    // A later fold folds the small reports only.
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let other = verify_at("app-g", 7, &codes[1], gate(3), "other").build();
    assert_eq!(
        store.verify(other).await.expect("other").kind,
        OutcomeKind::Applied
    );
    folded(&store, 1).await;
    assert_eq!(count("SELECT count(*) FROM uses_by_code"), 42);
    assert!(history_reads_agree(&store, 7).await > before_fold);
    for (cmd, what) in [(large, "large"), (small, "small")] {
        let retry = store.verify(cmd).await.expect("retry");
        assert_eq!(retry.kind, OutcomeKind::Replayed, "{what}");
    }
    // Code 2 was used once: one use can be given back, a second cannot (a use read from both
    // the folded lookup and the tail would allow it).
    let after = store
        .reverse(reversal(7, &codes[2], 1, window, received_at()))
        .await
        .expect("one use back");
    assert_eq!(after, 0);
    let again = store
        .reverse(reversal(7, &codes[2], 1, window, received_at()))
        .await;
    assert!(again.is_err(), "{again:?}");
    store.close().await;
}

/// Copies what lies past the fold marks into the folded tables, as a staged fold interrupted
/// by a crash leaves them (copies, marks unmoved); returns how many uses it copied.
fn copy_past_the_marks(raw: &Connection) -> i64 {
    let tx = raw.unchecked_transaction().expect("raw transaction");
    tx.execute(
        "INSERT INTO folded_fingerprints (order_id, confirm_code, used_at_ms, quantity, request_id) \
         SELECT order_id, confirm_code, used_at_ms, quantity, request_id FROM pending_fingerprints \
         WHERE true ON CONFLICT DO NOTHING",
        [],
    )
    .expect("copy fingerprints");
    let uses = tx
        .execute(
            "INSERT INTO uses_by_code (order_id, confirm_code, recorded_at_ms, use_id) \
             SELECT order_id, confirm_code, recorded_at_ms, id FROM voucher_uses \
             WHERE id > (SELECT use_id FROM ledger_fold) ON CONFLICT DO NOTHING",
            [],
        )
        .expect("copy uses");
    tx.execute(
        "INSERT INTO audit_by_order (order_id, seq) SELECT order_id, seq FROM audit_log \
         WHERE seq > (SELECT audit_seq FROM ledger_fold) AND order_id IS NOT NULL \
         ON CONFLICT DO NOTHING",
        [],
    )
    .expect("copy entries");
    tx.execute(
        "INSERT INTO audit_by_app (app_key, seq) SELECT app_key, seq FROM audit_log \
         WHERE seq > (SELECT app_seq FROM ledger_fold) AND app_key IS NOT NULL \
         ON CONFLICT DO NOTHING",
        [],
    )
    .expect("copy entries by app");
    tx.commit().expect("commit the copies");
    i64::try_from(uses).expect("uses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_an_interrupted_fold_left_are_read_once_and_the_next_fold_skips_them() {
    let (_dir, path) = temp_path();
    let store = SqliteStore::open(&path).expect("open");
    given(&store, "app-i", 3, &[("CODE0001", 50), ("CODE0002", 50)]).await;
    let raw = Connection::open(&path).expect("raw");
    let apply = |n: i64| verify_at("app-i", 3, "CODE0001", gate(n), &format!("req-{n}")).build();
    // Reports until some are in the tail when the copies are made (an idle fold may take the
    // first ones if this test runs slowly).
    let mut n = 0;
    let copied = loop {
        for _ in 0..3 {
            n += 1;
            let outcome = store.verify(apply(n)).await.expect("verify");
            assert_eq!(outcome.kind, OutcomeKind::Applied);
        }
        let copied = copy_past_the_marks(&raw);
        if copied > 0 {
            break copied;
        }
        assert!(n < 30, "the tail stayed empty");
    };
    let count = |sql: &str| -> i64 { raw.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert!(
        count("SELECT count(*) FROM pending_fingerprints") >= copied,
        "the copied fingerprints are still pending"
    );

    // Every read counts each fact once: the copies lie past the marks.
    let with_copies = history_reads_agree(&store, 3).await;
    let app_with_copies = app_reads_agree(&store, "app-i").await;
    assert_eq!(
        count("SELECT count(*) FROM verify_fingerprints"),
        n,
        "the view shows a copied fingerprint once"
    );
    for m in 1..=n {
        let retry = store.verify(apply(m)).await.expect("retry");
        assert_eq!(retry.kind, OutcomeKind::Replayed, "retry of report {m}");
    }
    // Give back all but one of the uses, then ask for two: a use read both from the copies
    // and the tail would allow it.
    let window = Duration::days(3650);
    let left = store
        .reverse(reversal(3, "CODE0001", n - 1, window, received_at()))
        .await
        .expect("reverse all but one");
    assert_eq!(left, 1);
    let too_many = store
        .reverse(reversal(3, "CODE0001", 2, window, received_at()))
        .await;
    assert!(too_many.is_err(), "{too_many:?}");

    // The next fold moves the marks over the copies instead of failing on them.
    let folds = store.writer_stats().folds;
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let after = store.verify(apply(n + 1)).await.expect("one more");
    assert_eq!(after.kind, OutcomeKind::Applied);
    folded(&store, folds + 1).await;
    assert_eq!(count("SELECT count(*) FROM pending_fingerprints"), 0);
    assert_eq!(count("SELECT count(*) FROM folded_fingerprints"), n + 1);
    assert_eq!(
        count("SELECT count(*) FROM uses_by_code"),
        count("SELECT count(*) FROM voucher_uses")
    );
    assert_eq!(
        count("SELECT count(*) FROM audit_by_order"),
        count("SELECT count(*) FROM audit_log WHERE order_id IS NOT NULL")
    );
    assert!(history_reads_agree(&store, 3).await > with_copies);
    assert!(app_reads_agree(&store, "app-i").await > app_with_copies);
    assert_eq!(
        count("SELECT count(*) FROM audit_by_app"),
        count("SELECT count(*) FROM audit_log WHERE app_key IS NOT NULL")
    );
    assert_eq!(used(&store, 3).await[0].1, 2);
    store.close().await;
    drop(store);
    // Copies made again and a restart: opening folds over them too.
    let store = SqliteStore::open(&path).expect("reopen");
    let more = store.verify(apply(n + 2)).await.expect("after reopen");
    assert_eq!(more.kind, OutcomeKind::Applied);
    store.close().await;
    drop(store);
    copy_past_the_marks(&raw);
    let store = SqliteStore::open(&path).expect("open over copies");
    assert_eq!(count("SELECT count(*) FROM verify_fingerprints"), n + 2);
    assert_eq!(used(&store, 3).await[0].1, 3);
    history_reads_agree(&store, 3).await;
    app_reads_agree(&store, "app-i").await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_larger_than_a_slice_completes_while_writes_and_reads_go_on() {
    let (_dir, path) = temp_path();
    let store = std::sync::Arc::new(SqliteStore::open(&path).expect("open"));
    // 1,500 codes over 30 orders, each used once by its own report: 1,500 fingerprints, uses
    // and entries, more than a slice of each.
    let orders: i64 = 30;
    let per_order: i64 = 50;
    for id in 1..=orders {
        let codes: Vec<String> = (0..per_order).map(|c| format!("S{id:03}C{c:03}")).collect();
        let vouchers: Vec<(&str, i64)> = codes.iter().map(|c| (c.as_str(), 1)).collect();
        given(&*store, "app-s", id, &vouchers).await;
    }
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            for id in 1..=orders {
                for c in (worker..per_order).step_by(16) {
                    let code = format!("S{id:03}C{c:03}");
                    let cmd = verify_at("app-s", id, &code, gate(c), &format!("r-{id}-{c}"));
                    let outcome = store.verify(cmd.build()).await.expect("verify");
                    assert_eq!(outcome.kind, OutcomeKind::Applied, "{code}");
                    n += 1;
                }
            }
            n
        }));
    }
    // A reader while the writes go on: no entry of a history is read twice, and none that
    // was read disappears.
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
            for round in 0..60 {
                let id = 1 + round % orders;
                let seqs: Vec<i64> = paged_by_order(&store, id, 7)
                    .await
                    .iter()
                    .map(|e| e.seq)
                    .collect();
                assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
                let before = seen.entry(id).or_default();
                assert!(before.iter().all(|s| seqs.contains(s)), "an entry vanished");
                *before = seqs;
            }
        })
    };
    let mut applied = 0;
    for task in tasks {
        applied += task.await.expect("writer task");
    }
    reader.await.expect("reader");
    assert_eq!(applied, orders * per_order);
    // The idle fold takes everything, in slices. Nothing is written after the retry that
    // starts it, so only the writer's ticks make it go on. A fold that started during the
    // writes (they may outlast the idle second on a slow machine) leaves what came after its
    // start to the next one: the retry is sent again until nothing is left.
    let raw = Connection::open(&path).expect("raw");
    let count = |sql: &str| -> i64 { raw.query_row(sql, [], |r| r.get(0)).expect(sql) };
    let unfolded = || {
        count("SELECT count(*) FROM pending_fingerprints")
            + count("SELECT count(*) FROM voucher_uses WHERE id > (SELECT use_id FROM ledger_fold)")
    };
    for _ in 0..3 {
        tokio::time::sleep(StdDuration::from_millis(1100)).await;
        let folds = store.writer_stats().folds;
        let last = verify_at("app-s", 1, "S001C000", gate(0), "r-1-0").build();
        assert_eq!(
            store.verify(last).await.expect("retry").kind,
            OutcomeKind::Replayed
        );
        folded(&store, folds + 1).await;
        if unfolded() == 0 {
            break;
        }
    }
    // Paced: its steps took about an eighth of its time (`FOLD_SHARE`), although the queue
    // was empty all along; asked here for half, so that a last step held up on a loaded
    // machine cannot fail it. A fold that ran its steps back to back would take little more
    // than their time.
    let stats = store.writer_stats();
    assert!(stats.last_fold_busy_us > 0, "{stats:?}");
    assert!(
        stats.last_fold_us >= 2 * stats.last_fold_busy_us,
        "a fold took {} µs of the writer's time in {} µs",
        stats.last_fold_busy_us,
        stats.last_fold_us
    );
    assert_eq!(count("SELECT count(*) FROM pending_fingerprints"), 0);
    assert_eq!(count("SELECT count(*) FROM folded_fingerprints"), applied);
    assert_eq!(
        count("SELECT count(*) FROM voucher_uses WHERE id > (SELECT use_id FROM ledger_fold)"),
        0
    );
    assert_eq!(count("SELECT count(*) FROM uses_by_code"), applied);
    for id in 1..=orders {
        history_reads_agree(&store, id).await;
        assert!(used(&*store, id).await.iter().all(|(_, n)| *n == 1));
    }
    app_reads_agree(&store, "app-s").await;
    for id in [1, orders] {
        let retry = verify_at("app-s", id, &format!("S{id:03}C007"), gate(7), "again").build();
        assert_eq!(
            store.verify(retry).await.expect("retry").kind,
            OutcomeKind::Replayed
        );
    }
    store.close().await;
}

/// `tests/fixtures/ledger-schema-10.db` was written by `ticketd` at commit b092d37 (schema
/// version 10, the last before the counters were folded and events named their entries):
/// `ticketd bench --spawn process --data-dir DIR --orders 3 --vouchers-per-order 4 --capacity
/// 50 --requests 120 --warmup 0s --concurrency 4`, then checkpointed and vacuumed. 3 orders,
/// 12 codes, 120 uses, 126 events, each with its data stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_written_by_schema_10_is_upgraded_in_place_and_keeps_every_count_and_event() {
    let (_dir, path) = fixture("ledger-schema-10.db");
    type EventRow = (i64, String, Option<i64>, i64, String, Option<i64>);
    let (app, used_before, events_before) = {
        let raw = Connection::open(&path).expect("raw");
        let before = read_before(&raw);
        let events: Vec<EventRow> = raw
            .prepare(
                "SELECT seq, event_type, order_id, at_ms, data, anomaly_id FROM ledger_events \
                 ORDER BY seq",
            )
            .expect("events")
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .expect("events")
            .collect::<Result<_, _>>()
            .expect("events");
        (before.app, before.used, events)
    };
    assert_eq!(used_before.values().sum::<i64>(), 120);
    assert_eq!(events_before.len(), 126);

    let store = SqliteStore::open(&path).expect("open upgrades");
    assert_eq!(store.schema_version(), 19);
    let page = store.events(0, 1_000).await.expect("events");
    assert_eq!(page.events.len(), events_before.len());
    for (event, (seq, kind, order_id, at_ms, data, anomaly_id)) in
        page.events.iter().zip(&events_before)
    {
        assert_eq!(
            (
                event.seq,
                &event.kind,
                event.order_id,
                event.at.timestamp_millis()
            ),
            (*seq, kind, *order_id, *at_ms)
        );
        assert_eq!(event.data.get(), data, "event {seq} reads as it was stored");
        assert_eq!(event.anomaly_id, *anomaly_id);
    }
    for (&(id, ref code), &count) in &used_before {
        assert!(
            used(&store, id).await.contains(&(code.clone(), count)),
            "{id} {code}"
        );
    }

    // A new use is counted once, and its event names its entry.
    let (&(id, ref code), &count) = used_before.iter().next().expect("a code");
    fresh_use_applies(&store, &app, id, code).await;
    assert!(used(&store, id).await.contains(&(code.clone(), count + 1)));
    let raw = Connection::open(&path).expect("raw");
    let (stored, entry): (Option<String>, Option<i64>) = raw
        .query_row(
            "SELECT data, audit_seq FROM event_rows ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the new event");
    assert!(stored.is_none() && entry.is_some(), "{stored:?} {entry:?}");
    store.close().await;
}

/// `tests/fixtures/ledger-schema-12.db` was written by `ticketd` at commit 33d6bc3 (schema
/// version 12, the last before an app's entries were folded and fingerprints keyed by gate
/// time): `ticketd bench --spawn process
/// --data-dir DIR --orders 2 --vouchers-per-order 3 --capacity 50 --requests 40 --warmup 0s
/// --concurrency 4`, twice (two apps, 45 entries each, 80 fingerprints; the second run's
/// entries and fingerprints past the fold marks), then checkpointed and vacuumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_written_by_schema_12_is_upgraded_in_place_and_reads_each_apps_entries() {
    let (_dir, path) = fixture("ledger-schema-12.db");
    let by_app = |raw: &Connection| -> BTreeMap<String, Vec<i64>> {
        let mut by_app = BTreeMap::<String, Vec<i64>>::new();
        let mut stmt = raw
            .prepare("SELECT app_key, seq FROM audit_log WHERE app_key IS NOT NULL ORDER BY seq")
            .expect("entries");
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .expect("entries");
        for row in rows {
            let (app, seq) = row.expect("entry");
            by_app.entry(app).or_default().push(seq);
        }
        by_app
    };
    let fingerprints = |raw: &Connection| -> Vec<(i64, String, i64, i64, String)> {
        raw.prepare(
            "SELECT order_id, confirm_code, used_at_ms, quantity, request_id \
             FROM verify_fingerprints ORDER BY order_id, confirm_code, used_at_ms",
        )
        .expect("fingerprints")
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("fingerprints")
        .collect::<Result<_, _>>()
        .expect("fingerprints")
    };
    let (before, fingerprints_before) = {
        let raw = Connection::open(&path).expect("raw");
        let pending: i64 = raw
            .query_row("SELECT count(*) FROM pending_fingerprints", [], |r| {
                r.get(0)
            })
            .expect("pending");
        assert_eq!(
            pending, 40,
            "the second run's fingerprints are not folded yet"
        );
        (by_app(&raw), fingerprints(&raw))
    };
    assert_eq!(fingerprints_before.len(), 80);
    assert_eq!(before.len(), 2);
    assert!(before.values().all(|seqs| seqs.len() == 45), "{before:?}");

    let store = SqliteStore::open(&path).expect("open upgrades");
    assert_eq!(store.schema_version(), 19);
    let raw = Connection::open(&path).expect("raw");
    let count = |sql: &str| -> i64 { raw.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(count("SELECT count(*) FROM audit_by_app"), 90);
    // Migration 0014: the fingerprints, folded and pending, are all there, keyed by gate time
    // within the order, and every one of them makes its report a retry.
    assert_eq!(fingerprints(&raw), fingerprints_before);
    let key: String = raw
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'folded_fingerprints'",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    assert!(
        key.contains("PRIMARY KEY (order_id, used_at_ms, confirm_code, quantity)"),
        "{key}"
    );
    assert_eq!(
        count("SELECT count(*) FROM sqlite_master WHERE name = 'audit_log_by_app'"),
        0,
        "the index every verify changed is gone"
    );
    for (app, seqs) in &before {
        let read = paged_by_app(&store, app, 7, true).await;
        assert_eq!(
            &read.iter().map(|e| e.seq).collect::<Vec<_>>(),
            seqs,
            "{app}"
        );
        assert_eq!(app_reads_agree(&store, app).await, seqs.len());
    }

    // A new entry lies past the mark until a fold, and is read once before and after it.
    let (app, seqs) = before.iter().next().expect("an app");
    let (order, code): (i64, String) = raw
        .query_row(
            "SELECT order_id, confirm_code FROM vouchers v JOIN orders o USING (order_id) \
             WHERE o.app_key = ? LIMIT 1",
            [app],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a code of the app");
    let fresh = |n: i64| {
        let mut fresh = Verify::of(app, order)
            .entry(&code, 1, Some(Utc::now() - Duration::seconds(n)))
            .request_id(&format!("fresh-after-upgrade-{n}"))
            .build();
        fresh.meta.received_at = Utc::now();
        fresh
    };
    let folds = store.writer_stats().folds;
    assert_eq!(
        store.verify(fresh(1)).await.expect("fresh").kind,
        OutcomeKind::Applied
    );
    assert_eq!(count("SELECT app_seq FROM ledger_fold"), 90, "in the tail");
    assert_eq!(app_reads_agree(&store, app).await, seqs.len() + 1);
    for (other, seqs) in before.iter().skip(1) {
        assert_eq!(app_reads_agree(&store, other).await, seqs.len());
    }
    // An idle moment folds once the last fold is a second old.
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    assert_eq!(
        store.verify(fresh(2)).await.expect("fresh").kind,
        OutcomeKind::Applied
    );
    folded(&store, folds + 1).await;
    assert_eq!(count("SELECT app_seq FROM ledger_fold"), 92, "folded");
    assert_eq!(app_reads_agree(&store, app).await, seqs.len() + 2);
    assert_eq!(count("SELECT count(*) FROM audit_by_app"), 92);
    let app_of = |id: i64| -> String {
        raw.query_row("SELECT app_key FROM orders WHERE order_id = ?", [id], |r| {
            r.get(0)
        })
        .expect("the order's app")
    };
    for (i, (id, code, at_ms, quantity, _)) in fingerprints_before.iter().enumerate() {
        sent_again_is_a_retry(&store, &app_of(*id), i, (*id, code, *at_ms, *quantity)).await;
    }

    // Migration 0015: a reversal finds a code's uses, folded and in the tail, by record time.
    let (rev_order, rev_code, logged): (i64, String, i64) = raw
        .query_row(
            "SELECT order_id, confirm_code, count(*) FROM voucher_uses \
             WHERE id <= (SELECT use_id FROM ledger_fold) \
             AND NOT (order_id = ? AND confirm_code = ?) GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 1",
            rusqlite::params![order, code],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("a code with folded uses, not used since the upgrade");
    let count_of = |uses: Vec<(String, i64)>| {
        uses.into_iter()
            .find(|(c, _)| *c == rev_code)
            .map(|(_, n)| n)
    };
    let was = count_of(used(&store, rev_order).await).expect("the code");
    assert!(was >= logged && logged > 0, "{was} {logged}");
    let give_back = |quantity: i64, window: Duration| {
        store.reverse(reversal(rev_order, &rev_code, quantity, window, Utc::now()))
    };
    let none_that_recent = give_back(1, Duration::seconds(1)).await;
    assert!(
        none_that_recent.is_err(),
        "no use was recorded in the last second: {none_that_recent:?}"
    );
    let left = give_back(was, Duration::days(3650))
        .await
        .expect("give every use back");
    assert_eq!(left, 0);
    assert_eq!(count_of(used(&store, rev_order).await), Some(0));
    let more = give_back(1, Duration::days(3650)).await;
    assert!(more.is_err(), "nothing is left to give back: {more:?}");
    store.close().await;
}

/// One new use of `code` of order `id`, gated now (request `fresh-after-upgrade`): applied.
async fn fresh_use_applies(store: &SqliteStore, app: &str, id: i64, code: &str) {
    let mut fresh = Verify::of(app, id)
        .entry(code, 1, Some(Utc::now()))
        .request_id("fresh-after-upgrade")
        .build();
    fresh.meta.received_at = Utc::now();
    assert_eq!(
        store.verify(fresh).await.expect("fresh").kind,
        OutcomeKind::Applied
    );
}

/// Every row of `table` ordered by `key`, each column as SQLite stores it.
fn rows_of(raw: &Connection, table: &str, key: &str) -> Vec<Vec<rusqlite::types::Value>> {
    let mut stmt = raw
        .prepare(&format!("SELECT * FROM {table} ORDER BY {key}"))
        .expect(table);
    let columns = stmt.column_count();
    stmt.query_map([], |r| (0..columns).map(|i| r.get(i)).collect())
        .expect(table)
        .collect::<Result<_, _>>()
        .expect(table)
}

/// `tests/fixtures/ledger-schema-15.db` was written by `ticketd` at commit a5badb0 (schema
/// version 15, the last whose `audit_log` and `voucher_uses` took their keys with
/// `AUTOINCREMENT`): `ticketd bench --spawn process --data-dir DIR --orders 2
/// --vouchers-per-order 3 --capacity 50 --requests 40 --warmup 0s --concurrency 4
/// --replay-ratio 0.2 --reject-ratio 0.1`, then the same without the two ratios (two apps;
/// 90 entries, 8 of them replayed and 7 rejected; 65 uses, the second run's past the fold
/// marks), then checkpointed and vacuumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_written_by_schema_15_keeps_every_key_and_hands_out_the_next_ones() {
    let (_dir, path) = fixture("ledger-schema-15.db");
    let events = |raw: &Connection| -> Vec<(i64, String)> {
        raw.prepare("SELECT seq, data FROM ledger_events ORDER BY seq")
            .expect("events")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("events")
            .collect::<Result<_, _>>()
            .expect("events")
    };
    // Every view, trigger and index, with its SQL, except the two rebuilt tables'.
    let schema = |raw: &Connection| -> Vec<(String, String, Option<String>)> {
        raw.prepare(
            "SELECT type, name, sql FROM sqlite_schema \
             WHERE name NOT IN ('audit_log', 'voucher_uses') ORDER BY type, name",
        )
        .expect("schema")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("schema")
        .collect::<Result<_, _>>()
        .expect("schema")
    };
    let (entries, uses, events_before, before, schema_before) = {
        let raw = Connection::open(&path).expect("raw");
        let sequence: Vec<(String, i64)> = raw
            .prepare("SELECT name, seq FROM sqlite_sequence ORDER BY name")
            .expect("sequence")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("sequence")
            .collect::<Result<_, _>>()
            .expect("sequence");
        // The counters never ran ahead of the rows: the next keys are the same either way.
        assert_eq!(
            sequence,
            vec![
                ("audit_log".to_owned(), 90),
                ("voucher_uses".to_owned(), 65)
            ]
        );
        (
            rows_of(&raw, "audit_log", "seq"),
            rows_of(&raw, "voucher_uses", "id"),
            events(&raw),
            read_before(&raw),
            schema(&raw),
        )
    };
    assert_eq!((entries.len(), uses.len()), (90, 65));
    assert_eq!(events_before.len(), 73);

    let store = SqliteStore::open(&path).expect("open upgrades");
    assert_eq!(store.schema_version(), 19);
    let raw = Connection::open(&path).expect("raw");
    let count = |sql: &str| -> i64 { raw.query_row(sql, [], |r| r.get(0)).expect(sql) };
    // Every row kept, column by column, under the same key.
    assert_eq!(rows_of(&raw, "audit_log", "seq"), entries);
    assert_eq!(rows_of(&raw, "voucher_uses", "id"), uses);
    for table in ["audit_log", "voucher_uses"] {
        let sql: String = raw
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?",
                [table],
                |r| r.get(0),
            )
            .expect(table);
        assert!(!sql.contains("AUTOINCREMENT"), "{sql}");
    }
    assert_eq!(count("SELECT count(*) FROM sqlite_sequence"), 0);
    // The rest of the schema is as it was (the views and their triggers created again), with
    // one trigger more, and migration 0018's two on `event_rows` (its own test below).
    let mut schema_after = schema(&raw);
    for trigger in [
        "voucher_uses_no_delete",
        "event_rows_no_delete",
        "event_rows_no_renumber",
    ] {
        let guard = schema_after
            .iter()
            .position(|(_, name, _)| name == trigger)
            .expect("a new trigger");
        schema_after.remove(guard);
    }
    let migrations = |s: &mut Vec<(String, String, Option<String>)>| {
        s.retain(|(_, name, _)| name != "schema_migrations");
    };
    let mut schema_before = schema_before;
    migrations(&mut schema_before);
    migrations(&mut schema_after);
    // Migration 0017 names the values of three other tables' CHECKs (its own test below).
    for (_, _, sql) in &mut schema_before {
        *sql = sql.as_deref().map(checks_without_lists);
    }
    assert_eq!(schema_after, schema_before);
    // The views rebuilt around the tables read as before.
    assert_eq!(events(&raw), events_before);
    for ((id, code), n) in &before.used {
        assert!(
            used(&store, *id).await.contains(&(code.clone(), *n)),
            "{id} {code}"
        );
    }
    let app_of = |id: i64| -> String {
        raw.query_row("SELECT app_key FROM orders WHERE order_id = ?", [id], |r| {
            r.get(0)
        })
        .expect("the order's app")
    };
    for (i, (id, code, at_ms, quantity)) in before.fingerprints.iter().enumerate() {
        sent_again_is_a_retry(&store, &app_of(*id), i, (*id, code, *at_ms, *quantity)).await;
    }
    let retries = before.fingerprints.len() as i64;

    // A new verify takes the next keys: its entry 91 + retries, its use 66, and its event
    // names its entry.
    let ((id, code), n) = before.used.iter().next().expect("a code");
    fresh_use_applies(&store, &app_of(*id), *id, code).await;
    assert!(used(&store, *id).await.contains(&(code.clone(), n + 1)));
    let entry = 91 + retries;
    let (seq, request): (i64, String) = raw
        .query_row(
            "SELECT seq, request_id FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the new entry");
    assert_eq!((seq, request.as_str()), (entry, "fresh-after-upgrade"));
    let (use_id, request): (i64, String) = raw
        .query_row(
            "SELECT id, request_id FROM voucher_uses ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the new use");
    assert_eq!((use_id, request.as_str()), (66, "fresh-after-upgrade"));
    let named: Option<i64> = raw
        .query_row(
            "SELECT audit_seq FROM event_rows ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("the new event");
    assert_eq!(named, Some(entry));
    assert_eq!(count("SELECT count(*) FROM sqlite_sequence"), 0);

    // Neither table gives a key back: the entries and the uses cannot be deleted.
    for sql in [
        "DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)",
        "UPDATE audit_log SET reason = 'edited' WHERE seq = 1",
        "DELETE FROM voucher_uses WHERE id = 66",
    ] {
        let refused = raw.execute(sql, []).expect_err(sql).to_string();
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    store.close().await;
}

/// A table's SQL as migration 0017 leaves it: each CHECK's list of values named one by one.
fn checks_without_lists(sql: &str) -> String {
    [
        ("outcome", &["accepted", "replayed", "rejected"][..]),
        ("issue_state", &["awaiting", "issued", "failed"][..]),
        ("state", &["pending", "succeeded", "failed"][..]),
        (
            "resolution",
            &["accepted", "reversed", "refund_adjusted", "dismissed"][..],
        ),
    ]
    .iter()
    .fold(sql.to_owned(), |sql, (column, values)| {
        let list = values
            .iter()
            .map(|v| format!("'{v}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let named = values
            .iter()
            .map(|v| format!("{column} = '{v}'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        sql.replace(
            &format!("CHECK ({column} IN ({list}))"),
            &format!("CHECK ({named})"),
        )
    })
}

/// `audit_log`'s SQL as migration 0019 leaves it: `detail` without `json_valid`.
fn detail_unchecked(sql: &str) -> String {
    sql.replace(
        "detail     TEXT    NOT NULL CHECK (json_valid(detail)),",
        "detail     TEXT    NOT NULL,",
    )
}

/// Migration 0017 on a schema 16 ledger (`ledger-schema-16.db`: `ledger-schema-15.db` brought
/// to 16 by `ticketd migrate` of `f31d25f`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_that_name_their_values_refuse_what_the_lists_refused() {
    let (_dir, path) = fixture("ledger-schema-16.db");
    let tables = ["audit_log", "orders", "refund_requests", "anomalies"];
    let table_sql = |raw: &Connection| -> Vec<String> {
        tables
            .iter()
            .map(|t| {
                raw.query_row(
                    "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?",
                    [t],
                    |r| r.get(0),
                )
                .expect(t)
            })
            .collect()
    };
    // A connection that has read the schema before the upgrade, as another process might have.
    let early = Connection::open(&path).expect("early");
    let before = table_sql(&early);
    for sql in &before {
        assert!(sql.contains(" IN ('"), "{sql}");
    }

    let store = SqliteStore::open(&path).expect("open upgrades");
    assert_eq!(store.schema_version(), 19);
    store.close().await;
    let raw = Connection::open(&path).expect("raw");
    let after = table_sql(&raw);
    for (old, new) in before.iter().zip(&after) {
        assert!(!new.contains(" IN ('"), "{new}");
        assert_eq!(*new, detail_unchecked(&checks_without_lists(old)));
    }
    let check: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");

    // Every value of each list is taken, any other refused, NULL taken where the column allows
    // it; each write in a transaction rolled back, so the fixture's rows stay as they are.
    let audit = "INSERT INTO audit_log (request_id, at_ms, action, app_key, order_id, outcome, \
                 reason, detail) VALUES ('r', 0, 'verify', NULL, NULL, ?1, 'x', '{}')";
    let cases: [(&str, &[&str], bool); 4] = [
        (audit, &["accepted", "replayed", "rejected"], false),
        (
            "UPDATE orders SET issue_state = ?1 WHERE order_id = (SELECT min(order_id) FROM orders)",
            &["awaiting", "issued", "failed"],
            false,
        ),
        (
            "INSERT INTO refund_requests (flow_id, order_id, quantity, requested_at_ms, \
             request_id, state) SELECT 'flow-0017', min(order_id), 1, 0, 'r', ?1 FROM orders",
            &["pending", "succeeded", "failed"],
            false,
        ),
        (
            "INSERT INTO anomalies (kind, order_id, app_key, request_id, at_ms, detail, \
             request, resolution) VALUES ('verify_refused', NULL, NULL, 'r', 0, '{}', '{}', ?1)",
            &["accepted", "reversed", "refund_adjusted", "dismissed"],
            true,
        ),
    ];
    for conn in [&raw, &early] {
        for (sql, values, nullable) in &cases {
            let write = |value: Option<&str>| -> Result<usize, String> {
                conn.execute_batch("BEGIN").expect("begin");
                let done = conn.execute(sql, [value]).map_err(|e| e.to_string());
                conn.execute_batch("ROLLBACK").expect("rollback");
                done
            };
            for value in *values {
                assert_eq!(write(Some(value)), Ok(1), "{sql} {value}");
            }
            for value in ["bogus", "", "Accepted", "accepted "] {
                let refused = write(Some(value)).expect_err(sql);
                assert!(refused.contains("CHECK constraint failed"), "{refused}");
            }
            let null = write(None);
            if *nullable {
                assert_eq!(null, Ok(1), "{sql}");
            } else {
                assert!(null.is_err(), "{sql}");
            }
        }
    }
    // The early connection reads the new schema too (the migration moved `schema_version`):
    // its audit insert compiles without the list's temporary B-tree.
    let ops: Vec<String> = {
        let mut stmt = early.prepare(&format!("EXPLAIN {audit}")).expect("explain");
        let mut rows = stmt.raw_query();
        let mut ops = Vec::new();
        while let Some(row) = rows.next().expect("op") {
            ops.push(row.get(1).expect("op"));
        }
        ops
    };
    assert!(!ops.iter().any(|op| op == "OpenEphemeral"), "{ops:?}");
    assert_eq!(table_sql(&early), after);
}

/// Migration 0018 on a schema 16 ledger (`ledger-schema-16.db`): the events written after
/// the upgrade take the `seq`s after the newest event's, one each, no write advances the
/// counter row, the feed's head follows the events, whatever the counter row says, and no
/// event can be deleted or renumbered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_migration_0018_follow_the_newest_event_and_leave_the_counter_row() {
    let (_dir, path) = fixture("ledger-schema-16.db");
    let (newest, before) = {
        let raw = Connection::open(&path).expect("raw");
        let (last, newest): (i64, i64) = raw
            .query_row(
                "SELECT last, (SELECT max(seq) FROM event_rows) FROM ledger_event_seq",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("the counter");
        assert!(newest > 0, "the fixture has events");
        assert_eq!(
            last, newest,
            "the fixture's counter is its newest event's seq"
        );
        let before = read_before(&raw);
        let ((id, code), n) = before.used.into_iter().next().expect("a code");
        let app: String = raw
            .query_row("SELECT app_key FROM orders WHERE order_id = ?", [id], |r| {
                r.get(0)
            })
            .expect("the order's app");
        (newest, (app, id, code, n))
    };
    let (app, id, code, n) = &before;
    let apply = |k: i64| {
        let mut cmd = Verify::of(app, *id)
            .entry(code, 1, Some(Utc::now() + Duration::seconds(k)))
            .request_id(&format!("after-0018-{k}"))
            .build();
        cmd.meta.received_at = Utc::now();
        cmd
    };
    let counter = |raw: &Connection| -> i64 {
        raw.query_row("SELECT last FROM ledger_event_seq WHERE id = 1", [], |r| {
            r.get(0)
        })
        .expect("the counter")
    };
    // The events after `after`: their `seq`s and the requests of the entries they name.
    let events_after = |raw: &Connection, after: i64| -> Vec<(i64, String)> {
        raw.prepare(
            "SELECT e.seq, a.request_id FROM event_rows e JOIN audit_log a ON a.seq = e.audit_seq \
             WHERE e.seq > ?1 ORDER BY e.seq",
        )
        .expect("events")
        .query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("events")
        .collect::<Result<_, _>>()
        .expect("events")
    };

    let store = SqliteStore::open(&path).expect("open upgrades");
    assert_eq!(store.schema_version(), 19);
    assert_eq!(store.events(0, 1).await.expect("feed").last_seq, newest);
    for k in 1..=3 {
        let outcome = store.verify(apply(k)).await.expect("verify");
        assert_eq!(outcome.kind, OutcomeKind::Applied);
    }
    let raw = Connection::open(&path).expect("raw");
    let expected: Vec<(i64, String)> = (1..=3)
        .map(|k| (newest + k, format!("after-0018-{k}")))
        .collect();
    assert_eq!(events_after(&raw, newest), expected);
    assert_eq!(counter(&raw), newest, "no write advanced the counter row");
    let page = store.events(newest, 10).await.expect("feed");
    assert_eq!(page.last_seq, newest + 3);
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![newest + 1, newest + 2, newest + 3]
    );
    assert!(used(&store, *id).await.contains(&(code.clone(), n + 3)));
    store.close().await;
    drop(store);

    // The counter row is not what the `seq`s come from: with it set back, the feed's head and
    // the next event still follow the newest event.
    raw.execute("UPDATE ledger_event_seq SET last = 0 WHERE id = 1", [])
        .expect("a stale counter");
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.events(0, 1).await.expect("feed").last_seq, newest + 3);
    assert_eq!(
        store.verify(apply(4)).await.expect("verify").kind,
        OutcomeKind::Applied
    );
    assert_eq!(
        events_after(&raw, newest + 3),
        vec![(newest + 4, "after-0018-4".to_owned())]
    );
    assert_eq!(store.events(0, 1).await.expect("feed").last_seq, newest + 4);
    assert_eq!(counter(&raw), 0);
    store.close().await;

    // Nor can an event be deleted or renumbered, which would free its `seq` for another.
    for sql in [
        "DELETE FROM event_rows WHERE seq = (SELECT max(seq) FROM event_rows)",
        "UPDATE event_rows SET seq = seq + 100 WHERE seq = (SELECT max(seq) FROM event_rows)",
    ] {
        let refused = raw.execute(sql, []).expect_err(sql).to_string();
        assert!(refused.contains("event_rows is append-only"), "{refused}");
    }
    assert_eq!(events_after(&raw, newest).len(), 4);
}

/// A copy of `tests/fixtures/<name>` in a temporary directory (kept while the guard lives).
fn fixture(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = temp_path();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
        &path,
    )
    .expect("copy the fixture");
    (dir, path)
}

/// `tests/fixtures/ledger-schema-18.db` was written by `ticketd` at commit bd3417d (schema
/// version 18): `ticketd bench --spawn process --data-dir DIR --requests 300 --concurrency 4
/// --orders 12 --vouchers-per-order 5 --warmup 0s --form vouchers --replay-ratio 0.1
/// --reject-ratio 0.1` (one app; 325 entries, 263 accepted, 35 replayed, 27 rejected; 238
/// uses, none folded yet), then checkpointed.
///
/// Migration 0019 on it: `audit_log` loses `CHECK (json_valid(detail))` and nothing else, no
/// row changes, the file checks out, a connection that read the old schema before the upgrade
/// writes without the check too, and every entry written since is JSON all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0019_takes_the_json_check_off_the_audit_trail_and_nothing_else() {
    let (_dir, path) = fixture("ledger-schema-18.db");
    let schema = |raw: &Connection| -> Vec<(String, String, Option<String>)> {
        raw.prepare(
            "SELECT type, name, sql FROM sqlite_schema \
             WHERE name <> 'schema_migrations' ORDER BY type, name",
        )
        .expect("schema")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("schema")
        .collect::<Result<_, _>>()
        .expect("schema")
    };
    // An entry as the writer inserts one, with a detail that is not JSON.
    let audit = "INSERT INTO audit_log (request_id, at_ms, action, app_key, order_id, outcome, \
                 reason, detail) VALUES ('r', 0, 'verify', NULL, NULL, 'accepted', 'x', ?1)";
    // Writes it in a transaction rolled back, so the ledger's rows stay as they are.
    let write_not_json = |conn: &Connection| -> Result<usize, String> {
        conn.execute_batch("BEGIN").expect("begin");
        let done = conn.execute(audit, ["not json"]).map_err(|e| e.to_string());
        conn.execute_batch("ROLLBACK").expect("rollback");
        done
    };
    // A connection that has read the schema before the upgrade, as another process might have.
    let early = Connection::open(&path).expect("early");
    let before = schema(&early);
    let entries = rows_of(&early, "audit_log", "seq");
    assert_eq!(entries.len(), 325);
    let refused = write_not_json(&early).expect_err("schema 18 checks every detail");
    assert!(refused.contains("CHECK constraint failed"), "{refused}");
    let (app, id, code): (String, i64, String) = early
        .query_row(
            "SELECT o.app_key, v.order_id, v.confirm_code FROM vouchers v \
             JOIN orders o ON o.order_id = v.order_id WHERE v.used < v.capacity LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("a code with uses left");

    let store = SqliteStore::open(&path).expect("open upgrades");
    assert_eq!(store.schema_version(), 19);
    fresh_use_applies(&store, &app, id, &code).await;
    store.close().await;

    let raw = Connection::open(&path).expect("raw");
    let after = schema(&raw);
    // Only `audit_log`'s text changed, by exactly the check.
    let expected: Vec<_> = before
        .iter()
        .map(|(kind, name, sql)| {
            let sql = match name.as_str() {
                "audit_log" => sql.as_deref().map(|s| {
                    assert!(s.contains("CHECK (json_valid(detail))"), "{s}");
                    detail_unchecked(s)
                }),
                _ => sql.clone(),
            };
            (kind.clone(), name.clone(), sql)
        })
        .collect();
    assert_eq!(after, expected);
    let check: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    // Every entry kept as it was, the new one after them, and every detail JSON.
    let now = rows_of(&raw, "audit_log", "seq");
    assert_eq!(now.len(), entries.len() + 1);
    assert_eq!(now[..entries.len()], entries[..]);
    let (request, invalid): (String, i64) = raw
        .query_row(
            "SELECT (SELECT request_id FROM audit_log ORDER BY seq DESC LIMIT 1), \
             (SELECT count(*) FROM audit_log WHERE NOT json_valid(detail))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the entries");
    assert_eq!((request.as_str(), invalid), ("fresh-after-upgrade", 0));
    // Neither this connection nor the early one checks a detail any more: the migration moved
    // `schema_version`, so the early one reads the schema again at its first statement.
    for conn in [&raw, &early] {
        assert_eq!(write_not_json(conn), Ok(1));
    }
    assert_eq!(schema(&early), after);
}
