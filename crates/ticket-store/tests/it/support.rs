//! Test helpers: temporary stores, fixed instants, and a small builder for verify commands.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use tempfile::TempDir;
use ticket_ledger::suite::Tamper;
use ticket_ledger::{
    Anomaly, AnomalyFilter, App, AppAccess, AppKey, AuditEntry, AuditFilter, AuditOutcome,
    ConfirmCode, IssueCommand, LedgerError, LedgerStore, NewApp, NewOrder, NewVoucher, OrderId,
    OrderRef, OrderView, OutOrderId, OutcomeKind, ReconcileCommand, ReconcileOutcome,
    RefundCommand, RefundRequest, RefundRequestCommand, RequestMeta, ResolveAnomaly,
    ReversalCommand, SecretRotation, VerifyCommand, VerifyOrigin, VerifyOutcome, VerifyPolicy,
    VerifyUses, VoucherUse, WriteOffType,
};
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
    async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        self.store.verify(cmd).await
    }
    async fn record(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        self.store.record(entry).await
    }
    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, LedgerError> {
        self.store.audit(filter).await
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
    async fn reconcile(&self, cmd: ReconcileCommand) -> Result<ReconcileOutcome, LedgerError> {
        self.store.reconcile(cmd).await
    }
    async fn anomalies(&self, filter: AnomalyFilter) -> Result<Vec<Anomaly>, LedgerError> {
        self.store.anomalies(filter).await
    }
    async fn resolve_anomaly(&self, cmd: ResolveAnomaly) -> Result<Anomaly, LedgerError> {
        self.store.resolve_anomaly(cmd).await
    }
    async fn close(&self) {
        self.store.close().await;
    }
}

/// A fresh directory and the path of a ledger file inside it (not yet created).
pub(crate) fn temp_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.db");
    (dir, path)
}

/// A store on a fresh temporary file.
pub(crate) fn temp_store() -> Arc<TempStore> {
    let (dir, path) = temp_path();
    let store = SqliteStore::open(&path).expect("open");
    Arc::new(TempStore::new(store, dir))
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid instant")
}

/// When test orders are paid.
pub(crate) fn paid_at() -> DateTime<Utc> {
    utc(2025, 3, 1, 2, 0, 0)
}

/// When test verifies arrive.
pub(crate) fn received_at() -> DateTime<Utc> {
    utc(2025, 3, 15, 6, 0, 0)
}

/// A plausible gate time: `n` seconds after one hour before [`received_at`].
pub(crate) fn gate(n: i64) -> DateTime<Utc> {
    received_at() - Duration::hours(1) + Duration::seconds(n)
}

pub(crate) fn key(s: &str) -> AppKey {
    AppKey::parse(s).expect("app key")
}

pub(crate) fn code(s: &str) -> ConfirmCode {
    ConfirmCode::parse(s).expect("confirm code")
}

pub(crate) fn oid(n: i64) -> OrderId {
    OrderId::new(n).expect("order id")
}

pub(crate) fn new_app(k: &str) -> NewApp {
    NewApp::new(
        key(k),
        format!("app {k}"),
        format!("secret-{k}"),
        utc(2025, 1, 1, 0, 0, 0),
    )
}

pub(crate) fn new_order(id: i64, app: &str, vouchers: &[(&str, i64)]) -> NewOrder {
    NewOrder {
        order_id: oid(id),
        app_key: key(app),
        quantity: vouchers.iter().map(|v| v.1).sum::<i64>().max(1),
        out_order_id: None,
        valid_from: None,
        valid_until: None,
        vouchers: vouchers
            .iter()
            .map(|&(c, capacity)| NewVoucher {
                code: code(c),
                capacity,
            })
            .collect(),
        created_at: paid_at(),
    }
}

/// The audit entry an operator's order creation writes.
pub(crate) fn created_entry(order: &NewOrder) -> AuditEntry {
    entry(
        "admin.create_order",
        Some(order.app_key.as_str()),
        Some(order.order_id.get()),
        AuditOutcome::Accepted,
        "created",
    )
}

pub(crate) fn entry(
    action: &str,
    app: Option<&str>,
    order_id: Option<i64>,
    outcome: AuditOutcome,
    reason: &str,
) -> AuditEntry {
    AuditEntry {
        seq: 0,
        request_id: format!("req-{action}-{reason}"),
        at: paid_at(),
        action: action.to_owned(),
        app_key: app.map(str::to_owned),
        order_id,
        outcome,
        reason: reason.to_owned(),
        detail: json!({"note": reason}),
        client_ip: Some("192.0.2.1".to_owned()),
    }
}

/// Registers `app` and creates an order with `vouchers`; returns the order's view.
pub(crate) async fn given(
    store: &dyn LedgerStore,
    app: &str,
    id: i64,
    vouchers: &[(&str, i64)],
) -> OrderView {
    if store.app(&key(app)).await.expect("app lookup").is_none() {
        store.create_app(new_app(app)).await.expect("create_app");
    }
    let order = new_order(id, app, vouchers);
    let audit = created_entry(&order);
    store
        .create_order(order, audit)
        .await
        .expect("create_order")
}

/// Builds a [`VerifyCommand`]: delta mode, `voucher_infos` entries, default policy, received
/// at [`received_at`].
#[derive(Debug, Clone)]
pub(crate) struct Verify(VerifyCommand);

impl Verify {
    /// A report by `app` naming the order by `order_id`.
    pub(crate) fn of(app: &str, order_id: i64) -> Self {
        Self::naming(app, OrderRef::Id(oid(order_id)))
    }

    /// A report by `app` naming the order by `out_order_id` alone.
    pub(crate) fn by_out(app: &str, out: &str) -> Self {
        Self::naming(
            app,
            OrderRef::Out(OutOrderId::parse(out).expect("out_order_id")),
        )
    }

    fn naming(app: &str, order: OrderRef) -> Self {
        Self(VerifyCommand {
            origin: VerifyOrigin::Vendor,
            app_key: key(app),
            order,
            mode: WriteOffType::Delta,
            uses: VerifyUses::Vouchers {
                entries: Vec::new(),
                legacy_code: None,
            },
            total_num: None,
            return_num: None,
            policy: VerifyPolicy::default(),
            meta: RequestMeta {
                request_id: "req-verify".to_owned(),
                received_at: received_at(),
                client_ip: Some("192.0.2.9".to_owned()),
                summary: json!({"test": true}),
            },
        })
    }

    /// A `voucher_infos` entry (`used_at` None: no `used_date` sent).
    pub(crate) fn entry(mut self, c: &str, quantity: i64, used_at: Option<DateTime<Utc>>) -> Self {
        if let VerifyUses::Vouchers { entries, .. } = &mut self.0.uses {
            entries.push(VoucherUse {
                code: code(c),
                quantity,
                used_at,
            });
        }
        self
    }

    pub(crate) fn request_id(mut self, id: &str) -> Self {
        self.0.meta.request_id = id.to_owned();
        self
    }

    pub(crate) fn build(self) -> VerifyCommand {
        self.0
    }
}

/// `(code, used)` of each voucher of an order, in issuance order.
pub(crate) async fn used(store: &dyn LedgerStore, id: i64) -> Vec<(String, i64)> {
    store
        .order(oid(id))
        .await
        .expect("order")
        .expect("order exists")
        .vouchers
        .iter()
        .map(|v| (v.code.as_str().to_owned(), v.used))
        .collect()
}

/// Statements that turn every order of a ledger into one from before the ledger's bounds
/// (`ticket_ledger::limits`), written behind the store's back: `i64::MAX` tickets all refunded,
/// and codes of capacity `i64::MAX` all used. With two orders, every total `/metrics` sums is
/// beyond `i64` — the state that once made an integer `SUM` fail.
pub(crate) const BEYOND_THE_BOUNDS: [&str; 2] = [
    "UPDATE orders SET quantity = 9223372036854775807, refunded_tickets = 9223372036854775807",
    "UPDATE vouchers SET capacity = 9223372036854775807, used = 9223372036854775807",
];

/// Asserts the totals of two orders with one code each, in the [`BEYOND_THE_BOUNDS`] state:
/// read without error, as the nearest doubles.
pub(crate) fn assert_totals_beyond_i64(m: &ticket_ledger::StoreMetrics) {
    let two = 2.0 * i64::MAX as f64;
    assert!(
        two > i64::MAX as f64 * 1.5,
        "the totals really are beyond i64"
    );
    assert_eq!(
        (m.orders, m.capacity, m.used, m.refunded_tickets),
        (2, two, two, two),
        "{m:?}"
    );
}
