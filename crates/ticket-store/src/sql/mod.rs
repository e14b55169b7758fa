//! [`SqlStore`]: the ledger on a PostgreSQL or MySQL/MariaDB server, shared by several ticketd
//! processes.
//!
//! One implementation serves both engines: the statements are written once ([`ops`]) over
//! sqlx's `Any` driver, and what differs — placeholders, error codes, session settings,
//! version and durability checks, migrations — is a `match` on [`Engine`] ([`engine`],
//! [`migrate`]).
//!
//! How a write runs ([`SqlStore::write`]):
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
//! Reads that must see one state (`order`) run in a REPEATABLE READ read-only transaction;
//! list reads (`audit`, `anomalies`) are single statements. Apps are cached in memory like on
//! SQLite ([`AppCache`]): a change made through this store updates the cache when it commits,
//! and a cached app is read again after a few seconds, so a change made through another
//! process is seen soon too.

mod batch;
mod engine;
mod migrate;
pub(crate) mod ops;
mod outcome;
mod reconcile;
mod transfer;

use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool};
use sqlx::{AssertSqlSafe, Connection};
use ticket_ledger::{
    refusal_anomaly, Anomaly, AnomalyFilter, App, AppAccess, AppKey, AuditEntry, AuditFilter,
    IssueCommand, LedgerError, LedgerStore, NewAnomaly, NewApp, NewOrder, OrderId, OrderRef,
    OrderView, OutcomeKind, ReconcileCommand, ReconcileOutcome, RefundCommand, RefundRequest,
    RefundRequestCommand, RejectedCall, RejectedCallFilter, ResolveAnomaly, ReversalCommand,
    SecretRotation, VerifyCommand, VerifyOutcome,
};

pub use self::engine::Engine;
use self::engine::ErrorClass;
use self::ops::{During, Failure};
use self::outcome::{Connector, Traced};
use crate::apps::AppCache;
use crate::StoreError;

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
    /// make bigger batches.
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
            batch_workers: 4,
        }
    }
}

/// An operation: one attempt inside an open transaction (see [`ops`]).
type Op<C, T> =
    for<'a> fn(&'a mut AnyConnection, Engine, &'a C) -> BoxFuture<'a, Result<T, Failure>>;

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

/// The pool and how to run operations on it: shared by the store and its batcher.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pub(crate) engine: Engine,
    pub(crate) pool: AnyPool,
    pub(crate) max_attempts: u32,
    /// Connections outside the pool, to look up a commit that got no answer ([`outcome`]).
    pub(crate) connector: Connector,
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
        // One plain connection first: a pool that cannot connect only says it timed out,
        // while the operator needs the reason (refused, unknown host, bad password, no such
        // database).
        let setup = engine.session_setup(settings.lock_timeout);
        let connector = Connector::new(url, setup.clone());
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
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .min_connections(settings.min_connections.min(settings.max_connections))
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _meta| {
                let setup = setup.clone();
                Box::pin(async move {
                    for statement in setup {
                        sqlx::raw_sql(AssertSqlSafe(statement))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy(url)
            .map_err(|e| unreachable(Box::new(e)))?;
        let server_version = engine.check_server(&mut conn).await?;
        migrate::migrate(engine, &mut conn).await?;
        let apps = ops::all_apps(&mut conn, engine)
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

impl Db {
    /// Runs `op` in its own transaction, again when the engine asks for a retry; see the
    /// module docs.
    pub(crate) async fn write<C: Sync + Traced<T>, T: Send>(
        &self,
        ctx: &C,
        op: Op<C, T>,
    ) -> Result<T, LedgerError> {
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(ctx, op).await {
                Ok(value) => return Ok(value),
                Err(Failure::Refused(refusal)) => return Err(refusal),
                Err(failure) => failure,
            };
            let class = match &failure {
                Failure::Db { error, .. } => self.engine.classify(error),
                Failure::Conflict(_) | Failure::Refused(_) => ErrorClass::Retry,
                // Running it again could apply it twice.
                Failure::OutcomeUnknown { .. } => ErrorClass::Other,
            };
            if class == ErrorClass::Retry && attempt < self.max_attempts {
                tracing::debug!(attempt, failure = %failure_text(&failure), "retrying a ledger write");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            return Err(self.ledger_error(&failure, &class, attempt));
        }
    }

    pub(crate) async fn attempt<C: Sync + Traced<T>, T: Send>(
        &self,
        ctx: &C,
        op: Op<C, T>,
    ) -> Result<T, Failure> {
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
        match op(&mut tx, self.engine, ctx).await {
            Ok(value) => {
                // The value was computed before COMMIT: if the commit is found to have landed,
                // it is exactly the answer the caller would have had.
                self.commit(tx, || ctx.trace(&value)).await?;
                Ok(value)
            }
            Err(failure) => {
                // A rollback that fails leaves the connection unusable; the pool drops it.
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rolling back a ledger write failed");
                }
                Err(failure)
            }
        }
    }

    /// Runs `op` on a pooled connection, outside any explicit transaction (single statements).
    pub(crate) async fn read<C: Sync + ?Sized, T: Send>(
        &self,
        ctx: &C,
        op: Op<C, T>,
    ) -> Result<T, LedgerError> {
        let result = match self.pool.acquire().await.during("taking a connection") {
            Ok(mut conn) => op(&mut conn, self.engine, ctx).await,
            Err(failure) => Err(failure),
        };
        result.map_err(|failure| self.final_error(failure))
    }

    /// Runs `op` in a read-only transaction that sees one snapshot.
    pub(crate) async fn read_snapshot<C: Sync + ?Sized, T: Send>(
        &self,
        ctx: &C,
        op: Op<C, T>,
    ) -> Result<T, LedgerError> {
        let result = async {
            let mut conn = self.pool.acquire().await.during("taking a connection")?;
            let mut tx = self
                .engine
                .begin_snapshot(&mut conn)
                .await
                .during("starting a read transaction")?;
            let value = op(&mut tx, self.engine, ctx).await?;
            tx.commit().await.during("ending a read transaction")?;
            Ok(value)
        }
        .await;
        result.map_err(|failure| self.final_error(failure))
    }

    pub(crate) fn final_error(&self, failure: Failure) -> LedgerError {
        match failure {
            Failure::Refused(refusal) => refusal,
            Failure::Db { ref error, .. } => {
                let class = self.engine.classify(error);
                self.ledger_error(&failure, &class, 1)
            }
            Failure::Conflict(_) => self.ledger_error(&failure, &ErrorClass::Retry, 1),
            Failure::OutcomeUnknown { .. } => self.ledger_error(&failure, &ErrorClass::Other, 1),
        }
    }

    /// Maps a final failure to the domain, logged here with its whole source chain so callers
    /// answer with the generic system error alone (STYLE §3.5).
    pub(crate) fn ledger_error(
        &self,
        failure: &Failure,
        class: &ErrorClass,
        attempts: u32,
    ) -> LedgerError {
        let text = failure_text(failure);
        let during = match failure {
            Failure::Db { during, .. } => *during,
            // Logged where it was found out (`Db::commit`).
            Failure::OutcomeUnknown { request_ids, .. } => {
                return match request_ids.as_slice() {
                    [request_id] => LedgerError::OutcomeUnknown {
                        request_id: request_id.clone(),
                    },
                    // An app's settings belong to no request (and a batch answers each of its
                    // verifies itself).
                    _ => LedgerError::Internal(text),
                };
            }
            Failure::Conflict(_) | Failure::Refused(_) => "",
        };
        match class {
            // A connection lost while committing a write whose answer does not depend on it
            // (nothing to look up, see `outcome::Traced`): "nothing was written" cannot be
            // promised.
            ErrorClass::Unavailable if during == COMMITTING => {
                tracing::error!(error = %text, "ledger commit outcome unknown");
                LedgerError::Internal(format!("commit outcome unknown: {text}"))
            }
            ErrorClass::Unavailable => {
                tracing::warn!(error = %text, "ledger database unavailable");
                LedgerError::Unavailable(text)
            }
            ErrorClass::Retry => {
                tracing::warn!(attempts, error = %text, "ledger write kept conflicting");
                LedgerError::Unavailable(format!("busy after {attempts} attempts: {text}"))
            }
            _ => {
                tracing::error!(error = %text, "ledger database failure");
                LedgerError::Internal(text)
            }
        }
    }

    /// One verify in a transaction of its own: the path for verifies named by `out_order_id`
    /// alone, and for the verifies of a batch that failed as a whole, each then run alone so
    /// that no request fails for a neighbour.
    pub(crate) async fn verify_alone(
        &self,
        cmd: &VerifyCommand,
    ) -> Result<VerifyOutcome, LedgerError> {
        let result = self
            .write(cmd, |c, e, cmd| Box::pin(ops::verify(c, e, cmd)))
            .await;
        // The anomaly names the order the request resolved to, also when the vendor named it
        // by `out_order_id` alone (looked up only when a refusal raises an anomaly).
        let mut named = cmd.order.order_id();
        if let (Err(refusal), None, OrderRef::Out(_)) = (&result, named, &cmd.order) {
            if refusal_anomaly(refusal, None, Some(&cmd.app_key), &cmd.meta).is_some() {
                named = self
                    .read(cmd, |c, e, cmd| Box::pin(ops::resolve_order_id(c, e, cmd)))
                    .await?;
            }
        }
        self.keeping_anomaly(result, |err| {
            refusal_anomaly(err, named, Some(&cmd.app_key), &cmd.meta)
        })
        .await
    }

    /// Stores the anomaly a refusal raises, in its own transaction (the refused operation's
    /// was rolled back), then returns the refusal.
    pub(crate) async fn keeping_anomaly<T>(
        &self,
        result: Result<T, LedgerError>,
        anomaly_of: impl FnOnce(&LedgerError) -> Option<NewAnomaly>,
    ) -> Result<T, LedgerError> {
        let Err(refusal) = result else {
            return result;
        };
        if refusal.is_retryable()
            || matches!(
                refusal,
                LedgerError::Internal(_) | LedgerError::OutcomeUnknown { .. }
            )
        {
            return Err(refusal);
        }
        if let Some(anomaly) = anomaly_of(&refusal) {
            self.write(&anomaly, |c, e, a| Box::pin(ops::insert_anomaly(c, e, a)))
                .await?;
        }
        Err(refusal)
    }
}

/// The `during` of a commit, to tell an unknown outcome from a clean failure.
const COMMITTING: &str = "committing";

/// The wait before attempt `attempt + 1`: 5 ms doubling, plus up to as much again at random so
/// that the transactions that collided do not collide again.
fn backoff(attempt: u32) -> Duration {
    let base = 5_u64 << attempt.min(6).saturating_sub(1);
    let jitter = rand::random_range(0..=base);
    Duration::from_millis(base + jitter)
}

fn failure_text(failure: &Failure) -> String {
    match failure {
        Failure::Refused(e) => e.to_string(),
        Failure::OutcomeUnknown { request_ids, why } => {
            format!("commit outcome unknown for {request_ids:?}: {why}")
        }
        Failure::Conflict(why) => format!("conflict: {why}"),
        Failure::Db { during, error } => format!("{during}: {}", crate::error::chain(error)),
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
                self.db.read(key, |c, e, k| Box::pin(ops::app(c, e, k)))
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
            .read_snapshot(&id, |c, e, id| Box::pin(ops::order_view(c, e, *id)))
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
                Box::pin(ops::order_events(c, e, *id, *after, *limit))
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
            .read(&filter, |c, e, f| Box::pin(ops::anomalies(c, e, f)))
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
            .read(&filter, |c, e, f| Box::pin(ops::audit(c, e, f)))
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
            .read(&filter, |c, e, f| Box::pin(ops::rejected_calls(c, e, f)))
            .await
    }

    async fn metrics(&self) -> Result<ticket_ledger::StoreMetrics, LedgerError> {
        self.db
            .read(&(), |c, engine, ()| {
                Box::pin(async move {
                    let sql = crate::rows::totals_sql(|column| match engine {
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
                    sqlx::raw_sql("SELECT 1")
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

    #[test]
    fn backoff_doubles_with_jitter_and_stays_small() {
        for attempt in 1..10 {
            let wait = backoff(attempt);
            let base = 5_u64 << attempt.min(6).saturating_sub(1);
            assert!(wait >= Duration::from_millis(base), "{attempt}: {wait:?}");
            assert!(
                wait <= Duration::from_millis(2 * base),
                "{attempt}: {wait:?}"
            );
        }
    }
}
