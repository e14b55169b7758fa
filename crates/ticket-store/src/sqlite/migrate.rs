//! Embedded, append-only schema migrations.
//!
//! Each file in `migrations/sqlite/` is compiled into the binary, so a server can never run
//! against a schema it was not built for. Applied migrations are recorded in
//! `schema_migrations` with a checksum of their text; `PRAGMA user_version` mirrors the newest
//! version for tools such as the `sqlite3` shell.
//!
//! On open the store:
//! 1. refuses a database migrated by a newer binary ([`StoreError::SchemaTooNew`]);
//! 2. refuses one whose applied migrations differ from the embedded text
//!    ([`StoreError::MigrationChanged`]): an applied migration is never edited, a new one is
//!    added instead;
//! 3. applies the missing ones, all in one `BEGIN IMMEDIATE` transaction, so two processes
//!    opening the same file at once cannot both migrate, and a failure leaves the schema as it
//!    was.
//!
//! To change the schema, add `NNNN_<what>.sql` and a line to [`MIGRATIONS`].

use rusqlite::{params, Connection, TransactionBehavior};

use crate::migrations::{checksum, latest, pending, Migration};
use crate::StoreError;

/// Every migration, oldest first, versions 1, 2, 3, … without gaps.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "lifecycle",
        sql: include_str!("../../migrations/sqlite/0002_lifecycle.sql"),
    },
    Migration {
        version: 3,
        name: "app_access",
        sql: include_str!("../../migrations/sqlite/0003_app_access.sql"),
    },
    Migration {
        version: 4,
        name: "rejected_calls",
        sql: include_str!("../../migrations/sqlite/0004_rejected_calls.sql"),
    },
    Migration {
        version: 5,
        name: "folded_lookups",
        sql: include_str!("../../migrations/sqlite/0005_folded_lookups.sql"),
    },
    Migration {
        version: 6,
        name: "staged_fold",
        sql: include_str!("../../migrations/sqlite/0006_staged_fold.sql"),
    },
    Migration {
        version: 7,
        name: "events",
        sql: include_str!("../../migrations/sqlite/0007_events.sql"),
    },
    Migration {
        version: 8,
        name: "event_anomaly_id",
        sql: include_str!("../../migrations/sqlite/0008_event_anomaly_id.sql"),
    },
    Migration {
        version: 9,
        name: "event_relay",
        sql: include_str!("../../migrations/sqlite/0009_event_relay.sql"),
    },
    Migration {
        version: 10,
        name: "order_list",
        sql: include_str!("../../migrations/sqlite/0010_order_list.sql"),
    },
    Migration {
        version: 11,
        name: "counted_uses",
        sql: include_str!("../../migrations/sqlite/0011_counted_uses.sql"),
    },
    Migration {
        version: 12,
        name: "event_entries",
        sql: include_str!("../../migrations/sqlite/0012_event_entries.sql"),
    },
    Migration {
        version: 13,
        name: "folded_app_entries",
        sql: include_str!("../../migrations/sqlite/0013_folded_app_entries.sql"),
    },
    Migration {
        version: 14,
        name: "fingerprints_by_gate_time",
        sql: include_str!("../../migrations/sqlite/0014_fingerprints_by_gate_time.sql"),
    },
    Migration {
        version: 15,
        name: "uses_by_record_time",
        sql: include_str!("../../migrations/sqlite/0015_uses_by_record_time.sql"),
    },
    Migration {
        version: 16,
        name: "ids_without_autoincrement",
        sql: include_str!("../../migrations/sqlite/0016_ids_without_autoincrement.sql"),
    },
    Migration {
        version: 17,
        name: "checks_without_lists",
        sql: include_str!("../../migrations/sqlite/0017_checks_without_lists.sql"),
    },
    Migration {
        version: 18,
        name: "event_seq_from_events",
        sql: include_str!("../../migrations/sqlite/0018_event_seq_from_events.sql"),
    },
    Migration {
        version: 19,
        name: "audit_detail_unchecked",
        sql: include_str!("../../migrations/sqlite/0019_audit_detail_unchecked.sql"),
    },
];

/// The schema version this binary expects.
pub(crate) fn latest_version() -> i64 {
    latest(MIGRATIONS)
}

/// Brings the database to [`latest_version`]; see the module docs.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let db = StoreError::db;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db("starting the migration transaction", e))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version       INTEGER PRIMARY KEY,
             name          TEXT    NOT NULL,
             checksum      INTEGER NOT NULL,
             applied_at_ms INTEGER NOT NULL
         ) STRICT",
    )
    .map_err(|e| db("creating schema_migrations", e))?;

    let applied: Vec<(i64, String, i64)> = tx
        .prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect()
        })
        .map_err(|e| db("reading schema_migrations", e))?;

    let known = latest_version();
    let missing = pending(MIGRATIONS, &applied)?;
    let mut ran = 0;
    for migration in missing {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applying ledger migration"
        );
        tx.execute_batch(migration.sql)
            .map_err(|e| db("applying a migration", e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) \
             VALUES (?1, ?2, ?3, ?4)",
            params![
                migration.version,
                migration.name,
                checksum(migration.sql),
                chrono::Utc::now().timestamp_millis()
            ],
        )
        .map_err(|e| db("recording a migration", e))?;
        ran += 1;
    }
    if ran > 0 {
        tx.pragma_update(None, "user_version", known)
            .map_err(|e| db("setting user_version", e))?;
        // A migration that edits `sqlite_schema` itself (0017) moves no schema cookie, so a
        // connection that read the schema before would keep the old text. Moving it on makes
        // every connection read the schema again; for a migration that ran DDL it is one
        // more step of a cookie that moved already.
        let cookie: i64 = tx
            .pragma_query_value(None, "schema_version", |row| row.get(0))
            .map_err(|e| db("reading schema_version", e))?;
        // SQLite keeps the cookie in 32 bits and only compares it for a change, as SQLite's
        // own DDL does when it moves it past the largest value.
        let next = i32::try_from(cookie).map_or(0, |c| c.wrapping_add(1));
        tx.pragma_update(None, "schema_version", next)
            .map_err(|e| db("moving schema_version on", e))?;
    }
    tx.commit().map_err(|e| db("committing migrations", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_versions_count_up_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
    }

    #[test]
    fn an_edited_applied_migration_is_refused() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("first");
        migrate(&mut conn).expect("again: nothing to do");
        conn.execute("UPDATE schema_migrations SET checksum = checksum + 1", [])
            .expect("tamper");
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::MigrationChanged { version: 1, .. })
        ));
    }

    #[test]
    fn a_database_from_a_newer_binary_is_refused() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("first");
        conn.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 0, 0)",
            [],
        )
        .expect("future");
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::SchemaTooNew { found: 999, .. })
        ));
    }
}
