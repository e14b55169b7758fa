//! Embedded migrations for PostgreSQL and MySQL/MariaDB, applied when the store connects.
//!
//! Each engine has its own files (`migrations/postgres/`, `migrations/mysql/`, because each dialect's DDL differs) and
//! the same bookkeeping as SQLite ([`crate::migrations`]): a `schema_migrations` table with a
//! checksum per applied file; a database migrated by a newer binary, or whose applied files
//! were edited, is refused.
//!
//! Several ticketd processes may start at once against one database, so migrating is
//! serialised by a lock the database holds:
//! - PostgreSQL: `pg_advisory_xact_lock` inside one transaction. DDL is transactional there, so
//!   a failed migration leaves the schema as it was.
//! - MySQL/MariaDB: `GET_LOCK` on the connection. DDL commits implicitly there, so a migration
//!   that fails half-way leaves the tables it created; remove them by hand before retrying
//!   (docs/OPERATIONS.md says how).
//! - MariaDB Galera (`wsrep_on`): `GET_LOCK` holds on one node only, so a lease row that every
//!   node certifies in one order ([`galera_lease`]).

use sqlx::AnyConnection;
use sqlx::{AssertSqlSafe, Connection, Row};

use super::engine::Engine;
use crate::migrations::{checksum, latest, pending, Migration};
use crate::StoreError;

/// PostgreSQL's migrations, oldest first.
const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "app_access",
        sql: include_str!("../../migrations/postgres/0002_app_access.sql"),
    },
    Migration {
        version: 3,
        name: "rejected_calls",
        sql: include_str!("../../migrations/postgres/0003_rejected_calls.sql"),
    },
    Migration {
        version: 4,
        name: "events",
        sql: include_str!("../../migrations/postgres/0004_events.sql"),
    },
    Migration {
        version: 5,
        name: "event_anomaly_id",
        sql: include_str!("../../migrations/postgres/0005_event_anomaly_id.sql"),
    },
    Migration {
        version: 6,
        name: "event_relay",
        sql: include_str!("../../migrations/postgres/0006_event_relay.sql"),
    },
    Migration {
        version: 7,
        name: "order_list",
        sql: include_str!("../../migrations/postgres/0007_order_list.sql"),
    },
    Migration {
        version: 8,
        name: "order_totals",
        sql: include_str!("../../migrations/postgres/0008_order_totals.sql"),
    },
    Migration {
        version: 9,
        name: "write_checks",
        sql: include_str!("../../migrations/postgres/0009_write_checks.sql"),
    },
];

/// MySQL/MariaDB's migrations, oldest first.
const MYSQL: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/mysql/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "app_access",
        sql: include_str!("../../migrations/mysql/0002_app_access.sql"),
    },
    Migration {
        version: 3,
        name: "rejected_calls",
        sql: include_str!("../../migrations/mysql/0003_rejected_calls.sql"),
    },
    Migration {
        version: 4,
        name: "events",
        sql: include_str!("../../migrations/mysql/0004_events.sql"),
    },
    Migration {
        version: 5,
        name: "event_anomaly_id",
        sql: include_str!("../../migrations/mysql/0005_event_anomaly_id.sql"),
    },
    Migration {
        version: 6,
        name: "event_relay",
        sql: include_str!("../../migrations/mysql/0006_event_relay.sql"),
    },
    Migration {
        version: 7,
        name: "order_list",
        sql: include_str!("../../migrations/mysql/0007_order_list.sql"),
    },
    Migration {
        version: 8,
        name: "order_totals",
        sql: include_str!("../../migrations/mysql/0008_order_totals.sql"),
    },
    Migration {
        version: 9,
        name: "write_checks",
        sql: include_str!("../../migrations/mysql/0009_write_checks.sql"),
    },
];

/// The advisory lock's key: any constant no other application on the database uses.
const LOCK_KEY: i64 = 0x0074_6963_6b65_7464; // "ticketd" in ASCII

fn embedded(engine: Engine) -> &'static [Migration] {
    match engine {
        Engine::Postgres => POSTGRES,
        Engine::MySql => MYSQL,
    }
}

/// The schema version this binary brings an `engine` database to.
pub(crate) fn latest_version(engine: Engine) -> i64 {
    latest(embedded(engine))
}

fn db(during: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::Database {
        during,
        source: Box::new(e),
    }
}

/// Brings the database to [`latest_version`]; see the module docs.
pub(crate) async fn migrate(engine: Engine, conn: &mut AnyConnection) -> Result<(), StoreError> {
    match engine {
        Engine::Postgres => {
            let mut tx = conn
                .begin()
                .await
                .map_err(db("starting the migration transaction"))?;
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
                .bind(LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(db("taking the migration lock"))?;
            apply(engine, &mut tx).await?;
            tx.commit().await.map_err(db("committing migrations"))
        }
        Engine::MySql if galera(conn).await => {
            let holder = galera_lease::acquire(conn).await?;
            let result = apply(engine, conn).await;
            let released = galera_lease::release(conn, &holder).await;
            result?;
            released
        }
        Engine::MySql => {
            let locked: Option<i64> = sqlx::query("SELECT GET_LOCK('ticketd.migrate', 60)")
                .fetch_one(&mut *conn)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(db("taking the migration lock"))?;
            if locked != Some(1) {
                return Err(StoreError::Database {
                    during: "taking the migration lock",
                    source: "another process held ticketd.migrate for 60 s".into(),
                });
            }
            let result = apply(engine, conn).await;
            // Released either way; the lock also ends with the session.
            let released = sqlx::query("SELECT RELEASE_LOCK('ticketd.migrate')")
                .execute(&mut *conn)
                .await;
            result?;
            released
                .map(drop)
                .map_err(db("releasing the migration lock"))
        }
    }
}

/// Whether the server is a Galera cluster node (`wsrep_on`), where `GET_LOCK` holds on that
/// node only.
async fn galera(conn: &mut AnyConnection) -> bool {
    let on: Result<Option<String>, _> = sqlx::query("SELECT CAST(@@wsrep_on AS CHAR)")
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get(0));
    // MySQL and MariaDB without Galera have no such variable: not Galera.
    matches!(on, Ok(Some(v)) if v == "1" || v.eq_ignore_ascii_case("on"))
}

/// The migration lock on a Galera cluster: `GET_LOCK` is not replicated, so processes starting
/// on different nodes would migrate at once (and one would fail on a table the other created).
/// Instead a row of `ticketd_migration_lock` is the lock: taking it is a write every node
/// certifies in one order, so of two processes taking it at once one commits and the other is
/// refused (error 1213) and tries again, and then finds it held. It is a lease, so a process
/// killed while migrating does not hold it forever.
mod galera_lease {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use sqlx::{AnyConnection, Row};

    use super::super::engine::{Engine, ErrorClass};
    use super::db;
    use crate::StoreError;

    /// How long a lease lasts; a migration finishes well within it.
    const LEASE: Duration = Duration::from_secs(600);
    /// How long a process waits for another's lease before giving up.
    const WAIT: Duration = Duration::from_secs(120);

    fn now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Takes the lease; answers the holder name to release it with.
    pub(super) async fn acquire(conn: &mut AnyConnection) -> Result<String, StoreError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS ticketd_migration_lock (\
               id INT NOT NULL PRIMARY KEY, holder VARCHAR(64) NOT NULL, \
               until_ms BIGINT NOT NULL) ENGINE = InnoDB",
        )
        .execute(&mut *conn)
        .await
        .map_err(db("creating the migration lock table"))?;
        let holder = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let give_up = std::time::Instant::now() + WAIT;
        loop {
            let now = now_ms();
            let until = now.saturating_add(i64::try_from(LEASE.as_millis()).unwrap_or(0));
            // Taken when free or expired; an existing live lease is left as it is.
            let taken = sqlx::query(
                "INSERT INTO ticketd_migration_lock (id, holder, until_ms) VALUES (1, ?, ?) \
                 ON DUPLICATE KEY UPDATE \
                   holder = IF(until_ms < ?, VALUES(holder), holder), \
                   until_ms = IF(until_ms < ?, VALUES(until_ms), until_ms)",
            )
            .bind(&holder)
            .bind(until)
            .bind(now)
            .bind(now)
            .execute(&mut *conn)
            .await;
            match taken {
                Ok(_) => {
                    // No row: the holder this take left in place released the lease since
                    // (a clean-clone CI run of three nodes starting at once read none and
                    // stopped); it is free, and the next round takes it.
                    let current: Option<String> =
                        sqlx::query("SELECT holder FROM ticketd_migration_lock WHERE id = 1")
                            .fetch_optional(&mut *conn)
                            .await
                            .and_then(|row| row.map(|row| row.try_get(0)).transpose())
                            .map_err(db("reading the migration lock"))?;
                    if current.as_deref() == Some(holder.as_str()) {
                        return Ok(holder);
                    }
                }
                // Another node's take was certified first (error 1213): look again.
                Err(e) if Engine::MySql.classify(&e) == ErrorClass::Retry => {}
                Err(e) => return Err(db("taking the migration lock")(e)),
            }
            if std::time::Instant::now() >= give_up {
                return Err(StoreError::Database {
                    during: "taking the migration lock",
                    source: format!(
                        "another process held ticketd_migration_lock for {} s",
                        WAIT.as_secs()
                    )
                    .into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Gives the lease back.
    pub(super) async fn release(conn: &mut AnyConnection, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM ticketd_migration_lock WHERE id = 1 AND holder = ?")
            .bind(holder)
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(db("releasing the migration lock"))
    }
}

async fn apply(engine: Engine, conn: &mut AnyConnection) -> Result<(), StoreError> {
    let create = match engine {
        Engine::Postgres => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version       BIGINT NOT NULL PRIMARY KEY,
                 name          TEXT   NOT NULL,
                 checksum      BIGINT NOT NULL,
                 applied_at_ms BIGINT NOT NULL
             )"
        }
        Engine::MySql => {
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version       BIGINT       NOT NULL PRIMARY KEY,
                 name          VARCHAR(255) NOT NULL,
                 checksum      BIGINT       NOT NULL,
                 applied_at_ms BIGINT       NOT NULL
             ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
        }
    };
    sqlx::raw_sql(create)
        .execute(&mut *conn)
        .await
        .map_err(db("creating schema_migrations"))?;
    let applied: Vec<(i64, String, i64)> =
        sqlx::query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect()
            })
            .map_err(db("reading schema_migrations"))?;
    for migration in pending(embedded(engine), &applied)? {
        tracing::info!(
            engine = engine.name(),
            version = migration.version,
            name = migration.name,
            "applying ledger migration"
        );
        sqlx::raw_sql(AssertSqlSafe(migration.sql))
            .execute(&mut *conn)
            .await
            .map_err(db("applying a migration"))?;
        sqlx::query(engine.sql(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) \
             VALUES (?, ?, ?, ?)",
        ))
        .bind(migration.version)
        .bind(migration.name)
        .bind(checksum(migration.sql))
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&mut *conn)
        .await
        .map_err(db("recording a migration"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables a trigger that failed to load makes the store close
    /// (`engine::TRIGGER_TABLES`) are the tables the MySQL schema puts triggers on: a trigger
    /// added on another table would otherwise leave that table's writes failing.
    #[test]
    fn the_tables_closed_for_triggers_are_the_tables_with_triggers() {
        let mut with_triggers: Vec<String> = MYSQL
            .iter()
            .flat_map(|m| m.sql.split("CREATE TRIGGER").skip(1))
            .filter_map(|rest| {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let on = words.iter().position(|w| w.eq_ignore_ascii_case("ON"))?;
                words.get(on + 1).map(|t| (*t).to_owned())
            })
            .collect();
        with_triggers.sort();
        with_triggers.dedup();
        let mut closed: Vec<String> = super::super::engine::TRIGGER_TABLES
            .split(',')
            .map(|t| t.trim().to_owned())
            .collect();
        closed.sort();
        assert_eq!(closed, with_triggers);
    }

    #[test]
    fn migration_versions_count_up_from_one_without_gaps() {
        for set in [POSTGRES, MYSQL] {
            for (i, m) in set.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            }
        }
    }

    #[test]
    fn both_engines_reach_the_same_version() {
        assert_eq!(
            latest_version(Engine::Postgres),
            latest_version(Engine::MySql)
        );
    }
}
