//! [`Engine`]: everything that differs between PostgreSQL and MySQL/MariaDB, in one place.
//!
//! The ledger's SQL is written once (in [`crate::statements`]) with `?` placeholders and only
//! the syntax both engines share: `SELECT … FOR UPDATE`, conditional `UPDATE`s, plain `INSERT`s.
//! What remains is small and lives here, as a `match` per difference, like vaultwarden's
//! `DbConnType` (one binary serving several databases, chosen at run time):
//!
//! - placeholders: `?` (MySQL) or `$1, $2, …` (PostgreSQL) — [`Engine::sql`];
//! - which errors mean "try again" (serialization failures, deadlocks, lock timeouts) or "the
//!   server is not there", and which constraint a violation names — [`Engine::classify`];
//! - how a batch's rows travel as one JSON parameter and are read back as a table
//!   (`jsonb_to_recordset` or `JSON_TABLE`), and how a statement joins such a table —
//!   [`Engine::json_rows`], [`Engine::bulk_update`] and the other `bulk_*` builders, each
//!   taking a statement of `crate::statements` (`BULK_*`);
//! - the session settings each connection starts with, the oldest server version supported,
//!   the durability settings checked at start-up, and how a consistent read-only snapshot is
//!   opened (for `order`, `export`).

use std::borrow::Cow;
use std::time::Duration;

use sqlx::error::ErrorKind;
use sqlx::AnyConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::rows::{WRITE_REFUND_REVIEW, WRITE_VOUCHER_USED};
use crate::statements::{
    BulkByIds, BulkInsert, BulkJoin, ByIdsOrder, JsonType, ADVANCE_EVENT_SEQ_BY, BULK_COUNT_USES,
    BULK_INSERT_ANOMALIES, BULK_INSERT_AUDIT, BULK_INSERT_EVENTS_TAKEN, BULK_INSERT_FINGERPRINTS,
    BULK_INSERT_VOUCHER_USES, BULK_KNOWN_FINGERPRINTS, BULK_LOCK_ORDERS, BULK_MARK_REFUND_REVIEWS,
    BULK_NAMED_VOUCHERS, BULK_SELECT_REFUNDS,
};
use crate::StoreError;

/// A server-side SQL engine the ledger runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// PostgreSQL 12 or later (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL 8.0 or later, or MariaDB 10.6 or later (`mysql://`, `mariadb://`).
    MySql,
}

/// What an error from the driver means for the operation that got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// A serialization failure, deadlock or lock wait timeout: the transaction was rolled back
    /// and running it again may succeed.
    Retry,
    /// MySQL/MariaDB refused the statement because a trigger of its table failed to load when
    /// the server opened the table: nothing was written, and running it again succeeds once
    /// the tables are opened afresh ([`TRIGGER_TABLES`]; see [`mysql_class`]).
    TriggersNotLoaded,
    /// The server cannot be reached or refuses connections: nothing was written.
    Unavailable,
    /// A unique or primary key violation, with the constraint's name when the engine says it.
    Unique(Option<String>),
    /// A foreign key violation.
    ForeignKey,
    /// Anything else.
    Other,
}

impl Engine {
    /// The engine a database URL names by its scheme, or `None` for any other scheme.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once("://")?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::MySql),
            _ => None,
        }
    }

    /// A human name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::MySql => "MySQL/MariaDB",
        }
    }

    /// `sql` (written with `?` placeholders) in this engine's placeholder syntax.
    ///
    /// The ledger's statements contain no `?` other than placeholders (no string literals with
    /// one), so a plain scan is exact.
    pub(crate) fn sql(self, sql: impl Into<Cow<'static, str>>) -> AssertSqlSafe<Cow<'static, str>> {
        let sql = sql.into();
        AssertSqlSafe(match self {
            Self::MySql => sql,
            Self::Postgres if !sql.contains('?') => sql,
            Self::Postgres => {
                let mut out = String::with_capacity(sql.len() + 16);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                Cow::Owned(out)
            }
        })
    }

    /// A table `d` over the objects of one JSON array parameter (`[{"o":1,"c":"A"},…]`), one
    /// column per key (a missing key reads as NULL). One statement with one parameter can then
    /// carry the rows of a whole batch, and its text — so its prepared statement — stays the
    /// same whatever the batch's size.
    pub(crate) fn json_rows(self, columns: &[(&str, JsonType)]) -> String {
        let list = |column: fn(&str, JsonType) -> String| {
            columns
                .iter()
                .map(|(name, ty)| column(name, *ty))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::Postgres => format!(
                "jsonb_to_recordset(CAST(? AS jsonb)) AS d({})",
                list(|name, ty| match ty {
                    JsonType::Int => format!("{name} bigint"),
                    JsonType::Key | JsonType::Text => format!("{name} text"),
                })
            ),
            // Keys compared with the ledger's columns take their collation (utf8mb4_bin), or
            // MySQL refuses to compare them.
            Self::MySql => format!(
                "JSON_TABLE(?, '$[*]' COLUMNS ({})) AS d",
                list(|name, ty| match ty {
                    JsonType::Int => format!("{name} BIGINT PATH '$.{name}'"),
                    JsonType::Key => format!(
                        "{name} VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin \
                         PATH '$.{name}'"
                    ),
                    JsonType::Text => format!("{name} LONGTEXT PATH '$.{name}'"),
                })
            ),
        }
    }

    /// `SELECT columns FROM table` for the rows whose `order_id` is one of the integers of one
    /// JSON array parameter (`[1,2,3]`), sorted where `order` says ([`ByIdsOrder`]), locked
    /// `FOR UPDATE` if `lock`. `index` is the table's index that leads with `order_id`.
    ///
    /// Written so that each id is looked up in that index whatever the engine's statistics
    /// say: PostgreSQL would hash-join a set-returning function against a whole table it
    /// thinks small, and InnoDB would scan a small table through a join buffer — locking every
    /// row on the way, so a batch would wait for a lock on an order it never named. Hence
    /// `= ANY (ARRAY(…))` there, and `STRAIGHT_JOIN` from the ids with `FORCE INDEX` here.
    pub(crate) fn select_by_ids(self, statement: &BulkByIds) -> String {
        let BulkByIds {
            table,
            index,
            columns,
            order,
            lock,
        } = *statement;
        let lock = if lock { " FOR UPDATE" } else { "" };
        let order = match (self, order) {
            (_, ByIdsOrder::Rows(list)) | (Self::Postgres, ByIdsOrder::Locks(list)) => {
                format!(" ORDER BY {list}")
            }
            (Self::MySql, ByIdsOrder::Locks(_)) | (_, ByIdsOrder::Any) => String::new(),
        };
        match self {
            Self::Postgres => format!(
                "SELECT {columns} FROM {table} WHERE order_id = ANY (ARRAY(\
                 SELECT CAST(jsonb_array_elements_text(CAST(? AS jsonb)) AS bigint))){order}{lock}"
            ),
            Self::MySql => format!(
                "SELECT STRAIGHT_JOIN {columns} \
                 FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS ids \
                 JOIN {table} FORCE INDEX ({index}) ON {table}.order_id = ids.id{order}{lock}"
            ),
        }
    }

    /// `SELECT set FROM table` joined `on` the statement's JSON rows (a [`json_rows`] table
    /// `d`), each row of `table` found through its index as in [`bulk_update`]: on PostgreSQL
    /// a `LATERAL` subquery per row of `d`, kept from being flattened (`OFFSET 0`), so that
    /// `on` (the whole primary key) is one index look-up. The `= ANY (…)` form used before read
    /// every row of each order named (all of an order's fingerprints, a history that grows
    /// with every use: 380 rows an order after one bench run of the tour-group shape, 7.7 ms
    /// for a batch of 12 orders) and joined them afterwards.
    ///
    /// [`json_rows`]: Engine::json_rows
    /// [`bulk_update`]: Engine::bulk_update
    pub(crate) fn bulk_select(self, statement: &BulkJoin) -> String {
        let BulkJoin {
            table,
            index,
            set: columns,
            keys,
            lookup: _,
            on,
            ..
        } = *statement;
        let source = self.json_rows(keys);
        match self {
            Self::Postgres => format!(
                "SELECT n.* FROM {source} CROSS JOIN LATERAL \
                 (SELECT {columns} FROM {table} WHERE {on} OFFSET 0) AS n"
            ),
            Self::MySql => format!(
                "SELECT STRAIGHT_JOIN {columns} FROM {source} \
                 JOIN {table} FORCE INDEX ({index}) ON {on}"
            ),
        }
    }

    /// `UPDATE table AS t SET set` for the statement's JSON rows (a [`json_rows`] table `d`)
    /// that match `on`, and `and_where`. `lookup` names the table's indexed column and the
    /// column of `d` it equals (`("v.order_id", "o")`); `index` is that index's name.
    ///
    /// Written, like [`select_by_ids`], so that the table's rows are found through that index
    /// whatever the statistics say. PostgreSQL assumes a set-returning function yields 100
    /// rows and then prefers to scan a table of a few thousand rows whole for a hash join, so
    /// each row of `d` finds its row's `ctid` by `on` (the whole primary key) in a `LATERAL`
    /// subquery kept from being flattened (`OFFSET 0`), and the update reaches the rows by
    /// `ctid = ANY (…)`, a TID scan. (`order_id = ANY (…)` before read every voucher of every
    /// order of the batch, 500 for a tour group's order, to change one or two.) A row another
    /// transaction changed meanwhile would not match its old `ctid` and so change nothing,
    /// which the callers count as a failed write; the orders' locks keep that from happening.
    /// MySQL gets `UPDATE source STRAIGHT_JOIN table FORCE INDEX (index)`, so that InnoDB
    /// looks the rows up by key rather than scanning (and locking) the table.
    ///
    /// [`json_rows`]: Engine::json_rows
    /// [`select_by_ids`]: Engine::select_by_ids
    pub(crate) fn bulk_update(self, statement: &BulkJoin) -> String {
        let BulkJoin {
            table,
            index,
            set,
            keys,
            on,
            and_where,
            ..
        } = *statement;
        match self {
            Self::Postgres => {
                let (ctes, update) = pg_update(statement, "");
                format!("WITH {ctes} {update}")
            }
            Self::MySql => format!(
                "UPDATE {source} STRAIGHT_JOIN {table} FORCE INDEX ({index}) ON {on} \
                 SET {set} WHERE {and_where}",
                source = self.json_rows(keys),
            ),
        }
    }

    /// PostgreSQL: the writes of a batch of verifies ([`crate::plan_rows::VerifyRows`]) but
    /// its events, in one statement of data-modifying `WITH` queries, instead of one round
    /// trip per table (counters, review marks, use log, fingerprints, audit entries,
    /// anomalies). Each statement cost ticketd (sqlx) and PostgreSQL (parse, bind, executor
    /// start, a wake-up on each side) about the same whatever its rows, and a batch averages
    /// about ten verifies. The events follow in a statement of their own
    /// ([`Engine::pg_write_events`]), so that the event counter, which every writer waits
    /// for, is taken only once this statement and its triggers are done.
    ///
    /// It checks its own counts: every counter it updates and every refund it marks must
    /// change one row, and a count that falls short calls `ticketd_write_changed_no_row`
    /// (migration `0009_write_checks`), whose error (SQLSTATE `TK001`, the write named as its
    /// constraint) fails the statement and the transaction. So the statement can travel with
    /// the events and the `COMMIT` in one round trip (`bulk::commit_statement`): nothing is
    /// read back before committing.
    ///
    /// The parts are [`bulk_update`] and [`bulk_insert`] of the same `BULK_*` statements the
    /// MySQL path runs one by one, so the two cannot drift.
    ///
    /// Bind, in order: the counts, the reviews, the uses, the fingerprints, the audit entries,
    /// the anomalies, each a JSON array; then how many counts and how many reviews there are.
    ///
    /// [`bulk_update`]: Engine::bulk_update
    /// [`bulk_insert`]: Engine::bulk_insert
    pub(crate) fn pg_write_verify() -> String {
        let (count_ctes, count) = pg_update(&BULK_COUNT_USES, "c");
        let (review_ctes, review) = pg_update(&BULK_MARK_REFUND_REVIEWS, "r");
        let insert = |statement: &BulkInsert| Self::Postgres.bulk_insert(statement);
        format!(
            "WITH {count_ctes}, counted AS ({count} RETURNING 1), \
             {review_ctes}, reviewed AS ({review} RETURNING 1), \
             uses AS ({uses}), fingerprints AS ({fingerprints}), audit AS ({audit}), \
             anomalies AS ({anomalies}) \
             SELECT CASE \
             WHEN (SELECT count(*) FROM counted) <> ? \
             THEN ticketd_write_changed_no_row('{WRITE_VOUCHER_USED}') \
             WHEN (SELECT count(*) FROM reviewed) <> ? \
             THEN ticketd_write_changed_no_row('{WRITE_REFUND_REVIEW}') \
             ELSE 0 END",
            uses = insert(&BULK_INSERT_VOUCHER_USES),
            fingerprints = insert(&BULK_INSERT_FINGERPRINTS),
            audit = insert(&BULK_INSERT_AUDIT),
            anomalies = insert(&BULK_INSERT_ANOMALIES),
        )
    }

    /// PostgreSQL: [`ADVANCE_EVENT_SEQ_BY`] and [`BULK_INSERT_EVENTS`] in one statement, the
    /// events' `seq`s taken from what the counter's update returns. No counter row makes every
    /// `seq` NULL, which `ledger_events` refuses: the statement fails, and with it the
    /// transaction (it is sent with the `COMMIT`, so no count of rows can be checked before
    /// committing). Its parameters are the number of events, then the events.
    ///
    /// [`BULK_INSERT_EVENTS`]: crate::statements::BULK_INSERT_EVENTS
    pub(crate) fn pg_write_events() -> String {
        let BulkInsert { into, select, keys } = BULK_INSERT_EVENTS_TAKEN;
        format!(
            "WITH taken AS ({ADVANCE_EVENT_SEQ_BY} RETURNING last) \
             INSERT INTO {into} SELECT {select} FROM {source} LEFT JOIN taken ON true \
             ORDER BY d.i",
            source = Self::Postgres.json_rows(keys),
        )
    }

    /// `INSERT INTO into SELECT select FROM <the statement's JSON rows>`, the rows in the
    /// batch's order, so that ids and audit `seq`s are handed out in the order the verifies
    /// arrived.
    ///
    /// PostgreSQL sorts by `d.i` for that, in memory and cheaply. MySQL takes the rows in
    /// `JSON_TABLE`'s document order, which is the batch's, without `ORDER BY`: with it,
    /// MariaDB 10.11 sorted every insert that has a `LONGTEXT` column (the use log, the
    /// fingerprints, the audit entries, the events) by row position, through temporary files,
    /// and then read each row again by its position, parsing the JSON parameter again: with
    /// the reads' sorts ([`ByIdsOrder`]), 8 temporary files and 4 merge passes per batch, and
    /// a fifth of MariaDB's samples. Without both, MariaDB spent 183–205 µs of CPU per verify
    /// instead of 217–296 (`docs/PERFORMANCE.md`, nineteenth session). The engines' batch test
    /// checks that the use log, the audit entries and the events of a batch come out in one
    /// order.
    pub(crate) fn bulk_insert(self, statement: &BulkInsert) -> String {
        let source = self.json_rows(statement.keys);
        let order = match self {
            Self::Postgres => " ORDER BY d.i",
            Self::MySql => "",
        };
        format!(
            "INSERT INTO {} SELECT {} FROM {source}{order}",
            statement.into, statement.select
        )
    }

    /// Classifies a driver error (see [`ErrorClass`]).
    pub(crate) fn classify(self, err: &sqlx::Error) -> ErrorClass {
        let db = match err {
            sqlx::Error::Database(db) => db,
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => return ErrorClass::Unavailable,
            _ => return ErrorClass::Other,
        };
        match db.kind() {
            ErrorKind::UniqueViolation => {
                let name = match self {
                    Self::Postgres => db.constraint().map(str::to_owned),
                    Self::MySql => mysql_duplicate_key(db.message()),
                };
                return ErrorClass::Unique(name);
            }
            ErrorKind::ForeignKeyViolation => return ErrorClass::ForeignKey,
            _ => {}
        }
        match self {
            Self::Postgres => {
                let code = db.code().unwrap_or_default();
                match code.as_ref() {
                    // serialization_failure, deadlock_detected, lock_not_available (the
                    // session's lock_timeout).
                    "40001" | "40P01" | "55P03" => ErrorClass::Retry,
                    // too_many_connections, admin/crash shutdown, cannot_connect_now;
                    // disk_full (the statement failed and wrote nothing; retrying helps once
                    // space is freed, as on SQLite).
                    "53300" | "57P01" | "57P02" | "57P03" | "53100" => ErrorClass::Unavailable,
                    c if c.starts_with("08") => ErrorClass::Unavailable,
                    _ => ErrorClass::Other,
                }
            }
            Self::MySql => {
                let number = db
                    .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .map_or(0, sqlx::mysql::MySqlDatabaseError::number);
                mysql_class(number, db.message())
            }
        }
    }

    /// Statements every new connection runs before it is used.
    ///
    /// - PostgreSQL: `synchronous_commit = on` per session, so an `Ok` means the commit is on
    ///   disk whatever the server's default; `lock_timeout`, so a row lock that is not granted
    ///   in time fails (and is retried) instead of holding a pool connection indefinitely.
    /// - MySQL/MariaDB: READ COMMITTED (every statement after the order's row lock reads the
    ///   latest committed rows, and InnoDB takes no gap locks, so fewer deadlocks), strict SQL
    ///   mode (a value that does not fit fails instead of being cut), and the lock wait timeout.
    pub(crate) fn session_setup(self, lock_timeout: Duration) -> Vec<String> {
        match self {
            Self::Postgres => vec![
                "SET synchronous_commit = on".to_owned(),
                // `CREATE TABLE IF NOT EXISTS` and friends would log NOTICEs at every start.
                "SET client_min_messages = warning".to_owned(),
                format!("SET lock_timeout = {}", lock_timeout.as_millis().max(1)),
            ],
            Self::MySql => vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_owned(),
                "SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')".to_owned(),
                // Whole seconds, at least one: the variable takes no fractions.
                format!(
                    "SET SESSION innodb_lock_wait_timeout = {}",
                    lock_timeout.as_secs().max(1)
                ),
            ],
        }
    }

    /// Statements every pooled connection prepares once, after the session setup: on
    /// PostgreSQL a batch's reads ([`BatchRead`], run with `EXECUTE` in one simple query with
    /// the `BEGIN`, `bulk::run_reads`) and its write and events (with the `COMMIT`,
    /// `bulk::commit_statement`), so that they are planned once per connection rather than
    /// once per batch. Only for the pool's connections, made once the migrations are done:
    /// the statements name tables and a function the migrations create.
    ///
    /// A batch that finds them missing or stale closes its connection and runs again on a
    /// new one (`bulk::is_stale_prepared`). A connection pooler that hands a session's
    /// statements to other server connections (PgBouncer in transaction mode) loses them for
    /// every batch, so it is not supported (`docs/OPERATIONS.md`).
    pub(crate) fn prepared_statements(self) -> Vec<String> {
        match self {
            Self::Postgres => {
                let reads = BatchRead::ALL.map(|read| {
                    let numbered = Self::Postgres.sql(read.sql(Self::Postgres)).0;
                    format!("PREPARE {} (jsonb) AS {numbered}", read.prepared_name())
                });
                // The types, in the order `Engine::pg_write_verify` and
                // `Engine::pg_write_events` take their parameters.
                let writes = [
                    format!(
                        "PREPARE {PREPARED_WRITE_VERIFY} \
                         (jsonb, jsonb, jsonb, jsonb, jsonb, jsonb, bigint, bigint) AS {}",
                        Self::Postgres.sql(Self::pg_write_verify()).0
                    ),
                    format!(
                        "PREPARE {PREPARED_WRITE_EVENTS} (bigint, jsonb) AS {}",
                        Self::Postgres.sql(Self::pg_write_events()).0
                    ),
                ];
                // First, whatever the server session already holds: a connection handed over
                // by a pooler in session mode without its reset query would refuse `PREPARE`
                // of a name it has (`42P05`), and sqlx's own statement names too.
                std::iter::once("DEALLOCATE ALL".to_owned())
                    .chain(reads)
                    .chain(writes)
                    .collect()
            }
            Self::MySql => Vec::new(),
        }
    }

    /// Opens a read-only transaction that sees one consistent snapshot for all its statements
    /// (the default READ COMMITTED gives each statement its own).
    pub(crate) async fn begin_snapshot(
        self,
        conn: &mut AnyConnection,
    ) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
        use sqlx::Connection;
        match self {
            Self::Postgres => {
                conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            }
            Self::MySql => {
                // SET TRANSACTION (without SESSION) applies to the next transaction only.
                sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(&mut *conn)
                    .await?;
                conn.begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    .await
            }
        }
    }

    /// Checks the server: reachable, recent enough, and durable as the store promises. Returns
    /// the server's version text.
    pub(crate) async fn check_server(self, conn: &mut AnyConnection) -> Result<String, StoreError> {
        let db = |during: &'static str| {
            move |e: sqlx::Error| StoreError::Database {
                during,
                source: Box::new(e),
            }
        };
        match self {
            Self::Postgres => {
                let row = sqlx::query(
                    "SELECT current_setting('server_version'), \
                     current_setting('server_version_num'), current_setting('fsync'), \
                     current_setting('synchronous_commit')",
                )
                .fetch_one(&mut *conn)
                .await
                .map_err(db("reading the server's version and settings"))?;
                let text = |i: usize| row.try_get::<String, _>(i).unwrap_or_default();
                let (version, num, fsync, sync) = (text(0), text(1), text(2), text(3));
                let num: i64 = num.trim().parse().unwrap_or(0);
                if num < 120_000 {
                    return Err(StoreError::ServerTooOld {
                        engine: "PostgreSQL",
                        found: version,
                        required: "12",
                    });
                }
                // fsync is server-wide: with it off no commit is durable, whatever we set.
                if fsync != "on" {
                    return Err(StoreError::Setting {
                        setting: "fsync",
                        found: fsync,
                        expected: "on",
                    });
                }
                // Set per session in `session_setup`; checked so a pooler or a role default
                // that overrides it is caught.
                if sync == "off" {
                    return Err(StoreError::Setting {
                        setting: "synchronous_commit",
                        found: sync,
                        expected: "on",
                    });
                }
                Ok(version)
            }
            Self::MySql => {
                let row = sqlx::query(
                    "SELECT VERSION(), CAST(@@GLOBAL.innodb_flush_log_at_trx_commit AS CHAR)",
                )
                .fetch_one(&mut *conn)
                .await
                .map_err(db("reading the server's version and settings"))?;
                let version: String = row.try_get(0).unwrap_or_default();
                let flush: String = row.try_get(1).unwrap_or_default();
                if let Some(required) = mysql_too_old(&version) {
                    return Err(StoreError::ServerTooOld {
                        engine: if is_mariadb(&version) {
                            "MariaDB"
                        } else {
                            "MySQL"
                        },
                        found: version,
                        required,
                    });
                }
                // 0 and 2 acknowledge a commit before the redo log is flushed to disk: a
                // crash can forget verifies the gateway already answered.
                if flush.trim() != "1" {
                    return Err(StoreError::Setting {
                        setting: "innodb_flush_log_at_trx_commit",
                        found: flush,
                        expected: "1",
                    });
                }
                Ok(version)
            }
        }
    }
}

/// PostgreSQL's form of [`Engine::bulk_update`], as the `WITH` queries it needs and the
/// `UPDATE` itself, its queries named `{name}d` and `{name}k` so that several updates can
/// share one statement ([`Engine::pg_write_verify`]). Why it reaches rows by `ctid`: see
/// [`Engine::bulk_update`].
fn pg_update(statement: &BulkJoin, name: &str) -> (String, String) {
    let BulkJoin {
        table,
        set,
        keys,
        lookup: (column, _),
        on,
        and_where,
        ..
    } = *statement;
    let source = Engine::Postgres.json_rows(keys);
    // `table` is `name AS alias`, and `column` names the alias.
    let alias = column.split_once('.').map_or(table, |(alias, _)| alias);
    (
        format!(
            "{name}d AS MATERIALIZED (SELECT * FROM {source}), \
             {name}k AS MATERIALIZED (SELECT x.row_id, d.* FROM {name}d AS d CROSS JOIN LATERAL \
             (SELECT {alias}.ctid AS row_id FROM {table} WHERE {on} OFFSET 0) AS x)"
        ),
        format!(
            "UPDATE {table} SET {set} FROM {name}k AS d \
             WHERE {alias}.ctid = ANY (ARRAY(SELECT row_id FROM {name}k)) \
             AND {alias}.ctid = d.row_id AND {and_where}"
        ),
    )
}

/// The name under which each pooled PostgreSQL connection prepares
/// [`Engine::pg_write_verify`] ([`Engine::prepared_statements`]).
pub(crate) const PREPARED_WRITE_VERIFY: &str = "ticketd_write_verify";
/// The name under which each pooled PostgreSQL connection prepares
/// [`Engine::pg_write_events`].
pub(crate) const PREPARED_WRITE_EVENTS: &str = "ticketd_write_events";

/// The reads a batch of verifies sends with its `BEGIN` (`bulk::read_batch`), each with one
/// JSON parameter. On PostgreSQL each pooled connection prepares them once
/// ([`Engine::prepared_statements`]) and a batch `EXECUTE`s them; on MySQL their text goes
/// into the batch's query with the parameter written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchRead {
    /// Locks the batch's orders and reads them with their totals.
    LockOrders,
    /// The orders' refund requests.
    Refunds,
    /// The codes the batch names.
    NamedVouchers,
    /// The fingerprints the batch could replay.
    KnownFingerprints,
}

impl BatchRead {
    const ALL: [Self; 4] = [
        Self::LockOrders,
        Self::Refunds,
        Self::NamedVouchers,
        Self::KnownFingerprints,
    ];

    /// The read in `e`'s syntax, its parameter a `?`.
    pub(crate) fn sql(self, e: Engine) -> String {
        match self {
            Self::LockOrders => e.select_by_ids(&BULK_LOCK_ORDERS),
            Self::Refunds => e.select_by_ids(&BULK_SELECT_REFUNDS),
            Self::NamedVouchers => e.bulk_select(&BULK_NAMED_VOUCHERS),
            Self::KnownFingerprints => e.bulk_select(&BULK_KNOWN_FINGERPRINTS),
        }
    }

    /// The name PostgreSQL's pooled connections prepare it under.
    pub(crate) fn prepared_name(self) -> &'static str {
        match self {
            Self::LockOrders => "ticketd_lock_orders",
            Self::Refunds => "ticketd_read_refunds",
            Self::NamedVouchers => "ticketd_read_named_vouchers",
            Self::KnownFingerprints => "ticketd_read_known_fingerprints",
        }
    }
}

/// The tables ticketd's MySQL/MariaDB schema puts triggers on (`migrations/mysql/0001_init.sql`,
/// `0008_order_totals.sql`): the ones [`ErrorClass::TriggersNotLoaded`] closes.
pub(crate) const TRIGGER_TABLES: &str = "vouchers, audit_log";

/// What a MySQL/MariaDB error number means for the operation (past the unique and foreign-key
/// violations, which the driver names). `message` matters for one number only: 1064, a parse
/// error.
fn mysql_class(number: u16, message: &str) -> ErrorClass {
    match number {
        // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT, ER_CHECKREAD (MariaDB: record changed since
        // last read). 9007 (write conflict) and 8002 (retry a SELECT FOR UPDATE) are TiDB's
        // documented retryable errors; untested.
        1213 | 1205 | 1020 | 9007 | 8002 => ErrorClass::Retry,
        // ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN; ER_DISK_FULL and ER_RECORD_FILE_FULL (the
        // table space is full); ER_UNKNOWN_COM_ERROR, which a Galera node answers to every
        // statement while it is not synced with its cluster ("WSREP has not yet prepared node
        // for application use": rejoining, or cut off from the primary component). It executed
        // nothing, and the node serves again once synced.
        1040 | 1053 | 1021 | 1114 | 1047 => ErrorClass::Unavailable,
        // A trigger of the table (the order totals on `vouchers`, the append-only guards on
        // `audit_log`) failed to load when the server opened the table, and the statement was
        // refused before it touched a row. ticketd's own statements always parse, so this is
        // never its SQL. MariaDB 10.11 Galera did it on the node that had just donated a state
        // transfer to a rejoining node: its triggers, reloaded after the transfer, failed to
        // parse ("Unknown trigger has an error in its body: 'Query was empty'", or a syntax
        // error in the middle of the stored text, which parses everywhere else). The server
        // keeps such a table in its table cache and refuses every later write with it, from
        // any connection, until the table is closed: once for tens of milliseconds, once for
        // good (30 s, until the test ended). So the store closes the tables and runs the
        // transaction again ([`TRIGGER_TABLES`]). Matched on MariaDB's and MySQL's English
        // messages; a server set to another `lc_messages` gets the system error instead.
        1064 if message.contains("has an error in its body") => ErrorClass::TriggersNotLoaded,
        _ => ErrorClass::Other,
    }
}

/// The key a MySQL duplicate-entry message names: `Duplicate entry 'x' for key 'name'` (MySQL
/// 8 writes `table.name`).
fn mysql_duplicate_key(message: &str) -> Option<String> {
    let (_, rest) = message.rsplit_once("for key '")?;
    let key = rest.strip_suffix('\'').unwrap_or(rest);
    Some(key.rsplit('.').next().unwrap_or(key).to_owned())
}

fn is_mariadb(version: &str) -> bool {
    version.to_ascii_lowercase().contains("mariadb")
}

/// The oldest supported version when `version` (as `SELECT VERSION()` prints it) is older:
/// MySQL 8.0 (CHECK constraints, `JSON_TABLE` for batched verifies), MariaDB 10.6
/// (`JSON_TABLE`).
fn mysql_too_old(version: &str) -> Option<&'static str> {
    // MariaDB 10.x once printed a `5.5.5-` prefix for old clients.
    let text = version.strip_prefix("5.5.5-").unwrap_or(version);
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    if is_mariadb(version) {
        ((major, minor) < (10, 6)).then_some("10.6")
    } else {
        (major < 8).then_some("8.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_scheme_picks_the_engine() {
        assert_eq!(
            Engine::from_url("postgres://u@h/db"),
            Some(Engine::Postgres)
        );
        assert_eq!(
            Engine::from_url("postgresql://h/db"),
            Some(Engine::Postgres)
        );
        assert_eq!(Engine::from_url("mysql://root@h/db"), Some(Engine::MySql));
        assert_eq!(Engine::from_url("MariaDB://root@h/db"), Some(Engine::MySql));
        assert_eq!(Engine::from_url("sqlite://x.db"), None);
        assert_eq!(Engine::from_url("postgres:x"), None);
    }

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let sql = "UPDATE v SET used = used + ? WHERE id = ? AND used + ? <= capacity";
        assert_eq!(Engine::MySql.sql(sql).0, sql);
        assert_eq!(
            Engine::Postgres.sql(sql).0,
            "UPDATE v SET used = used + $1 WHERE id = $2 AND used + $3 <= capacity"
        );
    }

    /// The bind order the callers follow (`bulk::commit_statement`): six JSON arrays and two
    /// counts, then the number of events and the events.
    #[test]
    fn the_postgres_batch_writes_take_eight_and_two_parameters() {
        let placeholders = |sql: String| sql.matches('?').count();
        assert_eq!(placeholders(Engine::pg_write_verify()), 8);
        assert_eq!(placeholders(Engine::pg_write_events()), 2);
        // As many types as each prepared statement takes parameters.
        let types = |prepare: &str| {
            let (_, list) = prepare.split_once('(').expect("a type list");
            let (list, _) = list.split_once(')').expect("a type list");
            list.split(',').count()
        };
        let prepared = Engine::Postgres.prepared_statements();
        assert_eq!(prepared[0], "DEALLOCATE ALL");
        let prepared = &prepared[1..];
        assert_eq!(prepared.len(), 6);
        for (read, prepare) in BatchRead::ALL.iter().zip(prepared) {
            assert_eq!(read.sql(Engine::Postgres).matches('?').count(), 1);
            assert_eq!(types(prepare), 1, "{prepare}");
        }
        assert_eq!(types(&prepared[4]), 8, "{}", prepared[4]);
        assert_eq!(types(&prepared[5]), 2, "{}", prepared[5]);
        assert!(Engine::MySql.prepared_statements().is_empty());
    }

    /// The writes the batch statement names are written into it between quotes.
    #[test]
    fn the_writes_a_batch_checks_need_no_quoting() {
        for write in [WRITE_VOUCHER_USED, WRITE_REFUND_REVIEW] {
            assert!(
                write
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._".contains(c)),
                "{write}"
            );
            assert!(Engine::pg_write_verify().contains(&format!("no_row('{write}')")));
        }
    }

    #[test]
    fn a_trigger_that_failed_to_load_is_told_from_a_parse_error() {
        // As MariaDB 10.11 answered on a Galera node while another rejoined.
        assert_eq!(
            mysql_class(
                1064,
                "Unknown trigger has an error in its body: 'Query was empty'"
            ),
            ErrorClass::TriggersNotLoaded
        );
        // The trigger's name was parsed before the error (ER_ERROR_IN_TRIGGER_BODY's text).
        assert_eq!(
            mysql_class(
                1064,
                "Trigger 'ticketd.audit_log_no_update' has an error in its body: 'x'"
            ),
            ErrorClass::TriggersNotLoaded
        );
        // A statement that does not parse is a bug, never a busy answer.
        assert_eq!(
            mysql_class(
                1064,
                "You have an error in your SQL syntax; check the manual that corresponds to \
                 your MariaDB server version for the right syntax to use near 'FROM' at line 1"
            ),
            ErrorClass::Other
        );
        assert_eq!(
            mysql_class(1213, "Deadlock found when trying to get lock"),
            ErrorClass::Retry
        );
        assert_eq!(
            mysql_class(1047, "WSREP has not yet prepared node for application use"),
            ErrorClass::Unavailable
        );
        assert_eq!(
            mysql_class(1146, "Table 'x' doesn't exist"),
            ErrorClass::Other
        );
    }

    #[test]
    fn mysql_duplicate_messages_name_the_key() {
        assert_eq!(
            mysql_duplicate_key("Duplicate entry 'a-x' for key 'orders_out_order_id'").as_deref(),
            Some("orders_out_order_id")
        );
        assert_eq!(
            mysql_duplicate_key("Duplicate entry '5' for key 'orders.PRIMARY'").as_deref(),
            Some("PRIMARY")
        );
        assert_eq!(mysql_duplicate_key("something else"), None);
    }

    #[test]
    fn old_servers_are_named_with_the_version_required() {
        assert_eq!(mysql_too_old("10.11.19-MariaDB-0+deb12u1"), None);
        assert_eq!(mysql_too_old("5.5.5-10.4.2-MariaDB"), Some("10.6"));
        assert_eq!(mysql_too_old("10.5.27-MariaDB"), Some("10.6"));
        assert_eq!(mysql_too_old("10.6.0-MariaDB"), None);
        assert_eq!(mysql_too_old("11.4.2-MariaDB"), None);
        assert_eq!(mysql_too_old("8.0.36"), None);
        assert_eq!(mysql_too_old("8.0.11-TiDB-v7.5.0"), None);
        assert_eq!(mysql_too_old("5.7.44-log"), Some("8.0"));
    }
}
