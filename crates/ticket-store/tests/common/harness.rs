//! The harness around a store under test, shared by the behaviour suite's target (`suite.rs`)
//! and the `it` target: the store, how to tamper with its database behind its back (the
//! suite's [`Tamper`]), and for SQLite the temporary directory holding its file.

use std::path::PathBuf;

use async_trait::async_trait;
use tempfile::TempDir;
use ticket_ledger::{
    Anomaly, AnomalyFilter, App, AppAccess, AppKey, AuditEntry, AuditFilter, IssueCommand,
    LedgerError, LedgerStore, NewApp, NewOrder, OrderFilter, OrderId, OrderPage, OrderView,
    OutcomeKind, ReconcileCommand, ReconcileOutcome, RefundCommand, RefundRequest,
    RefundRequestCommand, ResolveAnomaly, ReversalCommand, SecretRotation, VerifyCommand,
    VerifyOutcome,
};
use ticket_ledger_suite::Tamper;
use ticket_store::{Engine, SqlStore, SqliteStore};

/// A store under test with what its harness keeps beside it: how to tamper with its database
/// (the behaviour suite's [`Tamper`]) and, for SQLite, the temporary directory holding its
/// file, dropped after the store and then removed.
#[derive(Debug)]
pub(crate) struct Harnessed<S> {
    pub(crate) store: S,
    database: Database,
    _dir: Option<TempDir>,
}

/// A SQLite store on a temporary file.
pub(crate) type TempStore = Harnessed<SqliteStore>;

/// Where a harnessed store's database is, for tampering with it behind the store's back.
#[derive(Debug)]
enum Database {
    Sqlite(PathBuf),
    /// PostgreSQL or MySQL/MariaDB: a URL that connects to it.
    Sql(String),
}

impl TempStore {
    pub(crate) fn new(store: SqliteStore, dir: TempDir) -> Self {
        Self {
            database: Database::Sqlite(store.path().to_owned()),
            store,
            _dir: Some(dir),
        }
    }
}

impl Harnessed<SqlStore> {
    /// A store on the database `url` names.
    #[allow(
        dead_code,
        reason = "only the suite target opens SQL stores; `it` shares this file"
    )]
    pub(crate) fn sql(store: SqlStore, url: &str) -> Self {
        Self {
            store,
            database: Database::Sql(url.to_owned()),
            _dir: None,
        }
    }
}

/// Statements, one per call, that make a settled refund of order `id` drop its quantity to `q`
/// in the same transaction (an `AFTER UPDATE` trigger on `refund_requests`). Each trigger is
/// named after its order, so cases sharing a database do not meet each other's.
fn lower_quantity_trigger(engine: Option<Engine>, id: i64, q: i64) -> Vec<String> {
    let name = format!("tamper_quantity_{id}");
    match engine {
        None => vec![format!(
            "CREATE TRIGGER {name} AFTER UPDATE OF state ON refund_requests \
             WHEN NEW.order_id = {id} \
             BEGIN UPDATE orders SET quantity = {q} WHERE order_id = {id}; END"
        )],
        Some(Engine::Postgres) => vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN UPDATE orders SET quantity = {q} WHERE order_id = {id}; RETURN NEW; END \
                 $$"
            ),
            format!(
                "CREATE TRIGGER {name} AFTER UPDATE ON refund_requests FOR EACH ROW \
                 WHEN (NEW.order_id = {id}) EXECUTE FUNCTION {name}()"
            ),
        ],
        // One statement as the body: no client-side DELIMITER needed. A row whose quantity
        // changes is counted as changed on MySQL too (rows matched), so the guarded count that
        // follows really matches no row.
        Some(Engine::MySql) => vec![format!(
            "CREATE TRIGGER {name} AFTER UPDATE ON refund_requests FOR EACH ROW \
             UPDATE orders SET quantity = {q} WHERE order_id = NEW.order_id \
             AND NEW.order_id = {id}"
        )],
    }
}

#[async_trait]
impl<S: Send + Sync> Tamper for Harnessed<S> {
    async fn lower_quantity_when_a_refund_settles(&self, order_id: i64, quantity: i64) {
        match &self.database {
            Database::Sqlite(path) => {
                // Another connection: the store's writer sees a new `data_version` and forgets
                // the orders it remembered, as it does for any write behind its back.
                let conn = rusqlite::Connection::open(path).expect("a second connection");
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .expect("busy_timeout");
                for sql in lower_quantity_trigger(None, order_id, quantity) {
                    conn.execute_batch(&sql).expect("the tampering trigger");
                }
            }
            Database::Sql(url) => {
                use sqlx::Connection as _;
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
                for sql in lower_quantity_trigger(Engine::from_url(url), order_id, quantity) {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await
                        .expect("the tampering trigger");
                }
                let _ = conn.close().await;
            }
        }
    }
}

#[async_trait]
impl<S: LedgerStore> LedgerStore for Harnessed<S> {
    async fn create_app(&self, app: NewApp) -> Result<App, LedgerError> {
        self.store.create_app(app).await
    }
    async fn app(&self, key: &AppKey) -> Result<Option<App>, LedgerError> {
        self.store.app(key).await
    }
    async fn set_app_access(&self, key: &AppKey, access: AppAccess) -> Result<App, LedgerError> {
        self.store.set_app_access(key, access).await
    }
    async fn rotate_app_secret(
        &self,
        key: &AppKey,
        rotation: SecretRotation,
    ) -> Result<App, LedgerError> {
        self.store.rotate_app_secret(key, rotation).await
    }
    async fn create_order(&self, o: NewOrder, a: AuditEntry) -> Result<OrderView, LedgerError> {
        self.store.create_order(o, a).await
    }
    async fn order(&self, id: OrderId) -> Result<Option<OrderView>, LedgerError> {
        self.store.order(id).await
    }
    async fn order_events(
        &self,
        id: OrderId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, LedgerError> {
        self.store.order_events(id, after_seq, limit).await
    }
    async fn list_orders(&self, filter: OrderFilter) -> Result<OrderPage, LedgerError> {
        self.store.list_orders(filter).await
    }
    async fn list_apps(&self, after: Option<AppKey>, limit: u32) -> Result<Vec<App>, LedgerError> {
        self.store.list_apps(after, limit).await
    }
    async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        self.store.verify(cmd).await
    }
    async fn record(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        self.store.record(entry).await
    }
    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, LedgerError> {
        self.store.audit(filter).await
    }
    async fn events(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<ticket_ledger::EventPage, LedgerError> {
        self.store.events(after, limit).await
    }
    async fn claim_relay(
        &self,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<i64>, LedgerError> {
        self.store.claim_relay(holder, now, lease).await
    }
    async fn advance_relay(&self, holder: &str, from: i64, to: i64) -> Result<bool, LedgerError> {
        self.store.advance_relay(holder, from, to).await
    }
    async fn record_rejected_call(
        &self,
        call: ticket_ledger::RejectedCall,
        keep: u64,
    ) -> Result<(), LedgerError> {
        self.store.record_rejected_call(call, keep).await
    }
    async fn rejected_calls(
        &self,
        filter: ticket_ledger::RejectedCallFilter,
    ) -> Result<Vec<ticket_ledger::RejectedCall>, LedgerError> {
        self.store.rejected_calls(filter).await
    }
    async fn ping(&self) -> Result<(), LedgerError> {
        self.store.ping().await
    }
    async fn metrics(&self) -> Result<ticket_ledger::StoreMetrics, LedgerError> {
        self.store.metrics().await
    }
    async fn issue(&self, cmd: IssueCommand) -> Result<OutcomeKind, LedgerError> {
        self.store.issue(cmd).await
    }
    async fn request_refund(
        &self,
        cmd: RefundRequestCommand,
    ) -> Result<RefundRequest, LedgerError> {
        self.store.request_refund(cmd).await
    }
    async fn refund(
        &self,
        cmd: RefundCommand,
    ) -> Result<(RefundRequest, OutcomeKind), LedgerError> {
        self.store.refund(cmd).await
    }
    async fn reverse(&self, cmd: ReversalCommand) -> Result<i64, LedgerError> {
        self.store.reverse(cmd).await
    }
    async fn anomalies(&self, filter: AnomalyFilter) -> Result<Vec<Anomaly>, LedgerError> {
        self.store.anomalies(filter).await
    }
    async fn resolve_anomaly(&self, cmd: ResolveAnomaly) -> Result<Anomaly, LedgerError> {
        self.store.resolve_anomaly(cmd).await
    }
    async fn reconcile(&self, cmd: ReconcileCommand) -> Result<ReconcileOutcome, LedgerError> {
        self.store.reconcile(cmd).await
    }
    async fn close(&self) {
        self.store.close().await;
    }
}
