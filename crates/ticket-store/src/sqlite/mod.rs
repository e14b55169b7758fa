//! [`SqliteStore`]: the ledger in one SQLite file, the default backend.
//!
//! How the pieces fit:
//!
//! - [`writer`]: one OS thread owns the only read-write connection; every write is a job it
//!   runs in a group-committed transaction (one savepoint per job).
//! - [`durable`]: the syncer thread fsyncs the WAL before a batch is answered (one fsync for
//!   every batch committed meanwhile), and the checkpointer thread copies the WAL into the
//!   database file, both off the writer's thread.
//! - [`readers`]: a pool of read-only connections for `app`, `order`, `audit` and `ping`, so
//!   reads never wait for writes (WAL gives each a consistent snapshot).
//! - [`ops`]: the SQL of each operation; [`rows`]: row ↔ domain conversion and error mapping;
//!   [`migrate`]: embedded migrations; [`url`]: `sqlite:` URLs.
//! - The app cache ([`crate::apps::AppCache`]): `app()` runs on every gateway request, so
//!   apps are kept in memory.

mod durable;
mod migrate;
mod ops;
mod readers;
mod reconcile;
mod rows;
mod snapshots;
mod transfer;
mod url;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use ticket_ledger::{
    Anomaly, AnomalyFilter, App, AppAccess, AppKey, AuditEntry, AuditFilter, BatchStats,
    IssueCommand, LedgerError, LedgerStore, NewApp, NewOrder, OrderId, OrderView, OutcomeKind,
    ReconcileCommand, ReconcileOutcome, RefundCommand, RefundRequest, RefundRequestCommand,
    RejectedCall, RejectedCallFilter, ResolveAnomaly, ReversalCommand, SecretRotation,
    StoreMetrics, VerifyCommand, VerifyOutcome,
};

use self::durable::SyncedFile;
use self::readers::Readers;
use self::rows::During;
pub use self::writer::WriterStats;
use self::writer::{Durability, Writer};
use crate::apps::AppCache;
use crate::StoreError;

/// How long a connection waits for a lock held by another connection (another process on the
/// same file, a checkpoint) before the operation fails as `Unavailable`, unless
/// [`SqliteOptions::busy_timeout`] says otherwise. Within one store the single writer never
/// contends with itself, so this only matters across processes, such as an operator's CLI
/// writing to the server's file.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`SqliteStore`] uses its file: [`SqliteStore::open_with`], or the query of a
/// `sqlite:` URL (`?busy_timeout=<ms>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a write (or a read during a checkpoint) waits for a lock another connection
    /// holds before it is answered [`LedgerError::Unavailable`] (the gateway's retryable
    /// `isp.service-busy`). Default 5 s. A caller waits up to this long per write, and
    /// `/readyz` as long, so keep it below the callers' and the probe's timeouts.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: BUSY_TIMEOUT,
        }
    }
}

/// Prepared statements cached per connection: every fixed statement plus the 16 shapes of the
/// audit query fit.
pub(crate) const STATEMENT_CACHE: usize = 64;

/// The durability-relevant settings of the write connection, as SQLite reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// `PRAGMA journal_mode`: `wal`.
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 1 (`NORMAL`). The commit itself does not fsync; the store's syncer
    /// fsyncs the WAL before any write is acknowledged (see the store's docs), which is what
    /// `FULL` would do inside `COMMIT`, without holding up the next batch.
    pub synchronous: i64,
    /// `PRAGMA wal_autocheckpoint`: 0. Checkpoints run on a thread of their own instead of
    /// inside some commits.
    pub wal_autocheckpoint: i64,
    /// `PRAGMA foreign_keys`: on.
    pub foreign_keys: bool,
    /// `PRAGMA busy_timeout` in milliseconds.
    pub busy_timeout_ms: i64,
}

/// The ledger stored in one SQLite file (WAL mode; every acknowledged write fsynced).
///
/// Open it with [`SqliteStore::open`] or [`SqliteStore::open_url`], share it as
/// `Arc<dyn LedgerStore>`, and call [`SqliteStore::close`] on shutdown so that writes already
/// queued are committed before the process exits.
///
/// Every write method returns `Ok` only after its transaction has committed and been fsynced.
/// Reads see the last committed state. Methods that read use `spawn_blocking`, so they must be
/// called from within a Tokio runtime.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: Arc<Readers>,
    /// Every app registered ([`AppCache`]).
    apps: AppCache,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("writer", &self.writer.stats())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    ///
    /// A missing parent directory is created with mode 0700 and a missing file with mode 0600
    /// (on Unix), because the file holds app secrets and bearer codes; SQLite gives its `-wal`
    /// and `-shm` files the database file's mode. An existing file keeps its mode.
    ///
    /// Fails if the file cannot be created or opened, if WAL mode or full synchronisation
    /// cannot be enabled, or if the schema is newer than this binary or an applied migration
    /// was edited (see `migrations/sqlite/`). Blocking: call it before serving.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, &SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with explicit [`SqliteOptions`].
    pub fn open_with(path: &Path, options: &SqliteOptions) -> Result<Self, StoreError> {
        prepare_file(path)?;
        // Not SQLITE_OPEN_CREATE: `prepare_file` created the file with the right mode, and a
        // file that vanished since must not silently reappear with the default mode. Not
        // SQLITE_OPEN_URI: the path is a path.
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::db("opening the database", e))?;
        configure_writer(&conn, options.busy_timeout)?;
        migrate::migrate(&mut conn)?;
        // The write connection opened the database in WAL mode, so the log exists; it stays
        // open (and the file in place) as long as that connection lives.
        let mut wal = SyncedFile::wal(path).map_err(|e| StoreError::io(path, e))?;
        // The migration committed without an fsync (`synchronous=NORMAL`): make it durable
        // before anything is served on top of it.
        durable::Fsync::sync(&mut wal).map_err(|e| StoreError::io(path, e))?;
        let apps = ops::all_apps(&conn).map_err(|e| StoreError::Database {
            during: "loading apps",
            source: Box::new(e),
        })?;
        let readers = Readers::new(path, options.busy_timeout)
            .map_err(|e| StoreError::db("opening a read connection", e))?;
        let checkpointer = durable::Checkpointer {
            conn: open_checkpointer(path, options.busy_timeout)?,
            database: Box::new(SyncedFile::database(path).map_err(|e| StoreError::io(path, e))?),
        };
        let writer = Writer::spawn(conn, Durability::of_file(Box::new(wal), checkpointer))
            .map_err(StoreError::Thread)?;
        tracing::info!(path = %path.display(), "ledger opened");
        Ok(Self {
            path: path.to_owned(),
            writer,
            readers: Arc::new(readers),
            apps: AppCache::new(apps),
        })
    }

    /// Opens the ledger named by a `sqlite:` URL; see [`SqliteStore::open`].
    ///
    /// | URL | File |
    /// |---|---|
    /// | `sqlite:///var/lib/ticketd/ledger.db` | `/var/lib/ticketd/ledger.db` |
    /// | `sqlite://data/ledger.db` | `data/ledger.db`, relative to the working directory |
    /// | `sqlite:data/ledger.db` | `data/ledger.db` |
    ///
    /// The path is used literally (no percent-decoding). The one query parameter understood
    /// is `busy_timeout=<milliseconds>` ([`SqliteOptions`]); any other, and in-memory
    /// databases, are refused with [`StoreError::InvalidUrl`].
    pub fn open_url(url: &str) -> Result<Self, StoreError> {
        let (path, options) = url::parse_url(url)?;
        Self::open_with(&path, &options)
    }

    /// The schema version the file is at (every embedded migration is applied on open).
    pub fn schema_version(&self) -> i64 {
        migrate::latest_version()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Shuts the store down gracefully: refuses new reads and writes (they answer
    /// [`LedgerError::Unavailable`]), lets every write already queued commit and answer, and
    /// returns once the writer has closed its connection. The server calls it on SIGTERM after
    /// it stopped taking requests. Idempotent.
    ///
    /// Dropping the store without calling this is safe too: the writer still finishes the
    /// queued writes before it exits, but nobody waits for it.
    pub async fn close(&self) {
        self.readers.close();
        self.writer.close().await;
        tracing::info!(path = %self.path.display(), "ledger closed");
    }

    /// Counters of the writer's group commit (for metrics: `jobs / commits` is the mean batch).
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// The write connection's durability settings, read from that connection (for a readiness
    /// report, and for tests that check the promises are really in effect).
    pub async fn write_settings(&self) -> Result<ConnectionSettings, LedgerError> {
        self.writer
            .submit(|tx| settings(tx.conn).during("reading the write connection's settings"))
            .await
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "a ledger read task failed");
                LedgerError::Internal(format!("a read task failed: {e}"))
            })?
    }
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn create_app(&self, app: NewApp) -> Result<App, LedgerError> {
        let app = self
            .writer
            .submit(move |tx| ops::create_app(tx.conn, &app))
            .await?;
        // After the commit: the cache only ever holds committed apps.
        self.apps.insert(&app);
        Ok(app)
    }

    async fn app(&self, key: &AppKey) -> Result<Option<App>, LedgerError> {
        let owned = key.clone();
        self.apps
            .get_or_load(key, || self.read(move |conn| ops::app(conn, &owned)))
            .await
    }

    async fn set_app_access(&self, key: &AppKey, access: AppAccess) -> Result<App, LedgerError> {
        let owned = key.clone();
        let app = self
            .writer
            .submit(move |tx| ops::set_app_access(tx.conn, &owned, &access))
            .await?;
        self.apps.insert(&app);
        Ok(app)
    }

    async fn rotate_app_secret(
        &self,
        key: &AppKey,
        rotation: SecretRotation,
    ) -> Result<App, LedgerError> {
        let owned = key.clone();
        let app = self
            .writer
            .submit(move |tx| ops::rotate_app_secret(tx.conn, &owned, &rotation))
            .await?;
        self.apps.insert(&app);
        Ok(app)
    }

    async fn create_order(
        &self,
        order: NewOrder,
        audit: AuditEntry,
    ) -> Result<OrderView, LedgerError> {
        // Refuse an inconsistent order before it takes a place in the write queue.
        order.validate()?;
        self.writer
            .submit(move |tx| {
                tx.snapshots.forget(order.order_id);
                ops::create_order(tx.conn, &order, &audit)
            })
            .await
    }

    async fn order(&self, id: OrderId) -> Result<Option<OrderView>, LedgerError> {
        self.read(move |conn| {
            // One read transaction, so the order, its vouchers and its history are one snapshot.
            let tx = conn.transaction().during("starting a read transaction")?;
            ops::order_view(&tx, id)
        })
        .await
    }

    async fn order_events(
        &self,
        id: OrderId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, LedgerError> {
        self.read(move |conn| ops::order_events(conn, id, after_seq, limit))
            .await
    }

    async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        self.writer
            .submit(move |tx| ops::verify_keeping_anomaly(tx, &cmd))
            .await?
    }

    async fn issue(&self, cmd: IssueCommand) -> Result<OutcomeKind, LedgerError> {
        self.writer
            .submit(move |tx| {
                tx.snapshots.forget(cmd.order_id);
                ops::issue_keeping_anomaly(tx, &cmd)
            })
            .await?
    }

    async fn request_refund(
        &self,
        cmd: RefundRequestCommand,
    ) -> Result<RefundRequest, LedgerError> {
        self.writer
            .submit(move |tx| {
                tx.snapshots.forget(cmd.order_id);
                ops::request_refund(tx.conn, &cmd)
            })
            .await
    }

    async fn refund(
        &self,
        cmd: RefundCommand,
    ) -> Result<(RefundRequest, OutcomeKind), LedgerError> {
        self.writer
            .submit(move |tx| {
                tx.snapshots.forget(cmd.order_id);
                ops::refund_keeping_anomaly(tx, &cmd)
            })
            .await?
    }

    async fn reverse(&self, cmd: ReversalCommand) -> Result<i64, LedgerError> {
        self.writer
            .submit(move |tx| {
                tx.snapshots.forget(cmd.order_id);
                ops::reverse_keeping_anomaly(tx, &cmd)
            })
            .await?
    }

    async fn reconcile(&self, cmd: ReconcileCommand) -> Result<ReconcileOutcome, LedgerError> {
        self.writer
            .submit(move |tx| reconcile::reconcile_keeping_anomaly(tx, &cmd))
            .await?
    }

    async fn anomalies(&self, filter: AnomalyFilter) -> Result<Vec<Anomaly>, LedgerError> {
        self.read(move |conn| ops::anomalies(conn, &filter)).await
    }

    async fn resolve_anomaly(&self, cmd: ResolveAnomaly) -> Result<Anomaly, LedgerError> {
        self.writer
            .submit(move |tx| ops::resolve_keeping_anomaly(tx, &cmd))
            .await?
    }

    async fn record(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        self.writer
            .submit(move |tx| ops::record(tx.conn, &entry))
            .await
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, LedgerError> {
        self.read(move |conn| ops::audit(conn, &filter)).await
    }

    async fn record_rejected_call(&self, call: RejectedCall, keep: u64) -> Result<(), LedgerError> {
        self.writer
            .submit(move |tx| ops::record_rejected_call(tx.conn, &call, keep))
            .await
    }

    async fn rejected_calls(
        &self,
        filter: RejectedCallFilter,
    ) -> Result<Vec<RejectedCall>, LedgerError> {
        self.read(move |conn| ops::rejected_calls(conn, &filter))
            .await
    }

    async fn close(&self) {
        // The inherent method (it also serves callers holding the concrete type).
        SqliteStore::close(self).await;
    }

    async fn metrics(&self) -> Result<StoreMetrics, LedgerError> {
        let mut totals = self
            .read(|conn| {
                let sql = crate::rows::totals_sql(|column| format!("total({column})"));
                conn.query_row(&sql, [], |row| crate::rows::totals(row))
                    .during("reading the ledger totals")
            })
            .await?;
        let w = self.writer_stats();
        totals.batches = Some(BatchStats {
            commits: w.commits,
            failed_batches: w.failed_batches,
            jobs: w.jobs,
            largest_batch: w.largest_batch,
            syncs: w.syncs,
            queued: self.writer.queued() as u64,
        });
        Ok(totals)
    }

    /// Readiness: the writer runs, a read answers, and a write commits.
    ///
    /// A read alone would stay green through the faults that matter most: in WAL mode a reader
    /// needs neither the write lock (held by another process, e.g. a stuck `sqlite3` shell) nor
    /// free disk space. So every ping also sends a probe job through the writer's queue
    /// (`probe_write`); its batch must take the write lock, append to the WAL and fsync, like
    /// any verify. Readiness therefore follows the write path: unready from the first probe
    /// that fails (after at most the busy timeout), ready again from the first that commits,
    /// without a restart. The cost is one small commit per probe; under load the probe rides
    /// in a batch that commits anyway.
    async fn ping(&self) -> Result<(), LedgerError> {
        if !self.writer.is_running() {
            return Err(LedgerError::Unavailable(
                "the ledger writer is not running".into(),
            ));
        }
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
                row.get::<_, i64>(0)
            })
            .during("pinging the database")
            .map(drop)
        })
        .await?;
        self.writer.submit(|tx| probe_write(tx.conn)).await
    }
}

/// The write [`SqliteStore::ping`] commits: `PRAGMA user_version` set to the value it already
/// has. It changes nothing a reader can see, needs no table of its own, and still dirties the
/// database header page, so the commit really writes and fsyncs a WAL frame (SQLite skips
/// writing pages whose content did not change only for row overwrites, not for header fields).
fn probe_write(conn: &Connection) -> Result<(), LedgerError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .during("reading user_version for the write probe")?;
    conn.pragma_update(None, "user_version", version)
        .during("the write probe")
}

/// Creates the parent directory (0700) and the file (0600) if they are missing.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| StoreError::io(dir, e))?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| StoreError::io(path, e))?;
    Ok(())
}

/// Pages of cache for the write connection (8 MiB): the order-keyed index pages every verify
/// touches stay in memory instead of being read again with `pread`. Bounded, so memory is flat
/// once it is full.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// Largest size the WAL file is truncated back to when the log restarts (144 MiB, a little
/// above the log's usual longest: `durable::RESTART_PAGES`), so a burst that outran the
/// checkpoints does not leave a huge file behind.
const WAL_SIZE_LIMIT: i64 = 144 * 1024 * 1024;

/// Applies and verifies the write connection's settings. Each is checked after being set
/// because SQLite ignores some silently (WAL on a file system without shared memory, a PRAGMA
/// inside a transaction), and the store's promises depend on all of them.
fn configure_writer(conn: &Connection, busy_timeout: Duration) -> Result<(), StoreError> {
    let db = StoreError::db;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| db("setting busy_timeout", e))?;
    // WAL: readers never block the writer nor it them, and a commit is one sequential append.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| db("enabling WAL", e))?;
    // NORMAL: COMMIT appends to the WAL without an fsync. Durability is not weakened: the
    // syncer fsyncs the WAL before any job is answered (`durable`), which is the fsync FULL
    // would run inside COMMIT, taken off the one thread that can write.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| db("setting synchronous", e))?;
    // Checkpoints run on the checkpointer's connection, not inside a commit (`durable`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| db("disabling automatic checkpoints", e))?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .map_err(|e| db("setting journal_size_limit", e))?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(|e| db("setting cache_size", e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| db("enabling foreign keys", e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);

    let actual = settings(conn).map_err(|e| db("reading settings", e))?;
    let setting = |setting, found: String, expected| StoreError::Setting {
        setting,
        found,
        expected,
    };
    if !actual.journal_mode.eq_ignore_ascii_case("wal") {
        return Err(setting("journal_mode", actual.journal_mode, "wal"));
    }
    if actual.synchronous != 1 {
        return Err(setting("synchronous", actual.synchronous.to_string(), "1"));
    }
    if actual.wal_autocheckpoint != 0 {
        return Err(setting(
            "wal_autocheckpoint",
            actual.wal_autocheckpoint.to_string(),
            "0",
        ));
    }
    if !actual.foreign_keys {
        return Err(setting("foreign_keys", "0".into(), "1"));
    }
    Ok(())
}

/// The checkpointer's own connection. It writes (WAL pages into the database file), so it is
/// read-write; `synchronous=NORMAL` makes each checkpoint fsync the WAL before copying from it
/// and the database file after, and no automatic checkpoints of its own.
fn open_checkpointer(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let db = StoreError::db;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db("opening the checkpoint connection", e))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| db("setting busy_timeout", e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| db("setting synchronous on the checkpoint connection", e))?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| db("disabling automatic checkpoints", e))?;
    Ok(conn)
}

fn settings(conn: &Connection) -> rusqlite::Result<ConnectionSettings> {
    let pragma = |name: &str| conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0));
    Ok(ConnectionSettings {
        journal_mode: conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?,
        synchronous: pragma("synchronous")?,
        wal_autocheckpoint: pragma("wal_autocheckpoint")?,
        foreign_keys: pragma("foreign_keys")? == 1,
        busy_timeout_ms: pragma("busy_timeout")?,
    })
}

#[cfg(test)]
mod tests {
    //! Batches made deterministic: a gate job holds the writer while the test queues the jobs
    //! it wants in the next batch, so these tests do not depend on timing.

    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use ticket_ledger::{
        AuditOutcome, ConfirmCode, NewVoucher, OrderRef, OutcomeKind, RequestMeta, VerifyPolicy,
        VerifyUses, VoucherUse, WriteOffType,
    };

    use super::*;

    fn at(s: u32) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 15, 5, 0, s)
            .single()
            .expect("instant")
    }

    fn code(c: &str) -> ConfirmCode {
        ConfirmCode::parse(c).expect("code")
    }

    async fn store_with_orders(dir: &Path, orders: &[(i64, &str, i64)]) -> Arc<SqliteStore> {
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
        for &(id, c, capacity) in orders {
            let order = NewOrder {
                order_id: OrderId::new(id).expect("id"),
                app_key: app_key.clone(),
                quantity: capacity,
                out_order_id: None,
                valid_from: None,
                valid_until: None,
                vouchers: vec![NewVoucher {
                    code: code(c),
                    capacity,
                }],
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
                summary: json!({}),
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
        while !store.writer.queued_at_least(tasks.len()) {
            tokio::task::yield_now().await;
        }
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
        while !store.writer.queued_at_least(2) {
            tokio::task::yield_now().await;
        }
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

        let view = store
            .order(OrderId::new(1).expect("id"))
            .await
            .expect("read")
            .expect("order");
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
        let view = store
            .order(OrderId::new(1).expect("id"))
            .await
            .expect("read")
            .expect("order");
        assert_eq!(used(&view), 3);
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

        // An operator's shell gives both uses back, behind the store's back.
        let shell = Connection::open(dir.path().join("ledger.db")).expect("shell");
        shell
            .execute("UPDATE vouchers SET used = 0 WHERE order_id = 1", [])
            .expect("external write");
        drop(shell);

        let after = store
            .verify(verify(1, "CODE-A", 1, 3))
            .await
            .expect("the next verify sees the external change");
        assert_eq!(after.kind, OutcomeKind::Applied);
        let view = store
            .order(OrderId::new(1).expect("id"))
            .await
            .expect("read")
            .expect("order");
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
        // The database moves on without the writer's memory: 5 uses, and a trigger that
        // silently skips every count.
        behind_the_snapshots(&store, "UPDATE vouchers SET used = 5 WHERE order_id = 1").await;
        behind_the_snapshots(
            &store,
            "CREATE TRIGGER skip_counts BEFORE UPDATE OF used ON vouchers \
             BEGIN SELECT RAISE(IGNORE); END",
        )
        .await;

        let refused = store.verify(verify(1, "CODE-A", 1, 2)).await;
        assert_eq!(
            refused,
            Err(LedgerError::WriteChangedNoRow {
                write: "vouchers.used"
            }),
            "the count changed no row: refused, not applied nor answered as over capacity"
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
        let view = store
            .order(OrderId::new(1).expect("id"))
            .await
            .expect("read")
            .expect("order");
        assert_eq!(used(&view), 5, "nothing of the refused verify was kept");
        assert_eq!(
            view.events.len(),
            3,
            "creation, first verify, its transition"
        );

        behind_the_snapshots(&store, "DROP TRIGGER skip_counts").await;
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
        let view = store
            .order(OrderId::new(1).expect("id"))
            .await
            .expect("read")
            .expect("order");
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
}
