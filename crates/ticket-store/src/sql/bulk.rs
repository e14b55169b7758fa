//! A batch of verifies planned and written in bulk (steps 1 to 3 of [`super::batch`]): a
//! fixed number of statements whatever the batch's size, the rows of each table travelling
//! as one JSON parameter.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use ticket_ledger::{
    plan_verify, refusal_anomaly, Fingerprint, LedgerError, OrderId, OrderRecord, OrderSnapshot,
    VerifyCommand, VerifyOutcome,
};

use super::db::{During, Failure};
use super::engine::Engine;
use super::queries::{all, q_owned};
use super::trace::Mark;
use crate::plan_rows::{FingerprintRow, VerifyRows};
use crate::rows::{self, ReadRow, WRITE_REFUND_REVIEW, WRITE_VOUCHER_USED};
use crate::statements::{
    BulkInsert, BULK_COUNT_USES, BULK_INSERT_ANOMALIES, BULK_INSERT_AUDIT,
    BULK_INSERT_FINGERPRINTS, BULK_INSERT_VOUCHER_USES, BULK_KNOWN_FINGERPRINTS, BULK_LOCK_ORDERS,
    BULK_MARK_REFUND_REVIEWS, BULK_SELECT_REFUNDS, BULK_SELECT_VOUCHERS,
};

/// The answers of a batch, in its order.
pub(crate) type Answers = Vec<Result<VerifyOutcome, LedgerError>>;

/// The batch's orders, in `order_id` order (the order they are locked in).
pub(crate) fn order_ids(cmds: &[&VerifyCommand]) -> Vec<i64> {
    let mut ids: Vec<i64> = cmds
        .iter()
        .filter_map(|c| c.order.order_id())
        .map(OrderId::get)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Steps 1 and 2: locks and reads, then plans every verify, on snapshots that earlier verifies
/// of the batch have already updated. A refused verify contributes nothing but the anomaly its
/// refusal raises.
pub(crate) async fn plan_batch(
    conn: &mut AnyConnection,
    e: Engine,
    cmds: &[&VerifyCommand],
) -> Result<(Answers, VerifyRows), Failure> {
    let ids_json = to_json(&order_ids(cmds))?;
    let mut orders = load_orders(conn, e, &ids_json).await?;

    let wanted: Vec<FingerprintRow> = cmds
        .iter()
        .filter_map(|c| c.order.order_id().map(|id| (id, c)))
        .filter(|(id, _)| orders.contains_key(&id.get()))
        .flat_map(|(id, c)| c.fingerprints().into_iter().map(move |fp| (id.get(), fp)))
        .enumerate()
        .map(|(i, (o, fp))| FingerprintRow::new(i, o, &fp, None))
        .collect();
    let mut known = known_fingerprints(conn, e, &wanted).await?;

    let mut answers = Vec::with_capacity(cmds.len());
    let mut rows = VerifyRows::default();
    for cmd in cmds {
        let id = cmd.order.order_id();
        let snapshot = id.and_then(|id| orders.get_mut(&id.get()));
        let Some(snapshot) = snapshot else {
            let refusal = LedgerError::OrderNotFound;
            if let Some(anomaly) = refusal_anomaly(&refusal, id, Some(&cmd.app_key), &cmd.meta) {
                rows.add_anomaly(&anomaly);
            }
            answers.push(Err(refusal));
            continue;
        };
        let order = snapshot.order.order_id.get();
        snapshot.seen = cmd
            .fingerprints()
            .into_iter()
            .filter(|fp| known.contains(&(order, fp.clone())))
            .collect();
        match plan_verify(snapshot, cmd) {
            Ok(plan) => {
                rows.add(snapshot, &plan, cmd);
                known.extend(plan.new_fingerprints.iter().map(|fp| (order, fp.clone())));
                // The next verify of this order in the batch is planned on the result. A plan
                // always fits the snapshot it was made from.
                if !plan.apply_to(snapshot) {
                    return Err(Failure::Conflict("a plan did not fit its own snapshot"));
                }
                answers.push(Ok(plan.outcome));
            }
            Err(refusal) => {
                if let Some(anomaly) = refusal_anomaly(&refusal, id, Some(&cmd.app_key), &cmd.meta)
                {
                    rows.add_anomaly(&anomaly);
                }
                answers.push(Err(refusal));
            }
        }
    }
    Ok((answers, rows))
}

/// Locks the batch's orders (in `order_id` order) and reads each one's vouchers and refund
/// requests: the snapshots the batch is planned on, by `order_id`.
async fn load_orders(
    conn: &mut AnyConnection,
    e: Engine,
    ids_json: &str,
) -> Result<HashMap<i64, OrderSnapshot>, Failure> {
    let locked = all(
        conn,
        q_owned(e, e.select_by_ids(&BULK_LOCK_ORDERS)).bind(ids_json.to_owned()),
        rows::order,
        "locking the batch's orders",
    )
    .await?;
    let mut orders: HashMap<i64, OrderSnapshot> = locked
        .into_iter()
        .map(|order: OrderRecord| {
            let snapshot = OrderSnapshot {
                order,
                vouchers: Vec::new(),
                seen: HashSet::new(),
                refunds: Vec::new(),
            };
            (snapshot.order.order_id.get(), snapshot)
        })
        .collect();
    let vouchers = all(
        conn,
        q_owned(e, e.select_by_ids(&BULK_SELECT_VOUCHERS)).bind(ids_json.to_owned()),
        |row| Ok((row.int(0)?, rows::voucher(&Shifted(row))?)),
        "reading the batch's vouchers",
    )
    .await?;
    for (order, voucher) in vouchers {
        if let Some(s) = orders.get_mut(&order) {
            s.vouchers.push(voucher);
        }
    }
    let refunds = all(
        conn,
        q_owned(e, e.select_by_ids(&BULK_SELECT_REFUNDS)).bind(ids_json.to_owned()),
        |row| Ok((row.int(0)?, rows::refund(&Shifted(row))?)),
        "reading the batch's refunds",
    )
    .await?;
    for (order, refund) in refunds {
        if let Some(s) = orders.get_mut(&order) {
            s.refunds.push(refund);
        }
    }
    Ok(orders)
}

/// Those of `wanted` already recorded, as `(order_id, fingerprint)`.
async fn known_fingerprints(
    conn: &mut AnyConnection,
    e: Engine,
    wanted: &[FingerprintRow],
) -> Result<HashSet<(i64, Fingerprint)>, Failure> {
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    let found = all(
        conn,
        q_owned(e, e.bulk_select(&BULK_KNOWN_FINGERPRINTS)).bind(to_json(wanted)?),
        |row| Ok((row.int(0)?, row.text(1)?, row.int(2)?, row.int(3)?)),
        "looking up the batch's fingerprints",
    )
    .await?;
    // Only fingerprints the batch asked about come back, so each matches one it holds.
    Ok(found
        .into_iter()
        .filter_map(|(order, code, used_at_ms, quantity)| {
            wanted
                .iter()
                .find(|w| {
                    w.voucher.order_id == order
                        && w.voucher.code.as_str() == code
                        && w.used_at_ms == used_at_ms
                        && w.quantity == quantity
                })
                .map(|w| (order, w.fingerprint()))
        })
        .collect())
}

/// A row that tells the batch committed: its first audit entry, or without one (every verify
/// refused) its first anomaly; `None` when it writes nothing (every accepted verify writes an
/// audit entry, and a refused one at most an anomaly).
pub(crate) fn mark(rows: &VerifyRows) -> Option<Mark> {
    if let Some(entry) = rows.audit.iter().find(|a| a.order_id.is_some()) {
        return Some(Mark::Audit {
            order_id: entry.order_id?,
            request_id: entry.request_id.clone(),
        });
    }
    rows.anomalies.first().map(|anomaly| Mark::Anomaly {
        order_id: anomaly.order_id,
        request_id: anomaly.request_id.clone(),
    })
}

/// Step 3: the rows of every plan of the batch, one statement per table that has rows.
pub(crate) async fn write_verify(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &VerifyRows,
) -> Result<(), Failure> {
    if !rows.counts.is_empty() {
        let changed = q_owned(e, e.bulk_update(&BULK_COUNT_USES))
            .bind(to_json(&rows.counts)?)
            .execute(&mut *conn)
            .await
            .during("counting the batch's uses")?
            .rows_affected();
        // Every order is locked and every count was planned on what was read under the lock,
        // so this cannot miss unless the database disagrees with what was read; then the
        // batch's verifies run alone (see the batch module docs), which pins the one whose
        // write changes no row.
        if changed != rows.counts.len() as u64 {
            return Err(Failure::Refused(LedgerError::WriteChangedNoRow {
                write: WRITE_VOUCHER_USED,
            }));
        }
        insert(
            conn,
            e,
            &BULK_INSERT_VOUCHER_USES,
            &rows.uses,
            "logging the batch's uses",
        )
        .await?;
    }
    insert(
        conn,
        e,
        &BULK_INSERT_FINGERPRINTS,
        &rows.fingerprints,
        "remembering the batch's fingerprints",
    )
    .await?;
    if !rows.reviews.is_empty() {
        // Every flow is a pending request of a locked order: each must match its row (both
        // engines count rows matched, so a request already marked counts too).
        let changed = q_owned(e, e.bulk_update(&BULK_MARK_REFUND_REVIEWS))
            .bind(to_json(&rows.reviews)?)
            .execute(&mut *conn)
            .await
            .during("marking refunds for review")?
            .rows_affected();
        if changed != rows.reviews.len() as u64 {
            return Err(Failure::Refused(LedgerError::WriteChangedNoRow {
                write: WRITE_REFUND_REVIEW,
            }));
        }
    }
    insert(
        conn,
        e,
        &BULK_INSERT_AUDIT,
        &rows.audit,
        "appending the batch's audit entries",
    )
    .await?;
    insert(
        conn,
        e,
        &BULK_INSERT_ANOMALIES,
        &rows.anomalies,
        "recording the batch's anomalies",
    )
    .await
}

/// Inserts `rows` with `statement`, nothing when there are none.
async fn insert<T: Serialize>(
    conn: &mut AnyConnection,
    e: Engine,
    statement: &BulkInsert,
    rows: &[T],
    during: &'static str,
) -> Result<(), Failure> {
    if rows.is_empty() {
        return Ok(());
    }
    q_owned(e, e.bulk_insert(statement))
        .bind(to_json(rows)?)
        .execute(conn)
        .await
        .during(during)
        .map(drop)
}

fn to_json<T: Serialize + ?Sized>(rows: &T) -> Result<String, Failure> {
    serde_json::to_string(rows).map_err(|e| {
        Failure::Refused(LedgerError::Internal(format!(
            "serialising a batch's rows: {e}"
        )))
    })
}

/// A row read with its first column (`order_id`) set aside: the shared readers of
/// [`crate::rows`] see the columns after it.
struct Shifted<'a>(&'a AnyRow);

impl ReadRow for Shifted<'_> {
    type Error = sqlx::Error;

    fn int(&self, column: usize) -> Result<i64, sqlx::Error> {
        self.0.int(column + 1)
    }

    fn opt_int(&self, column: usize) -> Result<Option<i64>, sqlx::Error> {
        self.0.opt_int(column + 1)
    }

    fn float(&self, column: usize) -> Result<f64, sqlx::Error> {
        self.0.float(column + 1)
    }

    fn text(&self, column: usize) -> Result<String, sqlx::Error> {
        self.0.text(column + 1)
    }

    fn opt_text(&self, column: usize) -> Result<Option<String>, sqlx::Error> {
        self.0.opt_text(column + 1)
    }

    fn corrupt(&self, column: usize, what: String) -> sqlx::Error {
        self.0.corrupt(column + 1, what)
    }
}
