//! Preparation and verification through the admin API, exactly as an operator would use it:
//! register an app, create issued orders, and read the orders back afterwards.
//!
//! Off the hot path, so it uses `reqwest`.

use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use top_protocol::timestamp::format_beijing;
use top_protocol::SignMethod;

use super::load::Tally;
use super::workload::{code, Form, Workload};

/// Admin requests in flight at once while preparing and verifying.
const ADMIN_CONCURRENCY: usize = 8;
/// Vouchers per prefill order (the most an order may have).
const PREFILL_PER_ORDER: u64 = 999;

/// An admin API client.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    pub(crate) fn new(base_url: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(300))
                .build()
                .context("building the admin HTTP client")?,
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// Waits (up to a minute) until `/readyz` answers 200.
    pub(crate) async fn ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let last = match self.http.get(format!("{}/readyz", self.base)).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("status {}", r.status()),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!("{} is not ready: {last}", self.base);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = r.status();
        let value: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path} answered {status}: {value}");
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = r.status();
        let value: Value = r
            .json()
            .await
            .with_context(|| format!("GET {path}: reading the body"))?;
        if !status.is_success() {
            bail!("GET {path} answered {status}: {value}");
        }
        Ok(value)
    }
}

/// What to prepare for the load.
#[derive(Debug, Clone)]
pub(crate) struct Prepare {
    pub(crate) orders: u64,
    pub(crate) vouchers_per_order: u64,
    pub(crate) capacity: u64,
    pub(crate) batch: u64,
    pub(crate) form: Form,
    pub(crate) sign_method: SignMethod,
    pub(crate) replay_ratio: f64,
    pub(crate) reject_ratio: f64,
}

/// A random 16-digit order-id base (like real platform order ids; the gateway reads at most
/// 18 digits) with room for 2^20 orders above it, so runs against the same ledger do not
/// collide.
fn order_id_base() -> i64 {
    let slot = rand::random::<u64>() % 8_000_000_000;
    1_000_000_000_000_000 + (slot << 20) as i64
}

/// When the prepared orders were paid: a month ago, so that every round's `used_date` (one
/// second apart from it) lies in the past.
fn paid_at() -> chrono::DateTime<Utc> {
    let month_ago = Utc::now() - chrono::Duration::days(30);
    // Whole seconds: `created_at` is sent at second precision.
    month_ago - chrono::Duration::nanoseconds(i64::from(month_ago.timestamp_subsec_nanos()))
}

async fn create_app(admin: &Admin) -> anyhow::Result<(String, String)> {
    let app_key = format!("bench-{}", &crate::random_token()[..12]);
    let secret = crate::random_token();
    admin
        .post(
            "/admin/apps",
            &json!({"app_key": app_key, "app_secret": secret, "name": "ticketd bench"}),
        )
        .await
        .context("registering the bench app")?;
    Ok((app_key, secret))
}

/// Creates `ids` as issued orders of `app_key`, `vouchers` codes of `capacity` uses each.
async fn create_orders(
    admin: &Admin,
    app_key: &str,
    ids: impl Iterator<Item = i64>,
    vouchers: u64,
    capacity: u64,
    created_at: &str,
) -> anyhow::Result<()> {
    let codes: Vec<Value> = (0..vouchers as usize)
        .map(|i| json!({"confirm_code": code(i), "quantity": capacity}))
        .collect();
    futures::stream::iter(ids)
        .map(|id| {
            let body = json!({
                "order_id": id,
                "app_key": app_key,
                "quantity": vouchers,
                "created_at": created_at,
                "vouchers": codes,
            });
            async move {
                admin
                    .post("/admin/orders", &body)
                    .await
                    .with_context(|| format!("creating order {id}"))
                    .map(drop)
            }
        })
        .buffer_unordered(ADMIN_CONCURRENCY)
        .try_collect::<()>()
        .await
}

/// Registers the bench's app and creates its orders; returns the workload over them.
pub(crate) async fn prepare(admin: &Admin, p: &Prepare) -> anyhow::Result<Workload> {
    let (app_key, secret) = create_app(admin).await?;
    let base = order_id_base();
    let order_ids: Vec<i64> = (0..p.orders as i64).map(|i| base + i).collect();
    let paid = paid_at();
    create_orders(
        admin,
        &app_key,
        order_ids.iter().copied(),
        p.vouchers_per_order,
        p.capacity,
        &format_beijing(paid),
    )
    .await?;
    let used_dates = (0..p.capacity as i64)
        .map(|k| format_beijing(paid + chrono::Duration::seconds(60 + k)))
        .collect();
    Ok(Workload {
        app_key,
        secret,
        sign_method: p.sign_method,
        form: p.form,
        batch: p.batch as usize,
        capacity: p.capacity,
        order_ids,
        codes: (0..p.vouchers_per_order as usize).map(code).collect(),
        used_dates,
        groups: (p.vouchers_per_order / p.batch) as usize,
        replay_ratio: p.replay_ratio,
        reject_ratio: p.reject_ratio,
    })
}

/// What `--prefill` created.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefilled {
    pub(crate) vouchers: u64,
}

/// Issues `vouchers` codes (999 per order, one use each) in orders of an app of their own
/// that the load never touches: a large ledger for the load to run beside.
pub(crate) async fn prefill(admin: &Admin, vouchers: u64) -> anyhow::Result<Prefilled> {
    let (app_key, _) = create_app(admin).await?;
    let orders = vouchers.div_ceil(PREFILL_PER_ORDER);
    let base = order_id_base();
    let created = format_beijing(paid_at());
    let full = vouchers / PREFILL_PER_ORDER;
    create_orders(
        admin,
        &app_key,
        (0..full as i64).map(|i| base + i),
        PREFILL_PER_ORDER,
        1,
        &created,
    )
    .await
    .context("prefilling the ledger")?;
    let rest = vouchers % PREFILL_PER_ORDER;
    if rest > 0 {
        create_orders(
            admin,
            &app_key,
            std::iter::once(base + orders as i64 - 1),
            rest,
            1,
            &created,
        )
        .await
        .context("prefilling the ledger")?;
    }
    Ok(Prefilled { vouchers })
}

/// The verification pass: does the ledger hold exactly the uses the target acknowledged?
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verification {
    /// Prepared orders read back.
    pub(crate) orders: u64,
    /// Uses of fresh requests answered `is_success` (warm-up included).
    pub(crate) acknowledged_uses: u64,
    /// Uses the ledger shows on those orders.
    pub(crate) ledger_uses: u64,
    /// Uses whose answer was lost in transit (each may or may not be counted).
    pub(crate) unknown_uses: u64,
    /// Orders whose count is outside `[acknowledged, acknowledged + unknown]`.
    pub(crate) mismatched_orders: u64,
    /// Whether every order matched.
    pub(crate) ok: bool,
    /// How long the pass took.
    pub(crate) seconds: f64,
}

/// Reads every prepared order back and compares its uses with the tally.
pub(crate) async fn verify(
    admin: &Admin,
    w: &Workload,
    tally: &Tally,
) -> anyhow::Result<Verification> {
    let started = std::time::Instant::now();
    let used: Vec<(usize, i64)> = futures::stream::iter(w.order_ids.iter().enumerate())
        .map(|(i, id)| async move {
            let order = admin.get(&format!("/admin/orders/{id}")).await?;
            let used = order["used"]
                .as_i64()
                .with_context(|| format!("order {id} has no `used` count"))?;
            Ok::<_, anyhow::Error>((i, used))
        })
        .buffer_unordered(ADMIN_CONCURRENCY)
        .try_collect()
        .await?;
    let mut v = Verification {
        orders: used.len() as u64,
        acknowledged_uses: 0,
        ledger_uses: 0,
        unknown_uses: 0,
        mismatched_orders: 0,
        ok: true,
        seconds: 0.0,
    };
    for (i, ledger) in used {
        let acked = tally.acknowledged[i].load(std::sync::atomic::Ordering::Relaxed);
        let unknown = tally.unknown[i].load(std::sync::atomic::Ordering::Relaxed);
        let ledger = u64::try_from(ledger).unwrap_or(u64::MAX);
        v.acknowledged_uses += acked;
        v.unknown_uses += unknown;
        v.ledger_uses += ledger;
        if ledger < acked || ledger > acked + unknown {
            v.mismatched_orders += 1;
        }
    }
    v.ok = v.mismatched_orders == 0;
    v.seconds = started.elapsed().as_secs_f64();
    Ok(v)
}
