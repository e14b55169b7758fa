//! Preparation and verification through the admin API, exactly as an operator would use it:
//! register an app, create issued orders, and read the orders back afterwards.
//!
//! Off the hot path, so it uses `reqwest`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
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

/// Mismatched vouchers the report names (the rest are only counted).
pub(crate) const MISMATCH_EXAMPLES: usize = 5;

/// The verification pass: does the ledger hold exactly the uses the target acknowledged, on
/// every order and on every voucher?
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verification {
    /// Prepared orders read back.
    pub(crate) orders: u64,
    /// Their vouchers read back.
    pub(crate) vouchers: u64,
    /// Uses of fresh requests answered `is_success` (warm-up included).
    pub(crate) acknowledged_uses: u64,
    /// Uses the ledger shows on those orders.
    pub(crate) ledger_uses: u64,
    /// Uses whose answer was lost in transit (each may or may not be counted).
    pub(crate) unknown_uses: u64,
    /// Orders whose count is outside `[acknowledged, acknowledged + unknown]`.
    pub(crate) mismatched_orders: u64,
    /// Vouchers whose count is outside `[acknowledged, acknowledged + unknown]` (a prepared
    /// code missing from its order's answer counts too).
    pub(crate) mismatched_vouchers: u64,
    /// The first [`MISMATCH_EXAMPLES`] of them, in prepared order.
    pub(crate) mismatches: Vec<VoucherMismatch>,
    /// Whether every order and every voucher matched.
    pub(crate) ok: bool,
    /// How long the pass took.
    pub(crate) seconds: f64,
}

/// One voucher whose ledger count disagrees with what the target acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct VoucherMismatch {
    pub(crate) order_id: i64,
    /// Masked as ticketd masks codes (`****0003`). The bench's codes differ only in their
    /// last four characters, so the mask still names the voucher.
    pub(crate) confirm_code: String,
    /// Uses acknowledged to fresh requests.
    pub(crate) acknowledged: u64,
    /// Uses whose answer was lost: the ledger may show up to this many more.
    pub(crate) unknown: u64,
    /// Uses the ledger shows; `None` when the order's answer did not list the code.
    pub(crate) ledger: Option<u64>,
}

/// `****` and the code's last characters: at most four, never more than half of it (as
/// ticketd's `mask_code`, which this crate must not depend on).
fn mask(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let shown = (chars.len() / 2).min(4);
    let tail: String = chars[chars.len() - shown..].iter().collect();
    format!("****{tail}")
}

/// What `GET /admin/orders/{id}` says that the check reads (the server's `OrderAnswer`).
#[derive(Debug, Deserialize)]
struct OrderCounts {
    /// Uses over all its codes.
    used: i64,
    vouchers: Vec<VoucherCount>,
}

/// One code of [`OrderCounts`] (the server's `VoucherAnswer`).
#[derive(Debug, Deserialize)]
struct VoucherCount {
    confirm_code: String,
    used: i64,
}

/// One order's check: its totals and its mismatched vouchers (at most
/// [`MISMATCH_EXAMPLES`] kept, all counted).
#[derive(Debug)]
struct OrderCheck {
    index: usize,
    vouchers: u64,
    acknowledged: u64,
    unknown: u64,
    ledger: u64,
    mismatched_vouchers: u64,
    examples: Vec<VoucherMismatch>,
}

/// Whether a ledger count agrees with the acknowledged uses, allowing every use whose answer
/// was lost to have been applied or not.
fn agrees(ledger: u64, acknowledged: u64, unknown: u64) -> bool {
    (acknowledged..=acknowledged + unknown).contains(&ledger)
}

/// Compares one order's answer with the tally: each prepared code's count with its slot's,
/// and the order's total with the sum.
fn check_order(
    w: &Workload,
    tally: &Tally,
    code_index: &HashMap<&str, usize>,
    index: usize,
    order: &OrderCounts,
) -> OrderCheck {
    let load = |counters: &[std::sync::atomic::AtomicU32], slot: usize| {
        u64::from(counters[slot].load(std::sync::atomic::Ordering::Relaxed))
    };
    let order_id = w.order_ids[index];
    // What each prepared code must show; codes past the last whole batch are never used.
    let expected = |voucher: usize| {
        if voucher / w.batch < w.groups {
            let slot = index * w.groups + voucher / w.batch;
            (load(&tally.acknowledged, slot), load(&tally.unknown, slot))
        } else {
            (0, 0)
        }
    };
    let mut found: Vec<Option<u64>> = vec![None; w.codes.len()];
    for v in &order.vouchers {
        if let Some(&i) = code_index.get(v.confirm_code.as_str()) {
            found[i] = Some(u64::try_from(v.used).unwrap_or(u64::MAX));
        }
    }
    let mut check = OrderCheck {
        index,
        vouchers: order.vouchers.len() as u64,
        acknowledged: 0,
        unknown: 0,
        ledger: u64::try_from(order.used).unwrap_or(u64::MAX),
        mismatched_vouchers: 0,
        examples: Vec::new(),
    };
    for (i, ledger) in found.into_iter().enumerate() {
        let (acknowledged, unknown) = expected(i);
        check.acknowledged += acknowledged;
        check.unknown += unknown;
        if ledger.is_some_and(|n| agrees(n, acknowledged, unknown)) {
            continue;
        }
        check.mismatched_vouchers += 1;
        if check.examples.len() < MISMATCH_EXAMPLES {
            check.examples.push(VoucherMismatch {
                order_id,
                confirm_code: mask(&w.codes[i]),
                acknowledged,
                unknown,
                ledger,
            });
        }
    }
    check
}

/// Reads every prepared order back and compares its uses, and each of its vouchers' uses,
/// with the tally.
pub(crate) async fn verify(
    admin: &Admin,
    w: &Workload,
    tally: &Tally,
) -> anyhow::Result<Verification> {
    let started = std::time::Instant::now();
    let code_index: HashMap<&str, usize> = w
        .codes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let code_index = &code_index;
    let mut checks: Vec<OrderCheck> = futures::stream::iter(w.order_ids.iter().enumerate())
        .map(|(i, id)| async move {
            let answer = admin.get(&format!("/admin/orders/{id}")).await?;
            let order: OrderCounts = serde_json::from_value(answer)
                .with_context(|| format!("order {id}: not an order answer"))?;
            Ok::<_, anyhow::Error>(check_order(w, tally, code_index, i, &order))
        })
        .buffer_unordered(ADMIN_CONCURRENCY)
        .try_collect()
        .await?;
    checks.sort_by_key(|c| c.index);
    let mut v = Verification {
        orders: checks.len() as u64,
        vouchers: 0,
        acknowledged_uses: 0,
        ledger_uses: 0,
        unknown_uses: 0,
        mismatched_orders: 0,
        mismatched_vouchers: 0,
        mismatches: Vec::new(),
        ok: true,
        seconds: 0.0,
    };
    for c in checks {
        v.vouchers += c.vouchers;
        v.acknowledged_uses += c.acknowledged;
        v.unknown_uses += c.unknown;
        v.ledger_uses += c.ledger;
        if !agrees(c.ledger, c.acknowledged, c.unknown) {
            v.mismatched_orders += 1;
        }
        v.mismatched_vouchers += c.mismatched_vouchers;
        let room = MISMATCH_EXAMPLES - v.mismatches.len();
        v.mismatches.extend(c.examples.into_iter().take(room));
    }
    v.ok = v.mismatched_orders == 0 && v.mismatched_vouchers == 0;
    v.seconds = started.elapsed().as_secs_f64();
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::Ordering;

    use super::*;

    /// 2 orders of 5 codes in batches of 2: codes 0–1 and 2–3 are slots, code 4 is never used.
    fn workload() -> Workload {
        Workload {
            app_key: "bench-app".into(),
            secret: "s3cret".into(),
            sign_method: SignMethod::Md5,
            form: Form::Vouchers,
            batch: 2,
            capacity: 5,
            order_ids: vec![101, 102],
            codes: (0..5).map(code).collect(),
            used_dates: Vec::new(),
            groups: 2,
            replay_ratio: 0.0,
            reject_ratio: 0.0,
        }
    }

    fn answer(used: &[i64]) -> OrderCounts {
        OrderCounts {
            used: used.iter().sum(),
            vouchers: used
                .iter()
                .enumerate()
                .map(|(i, &used)| VoucherCount {
                    confirm_code: code(i),
                    used,
                })
                .collect(),
        }
    }

    fn check(tally: &Tally, order: usize, used: &[i64]) -> OrderCheck {
        let w = workload();
        let index: HashMap<&str, usize> = w
            .codes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        check_order(&w, tally, &index, order, &answer(used))
    }

    /// Order 102 (index 1): its first slot acknowledged 3 uses, its second 1.
    fn tally() -> Tally {
        let t = Tally::new(4);
        t.acknowledged[2].store(3, Ordering::Relaxed);
        t.acknowledged[3].store(1, Ordering::Relaxed);
        t
    }

    #[test]
    fn every_code_of_a_slot_must_show_the_slots_uses() {
        let c = check(&tally(), 1, &[3, 3, 1, 1, 0]);
        assert_eq!((c.acknowledged, c.ledger, c.vouchers), (8, 8, 5));
        assert_eq!(c.mismatched_vouchers, 0, "{:?}", c.examples);
    }

    #[test]
    fn a_use_moved_to_another_code_of_the_order_is_a_mismatch_though_the_total_agrees() {
        let c = check(&tally(), 1, &[3, 2, 2, 1, 0]);
        assert_eq!((c.acknowledged, c.ledger), (8, 8), "the total agrees");
        assert_eq!(c.mismatched_vouchers, 2);
        assert_eq!(
            c.examples,
            vec![
                VoucherMismatch {
                    order_id: 102,
                    confirm_code: "****0001".into(),
                    acknowledged: 3,
                    unknown: 0,
                    ledger: Some(2),
                },
                VoucherMismatch {
                    order_id: 102,
                    confirm_code: "****0002".into(),
                    acknowledged: 1,
                    unknown: 0,
                    ledger: Some(2),
                },
            ]
        );
    }

    #[test]
    fn uses_whose_answer_was_lost_may_be_counted_or_not_but_no_more() {
        let t = tally();
        t.unknown[2].store(1, Ordering::Relaxed);
        assert_eq!(check(&t, 1, &[3, 4, 1, 1, 0]).mismatched_vouchers, 0);
        assert_eq!(check(&t, 1, &[4, 4, 1, 1, 0]).mismatched_vouchers, 0);
        let c = check(&t, 1, &[5, 4, 1, 1, 0]);
        assert_eq!(c.mismatched_vouchers, 1);
        assert_eq!((c.examples[0].unknown, c.examples[0].ledger), (1, Some(5)));
        assert_eq!(check(&t, 1, &[2, 3, 1, 1, 0]).mismatched_vouchers, 1);
    }

    #[test]
    fn a_code_past_the_last_batch_must_stay_unused_and_a_missing_code_is_a_mismatch() {
        let c = check(&tally(), 1, &[3, 3, 1, 0, 1]);
        assert_eq!(c.mismatched_vouchers, 2);
        assert_eq!(c.examples[1].confirm_code, "****0004");
        let c = check(&tally(), 1, &[3, 3, 1, 1]);
        assert_eq!(c.mismatched_vouchers, 1);
        assert_eq!(c.examples[0].ledger, None);
    }

    #[test]
    fn codes_are_masked_as_ticketd_masks_them() {
        assert_eq!(mask("BENCH0042"), "****0042");
        assert_eq!(mask("AB-12"), "****12");
        assert_eq!(mask("ABC"), "****C");
    }
}
