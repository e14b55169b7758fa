//! Test helpers: temporary stores, fixed instants, and a small builder for verify commands.
//! The harness around a store ([`Harnessed`]) is shared with the behaviour suite's target.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use tempfile::TempDir;
use ticket_ledger::{
    AppKey, AuditEntry, AuditOutcome, ConfirmCode, LedgerStore, NewApp, NewOrder, NewVoucher,
    OrderId, OrderRef, OrderView, OutOrderId, RequestMeta, VerifyCommand, VerifyOrigin,
    VerifyPolicy, VerifyUses, VoucherUse, WriteOffType,
};
use ticket_store::SqliteStore;

pub(crate) use crate::harness::TempStore;

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
                summary: json!({"test": true}).into(),
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
