//! The SQLite store's verify path on a real file (WAL, fsynced before every answer):
//! `cargo bench -p ticket-store`.
//!
//! - `verify/one_at_a_time`: each verify waits for the previous one, so each pays its own
//!   commit and fsync: the floor a lone gate sees.
//! - `verify/64_concurrent`: 64 verifies in flight, so the writer's group commit shares one
//!   fsync among those queued together (reported per verify).
//! - `verify/999_vouchers`: one request with 999 `voucher_infos` entries.
//!
//! Every verify is a distinct, legitimate use (a new `used_date` per use), so nothing is
//! answered as a replay.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use ticket_ledger::{
    AppKey, AuditEntry, AuditOutcome, ConfirmCode, LedgerStore, NewApp, NewOrder, NewVoucher,
    OrderId, OrderRef, RequestMeta, VerifyCommand, VerifyOrigin, VerifyPolicy, VerifyUses,
    VoucherUse, WriteOffType,
};
use ticket_store::SqliteStore;

const APP: &str = "bench-app";
/// Orders the single-voucher cases spread over, and the uses each of their codes allows.
const ORDERS: i64 = 200;
const CODES: usize = 10;
const CAPACITY: i64 = 1_000_000;

fn paid_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn code(i: usize) -> ConfirmCode {
    ConfirmCode::parse(&format!("BENCH{i:04}")).unwrap()
}

fn order_id(n: i64) -> OrderId {
    OrderId::new(n).unwrap()
}

struct Fixture {
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
    /// Next use number: each use gets its own `used_date` second.
    next: AtomicI64,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ledger.db")).unwrap();
    let app_key = AppKey::parse(APP).unwrap();
    store
        .create_app(NewApp::new(
            app_key.clone(),
            APP.into(),
            "secret".into(),
            paid_at(),
        ))
        .await
        .unwrap();
    let mut orders: Vec<(i64, usize)> = (1..=ORDERS).map(|id| (id, CODES)).collect();
    orders.push((999_999, 999));
    for (id, codes) in orders {
        let order = NewOrder {
            order_id: order_id(id),
            app_key: app_key.clone(),
            quantity: codes as i64,
            out_order_id: None,
            valid_from: None,
            valid_until: None,
            vouchers: (0..codes)
                .map(|i| NewVoucher {
                    code: code(i),
                    capacity: CAPACITY,
                })
                .collect(),
            created_at: paid_at(),
        };
        let audit = AuditEntry {
            seq: 0,
            request_id: format!("create-{id}"),
            at: paid_at(),
            action: "admin.create_order".into(),
            app_key: Some(APP.into()),
            order_id: Some(id),
            outcome: AuditOutcome::Accepted,
            reason: "created_issued".into(),
            detail: json!({}),
            client_ip: None,
        };
        store.create_order(order, audit).await.unwrap();
    }
    Fixture {
        store: Arc::new(store),
        _dir: dir,
        next: AtomicI64::new(0),
    }
}

impl Fixture {
    /// A verify of `codes` codes of an order, each used once, at a gate time no earlier use
    /// of them had.
    fn command(&self, order: i64, codes: std::ops::Range<usize>) -> VerifyCommand {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let used_at = paid_at() + chrono::Duration::seconds(60 + n);
        VerifyCommand {
            origin: VerifyOrigin::Vendor,
            app_key: AppKey::parse(APP).unwrap(),
            order: OrderRef::Id(order_id(order)),
            mode: WriteOffType::Delta,
            uses: VerifyUses::Vouchers {
                entries: codes
                    .map(|i| VoucherUse {
                        code: code(i),
                        quantity: 1,
                        used_at: Some(used_at),
                    })
                    .collect(),
                legacy_code: None,
            },
            total_num: None,
            return_num: None,
            policy: VerifyPolicy {
                future_tolerance: chrono::Duration::days(36_500),
                allow_before_valid_from: false,
            },
            meta: RequestMeta {
                request_id: format!("bench-{n}"),
                received_at: Utc::now(),
                client_ip: Some("127.0.0.1".into()),
                summary: json!({"order_id": order}).into(),
            },
        }
    }

    fn single(&self, n: i64) -> VerifyCommand {
        let order = 1 + n % ORDERS;
        let voucher = ((n / ORDERS) % CODES as i64) as usize;
        self.command(order, voucher..voucher + 1)
    }
}

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fx = rt.block_on(fixture());
    let mut g = c.benchmark_group("verify");
    g.measurement_time(Duration::from_secs(10));

    g.throughput(Throughput::Elements(1));
    g.bench_function("one_at_a_time", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let n = fx.next.load(Ordering::Relaxed);
                    fx.store.verify(fx.single(n)).await.unwrap();
                }
                start.elapsed()
            })
        })
    });

    g.bench_function("64_concurrent", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let wave = left.min(64);
                    left -= wave;
                    let tasks: Vec<_> = (0..wave)
                        .map(|_| {
                            let n = fx.next.load(Ordering::Relaxed);
                            let cmd = fx.single(n);
                            let store = Arc::clone(&fx.store);
                            tokio::spawn(async move { store.verify(cmd).await })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap().unwrap();
                    }
                }
                start.elapsed()
            })
        })
    });

    g.throughput(Throughput::Elements(999));
    g.sample_size(20);
    g.bench_function("999_vouchers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    fx.store.verify(fx.command(999_999, 0..999)).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    rt.block_on(fx.store.close());
}

criterion_group!(benches, verify);
criterion_main!(benches);
