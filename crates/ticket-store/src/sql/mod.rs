//! [`SqlStore`]: the ledger on a PostgreSQL or MySQL/MariaDB server, shared by several ticketd
//! processes.
//!
//! One implementation serves both engines over sqlx's `Any` driver: the statements are
//! written once ([`crate::statements`]), and what differs — placeholders, error codes, session
//! settings, version and durability checks, migrations, the bulk statements of the group
//! commit — is a `match` on [`Engine`] ([`engine`], [`migrate`]).
//!
//! - [`ops`]: each write operation (lock and load the snapshot, plan, rows); [`queries`]: what
//!   is read; [`exec`]: the rows of a plan ([`crate::plan_rows`]) executed one by one;
//! - [`batch`]: the group commit of verifies, [`bulk`]: its plans written in bulk;
//! - [`db`]: how an operation runs and is retried; [`outcome`] and [`trace`]: a commit whose
//!   answer was lost.
//!
//! How a write runs ([`Db::write`]):
//! 1. take a pooled connection and `BEGIN` (READ COMMITTED);
//! 2. run the operation: lock the order row (`SELECT … FOR UPDATE`), load the snapshot, call
//!    the domain's planner, apply the plan with conditional updates;
//! 3. `COMMIT`. An `Ok` is returned only after the commit, which the engine has made durable
//!    (PostgreSQL `synchronous_commit=on`, InnoDB `innodb_flush_log_at_trx_commit=1`, both
//!    checked at start-up);
//! 4. if the engine aborted the transaction as a serialization failure, deadlock or lock wait
//!    timeout, it is run again from the start, at most [`PoolSettings::max_attempts`] times
//!    with a short jittered backoff, then answered [`LedgerError::Unavailable`] (the gateway's
//!    retryable `isp.service-busy`). A lost connection is `Unavailable` too, except during
//!    `COMMIT`: then the store looks up whether the commit happened ([`outcome`]) and answers
//!    the success, `Unavailable`, or — still unknown after a few seconds —
//!    [`LedgerError::OutcomeUnknown`].
//!
//! Reads that must see one state (`order`, `list_orders`) run in a REPEATABLE READ read-only
//! transaction; list reads (`audit`, `anomalies`, `list_apps`) are single statements. Apps are
//! cached in memory like on SQLite ([`AppCache`]): a change made through this store updates
//! the cache when it commits, and a cached app is read again after a few seconds, so a change
//! made through another process is seen soon too.

mod batch;
mod bulk;
mod db;
mod engine;
mod exec;
mod hosts;
mod migrate;
mod ops;
mod outcome;
mod queries;
mod reconcile;
mod trace;
mod transfer;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyConnection;
use sqlx::ConnectOptions;
use sqlx::{AssertSqlSafe, Connection};
use ticket_ledger::{
    refusal_anomaly, Anomaly, AnomalyFilter, App, AppAccess, AppKey, AuditEntry, AuditFilter,
    IssueCommand, LedgerError, LedgerStore, NewApp, NewOrder, OrderFilter, OrderId, OrderPage,
    OrderRef, OrderView, OutcomeKind, ReconcileCommand, ReconcileOutcome, RefundCommand,
    RefundRequest, RefundRequestCommand, RejectedCall, RejectedCallFilter, ResolveAnomaly,
    ReversalCommand, SecretRotation, VerifyCommand, VerifyOutcome,
};

pub(crate) use self::db::Db;
use self::db::{failure_text, During};
pub use self::engine::Engine;
use self::outcome::Connector;
use crate::apps::AppCache;
use crate::StoreError;

/// How long a pooled connection may have been idle and still be used without a ping first.
const PING_IDLE: Duration = Duration::from_secs(1);

/// The pool's connect options for `url`: sqlx's own logging of statements off. A batch's
/// reads and writes carry their parameters written into the statement's text (codes,
/// fingerprints, audit details, the events' data: `bulk::run_reads`,
/// `bulk::commit_statement`), and sqlx logs a statement slower than a second at WARN with
/// its whole text: a lock wait would put unmasked codes in the log. ticketd logs what it does
/// itself.
pub(crate) fn pool_options(url: &str) -> Result<AnyConnectOptions, sqlx::Error> {
    Ok(url
        .parse::<AnyConnectOptions>()?
        .disable_statement_logging())
}

/// How a [`SqlStore`] uses its server: pool size and the bounds on waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once (each serves one transaction at a time).
    pub max_connections: u32,
    /// Connections kept open even when idle.
    pub min_connections: u32,
    /// How long an operation waits for a free connection before it is answered
    /// [`LedgerError::Unavailable`].
    pub acquire_timeout: Duration,
    /// How long a statement waits for a row lock held by another transaction before the
    /// attempt fails and is retried (PostgreSQL `lock_timeout`, InnoDB
    /// `innodb_lock_wait_timeout`, whole seconds there).
    pub lock_timeout: Duration,
    /// Attempts at one operation when the engine asks for a retry (at least 1).
    pub max_attempts: u32,
    /// Batches of verifies that may run at once, each on its own connection (at least 1, at
    /// most `max_connections`). See the `batch` module: more overlap round trips, fewer
    /// make bigger batches. The default is 2: a batch that writes events holds the event
    /// counter's row through its commit, so commits go one at a time whatever the number of
    /// workers, and a third or fourth worker only waits for that row with a smaller batch
    /// (2,000 × 10 and 60 × 500 bench shapes on 2 cores: 4 workers 3–9 % slower than 2 on
    /// average, PostgreSQL and MariaDB; 8 workers 29–41 % slower on PostgreSQL;
    /// docs/PERFORMANCE.md).
    pub batch_workers: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(5),
            max_attempts: 5,
            batch_workers: 2,
        }
    }
}

/// The ledger on a PostgreSQL or MySQL/MariaDB server.
///
/// Open it with [`SqlStore::connect`]; it is cheap to share (`Arc<dyn LedgerStore>`). Any
/// number of stores, in any number of processes, may use one database at once.
pub struct SqlStore {
    db: Db,
    /// The URL with any password hidden, for messages.
    url: String,
    server_version: String,
    /// Every app registered ([`AppCache`]).
    apps: AppCache,
    /// Verifies by `order_id`, applied many to a transaction ([`batch`]).
    batcher: batch::Batcher,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &self.db.engine)
            .field("url", &self.url)
            .field("server_version", &self.server_version)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects to the database `url` names (`postgres://`, `postgresql://`, `mysql://`,
    /// `mariadb://`), checks the server, and brings the schema up to date.
    ///
    /// Fails with a message that says what to fix when the server cannot be reached
    /// ([`StoreError::Unreachable`]), is too old ([`StoreError::ServerTooOld`]: PostgreSQL < 12,
    /// MySQL < 8.0, MariaDB < 10.6), is not durable ([`StoreError::Setting`]: PostgreSQL
    /// `fsync` off, InnoDB `innodb_flush_log_at_trx_commit` ≠ 1), or when the schema is newer
    /// than this binary or an applied migration was edited.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        let engine = Engine::from_url(url).ok_or_else(|| StoreError::InvalidUrl {
            url: redact(url),
            why: "the scheme must be postgres, postgresql, mysql or mariadb",
        })?;
        sqlx::any::install_default_drivers();
        let unreachable =
            |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Unreachable {
                engine: engine.name(),
                url: redact(url),
                source,
            };
        // Several hosts (PostgreSQL, as libpq takes them): the one that accepts writes, then
        // followed as it changes (hosts.rs).
        let hosts = hosts::Hosts::parse(url).map_err(|why| StoreError::InvalidUrl {
            url: redact(url),
            why,
        })?;
        let chosen = match &hosts {
            Some(hosts) => hosts.find().await.map_err(|why| unreachable(why.into()))?,
            None => url.to_owned(),
        };
        let current = hosts::Current::new(&chosen);
        let url = chosen.as_str();
        // One plain connection first: a pool that cannot connect only says it timed out,
        // while the operator needs the reason (refused, unknown host, bad password, no such
        // database).
        let setup = engine.session_setup(settings.lock_timeout);
        let connector = Connector::new(current.clone(), setup.clone());
        let mut conn = tokio::time::timeout(settings.acquire_timeout, AnyConnection::connect(url))
            .await
            .map_err(|_| {
                unreachable(format!("no answer within {:?}", settings.acquire_timeout).into())
            })?
            .map_err(|e| unreachable(Box::new(e)))?;
        for statement in &setup {
            sqlx::raw_sql(AssertSqlSafe(statement.clone()))
                .execute(&mut conn)
                .await
                .map_err(|e| unreachable(Box::new(e)))?;
        }
        let server_version = engine.check_server(&mut conn).await?;
        migrate::migrate(engine, &mut conn).await?;
        // Only now the pool: its connections prepare statements that name what the
        // migrations create (`Engine::prepared_statements`), and a pool kept at
        // `min_connections` starts connecting at once.
        // The session setup and the prepared statements, sent by each new connection in one
        // round trip.
        let on_connect = setup
            .iter()
            .chain(&engine.prepared_statements())
            .cloned()
            .collect::<Vec<_>>()
            .join(";\n");
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .min_connections(settings.min_connections.min(settings.max_connections))
            .acquire_timeout(settings.acquire_timeout)
            // A connection that has just been used is not pinged before its next use: under
            // load, the ping was a round trip of its own before every batch's `BEGIN`.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                let on_connect = on_connect.clone();
                Box::pin(async move {
                    sqlx::raw_sql(AssertSqlSafe(on_connect))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(pool_options(url).map_err(|e| unreachable(Box::new(e)))?);
        if let Some(hosts) = hosts {
            hosts::watch(hosts, pool.clone(), current);
        }
        let apps =
            queries::all_apps(&mut conn, engine)
                .await
                .map_err(|f| StoreError::Database {
                    during: "loading apps",
                    source: failure_text(&f).into(),
                })?;
        let _ = conn.close().await;
        tracing::info!(engine = engine.name(), url = %redact(url), %server_version, "ledger opened");
        let db = Db {
            engine,
            pool,
            max_attempts: settings.max_attempts.max(1),
            connector,
            trigger_reloads: Arc::default(),
        };
        Ok(Self {
            batcher: batch::Batcher::start(
                db.clone(),
                settings
                    .batch_workers
                    .clamp(1, settings.max_connections.max(1) as usize),
            ),
            db,
            url: redact(url),
            server_version,
            apps: AppCache::new(apps),
        })
    }

    /// Which engine the store runs on.
    pub fn engine(&self) -> Engine {
        self.db.engine
    }

    /// The server's version, as it reports it.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The schema version the database is at (every embedded migration is applied on connect).
    pub fn schema_version(&self) -> i64 {
        migrate::latest_version(self.db.engine)
    }

    /// Closes the pool: waits for connections in use to be returned, closes them, and answers
    /// every later call [`LedgerError::Unavailable`]. Idempotent.
    pub async fn close(&self) {
        self.batcher.close();
        self.db.pool.close().await;
        tracing::info!(engine = self.db.engine.name(), url = %self.url, "ledger closed");
    }
}

/// `url` with the password (if any) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let userinfo = &url[start + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..start], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[async_trait]
impl LedgerStore for SqlStore {
    async fn create_app(&self, app: NewApp) -> Result<App, LedgerError> {
        let app = self
            .db
            .write(&app, |c, e, a| Box::pin(ops::create_app(c, e, a)))
            .await?;
        self.apps.insert(&app);
        Ok(app)
    }

    async fn app(&self, key: &AppKey) -> Result<Option<App>, LedgerError> {
        self.apps
            .get_or_load(key, || {
                self.db.read(key, |c, e, k| Box::pin(queries::app(c, e, k)))
            })
            .await
    }

    async fn set_app_access(&self, key: &AppKey, access: AppAccess) -> Result<App, LedgerError> {
        let app = self
            .db
            .write(&(key.clone(), access), |c, e, ka| {
                Box::pin(ops::set_app_access(c, e, ka))
            })
            .await?;
        self.apps.insert(&app);
        Ok(app)
    }

    async fn rotate_app_secret(
        &self,
        key: &AppKey,
        rotation: SecretRotation,
    ) -> Result<App, LedgerError> {
        let app = self
            .db
            .write(&(key.clone(), rotation), |c, e, kr| {
                Box::pin(ops::rotate_app_secret(c, e, kr))
            })
            .await?;
        self.apps.insert(&app);
        Ok(app)
    }

    async fn create_order(
        &self,
        order: NewOrder,
        audit: AuditEntry,
    ) -> Result<OrderView, LedgerError> {
        order.validate()?;
        self.db
            .write(&(order, audit), |c, e, oa| {
                Box::pin(ops::create_order(c, e, oa))
            })
            .await
    }

    async fn order(&self, id: OrderId) -> Result<Option<OrderView>, LedgerError> {
        self.db
            .read_snapshot(&id, |c, e, id| Box::pin(queries::order_view(c, e, *id)))
            .await
    }

    async fn order_events(
        &self,
        id: OrderId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, LedgerError> {
        self.db
            .read(&(id, after_seq, limit), |c, e, (id, after, limit)| {
                Box::pin(queries::order_events(c, e, *id, *after, *limit))
            })
            .await
    }

    /// In one REPEATABLE READ read-only transaction, so every chunk of the walk, and each
    /// order's row, vouchers and refunds, are one state.
    async fn list_orders(&self, filter: OrderFilter) -> Result<OrderPage, LedgerError> {
        self.db
            .read_snapshot(&filter, |c, e, f| Box::pin(queries::list_orders(c, e, f)))
            .await
    }

    /// From the database, not the app cache, which may not hold an app another process
    /// registered moments ago.
    async fn list_apps(&self, after: Option<AppKey>, limit: u32) -> Result<Vec<App>, LedgerError> {
        self.db
            .read(&(after, limit), |c, e, (after, limit)| {
                Box::pin(queries::list_apps(c, e, after.as_ref(), *limit))
            })
            .await
    }

    async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        match cmd.order {
            // Named by `order_id`: batched with the verifies queued at the same time.
            OrderRef::Id(_) | OrderRef::Both(..) => self.batcher.verify(cmd).await,
            // By `out_order_id` alone (rare: the id must first be resolved within the app).
            OrderRef::Out(_) => self.db.verify_alone(&cmd).await,
        }
    }

    async fn issue(&self, cmd: IssueCommand) -> Result<OutcomeKind, LedgerError> {
        let result = self
            .db
            .write(&cmd, |c, e, cmd| Box::pin(ops::issue(c, e, cmd)))
            .await;
        self.db
            .keeping_anomaly(result, |err| {
                refusal_anomaly(err, Some(cmd.order_id), Some(&cmd.app_key), &cmd.meta)
            })
            .await
    }

    async fn request_refund(
        &self,
        cmd: RefundRequestCommand,
    ) -> Result<RefundRequest, LedgerError> {
        self.db
            .write(&cmd, |c, e, cmd| Box::pin(ops::request_refund(c, e, cmd)))
            .await
    }

    async fn refund(
        &self,
        cmd: RefundCommand,
    ) -> Result<(RefundRequest, OutcomeKind), LedgerError> {
        let result = self
            .db
            .write(&cmd, |c, e, cmd| Box::pin(ops::refund(c, e, cmd)))
            .await;
        self.db
            .keeping_anomaly(result, |err| {
                refusal_anomaly(err, Some(cmd.order_id), Some(&cmd.app_key), &cmd.meta)
            })
            .await
    }

    async fn reverse(&self, cmd: ReversalCommand) -> Result<i64, LedgerError> {
        let result = self
            .db
            .write(&cmd, |c, e, cmd| Box::pin(ops::reverse(c, e, cmd)))
            .await;
        // An operator's request: no app.
        self.db
            .keeping_anomaly(result, |err| {
                refusal_anomaly(err, Some(cmd.order_id), None, &cmd.meta)
            })
            .await
    }

    async fn reconcile(&self, cmd: ReconcileCommand) -> Result<ReconcileOutcome, LedgerError> {
        let result = self
            .db
            .write(&cmd, |c, e, cmd| Box::pin(reconcile::reconcile(c, e, cmd)))
            .await;
        self.db
            .keeping_anomaly(result, |e| cmd.refusal_anomaly(e))
            .await
    }

    async fn anomalies(&self, filter: AnomalyFilter) -> Result<Vec<Anomaly>, LedgerError> {
        self.db
            .read(&filter, |c, e, f| Box::pin(queries::anomalies(c, e, f)))
            .await
    }

    async fn resolve_anomaly(&self, cmd: ResolveAnomaly) -> Result<Anomaly, LedgerError> {
        let result = self
            .db
            .write(&cmd, |c, e, cmd| Box::pin(ops::resolve_anomaly(c, e, cmd)))
            .await;
        // An operator's request: no app, and the order is the resolved anomaly's.
        self.db
            .keeping_anomaly(result, |err| refusal_anomaly(err, None, None, &cmd.meta))
            .await
    }

    async fn record(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        self.db
            .write(&entry, |c, e, entry| Box::pin(ops::record(c, e, entry)))
            .await
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, LedgerError> {
        self.db
            .read(&filter, |c, e, f| Box::pin(queries::audit(c, e, f)))
            .await
    }

    async fn record_rejected_call(&self, call: RejectedCall, keep: u64) -> Result<(), LedgerError> {
        self.db
            .write(&(call, keep), |c, e, (call, keep)| {
                Box::pin(ops::record_rejected_call(c, e, call, *keep))
            })
            .await
    }

    async fn rejected_calls(
        &self,
        filter: RejectedCallFilter,
    ) -> Result<Vec<RejectedCall>, LedgerError> {
        self.db
            .read(&filter, |c, e, f| {
                Box::pin(queries::rejected_calls(c, e, f))
            })
            .await
    }

    async fn events(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<ticket_ledger::EventPage, LedgerError> {
        self.db
            .read(&(after, limit), |c, e, &(after, limit)| {
                Box::pin(queries::events(c, e, after, limit))
            })
            .await
    }

    async fn claim_relay(
        &self,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<i64>, LedgerError> {
        let args = (
            holder.to_owned(),
            now.timestamp_millis(),
            (now + lease).timestamp_millis(),
        );
        self.db
            .write(&args, |c, e, (holder, now_ms, until_ms)| {
                Box::pin(ops::claim_relay(c, e, holder, *now_ms, *until_ms))
            })
            .await
    }

    async fn advance_relay(&self, holder: &str, from: i64, to: i64) -> Result<bool, LedgerError> {
        self.db
            .write(
                &(holder.to_owned(), from, to),
                |c, e, (holder, from, to)| Box::pin(ops::advance_relay(c, e, holder, *from, *to)),
            )
            .await
    }

    async fn metrics(&self) -> Result<ticket_ledger::StoreMetrics, LedgerError> {
        self.db
            .read(&(), |c, engine, ()| {
                Box::pin(async move {
                    let sql = crate::statements::totals(|column| match engine {
                        Engine::Postgres => {
                            format!("CAST(coalesce(sum({column}), 0) AS DOUBLE PRECISION)")
                        }
                        // DECIMAL plus a DOUBLE literal is a DOUBLE; `CAST(... AS DOUBLE)`
                        // needs MySQL 8.0.17.
                        Engine::MySql => format!("coalesce(sum({column}), 0) + 0e0"),
                    });
                    let row = sqlx::query(engine.sql(sql))
                        .fetch_one(c)
                        .await
                        .during("reading the ledger totals")?;
                    crate::rows::totals(&row).during("reading the ledger totals")
                })
            })
            .await
            .map(|mut totals| {
                totals.batches = Some(self.batcher.stats());
                let reloads = &self.db.trigger_reloads;
                totals.trigger_reloads = reloads.closed.load(Ordering::Relaxed);
                totals.failed_trigger_reloads = reloads.failed.load(Ordering::Relaxed);
                totals
            })
    }

    /// Readiness: a pooled connection answers `SELECT 1` within the acquire timeout, so an
    /// unreachable or saturated server makes ticketd unready and its return makes it ready
    /// again (faults.rs cuts a proxy in front of PostgreSQL to prove it). Unlike SQLite's
    /// ping, no probe write: the server's disk and WAL are the server's to monitor, and a
    /// write it refuses for lack of space is answered `isp.service-busy` anyway
    /// (`Engine::classify`).
    async fn ping(&self) -> Result<(), LedgerError> {
        self.db
            .read(&(), |c, _, ()| {
                Box::pin(async move {
                    sqlx::raw_sql(crate::statements::SERVER_PING)
                        .execute(c)
                        .await
                        .during("pinging the database")
                        .map(drop)
                })
            })
            .await
    }

    async fn close(&self) {
        SqlStore::close(self).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://u:secret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(redact("mysql://root@h/test"), "mysql://root@h/test");
        assert_eq!(redact("mysql://h/test"), "mysql://h/test");
    }
}
