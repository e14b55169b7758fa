//! What survives: settings, reopening, migrations, file modes, and the database's own guards.

use rusqlite::Connection;
use ticket_ledger::{AuditFilter, LedgerError, LedgerStore, OutcomeKind};
use ticket_store::{SqliteStore, StoreError};

use crate::support::{gate, given, key, new_app, oid, temp_path, used, Verify};

/// A second, plain connection to the file, as an operator's `sqlite3` shell would open it.
fn raw(path: &std::path::Path) -> Connection {
    Connection::open(path).expect("raw connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_connection_is_wal_synced_by_the_store_with_foreign_keys_and_a_busy_timeout() {
    let (_dir, path) = temp_path();
    let store = SqliteStore::open(&path).expect("open");
    let settings = store.write_settings().await.expect("settings");
    assert_eq!(settings.journal_mode, "wal");
    // NORMAL: the store's syncer fsyncs the WAL before answering, not COMMIT itself.
    assert_eq!(settings.synchronous, 1, "NORMAL");
    assert_eq!(
        settings.wal_autocheckpoint, 0,
        "checkpoints on their own thread"
    );
    assert!(settings.foreign_keys);
    assert_eq!(settings.busy_timeout_ms, 5000);
    // WAL is a property of the file, so any other connection sees it too.
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_apps_orders_counts_and_the_audit_trail() {
    let (_dir, path) = temp_path();
    let store = SqliteStore::open(&path).expect("open");
    given(&store, "app-a", 1, &[("CODE0001", 3), ("CODE0002", 1)]).await;
    let outcome = store
        .verify(
            Verify::of("app-a", 1)
                .entry("CODE0001", 2, Some(gate(1)))
                .build(),
        )
        .await
        .expect("verify");
    assert_eq!(outcome.kind, OutcomeKind::Applied);
    let view_before = store.order(oid(1)).await.expect("order").expect("exists");
    let audit_before = store.audit(AuditFilter::default()).await.expect("audit");
    store.close().await;
    drop(store);

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store
            .app(&key("app-a"))
            .await
            .expect("app")
            .map(|a| a.secret),
        Some("secret-app-a".to_owned())
    );
    let view_after = store.order(oid(1)).await.expect("order").expect("exists");
    assert_eq!(view_after, view_before);
    assert_eq!(
        store.audit(AuditFilter::default()).await.expect("audit"),
        audit_before
    );
    // The retry fingerprint survived too: the same report is a replay, not a second use.
    let retry = store
        .verify(
            Verify::of("app-a", 1)
                .entry("CODE0001", 2, Some(gate(1)))
                .build(),
        )
        .await
        .expect("retry");
    assert_eq!(retry.kind, OutcomeKind::Replayed);
    assert_eq!(
        used(&store, 1).await,
        vec![("CODE0001".to_owned(), 2), ("CODE0002".to_owned(), 0)]
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_and_reopening_applies_nothing_new() {
    let (_dir, path) = temp_path();
    for _ in 0..3 {
        let store = SqliteStore::open(&path).expect("open");
        store.close().await;
    }
    let conn = raw(&path);
    let applied: Vec<(i64, String)> = conn
        .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        applied,
        vec![
            (1, "init".to_owned()),
            (2, "lifecycle".to_owned()),
            (3, "app_access".to_owned()),
            (4, "rejected_calls".to_owned()),
            (5, "folded_lookups".to_owned()),
            (6, "staged_fold".to_owned()),
            (7, "events".to_owned()),
            (8, "event_anomaly_id".to_owned()),
            (9, "event_relay".to_owned()),
            (10, "order_list".to_owned()),
            (11, "counted_uses".to_owned()),
            (12, "event_entries".to_owned()),
            (13, "folded_app_entries".to_owned()),
            (14, "fingerprints_by_gate_time".to_owned()),
            (15, "uses_by_record_time".to_owned()),
            (16, "ids_without_autoincrement".to_owned()),
            (17, "checks_without_lists".to_owned()),
            (18, "event_seq_from_events".to_owned()),
            (19, "audit_detail_unchecked".to_owned())
        ]
    );
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_applied_migration_refuses_to_open() {
    let (_dir, path) = temp_path();
    SqliteStore::open(&path).expect("open").close().await;
    raw(&path)
        .execute("UPDATE schema_migrations SET checksum = checksum + 1", [])
        .expect("tamper");
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::MigrationChanged { version: 1, .. })
    ));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_database_file_and_directory_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state").join("ticketd").join("ledger.db");
    let store = SqliteStore::open(&path).expect("open");
    store.create_app(new_app("app-a")).await.expect("write");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "database file");
    assert_eq!(mode(&path.with_extension("db-wal")), 0o600, "WAL file");
    assert_eq!(mode(path.parent().expect("parent")), 0o700, "directory");
    assert_eq!(
        mode(&dir.path().join("state")),
        0o700,
        "every created directory"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_url_accepts_absolute_forms_and_refuses_others() {
    let (_dir, path) = temp_path();
    let abs = path.to_str().expect("utf-8 path");
    assert!(abs.starts_with('/'));
    let store = SqliteStore::open_url(&format!("sqlite://{abs}")).expect("sqlite:///abs");
    assert_eq!(store.path(), path);
    store.create_app(new_app("app-a")).await.expect("write");
    store.close().await;
    let store = SqliteStore::open_url(&format!("sqlite:{abs}")).expect("sqlite:/abs");
    assert!(store.app(&key("app-a")).await.expect("app").is_some());
    store.close().await;
    for bad in [
        "postgres://db/ledger",
        "sqlite::memory:",
        "sqlite://ledger.db?mode=rwc",
    ] {
        assert!(
            matches!(
                SqliteStore::open_url(bad),
                Err(StoreError::InvalidUrl { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_path_that_cannot_be_a_database_fails_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory is not a database file.
    assert!(matches!(
        SqliteStore::open(dir.path()),
        Err(StoreError::Io { .. })
    ));
    // A file that is not SQLite.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x42; 8192]).expect("write junk");
    assert!(SqliteStore::open(&junk).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_refuses_updates_and_deletes_even_from_raw_sql() {
    let (_dir, path) = temp_path();
    let store = SqliteStore::open(&path).expect("open");
    given(&store, "app-a", 1, &[("CODE0001", 1)]).await;
    store.close().await;
    let conn = raw(&path);
    for sql in [
        "UPDATE audit_log SET outcome = 'rejected'",
        "DELETE FROM audit_log",
    ] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_a_count_beyond_capacity_even_from_raw_sql() {
    let (_dir, path) = temp_path();
    let store = SqliteStore::open(&path).expect("open");
    given(&store, "app-a", 1, &[("CODE0001", 2)]).await;
    store.close().await;
    let conn = raw(&path);
    assert!(conn
        .execute("UPDATE vouchers SET used = 3 WHERE order_id = 1", [])
        .is_err());
    assert!(conn
        .execute("UPDATE vouchers SET used = -1 WHERE order_id = 1", [])
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_commits_queued_writes_then_refuses_new_ones() {
    let (_dir, path) = temp_path();
    let store = std::sync::Arc::new(SqliteStore::open(&path).expect("open"));
    given(&*store, "app-a", 1, &[("CODE0001", 100)]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let store = std::sync::Arc::clone(&store);
        tasks.spawn(async move {
            store
                .verify(
                    Verify::of("app-a", 1)
                        .entry("CODE0001", 1, Some(gate(n)))
                        .build(),
                )
                .await
        });
    }
    store.close().await;
    let mut ok = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("join") {
            Ok(_) => ok += 1,
            Err(LedgerError::Unavailable(_)) => {} // arrived after close
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(
        store
            .verify(
                Verify::of("app-a", 1)
                    .entry("CODE0001", 1, Some(gate(99)))
                    .build()
            )
            .await,
        Err(LedgerError::Unavailable(_))
    ));
    assert!(matches!(
        store.ping().await,
        Err(LedgerError::Unavailable(_))
    ));
    drop(store);

    // Every write answered Ok is on disk; nothing else is.
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(used(&store, 1).await, vec![("CODE0001".to_owned(), ok)]);
    store.close().await;
}
