//! [`SqlStore`] on the real PostgreSQL and MariaDB/MySQL servers: what only a shared server can
//! show — racing pools, lock waits and retries, the schema's own guards, and moving a ledger
//! between backends. The behaviour suite runs on the same servers from `tests/suite.rs`.
//!
//! Every test run creates its own databases (`ticket_store::scratch`); without a server the
//! tests print how to start it and pass, unless `CI` is set (then they fail).

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Days;
use sqlx::Connection;
use ticket_ledger::{
    AnomalyFilter, AppAccess, AuditOutcome, IpRange, LedgerError, LedgerStore, OrderId,
    OutcomeKind, RateLimit, Resolution, SecretRotation,
};
use ticket_ledger_suite::{
    app, audit_entry, gate_time_plus, given_app, given_order, issue_cmd, order, received_at,
    refund_cmd, refund_request, resolve_cmd, reversal, verify_cmd, Fresh, VerifyCommandBuilder,
};
use ticket_store::scratch::ScratchDatabase;
use ticket_store::{Engine, PoolSettings, SqlStore, SqliteStore, StoreError, Transfer};

use crate::support::{assert_totals_beyond_i64, BEYOND_THE_BOUNDS};

/// Pool settings for tests: small pools (many cases run at once against one server).
fn settings() -> PoolSettings {
    PoolSettings {
        max_connections: 8,
        ..PoolSettings::default()
    }
}

async fn open(db: &ScratchDatabase, settings: &PoolSettings) -> SqlStore {
    SqlStore::connect(db.url(), settings)
        .await
        .unwrap_or_else(|e| panic!("opening {}: {e}", db.name()))
}

/// Generates one `#[tokio::test]` per engine for each engine-generic test below.
macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(ticket_store::Engine::Postgres).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(ticket_store::Engine::MySql).await;
                }
            )*
        }
    };
}

on_both_engines!(
    racing_verifies_through_two_pools_apply_exactly_the_capacity,
    a_lock_released_during_the_retries_lets_the_verify_apply,
    a_lock_held_past_every_retry_is_answered_unavailable_and_nothing_is_written,
    the_audit_trail_refuses_updates_and_deletes_in_the_database,
    an_edited_migration_is_refused_at_start_up,
    an_export_imported_into_this_engine_exports_the_same_rows,
    import_refuses_a_target_that_holds_rows,
    verifies_queued_behind_a_batch_are_committed_together,
    a_batch_that_fails_runs_its_verifies_one_by_one,
    a_batch_whose_events_fail_commits_nothing_and_leaves_no_transaction_open,
    codes_that_quote_and_escape_are_read_and_written_by_a_batch,
    a_lone_verify_without_an_event_counter_is_refused_as_a_write_that_changed_no_row,
    a_batch_never_waits_for_a_lock_on_an_order_it_does_not_name,
    ledger_totals_beyond_i64_are_read_not_refused,
    order_totals_are_built_on_upgrade_and_follow_every_write,
);

/// On one thread, so that the test's log subscriber sees the store's tasks too.
mod logs {
    #[tokio::test(flavor = "current_thread")]
    async fn postgres_a_slow_batch_leaves_no_code_in_the_log() {
        super::a_slow_batch_leaves_no_code_in_the_log(ticket_store::Engine::Postgres).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn mysql_a_slow_batch_leaves_no_code_in_the_log() {
        super::a_slow_batch_leaves_no_code_in_the_log(ticket_store::Engine::MySql).await;
    }
}

/// What undoes migrations 9 (`0009_write_checks`) and 8 (`0008_order_totals`): a database as
/// schema 7 wrote it.
fn back_to_schema_7(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Postgres => &[
            "DROP FUNCTION ticketd_write_changed_no_row(TEXT)",
            "DELETE FROM schema_migrations WHERE version = 9",
            "DROP TRIGGER vouchers_totals_insert ON vouchers",
            "DROP TRIGGER vouchers_totals_update ON vouchers",
            "DROP TRIGGER vouchers_totals_delete ON vouchers",
            "DROP FUNCTION ticketd_vouchers_inserted()",
            "DROP FUNCTION ticketd_vouchers_updated()",
            "DROP FUNCTION ticketd_vouchers_deleted()",
            "DROP FUNCTION ticketd_total_plus(BIGINT, NUMERIC)",
            "ALTER TABLE orders DROP COLUMN voucher_count, DROP COLUMN capacity_total, \
             DROP COLUMN used_total",
            "DELETE FROM schema_migrations WHERE version = 8",
        ],
        Engine::MySql => &[
            "DROP TRIGGER vouchers_totals_insert",
            "DROP TRIGGER vouchers_totals_update",
            "DROP TRIGGER vouchers_totals_delete",
            "ALTER TABLE orders DROP COLUMN voucher_count, DROP COLUMN capacity_total, \
             DROP COLUMN used_total",
            "DELETE FROM schema_migrations WHERE version = 8",
            "DELETE FROM schema_migrations WHERE version = 9",
        ],
    }
}

/// `(voucher_count, capacity_total, used_total)` of order `id` as stored, and as its vouchers
/// add up (a sum beyond `i64` reads as `None`, as the migration stores it).
async fn stored_and_summed_totals(
    shell: &mut sqlx::AnyConnection,
    id: i64,
) -> (
    (i64, Option<i64>, Option<i64>),
    (i64, Option<i64>, Option<i64>),
) {
    use sqlx::Row;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT voucher_count, capacity_total, used_total FROM orders WHERE order_id = {id}"
    )))
    .fetch_one(&mut *shell)
    .await
    .expect("the order's totals");
    let stored = (
        row.get::<i64, _>(0),
        row.get::<Option<i64>, _>(1),
        row.get::<Option<i64>, _>(2),
    );
    let vouchers = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT capacity, used FROM vouchers WHERE order_id = {id}"
    )))
    .fetch_all(&mut *shell)
    .await
    .expect("the order's vouchers");
    let sum = |column: usize| {
        let total: i128 = vouchers
            .iter()
            .map(|v| i128::from(v.get::<i64, _>(column)))
            .sum();
        i64::try_from(total).ok()
    };
    let count = i64::try_from(vouchers.len()).expect("count");
    (stored, (count, sum(0), sum(1)))
}

/// Migration 8 keeps each order's count of codes and the sums of their capacity and uses on
/// its row (a batch of verifies reads them instead of summing 500 codes): on a ledger written
/// by schema 7 it builds them from the vouchers, and then every write — issuance, a verify, a
/// reversal, a hand edit beyond `i64` — keeps them equal to what the vouchers add up to. A
/// total once beyond `i64` stays NULL (unknown), and its order is read whole, as before.
async fn order_totals_are_built_on_upgrade_and_follow_every_write(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let f = Fresh::new();
    let a = f.key("app");
    let (one, two) = (f.id(1), f.id(2));
    let store = open(&db, &settings()).await;
    given_app(&store, &a).await;
    given_order(
        &store,
        order(one, &a, &[("T-1", 5), ("T-2", 3), ("T-3", 1)]),
    )
    .await;
    given_order(&store, order(two, &a, &[])).await;
    store
        .verify(verify_cmd(&a, one).entry("T-1", 2).entry("T-3", 1).build())
        .await
        .expect("a verify on schema 8");
    store.close().await;

    sqlx::any::install_default_drivers();
    let mut shell = sqlx::AnyConnection::connect(db.url())
        .await
        .expect("connect");
    for sql in back_to_schema_7(engine) {
        sqlx::raw_sql(*sql).execute(&mut shell).await.expect(sql);
    }

    let store = open(&db, &settings()).await;
    let totals = stored_and_summed_totals(&mut shell, one).await;
    assert_eq!(
        totals,
        ((3, Some(9), Some(3)), (3, Some(9), Some(3))),
        "built"
    );
    let totals = stored_and_summed_totals(&mut shell, two).await;
    assert_eq!(
        totals,
        ((0, Some(0), Some(0)), (0, Some(0), Some(0))),
        "none yet"
    );

    store
        .issue(
            issue_cmd(&a, two, "OUT-2")
                .codes(&[("U-1", 4), ("U-2", 2)])
                .build(),
        )
        .await
        .expect("issue");
    let totals = stored_and_summed_totals(&mut shell, two).await;
    assert_eq!(
        totals,
        ((2, Some(6), Some(0)), (2, Some(6), Some(0))),
        "issued"
    );

    // A verify planned on the totals: U-1 is the named code, U-2 the rest.
    let outcome = store
        .verify(verify_cmd(&a, two).entry("U-1", 3).build())
        .await
        .expect("verify");
    assert_eq!(outcome.applied_uses, 3);
    let over = store
        .verify(verify_cmd(&a, two).entry("U-1", 2).build())
        .await;
    assert!(over.is_err(), "past U-1's capacity: {over:?}");
    let totals = stored_and_summed_totals(&mut shell, two).await;
    assert_eq!(
        totals,
        ((2, Some(6), Some(3)), (2, Some(6), Some(3))),
        "used"
    );

    let reversed = store
        .reverse(reversal(
            one,
            "T-1",
            1,
            Days::hours(1),
            received_at() + Days::minutes(1),
        ))
        .await
        .expect("reverse");
    assert_eq!(reversed, 1);
    let totals = stored_and_summed_totals(&mut shell, one).await;
    assert_eq!(
        totals,
        ((3, Some(9), Some(2)), (3, Some(9), Some(2))),
        "reversed"
    );

    // A ledger from before the bounds: a capacity of i64::MAX puts the sum beyond a BIGINT.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE vouchers SET capacity = 9223372036854775807 \
         WHERE order_id = {one} AND confirm_code = 'T-2'"
    )))
    .execute(&mut shell)
    .await
    .expect("a capacity beyond the bounds");
    let totals = stored_and_summed_totals(&mut shell, one).await;
    assert_eq!(
        totals,
        ((3, None, Some(2)), (3, None, Some(2))),
        "beyond i64"
    );
    let refused = store
        .verify(verify_cmd(&a, one).entry("T-2", 1).build())
        .await;
    assert!(
        matches!(refused, Err(LedgerError::CountOverflow { .. })),
        "the order's capacity is beyond i64, read whole and refused as before: {refused:?}"
    );
    // Back within the bounds by hand: the total stays unknown (NULL), the order is still read
    // whole, and verified right.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE vouchers SET capacity = 3 WHERE order_id = {one} AND confirm_code = 'T-2'"
    )))
    .execute(&mut shell)
    .await
    .expect("a capacity back within the bounds");
    let outcome = store
        .verify(verify_cmd(&a, one).entry("T-2", 3).build())
        .await
        .expect("an order with unknown totals is read whole");
    assert_eq!(outcome.applied_uses, 3);
    let full = store
        .verify(
            verify_cmd(&a, one)
                .entry_at("T-3", 1, Some(gate_time_plus(5)))
                .build(),
        )
        .await;
    assert!(full.is_err(), "T-3 is used up: {full:?}");
    let totals = stored_and_summed_totals(&mut shell, one).await;
    assert_eq!(totals, ((3, None, Some(5)), (3, Some(9), Some(5))), "after");
    let view = view_of(&store, one).await;
    let used: Vec<i64> = view.vouchers.iter().map(|v| v.used).collect();
    assert_eq!(used, [1, 3, 1]);
    let _ = shell.close().await;
    store.close().await;
}

/// `/metrics` reads its totals as doubles (a NUMERIC or DECIMAL sum cast to `BIGINT` failed
/// past `i64::MAX`): a ledger from before the bounds, whose sums are beyond `i64`, is still
/// counted, never an error.
async fn ledger_totals_beyond_i64_are_read_not_refused(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let store = open(&db, &settings()).await;
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&store, &a).await;
    given_order(&store, order(f.id(1), &a, &[("BIG-1", 1)])).await;
    given_order(&store, order(f.id(2), &a, &[("BIG-2", 1)])).await;
    sqlx::any::install_default_drivers();
    let mut shell = sqlx::AnyConnection::connect(db.url())
        .await
        .expect("connect");
    for sql in BEYOND_THE_BOUNDS {
        sqlx::raw_sql(sql).execute(&mut shell).await.expect(sql);
    }
    let _ = shell.close().await;
    let metrics = store
        .metrics()
        .await
        .expect("the totals read, whatever the ledger holds");
    assert_totals_beyond_i64(&metrics);
}

/// 64 gates verify one code of capacity 10 at once, half through one pool and half through
/// another (two "processes"): exactly 10 uses are applied, 54 are refused, and the trail holds
/// one accepted entry per applied use.
async fn racing_verifies_through_two_pools_apply_exactly_the_capacity(engine: Engine) {
    let Some(db) = ScratchDatabase::shared(engine) else {
        return;
    };
    let stores: Vec<Arc<dyn LedgerStore>> = vec![
        Arc::new(open(db, &settings()).await),
        Arc::new(open(db, &settings()).await),
    ];
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*stores[0], &a).await;
    given_order(&*stores[0], order(f.id(1), &a, &[("HOT", 10)])).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = Arc::clone(&stores[n % 2]);
            let barrier = Arc::clone(&barrier);
            let cmd = verify_cmd(&a, f.id(1))
                .entry_at("HOT", 1, Some(gate_time_plus(n as i64)))
                .build();
            tokio::spawn(async move {
                barrier.wait().await;
                store.verify(cmd).await
            })
        })
        .collect();
    let mut applied = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(o) if o.kind == OutcomeKind::Applied => applied += 1,
            Err(LedgerError::CapacityExceeded { remaining: 0, .. }) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((applied, refused), (10, 54));
    let view = stores[1]
        .order(OrderId::new(f.id(1)).expect("id"))
        .await
        .expect("read")
        .expect("order");
    assert_eq!(view.vouchers[0].used, 10);
    let accepted = view.events.iter().filter(|e| e.reason == "applied").count();
    assert_eq!(accepted, 10);
}

/// Holds the order's row lock from another connection, as a long transaction elsewhere would.
async fn hold_order_lock(db: &ScratchDatabase, id: i64) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(db.url())
        .await
        .expect("connect");
    sqlx::raw_sql("BEGIN")
        .execute(&mut conn)
        .await
        .expect("begin");
    let lock = format!("SELECT order_id FROM orders WHERE order_id = {id} FOR UPDATE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock))
        .execute(&mut conn)
        .await
        .expect("lock");
    conn
}

/// The shortest lock wait each engine takes (InnoDB counts whole seconds).
fn short_lock_wait(engine: Engine) -> Duration {
    match engine {
        Engine::Postgres => Duration::from_millis(200),
        Engine::MySql => Duration::from_secs(1),
    }
}

/// A store that waits `lock_wait` for a row lock and makes `attempts` attempts, with an app and
/// its order `f.id(1)` of one code `C` allowing 2 uses.
async fn locked_order(
    db: &ScratchDatabase,
    lock_wait: Duration,
    attempts: u32,
) -> (SqlStore, Fresh, String) {
    let store = open(
        db,
        &PoolSettings {
            lock_timeout: lock_wait,
            max_attempts: attempts,
            ..settings()
        },
    )
    .await;
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&store, &a).await;
    given_order(&store, order(f.id(1), &a, &[("C", 2)])).await;
    (store, f, a)
}

/// A verify that waits for a row lock past the lock timeout is retried; once the other
/// transaction ends, the retry applies it (once).
async fn a_lock_released_during_the_retries_lets_the_verify_apply(engine: Engine) {
    let Some(db) = ScratchDatabase::shared(engine) else {
        return;
    };
    let wait = short_lock_wait(engine);
    let (store, f, a) = locked_order(db, wait, 5).await;
    let holder = hold_order_lock(db, f.id(1)).await;
    let release = tokio::spawn(async move {
        // Longer than one lock wait, shorter than all the retries.
        tokio::time::sleep(wait + wait / 2).await;
        let mut holder = holder;
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut holder)
            .await
            .expect("release");
    });
    let outcome = store
        .verify(verify_cmd(&a, f.id(1)).entry("C", 1).build())
        .await
        .expect("applied after a retry");
    assert_eq!(outcome.kind, OutcomeKind::Applied);
    release.await.expect("join");
    let view = view_of(&store, f.id(1)).await;
    assert_eq!(view.vouchers[0].used, 1);
}

/// When the lock outlasts every attempt the answer is `Unavailable` (retryable, the gateway's
/// `isp.service-busy`) and nothing was written.
async fn a_lock_held_past_every_retry_is_answered_unavailable_and_nothing_is_written(
    engine: Engine,
) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let db = &db;
    let (store, f, a) = locked_order(db, short_lock_wait(engine), 2).await;
    let mut holder = hold_order_lock(db, f.id(1)).await;
    let answer = store
        .verify(verify_cmd(&a, f.id(1)).entry("C", 1).build())
        .await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release");
    match answer {
        Err(e @ LedgerError::Unavailable(_)) => assert!(e.is_retryable()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let view = view_of(&store, f.id(1)).await;
    assert_eq!(view.vouchers[0].used, 0);
    assert_eq!(view.events.len(), 1, "only the creation entry");
    // Each attempt's transaction failed with its lock wait and was rolled back: none of the
    // store's connections went back to its pool inside it.
    assert_no_transaction_open(db, engine).await;
}

/// The order `id` as the store shows it; fails if the store cannot read it or has no such
/// order.
async fn view_of(store: &SqlStore, id: i64) -> ticket_ledger::OrderView {
    store
        .order(OrderId::new(id).expect("id"))
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("order {id} is not there"))
}

/// Runs `statements` on `db` from a connection of the test's own, as an operator's hand or a
/// later migration would: a trigger, a deleted row, a changed column.
async fn by_hand(db: &ScratchDatabase, statements: &[impl AsRef<str>]) {
    let mut admin = sqlx::AnyConnection::connect(db.url())
        .await
        .expect("connect");
    for statement in statements {
        let statement = statement.as_ref();
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// Fails unless, within 5 s, no connection to `db` (a database of the test's own) is inside
/// a transaction: a batch's transaction is begun by a statement of ticketd's, which the pool
/// does not know of.
async fn assert_no_transaction_open(db: &ScratchDatabase, engine: Engine) {
    let mut admin = sqlx::AnyConnection::connect(db.url())
        .await
        .expect("connect");
    let sql = match engine {
        Engine::Postgres => {
            "SELECT CAST(count(*) AS BIGINT) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND state LIKE 'idle in transaction%'"
        }
        Engine::MySql => {
            "SELECT CAST(count(*) AS SIGNED) FROM information_schema.innodb_trx AS t \
             JOIN information_schema.processlist AS p ON p.id = t.trx_mysql_thread_id \
             WHERE p.db = DATABASE() AND p.id <> CONNECTION_ID()"
        }
    };
    // The views lag (InnoDB's `innodb_trx` is a cache, refreshed only when it was last read
    // over 100 ms ago): a connection left inside its transaction stays listed for good, so
    // this waits up to 5 s for none.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let open: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut admin)
            .await
            .expect("count open transactions");
        if open == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} connections left inside a transaction"
        );
        // Not sooner: each read of `innodb_trx` within 100 ms of the last one answers the
        // cache without refreshing it, so quicker polls would never see it change.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Append-only is the database's rule too, not only the code's.
async fn the_audit_trail_refuses_updates_and_deletes_in_the_database(engine: Engine) {
    let Some(db) = ScratchDatabase::shared(engine) else {
        return;
    };
    let store = open(db, &settings()).await;
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&store, &a).await;
    given_order(&store, order(f.id(1), &a, &[("C", 1)])).await;
    let mut conn = sqlx::AnyConnection::connect(db.url())
        .await
        .expect("connect");
    for statement in [
        format!(
            "UPDATE audit_log SET reason = 'x' WHERE order_id = {}",
            f.id(1)
        ),
        format!("DELETE FROM audit_log WHERE order_id = {}", f.id(1)),
    ] {
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut conn)
            .await;
        let err = result.expect_err(&statement);
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
}

/// A database whose applied migration differs from the binary's is refused, with a message
/// naming the migration.
async fn an_edited_migration_is_refused_at_start_up(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    open(&db, &settings()).await.close().await;
    let mut conn = sqlx::AnyConnection::connect(db.url())
        .await
        .expect("connect");
    sqlx::raw_sql("UPDATE schema_migrations SET checksum = checksum + 1 WHERE version = 1")
        .execute(&mut conn)
        .await
        .expect("tamper");
    let err = SqlStore::connect(db.url(), &settings())
        .await
        .expect_err("an edited migration must be refused");
    assert!(
        matches!(err, StoreError::MigrationChanged { version: 1, .. }),
        "{err}"
    );
}

/// A busy SQLite ledger (made by the behaviour suite's own builders) exported, imported into
/// an empty database of this engine and exported again gives the same rows, line for line.
async fn an_export_imported_into_this_engine_exports_the_same_rows(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(&dir.path().join("ledger.db")).expect("open");
    busy_ledger(&sqlite).await;
    let mut exported = Vec::new();
    let counts = sqlite.export(&mut exported).await.expect("export");
    assert!(counts["audit_log"] > 10, "{counts:?}");
    let text = String::from_utf8_lossy(&exported);
    for column in [
        r#""ip_allowlist":"198.51.100.0/24,2001:db8::1""#,
        r#""previous_secret":"secret-of-app-"#,
        r#""rate_burst":7,"rate_limit":"30/m","secret":"rotated-secret""#,
    ] {
        assert!(
            text.contains(column),
            "the export carries the apps' access settings and previous secret ({column}): {text}"
        );
    }

    let target = open(&db, &settings()).await;
    let imported = target
        .import(&mut std::io::Cursor::new(exported.clone()))
        .await
        .expect("import");
    assert_eq!(imported, counts);
    let mut again = Vec::new();
    target.export(&mut again).await.expect("export again");
    let lines = |bytes: &[u8]| -> Vec<String> {
        String::from_utf8(bytes.to_vec())
            .expect("utf-8")
            .lines()
            .skip(1) // the header names the source backend
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(lines(&again), lines(&exported));

    // New rows continue the imported numbering instead of colliding with it.
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&target, &a).await;
    let view = given_order(&target, order(f.id(1), &a, &[("C", 1)])).await;
    let last_imported = counts["audit_log"] as i64;
    assert!(view.events[0].seq > last_imported, "{:?}", view.events[0]);
}

/// An import never mixes two ledgers.
async fn import_refuses_a_target_that_holds_rows(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let target = open(&db, &settings()).await;
    target.create_app(app("already-here")).await.expect("app");
    let mut export = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    SqliteStore::open(&dir.path().join("empty.db"))
        .expect("open")
        .export(&mut export)
        .await
        .expect("export");
    let err = target
        .import(&mut std::io::Cursor::new(export))
        .await
        .expect_err("a non-empty target must be refused");
    assert!(err.to_string().contains("not empty"), "{err}");
}

/// Start-up names the server it could not reach.
#[tokio::test]
async fn an_unreachable_server_fails_start_up_with_a_clear_message() {
    let err = SqlStore::connect(
        "postgres://ticketd:secret@127.0.0.1:1/ledger",
        &PoolSettings {
            acquire_timeout: Duration::from_secs(2),
            ..PoolSettings::default()
        },
    )
    .await
    .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "cannot connect to PostgreSQL at postgres://ticketd:***@127.0.0.1:1/ledger"
        ),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}

/// Fills a store with some of everything the export must carry: two apps, issued and
/// awaiting orders, applied, replayed and refused verifies, a refund request settled twice (a
/// replay), a reversal, anomalies open and resolved, and rejected attempts.
async fn busy_ledger(store: &dyn LedgerStore) {
    let f = Fresh::new();
    let a = f.key("app");
    let b = f.key("other");
    given_app(store, &a).await;
    given_app(store, &b).await;
    // Access settings and a rotated secret travel with the app.
    let a_key = ticket_ledger_suite::app_key(&a);
    store
        .set_app_access(
            &a_key,
            AppAccess {
                rate_limit: Some(RateLimit::parse("30/m", Some(7)).expect("rate")),
                ip_allowlist: vec![
                    IpRange::parse("198.51.100.0/24").expect("range"),
                    IpRange::parse("2001:db8::1").expect("address"),
                ],
            },
        )
        .await
        .expect("set_app_access");
    store
        .rotate_app_secret(
            &a_key,
            SecretRotation {
                new_secret: "rotated-secret".to_owned(),
                previous_expires_at: received_at() + Days::hours(24),
            },
        )
        .await
        .expect("rotate_app_secret");
    given_order(store, order(f.id(1), &a, &[("A1", 2), ("A2", 3)])).await;
    given_order(store, order(f.id(2), &a, &[])).await;
    given_order(store, order(f.id(3), &b, &[("B1", 4)])).await;
    store
        .issue(issue_cmd(&a, f.id(2), "OUT-2").codes(&[("I1", 2)]).build())
        .await
        .expect("issue");
    let first = verify_cmd(&a, f.id(1))
        .entry("A1", 1)
        .entry("A2", 2)
        .build();
    store.verify(first.clone()).await.expect("verify");
    store
        .verify(ticket_ledger_suite::retry_of(&first, 5))
        .await
        .expect("replay");
    store
        .verify(
            verify_cmd(&a, f.id(1))
                .entry_at("A1", 5, Some(gate_time_plus(9)))
                .build(),
        )
        .await
        .expect_err("over capacity");
    store
        .record(audit_entry(
            Some(&a),
            Some(f.id(1)),
            AuditOutcome::Rejected,
            "isv.verify-num-exceed",
        ))
        .await
        .expect("record");
    store
        .record(audit_entry(
            None,
            None,
            AuditOutcome::Rejected,
            "25 Invalid signature",
        ))
        .await
        .expect("record");
    store
        .request_refund(refund_request(f.id(3), 2, received_at()))
        .await
        .expect("refund request");
    let refund = refund_cmd(&b, f.id(3)).batch("RB-1").build();
    store.refund(refund.clone()).await.expect("refund");
    store.refund(refund).await.expect("refund replay");
    store
        .refund(refund_cmd(&b, f.id(3)).batch("RB-2").build())
        .await
        .expect_err("nothing pending: an anomaly");
    store
        .verify(
            verify_cmd(&a, f.id(2))
                .entry("I1", 1)
                .received_at(received_at() + Days::minutes(1))
                .total_num(1)
                .build(),
        )
        .await
        .expect("verify with a total_num anomaly");
    store
        .reverse(reversal(
            f.id(1),
            "A2",
            1,
            Days::days(7),
            received_at() + Days::hours(1),
        ))
        .await
        .expect("reversal");
    let open = store
        .anomalies(AnomalyFilter::default())
        .await
        .expect("anomalies");
    assert!(open.len() >= 2, "{open:?}");
    store
        .resolve_anomaly(resolve_cmd(open[0].id, Resolution::Dismissed, "checked"))
        .await
        .expect("resolve");
}

/// The order a test blocks the batch worker on.
const BLOCKER: i64 = 999;

/// A store whose verifies all go through one batch worker, in a database of its own, with an
/// app, an order `f.id(BLOCKER)` to block the worker on, and orders `f.id(1..=n)` of one code
/// `C`.
async fn one_worker(db: &ScratchDatabase, n: i64) -> (Arc<SqlStore>, Fresh, String) {
    let store = open(
        db,
        &PoolSettings {
            batch_workers: 1,
            ..settings()
        },
    )
    .await;
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&store, &a).await;
    for i in (1..=n).chain([BLOCKER]) {
        given_order(&store, order(f.id(i), &a, &[("C", 5)])).await;
    }
    (Arc::new(store), f, a)
}

/// Waits until the batch workers have taken `n` verifies out of the queue in all.
/// The one batch worker, held: another connection holds the lock on order [`BLOCKER`] and a
/// verify of that order waits for it inside a batch, so whatever arrives meanwhile queues up
/// behind it.
struct HeldWorker {
    holder: sqlx::AnyConnection,
    blocked: tokio::task::JoinHandle<Result<ticket_ledger::VerifyOutcome, LedgerError>>,
}

impl HeldWorker {
    /// `jobs_before`: the store's job counter before, to know when the batch has taken it.
    async fn hold(
        db: &ScratchDatabase,
        store: &Arc<SqlStore>,
        f: &Fresh,
        a: &str,
        jobs_before: u64,
    ) -> Self {
        let holder = hold_order_lock(db, f.id(BLOCKER)).await;
        let blocked = {
            let store = Arc::clone(store);
            let cmd = verify_cmd(a, f.id(BLOCKER)).entry("C", 1).build();
            tokio::spawn(async move { store.verify(cmd).await })
        };
        until_taken(store, jobs_before + 1).await;
        Self { holder, blocked }
    }

    /// Releases the lock and returns the blocked verify's answer.
    async fn release(mut self) -> Result<ticket_ledger::VerifyOutcome, LedgerError> {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut self.holder)
            .await
            .expect("release");
        self.blocked.await.expect("join")
    }
}

async fn until_taken(store: &SqlStore, n: u64) {
    loop {
        let metrics = store.metrics().await.expect("metrics");
        if metrics.batches.expect("batch counters").jobs >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Waits until `n` verifies wait for a batch.
async fn until_queued(store: &SqlStore, n: u64) {
    loop {
        let metrics = store.metrics().await.expect("metrics");
        if metrics.batches.expect("batch counters").queued >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// While a batch waits (here: for a lock another transaction holds), the verifies arriving
/// meanwhile queue up, and the next batch takes them all: one transaction for 32 verifies,
/// each answered as if it had run alone.
async fn verifies_queued_behind_a_batch_are_committed_together(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let (store, f, a) = one_worker(&db, 32).await;
    let before = store.metrics().await.expect("metrics").batches.expect("b");

    let held = HeldWorker::hold(&db, &store, &f, &a, before.jobs).await;
    // Queued the highest order first, each once the one before waits, so that the batch's
    // order is not the order ids': an insert that sorted its rows by order id would then fail
    // `assert_appended_in_one_order` below.
    let mut queued = Vec::new();
    for (waiting, i) in (1..=32).rev().enumerate() {
        let s = Arc::clone(&store);
        let cmd = verify_cmd(&a, f.id(i))
            .entry_at("C", 1 + i % 3, Some(gate_time_plus(i)))
            .build();
        queued.push(tokio::spawn(async move { s.verify(cmd).await }));
        until_queued(&store, waiting as u64 + 1).await;
    }
    queued.reverse();

    let first = held.release().await.expect("the blocked verify");
    assert_eq!(first.applied_uses, 1);
    for (i, task) in (1..=32).zip(queued) {
        let outcome = task.await.expect("join").expect("a queued verify");
        assert_eq!(outcome.kind, OutcomeKind::Applied);
        assert_eq!(outcome.applied_uses, 1 + i % 3);
        assert_eq!(outcome.order_id.get(), f.id(i));
    }
    let after = store.metrics().await.expect("metrics").batches.expect("b");
    assert_eq!(after.jobs - before.jobs, 33);
    assert_eq!(after.commits - before.commits, 2, "{before:?} -> {after:?}");
    assert_eq!(after.largest_batch, 32);
    assert_eq!(after.failed_batches, 0);
    for i in 1..=32 {
        let view = view_of(&store, f.id(i)).await;
        assert_eq!(view.vouchers[0].used, 1 + i % 3, "order {i}");
        assert_eq!(
            view.events.iter().filter(|e| e.reason == "applied").count(),
            1,
            "one accepted audit entry for order {i}"
        );
    }
    assert_appended_in_one_order(&db, &(1..=32).map(|i| f.id(i)).collect::<Vec<_>>()).await;
}

/// The rows a batch appends follow the batch's order in every table. Each event's `seq` is
/// computed from its verify's place in the batch; the audit entries' `seq`s and the uses' ids
/// are handed out as the database inserts the rows. So if an insert took its rows in another
/// order than the batch's (MySQL's inserts have no `ORDER BY`, see `Engine::bulk_insert`),
/// the order ids of `orders` (one verify each) would come out in a different order here.
async fn assert_appended_in_one_order(db: &ScratchDatabase, orders: &[i64]) {
    let mut shell = sqlx::AnyConnection::connect(db.url())
        .await
        .expect("connect");
    let events = order_ids_in(
        &mut shell,
        orders,
        "SELECT order_id FROM ledger_events WHERE event_type = 'ticketd.voucher.used' ORDER BY seq",
    )
    .await;
    let audit = order_ids_in(
        &mut shell,
        orders,
        "SELECT order_id FROM audit_log WHERE reason = 'applied' ORDER BY seq",
    )
    .await;
    let uses = order_ids_in(
        &mut shell,
        orders,
        "SELECT order_id FROM voucher_uses ORDER BY id",
    )
    .await;
    let mut sorted = events.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, orders,
        "one verify's events per order, each order once: {events:?}"
    );
    assert_eq!(audit, events, "audit entries in the events' order");
    assert_eq!(uses, events, "uses in the events' order");
}

/// The order ids `sql` answers that are among `orders`, in its order, a run of one id counted
/// once (a verify may raise several events; its place is its first).
async fn order_ids_in(
    shell: &mut sqlx::AnyConnection,
    orders: &[i64],
    sql: &'static str,
) -> Vec<i64> {
    use sqlx::Row;
    let mut ids: Vec<i64> = sqlx::query(sql)
        .fetch_all(&mut *shell)
        .await
        .expect(sql)
        .iter()
        .map(|row| row.get::<i64, _>(0))
        .filter(|id| orders.contains(id))
        .collect();
    ids.dedup();
    ids
}

/// A batch that fails for one of its verifies (here a trigger refuses that verify's use log
/// row) is not answered with the failure: each verify runs again alone, the sound ones apply,
/// and only the poisoned one fails.
async fn a_batch_that_fails_runs_its_verifies_one_by_one(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let (store, f, a) = one_worker(&db, 6).await;
    let poison = match engine {
        Engine::Postgres => vec![
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.request_id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON voucher_uses \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ],
        Engine::MySql => vec![
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON voucher_uses FOR EACH ROW \
             BEGIN IF NEW.request_id = 'poison' THEN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poisoned'; END IF; END",
        ],
    };
    let poison: Vec<String> = poison.into_iter().map(str::to_owned).collect();
    let poisoned = six_in_one_batch_the_third_failing(&store, &db, &poison, &f, &a, |cmd| {
        cmd.request_id("poison")
    })
    .await;
    assert!(
        matches!(poisoned, Err(LedgerError::Internal(_))),
        "{poisoned:?}"
    );
}

/// A batch whose events cannot be written (here a trigger refuses order 3's) commits nothing
/// of what it wrote before them: on PostgreSQL the events go to the server with the `COMMIT`,
/// the failed statement leaves the transaction aborted, and it is rolled back; then each
/// verify runs alone, the sound ones apply, and no connection is left inside a transaction.
async fn a_batch_whose_events_fail_commits_nothing_and_leaves_no_transaction_open(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let (store, f, a) = one_worker(&db, 6).await;
    let third = f.id(3);
    let refuse = match engine {
        Engine::Postgres => vec![
            "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'no events'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER refuse_events BEFORE INSERT ON ledger_events FOR EACH ROW \
                 WHEN (NEW.order_id = {third}) EXECUTE FUNCTION refuse_events()"
            ),
        ],
        Engine::MySql => vec![format!(
            "CREATE TRIGGER refuse_events BEFORE INSERT ON ledger_events FOR EACH ROW \
             BEGIN IF NEW.order_id = {third} THEN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no events'; END IF; END"
        )],
    };
    let refused = six_in_one_batch_the_third_failing(&store, &db, &refuse, &f, &a, |cmd| cmd).await;
    assert!(
        matches!(refused, Err(LedgerError::Internal(_))),
        "{refused:?}"
    );
    assert_no_transaction_open(&db, engine).await;
}

/// Without the event counter's row (a damaged ledger) a verify is refused as a write that
/// changed no row, on both engines alike, and nothing of it is written: on PostgreSQL the
/// batch's events, sent with the `COMMIT`, fail on their NULL `seq` instead of being counted,
/// and that failure is told apart from any other.
async fn a_lone_verify_without_an_event_counter_is_refused_as_a_write_that_changed_no_row(
    engine: Engine,
) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let (store, f, a) = one_worker(&db, 1).await;
    by_hand(&db, &["DELETE FROM ledger_event_seq"]).await;
    let answer = store
        .verify(verify_cmd(&a, f.id(1)).entry("C", 1).build())
        .await;
    assert_eq!(
        answer.err(),
        Some(LedgerError::WriteChangedNoRow {
            write: "ledger_event_seq"
        })
    );
    let view = view_of(&store, f.id(1)).await;
    assert_eq!(view.vouchers[0].used, 0);
    assert_no_transaction_open(&db, engine).await;
}

/// Where a test's log goes: every event of its thread, as text.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// A batch's statements carry their parameters in their text (the codes among them), and
/// sqlx logs a statement slower than a second with its text at WARN: a verify that waits
/// over a second for its order's lock must leave no code in the log, at any level.
async fn a_slow_batch_leaves_no_code_in_the_log(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let (store, f, a) = locked_order(&db, Duration::from_secs(5), 1).await;
    let code = "Q7SECRETCODE";
    given_order(&store, order(f.id(2), &a, &[(code, 2)])).await;
    let mut holder = hold_order_lock(&db, f.id(2)).await;
    let verify = store.verify(verify_cmd(&a, f.id(2)).entry(code, 1).build());
    let release = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut holder)
            .await
            .expect("release");
    };
    let (outcome, ()) = tokio::join!(verify, release);
    assert_eq!(
        outcome.expect("applied once the lock is free").applied_uses,
        1
    );
    let log = String::from_utf8_lossy(
        &captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    let hex: String = code.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!log.is_empty(), "the log was captured");
    assert!(
        !log.contains(code) && !log.to_lowercase().contains(&hex),
        "a code in the log: {log}"
    );
}

/// Codes may hold any visible ASCII character, quotes, backslashes and question marks
/// included; on PostgreSQL a batch's reads and events carry them inside string literals.
/// Each is found, counted and listed as given, in one batch.
async fn codes_that_quote_and_escape_are_read_and_written_by_a_batch(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let (store, f, a) = one_worker(&db, 0).await;
    let codes = [
        "it's",
        "back\\slash",
        "''",
        "\\'",
        "?$1?",
        "x');DELETE_FROM_vouchers;--",
        "E'\\x00'",
        "\"q\"",
    ];
    let id = f.id(1);
    let issued: Vec<(&str, i64)> = codes.iter().map(|c| (*c, 2)).collect();
    given_order(store.as_ref(), order(id, &a, &issued)).await;
    let before = store.metrics().await.expect("metrics").batches.expect("b");
    let held = HeldWorker::hold(&db, &store, &f, &a, before.jobs).await;
    let queued: Vec<_> = codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let store = Arc::clone(&store);
            let cmd = verify_cmd(&a, id)
                .entry(code, 1)
                .request_id(&format!("r{i}"))
                .build();
            tokio::spawn(async move { store.verify(cmd).await })
        })
        // A second use of the first code in the same batch, at a later gate time.
        .chain(std::iter::once({
            let store = Arc::clone(&store);
            let cmd = verify_cmd(&a, id)
                .entry_at(codes[0], 1, Some(gate_time_plus(60)))
                .build();
            tokio::spawn(async move { store.verify(cmd).await })
        }))
        .collect();
    until_queued(&store, codes.len() as u64 + 1).await;
    held.release().await.expect("the blocked verify");
    for task in queued {
        let outcome = task.await.expect("join").expect("applied");
        assert_eq!(outcome.applied_uses, 1);
    }
    let after = store.metrics().await.expect("metrics").batches.expect("b");
    assert_eq!(
        after.commits - before.commits,
        2,
        "the held batch, then one: {after:?}"
    );
    let view = view_of(&store, id).await;
    for voucher in &view.vouchers {
        let want = if voucher.code.as_str() == codes[0] {
            2
        } else {
            1
        };
        assert_eq!(voucher.used, want, "{:?}", voucher.code);
    }
    let listed: Vec<&str> = view.vouchers.iter().map(|v| v.code.as_str()).collect();
    assert_eq!(listed, codes);
    assert_no_transaction_open(&db, engine).await;
}

/// Runs `setup` on a connection of its own, then verifies of orders `f.id(1..=6)`, one use of
/// code `C` each, queued behind a held worker so that they make one batch, order 3's changed
/// by `third`: the batch fails (once), the five others apply when run alone, and order 3 is
/// left unused. Returns order 3's answer.
async fn six_in_one_batch_the_third_failing(
    store: &Arc<SqlStore>,
    db: &ScratchDatabase,
    setup: &[String],
    f: &Fresh,
    a: &str,
    third: impl Fn(VerifyCommandBuilder) -> VerifyCommandBuilder,
) -> Result<ticket_ledger::VerifyOutcome, LedgerError> {
    by_hand(db, setup).await;
    let before = store.metrics().await.expect("metrics").batches.expect("b");
    let held = HeldWorker::hold(db, store, f, a, before.jobs).await;
    let queued: Vec<_> = (1..=6)
        .map(|i| {
            let store = Arc::clone(store);
            let mut cmd = verify_cmd(a, f.id(i)).entry("C", 1);
            if i == 3 {
                cmd = third(cmd);
            }
            let cmd = cmd.build();
            tokio::spawn(async move { store.verify(cmd).await })
        })
        .collect();
    until_queued(store, 6).await;

    held.release().await.expect("the blocked verify");
    let mut third_answer = None;
    for (i, task) in (1..=6).zip(queued) {
        let answer = task.await.expect("join");
        if i == 3 {
            third_answer = Some(answer);
        } else {
            assert_eq!(answer.expect("a sound verify").applied_uses, 1, "order {i}");
        }
    }
    let after = store.metrics().await.expect("metrics").batches.expect("b");
    assert_eq!(after.failed_batches - before.failed_batches, 1, "{after:?}");
    for i in 1..=6 {
        let view = view_of(store, f.id(i)).await;
        assert_eq!(view.vouchers[0].used, i64::from(i != 3), "order {i}");
        let applied = view.events.iter().filter(|e| e.reason == "applied").count();
        assert_eq!(
            applied,
            usize::from(i != 3),
            "order {i}: its accepted entries"
        );
    }
    third_answer.expect("order 3 was answered")
}

/// A batch whose counters' update changes fewer rows than it names (here a trigger skips the
/// update of one order's counter, as a database disagreeing with what the batch read under
/// its locks would) writes nothing: each verify runs again alone, the sound ones apply, and
/// the one whose write changes no row is refused with `WriteChangedNoRow` and recorded as an
/// anomaly, with nothing of it written. PostgreSQL writes a batch in one statement, sent with
/// the `COMMIT`, which counts the counters it changed itself; this checks that count. (InnoDB
/// cannot skip a row from a trigger, and MySQL counts the rows an update matched, so there is
/// no such disagreement to stage there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_counter_that_changes_no_row_in_a_batch_refuses_that_verify_alone() {
    let Some(db) = ScratchDatabase::fresh(Engine::Postgres) else {
        return;
    };
    let (store, f, a) = one_worker(&db, 6).await;
    the_third_of_six_refused_alone(&db, &store, &f, &a, "vouchers", "vouchers.used").await;
}

/// The review mark's count, as the counters' above: a batch in which a refund that a verify
/// puts under review changes no row (a trigger skips it) writes nothing, and that verify, run
/// alone, is refused with `WriteChangedNoRow` naming the review mark, its order's use not
/// counted and its refund not marked, while its neighbours apply. PostgreSQL's batch statement
/// checks this count itself, in the round trip of the `COMMIT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_review_mark_that_changes_no_row_in_a_batch_refuses_that_verify_alone() {
    let Some(db) = ScratchDatabase::fresh(Engine::Postgres) else {
        return;
    };
    let (store, f, a) = one_worker(&db, 6).await;
    // The order's five tickets are held by a pending refund; the batch's use of one, dated
    // before the request, takes it and puts the request under review (R9).
    store
        .request_refund(refund_request(f.id(3), 5, received_at()))
        .await
        .expect("refund request");
    the_third_of_six_refused_alone(
        &db,
        &store,
        &f,
        &a,
        "refund_requests",
        "refund_requests.needs_review",
    )
    .await;
    let view = view_of(&store, f.id(3)).await;
    assert!(!view.refunds[0].needs_review, "{:?}", view.refunds);
}

/// Six verifies in one PostgreSQL batch, every update of `table`'s rows of the third order
/// skipped by a trigger: the third is refused alone with `WriteChangedNoRow` naming `write`,
/// and recorded as one anomaly naming it ([`six_in_one_batch_the_third_failing`] checks the
/// others).
async fn the_third_of_six_refused_alone(
    db: &ScratchDatabase,
    store: &Arc<SqlStore>,
    f: &Fresh,
    a: &str,
    table: &str,
    write: &'static str,
) {
    let skipped = f.id(3);
    let skip = [
        "CREATE FUNCTION skip_update() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RETURN NULL; END $$"
            .to_owned(),
        format!(
            "CREATE TRIGGER skip_update BEFORE UPDATE ON {table} FOR EACH ROW \
             WHEN (OLD.order_id = {skipped}) EXECUTE FUNCTION skip_update()"
        ),
    ];
    let skipped_answer =
        six_in_one_batch_the_third_failing(store, db, &skip, f, a, |cmd| cmd).await;
    assert_eq!(
        skipped_answer.err(),
        Some(LedgerError::WriteChangedNoRow { write })
    );
    let anomalies = store
        .anomalies(AnomalyFilter {
            order_id: Some(skipped),
            ..AnomalyFilter::default()
        })
        .await
        .expect("anomalies");
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0].anomaly.detail["write"], write);
}

/// A pooled connection whose prepared statements went stale is closed, and its batch runs
/// again on a fresh connection, which prepares them anew: the verify is applied, not refused.
/// Here a column the lock's prepared read returns changes type, as a later migration could
/// make it, so PostgreSQL refuses the old plan ("cached plan must not change result type").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_batch_on_stale_prepared_statements_runs_again_on_a_fresh_connection() {
    let Some(db) = ScratchDatabase::fresh(Engine::Postgres) else {
        return;
    };
    let (store, f, a) = one_worker(&db, 1).await;
    let first = store
        .verify(verify_cmd(&a, f.id(1)).entry("C", 1).build())
        .await
        .expect("a verify that prepares the statements");
    assert_eq!(first.applied_uses, 1);
    by_hand(
        &db,
        &["ALTER TABLE orders ALTER COLUMN out_order_id TYPE VARCHAR(200)"],
    )
    .await;
    let before = store.metrics().await.expect("metrics").batches.expect("b");
    for n in 1..=3 {
        let outcome = store
            .verify(
                verify_cmd(&a, f.id(1))
                    .entry_at("C", 1, Some(gate_time_plus(n)))
                    .build(),
            )
            .await
            .unwrap_or_else(|e| panic!("verify {n} on stale statements: {e:?}"));
        assert_eq!(outcome.applied_uses, 1, "verify {n}");
    }
    let after = store.metrics().await.expect("metrics").batches.expect("b");
    assert_eq!(after.failed_batches, before.failed_batches, "{after:?}");
    let view = view_of(&store, f.id(1)).await;
    assert_eq!(view.vouchers[0].used, 4);
}

/// A batch locks only the orders it names: with another order locked elsewhere (a long
/// transaction), a verify of a different order is answered at once — on a table small enough
/// that the engine would rather scan it, which on InnoDB would lock every row on the way.
async fn a_batch_never_waits_for_a_lock_on_an_order_it_does_not_name(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let (store, f, a) = one_worker(&db, 3).await;
    let holder = hold_order_lock(&db, f.id(BLOCKER)).await;
    for i in 1..=3 {
        let verify = store.verify(verify_cmd(&a, f.id(i)).entry("C", 1).build());
        // The lock wait alone would be 5 s (`PoolSettings::lock_timeout`).
        let outcome = tokio::time::timeout(Duration::from_secs(3), verify)
            .await
            .unwrap_or_else(|_| panic!("order {i} waited for a lock it does not need"))
            .expect("verify");
        assert_eq!(outcome.applied_uses, 1);
    }
    drop(holder);
}

/// A fresh MariaDB ledger with one app and one order (`f.id(1)`, code `C` of capacity 3), for
/// the tests that break its `vouchers` triggers; `None` without a MariaDB server.
async fn one_order_of_code_c() -> Option<(ScratchDatabase, SqlStore, Fresh, String)> {
    let db = ScratchDatabase::fresh(Engine::MySql)?;
    let store = open(&db, &settings()).await;
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&store, &a).await;
    given_order(&store, order(f.id(1), &a, &[("C", 3)])).await;
    Some((db, store, f, a))
}

/// Leaves `vouchers` of `db` open in MariaDB's table cache with a trigger that failed to
/// load, so that the server refuses writes to it until the table is closed (see the test
/// below); `None` when the server's files are out of reach here. `order` is an order with a
/// voucher, whose update fires the trigger. Returns the test's own connection to the server.
async fn break_the_vouchers_triggers(
    db: &ScratchDatabase,
    order: i64,
) -> Option<sqlx::AnyConnection> {
    sqlx::any::install_default_drivers();
    let mut shell = sqlx::AnyConnection::connect(db.url())
        .await
        .expect("connect");
    let datadir: String = sqlx::query_scalar("SELECT @@datadir")
        .fetch_one(&mut shell)
        .await
        .expect("datadir");
    let file = std::path::Path::new(&datadir)
        .join(db.name())
        .join("vouchers.TRG");
    let Ok(stored) = std::fs::read_to_string(&file) else {
        // The server's files are out of reach (another machine, or not root).
        assert!(
            std::env::var_os("CI").is_none(),
            "{} cannot be read: this test needs the MariaDB server's data directory",
            file.display()
        );
        eprintln!("skipped: {} cannot be read", file.display());
        return None;
    };
    assert!(stored.contains("FOR EACH ROW"), "{stored}");
    // Changes nothing, but fires the update trigger, so the server checks the table's.
    let touch = || sqlx::query("UPDATE vouchers SET used = used WHERE order_id = ?").bind(order);
    let spoilt = stored.replacen("FOR EACH ROW", "FOR EACH ROW ROW", 1);
    std::fs::write(&file, spoilt).expect("spoil the trigger");
    sqlx::raw_sql("FLUSH LOCAL TABLES vouchers")
        .execute(&mut shell)
        .await
        .expect("flush");
    let refused = touch()
        .execute(&mut shell)
        .await
        .expect_err("a table whose trigger does not parse refuses writes");
    std::fs::write(&file, &stored).expect("put the trigger back");
    assert!(
        refused.to_string().contains("has an error in its body"),
        "{refused}"
    );
    // The file is sound again, but the server still has the broken table open.
    let still = touch()
        .execute(&mut shell)
        .await
        .expect_err("the table in the cache is still the broken one");
    assert!(
        still.to_string().contains("has an error in its body"),
        "{still}"
    );

    Some(shell)
}

/// A table whose triggers failed to load stays in MariaDB's table cache, and the server
/// refuses every write to it, from any connection, until the table is closed: what a Galera
/// node did after donating a state transfer (`ErrorClass::TriggersNotLoaded`). Here the
/// failure is made on the test's own server: the stored trigger text is spoilt, the table
/// opened with it, and the text put back, so the file is sound and only the cache is broken.
/// The store closes the tables and the verify goes through, counted once, totals and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trigger_that_failed_to_load_is_loaded_again_and_the_write_goes_through() {
    let Some((db, store, f, a)) = one_order_of_code_c().await else {
        return;
    };

    let Some(mut shell) = break_the_vouchers_triggers(&db, f.id(1)).await else {
        return;
    };
    let reloads = |m: ticket_ledger::StoreMetrics| (m.trigger_reloads, m.failed_trigger_reloads);
    assert_eq!(reloads(store.metrics().await.expect("metrics")), (0, 0));
    let outcome = store
        .verify(verify_cmd(&a, f.id(1)).entry("C", 1).build())
        .await
        .expect("the verify goes through once the tables are loaded again");
    assert_eq!(outcome.applied_uses, 1);
    // Counted for `/metrics` (at most one closing per 100 ms, so one here), none failed.
    assert_eq!(reloads(store.metrics().await.expect("metrics")), (1, 0));
    let totals = stored_and_summed_totals(&mut shell, f.id(1)).await;
    assert_eq!(totals, ((1, Some(3), Some(1)), (1, Some(3), Some(1))));
    let view = view_of(&store, f.id(1)).await;
    assert_eq!(view.vouchers[0].used, 1, "{view:?}");
}

/// Without the `RELOAD` privilege the store cannot close the tables: the write ends as a busy
/// answer, as the docs say, and `/metrics` counts the failed closing for an operator to see.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trigger_reload_that_is_not_allowed_is_counted_as_failed() {
    let Some((db, store, f, a)) = one_order_of_code_c().await else {
        return;
    };
    store.close().await;
    let Some(mut shell) = break_the_vouchers_triggers(&db, f.id(1)).await else {
        return;
    };
    // A user with every privilege on this database, which does not include the global RELOAD.
    let user = format!("{}_u", db.name());
    for grant in [
        format!("DROP USER IF EXISTS '{user}'@'%'"),
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"),
        format!("GRANT ALL ON `{}`.* TO '{user}'@'%'", db.name()),
    ] {
        // The names come from the scratch database's own name.
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(grant))
            .execute(&mut shell)
            .await
        {
            // A test server reached as a user who may not create users.
            assert!(std::env::var_os("CI").is_none(), "creating a user: {e}");
            eprintln!("skipped: creating a user: {e}");
            return;
        }
    }
    let after_userinfo = db.url().rsplit_once('@').map_or_else(
        || db.url().split_once("://").map_or("", |(_, rest)| rest),
        |(_, rest)| rest,
    );
    let url = format!("mysql://{user}:pw@{after_userinfo}");
    let store = SqlStore::connect(&url, &settings())
        .await
        .expect("open as the user");

    let refused = store
        .verify(verify_cmd(&a, f.id(1)).entry("C", 1).build())
        .await
        .expect_err("the tables stay broken");
    assert!(
        matches!(&refused, LedgerError::Unavailable(text) if text.starts_with("busy after")),
        "{refused:?}"
    );
    let m = store.metrics().await.expect("metrics");
    assert_eq!(m.trigger_reloads, 0);
    assert!(m.failed_trigger_reloads >= 1, "{m:?}");
    store.close().await;
    sqlx::raw_sql("FLUSH LOCAL TABLES vouchers")
        .execute(&mut shell)
        .await
        .expect("close the broken table");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP USER '{user}'@'%'")))
        .execute(&mut shell)
        .await
        .expect("drop the user");
}
