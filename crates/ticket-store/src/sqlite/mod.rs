//! [`SqliteStore`]: the ledger in one SQLite file, the default backend.
//!
//! How the pieces fit:
//!
//! - [`writer`]: one OS thread owns the only read-write connection; every write is a job it
//!   runs in a group-committed transaction (one savepoint per job, except verifies, which
//!   can run again instead).
//! - [`durable`]: the syncer thread fsyncs the WAL before a batch is answered (one fsync for
//!   every batch committed meanwhile), and the checkpointer thread copies the WAL into the
//!   database file, both off the writer's thread.
//! - [`readers`]: a pool of read-only connections for `app`, `order`, `audit`, the order and
//!   app lists and `ping`, so reads never wait for writes (WAL gives each a consistent
//!   snapshot).
//! - [`ops`]: each write operation (snapshot, plan, rows); [`queries`]: what is read;
//!   [`exec`]: the rows of a plan ([`crate::plan_rows`]) executed; [`rows`]: rusqlite rows
//!   for the shared readers, and error mapping; [`migrate`]: embedded migrations; [`url`]:
//!   `sqlite:` URLs; [`fold`]: the lookups keyed by order, built in bulk.
//! - The app cache ([`crate::apps::AppCache`]): `app()` runs on every gateway request, so
//!   apps are kept in memory.

mod clock;
mod durable;
mod exec;
mod fold;
mod migrate;
mod ops;
mod queries;
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
    Anomaly, AnomalyFilter, App, AppAccess, AppKey, AuditEntry, AuditFilter, BatchStats, EventPage,
    IssueCommand, LedgerError, LedgerStore, NewApp, NewOrder, OrderFilter, OrderId, OrderPage,
    OrderView, OutcomeKind, ReconcileCommand, ReconcileOutcome, RefundCommand, RefundRequest,
    RefundRequestCommand, RejectedCall, RejectedCallFilter, ResolveAnomaly, ReversalCommand,
    SecretRotation, StoreMetrics, VerifyCommand, VerifyOutcome,
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

/// Prepared statements cached per connection: every fixed statement plus the shapes of the
/// audit query (which filters are in use, which order) and of the order list's candidates
/// fit.
pub(crate) const STATEMENT_CACHE: usize = 128;

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
        // What a previous run appended but did not fold (it stopped, or crashed, between two
        // folds): folded now, so the tail readers scan starts short.
        fold::fold_parts(&conn, &fold::Part::ALL, &mut fold::Pending::default()).map_err(|e| {
            StoreError::Database {
                during: "folding the ledger's lookups",
                source: Box::new(e),
            }
        })?;
        // And the uses it did not add to the counters. A failure is logged, not fatal: the
        // uses stay past the mark, where every reader counts them.
        if let Err(e) = fold::count_all_in_slices(&conn) {
            tracing::error!(error = %e, "counting the logged uses failed");
        }
        // The write connection opened the database in WAL mode, so the log exists; it stays
        // open (and the file in place) as long as that connection lives.
        let mut wal = SyncedFile::wal(path).map_err(|e| StoreError::io(path, e))?;
        // The migration committed without an fsync (`synchronous=NORMAL`): make it durable
        // before anything is served on top of it.
        durable::Fsync::sync(&mut wal).map_err(|e| StoreError::io(path, e))?;
        let apps = queries::all_apps(&conn).map_err(|e| StoreError::Database {
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
            .get_or_load(key, || self.read(move |conn| queries::app(conn, &owned)))
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
            queries::order_view(&tx, id)
        })
        .await
    }

    async fn order_events(
        &self,
        id: OrderId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, LedgerError> {
        self.read(move |conn| queries::order_events(conn, id, after_seq, limit))
            .await
    }

    async fn list_orders(&self, filter: OrderFilter) -> Result<OrderPage, LedgerError> {
        self.read(move |conn| {
            // One read transaction: every chunk of the walk sees one snapshot.
            let tx = conn.transaction().during("starting a read transaction")?;
            queries::list_orders(&tx, &filter)
        })
        .await
    }

    /// From the database, not the app cache: the cache may not hold an app another process
    /// registered a moment ago, and a list must not depend on what this process has seen.
    async fn list_apps(&self, after: Option<AppKey>, limit: u32) -> Result<Vec<App>, LedgerError> {
        self.read(move |conn| queries::list_apps(conn, after.as_ref(), limit))
            .await
    }

    async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        self.writer
            .submit_repeatable(move |tx| ops::verify_keeping_anomaly(tx, &cmd))
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
        self.read(move |conn| queries::anomalies(conn, &filter))
            .await
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
        self.read(move |conn| queries::audit(conn, &filter)).await
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
        self.read(move |conn| queries::rejected_calls(conn, &filter))
            .await
    }

    async fn events(&self, after: i64, limit: u32) -> Result<EventPage, LedgerError> {
        self.read(move |conn| queries::events(conn, after, limit))
            .await
    }

    async fn claim_relay(
        &self,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<i64>, LedgerError> {
        let holder = holder.to_owned();
        let now_ms = now.timestamp_millis();
        let until_ms = (now + lease).timestamp_millis();
        self.writer
            .submit(move |tx| ops::claim_relay(tx.conn, &holder, now_ms, until_ms))
            .await
    }

    async fn advance_relay(&self, holder: &str, from: i64, to: i64) -> Result<bool, LedgerError> {
        let holder = holder.to_owned();
        self.writer
            .submit(move |tx| ops::advance_relay(tx.conn, &holder, from, to))
            .await
    }

    async fn close(&self) {
        // The inherent method (it also serves callers holding the concrete type).
        SqliteStore::close(self).await;
    }

    async fn metrics(&self) -> Result<StoreMetrics, LedgerError> {
        let mut totals = self
            .read(|conn| {
                let sql = crate::statements::totals(|column| format!("total({column})"));
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
            folds: w.folds,
            counted_uses: w.counted_uses,
            guarded_reruns: w.guarded_reruns,
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
            conn.query_row(crate::statements::SQLITE_PING, [], |row| {
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

/// Turns on SQLite's query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`) on
/// one of the store's connections: a statement's plan no longer depends on the values bound
/// to it. Without it SQLite reads a bound `LIMIT ?` as a constant while it compiles the
/// statement, and so marks the statement to be compiled again whenever that parameter is
/// bound: each fold step, count slice and paged read was parsed and planned anew at every
/// run, 2,045 times in 20,000 verifies (writer and readers) at about 200,000 instructions
/// each, 5 % of the writer's instructions per verify (docs/PERFORMANCE.md, "Tenth session").
/// The ledger never runs `ANALYZE`, so no plan had anything to gain from the values.
fn plans_independent_of_bindings(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(drop)
}

/// Applies and verifies the write connection's settings. Each is checked after being set
/// because SQLite ignores some silently (WAL on a file system without shared memory, a PRAGMA
/// inside a transaction), and the store's promises depend on all of them.
fn configure_writer(conn: &Connection, busy_timeout: Duration) -> Result<(), StoreError> {
    let db = StoreError::db;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| db("setting busy_timeout", e))?;
    // WAL: readers never block the writer nor it them, and a commit is one sequential append.
    // Switching a new file to WAL needs it alone, and SQLite answers "locked" at once, without
    // its busy handler, while another process opens it too (two `ticketd serve` started
    // together): so wait here, up to the busy timeout.
    let deadline = std::time::Instant::now() + busy_timeout;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => break,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(db("enabling WAL", e)),
        }
    }
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
    // Temporary storage in memory: a job's savepoint (and a statement that writes several
    // rows) keeps the pages it changes in a statement journal, which SQLite moves to a
    // temporary file past 64 KiB — for a 999-voucher report, when it still ran in a savepoint,
    // a fifth of the writer's time went to writing that file (perf), and its bytes reached the
    // disk. The journal lives only until the savepoint is released, and a fold's sort is
    // bounded by the fold, so memory stays bounded.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(|e| db("keeping temporary storage in memory", e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    plans_independent_of_bindings(conn).map_err(|e| db("enabling the QPSG", e))?;

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
mod tests;
