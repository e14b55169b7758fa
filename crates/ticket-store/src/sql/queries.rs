//! What the SQL store reads: an order's snapshot for a planner (locked first, so operations on
//! one order run one after another across connections and processes), the views and lists
//! of the read API.

use std::collections::HashSet;

use futures::TryStreamExt;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};
use ticket_ledger::{
    Anomaly, AnomalyFilter, App, AppKey, AuditEntry, AuditFilter, Fingerprint, LedgerError,
    OrderFilter, OrderId, OrderPage, OrderRead, OrderRecord, OrderRef, OrderScan, OrderSnapshot,
    OrderSummary, OrderView, OutOrderId, RefundRequest, RejectedCall, RejectedCallFilter,
    ReversalCommand, UseRecord, VerifyCommand, VoucherRecord,
};

use super::db::{During, Failure};
use super::engine::Engine;
use super::exec::bind;
use crate::rows::{self, ms, ListQuery, ReadRow};
use crate::statements;

/// sqlx's rows for the shared readers ([`crate::rows`]).
impl ReadRow for AnyRow {
    type Error = sqlx::Error;

    fn int(&self, column: usize) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn opt_int(&self, column: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }

    fn float(&self, column: usize) -> Result<f64, sqlx::Error> {
        self.try_get(column)
    }

    fn text(&self, column: usize) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn opt_text(&self, column: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn corrupt(&self, column: usize, what: String) -> sqlx::Error {
        sqlx::Error::ColumnDecode {
            index: column.to_string(),
            source: what.into(),
        }
    }
}

/// A statement in the engine's placeholder syntax.
pub(crate) fn q(engine: Engine, sql: &'static str) -> Query<'static, Any, AnyArguments> {
    sqlx::query(engine.sql(sql))
}

/// A statement built at run time (`IN` lists, list filters, bulk forms), in the engine's
/// syntax.
pub(crate) fn q_owned(engine: Engine, sql: String) -> Query<'static, Any, AnyArguments> {
    sqlx::query(engine.sql(sql))
}

/// Reads every row with `read`.
pub(crate) async fn all<T>(
    conn: &mut AnyConnection,
    query: Query<'static, Any, AnyArguments>,
    read: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
    during: &'static str,
) -> Result<Vec<T>, Failure> {
    query
        .fetch(conn)
        .and_then(|row| std::future::ready(read(&row)))
        .try_collect()
        .await
        .during(during)
}

/// Reads at most one row with `read`.
pub(crate) async fn one<T>(
    conn: &mut AnyConnection,
    query: Query<'static, Any, AnyArguments>,
    read: fn(&AnyRow) -> Result<T, sqlx::Error>,
    during: &'static str,
) -> Result<Option<T>, Failure> {
    match query.fetch_optional(conn).await.during(during)? {
        Some(row) => read(&row).map(Some).during(during),
        None => Ok(None),
    }
}

/// One app by key.
pub(crate) async fn app(
    conn: &mut AnyConnection,
    e: Engine,
    key: &AppKey,
) -> Result<Option<App>, Failure> {
    let query = q(e, statements::SELECT_APP).bind(key.as_str());
    one(conn, query, rows::app, "reading an app").await
}

/// Every app, to fill the cache when the store opens.
pub(crate) async fn all_apps(conn: &mut AnyConnection, e: Engine) -> Result<Vec<App>, Failure> {
    all(
        conn,
        q(e, statements::SELECT_APPS),
        rows::app,
        "listing apps",
    )
    .await
}

/// The apps after `after` in the keys' byte order, at most `limit` clamped
/// (`LedgerStore::list_apps`).
pub(crate) async fn list_apps(
    conn: &mut AnyConnection,
    e: Engine,
    after: Option<&AppKey>,
    limit: u32,
) -> Result<Vec<App>, Failure> {
    let (after, limit) = rows::apps_page(after, limit);
    let sql = match e {
        Engine::Postgres => statements::SERVER_LIST_APPS_POSTGRES,
        Engine::MySql => statements::LIST_APPS,
    };
    let query = q(e, sql).bind(after).bind(limit);
    all(conn, query, rows::app, "listing apps").await
}

/// One page of the order list (`LedgerStore::list_orders`), walked as [`OrderScan`] decides.
/// Callers run it in a snapshot transaction, so every chunk sees one state.
pub(crate) async fn list_orders(
    conn: &mut AnyConnection,
    e: Engine,
    filter: &OrderFilter,
) -> Result<OrderPage, Failure> {
    let mut scan = OrderScan::new(filter);
    while let Some(read) = scan.next_read() {
        let found = order_candidates(conn, e, filter, read).await?;
        scan.take(found);
    }
    Ok(scan.finish())
}

/// One read of the order list: the candidates (one statement per identifier a search text can
/// be, merged), then the chunk's vouchers and pending refunds in one statement each, so a
/// chunk costs a few round trips whatever its size.
async fn order_candidates(
    conn: &mut AnyConnection,
    e: Engine,
    filter: &OrderFilter,
    read: OrderRead,
) -> Result<Vec<OrderSummary>, Failure> {
    let mut found = Vec::new();
    for list in ListQuery::order_candidates(filter, read) {
        found.push(filtered(conn, e, &list, rows::order).await?);
    }
    let orders = rows::merge_candidates(found, read.limit);
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = orders.iter().map(|o| o.order_id.get()).collect();
    let mut totals = rows::OrderTotals::default();
    let query = ids.iter().fold(
        q_owned(e, statements::server_voucher_counts_of_orders(ids.len())),
        |query, id| query.bind(*id),
    );
    let counts = all(
        conn,
        query,
        |row| Ok((row.int(0)?, row.int(1)?, row.int(2)?)),
        "reading the order list's vouchers",
    )
    .await?;
    for (id, capacity, used) in counts {
        totals.voucher(id, capacity, used);
    }
    let query = ids.iter().fold(
        q_owned(e, statements::server_refund_pending_of_orders(ids.len())),
        |query, id| query.bind(*id),
    );
    let pending = all(
        conn,
        query,
        |row| row.int(0),
        "reading the order list's pending refunds",
    )
    .await?;
    for id in pending {
        totals.refund_pending(id);
    }
    Ok(orders.into_iter().map(|o| totals.summary(o)).collect())
}

/// The id of the order a verify names, without locking it (for naming an anomaly).
pub(crate) async fn resolve_order_id(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &VerifyCommand,
) -> Result<Option<OrderId>, Failure> {
    let found = match &cmd.order {
        OrderRef::Id(id) | OrderRef::Both(id, _) => return Ok(Some(*id)),
        OrderRef::Out(out) => {
            let query = q(e, statements::SELECT_ORDER_ID_BY_OUT)
                .bind(cmd.app_key.as_str())
                .bind(out.as_str());
            one(conn, query, |row| row.int(0), "resolving an out_order_id").await?
        }
    };
    Ok(found.and_then(OrderId::new))
}

/// The order's row, locked for the rest of the transaction.
pub(crate) async fn lock_order(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<Option<OrderRecord>, Failure> {
    let query = q(e, statements::LOCK_ORDER).bind(id.get());
    one(conn, query, rows::order, "locking an order").await
}

/// The order an app names by its own id, locked.
pub(crate) async fn lock_order_by_out(
    conn: &mut AnyConnection,
    e: Engine,
    app: &AppKey,
    out: &OutOrderId,
) -> Result<Option<OrderRecord>, Failure> {
    let query = q(e, statements::LOCK_ORDER_BY_OUT)
        .bind(app.as_str())
        .bind(out.as_str());
    one(conn, query, rows::order, "locking an order by out_order_id").await
}

/// Takes an order's row lock without reading the row (nothing when the order does not exist).
pub(crate) async fn lock_order_row(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<(), Failure> {
    let query = q(e, statements::LOCK_ORDER_ROW).bind(id.get());
    one(conn, query, |row| row.int(0), "locking an order")
        .await
        .map(drop)
}

/// `order`, already locked, with its vouchers and refunds: a snapshot for a planner.
pub(crate) async fn snapshot(
    conn: &mut AnyConnection,
    e: Engine,
    order: OrderRecord,
    seen: HashSet<Fingerprint>,
) -> Result<OrderSnapshot, Failure> {
    let id = order.order_id;
    Ok(OrderSnapshot {
        vouchers: vouchers(conn, e, id).await?,
        refunds: refunds(conn, e, id).await?,
        seen,
        order,
    })
}

/// The order (by id), locked, with everything a lifecycle planner needs, or `OrderNotFound`.
pub(crate) async fn locked_snapshot(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<OrderSnapshot, Failure> {
    let order = lock_order(conn, e, id)
        .await?
        .ok_or(LedgerError::OrderNotFound)?;
    snapshot(conn, e, order, HashSet::new()).await
}

/// Those of `fingerprints` already recorded for the order, in one query over the codes the
/// request names (never the order's whole history).
pub(crate) async fn seen_fingerprints(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
    fingerprints: Vec<Fingerprint>,
) -> Result<HashSet<Fingerprint>, Failure> {
    if fingerprints.is_empty() {
        return Ok(HashSet::new());
    }
    let codes: Vec<&str> = fingerprints
        .iter()
        .map(|f| f.code.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let query = codes.iter().fold(
        q_owned(e, statements::server_fingerprints_of_codes(codes.len())).bind(id.get()),
        |query, code| query.bind(code.to_string()),
    );
    let stored: Vec<(String, i64, i64)> = all(
        conn,
        query,
        |row| Ok((row.text(0)?, row.int(1)?, row.int(2)?)),
        "looking up fingerprints",
    )
    .await?;
    Ok(fingerprints
        .into_iter()
        .filter(|f| {
            stored.iter().any(|(code, at, n)| {
                code == f.code.as_str() && *at == f.used_at_ms && *n == f.quantity
            })
        })
        .collect())
}

/// The uses a reversal may give back: the code's, recorded within the window, not wholly
/// reversed.
pub(crate) async fn reversible_uses(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &ReversalCommand,
) -> Result<Vec<UseRecord>, Failure> {
    let query = q(e, statements::SELECT_REVERSIBLE_USES)
        .bind(cmd.order_id.get())
        .bind(cmd.code.as_str())
        .bind(ms(cmd.meta.received_at - cmd.window));
    all(conn, query, rows::voucher_use, "reading the use log").await
}

/// An order's vouchers in issuance order.
async fn vouchers(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<Vec<VoucherRecord>, Failure> {
    let query = q(e, statements::SELECT_VOUCHERS).bind(id.get());
    all(conn, query, rows::voucher, "reading vouchers").await
}

/// An order's refund requests, oldest first.
pub(crate) async fn refunds(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<Vec<RefundRequest>, Failure> {
    let query = q(e, statements::SELECT_REFUNDS).bind(id.get());
    all(conn, query, rows::refund, "reading refunds").await
}

/// One anomaly, locked (`lock`) or not.
pub(crate) async fn anomaly(
    conn: &mut AnyConnection,
    e: Engine,
    id: i64,
    lock: bool,
) -> Result<Option<Anomaly>, Failure> {
    let sql = if lock {
        statements::LOCK_ANOMALY
    } else {
        statements::SELECT_ANOMALY
    };
    one(
        conn,
        q(e, sql).bind(id),
        rows::anomaly,
        "reading an anomaly",
    )
    .await
}

/// An order, its vouchers, its history and its refunds. Callers run this in a snapshot
/// transaction so the queries see one state.
pub(crate) async fn order_view(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<Option<OrderView>, Failure> {
    let query = q(e, statements::SELECT_ORDER).bind(id.get());
    let Some(order) = one(conn, query, rows::order, "reading an order").await? else {
        return Ok(None);
    };
    let vouchers = vouchers(conn, e, id).await?;
    let query = q(e, statements::SELECT_LATEST_EVENTS)
        .bind(id.get())
        .bind(i64::from(OrderView::EVENTS_SHOWN));
    let mut events = all(conn, query, rows::audit, "reading the order history").await?;
    events.reverse();
    let query = q(e, statements::COUNT_EVENTS).bind(id.get());
    let events_total = one(conn, query, |row| row.int(0), "counting the order history")
        .await?
        .unwrap_or(0);
    Ok(Some(OrderView {
        refunds: refunds(conn, e, id).await?,
        order,
        vouchers,
        events,
        events_total,
    }))
}

/// One page of an order's history (see `LedgerStore::order_events`), `None` when the order
/// does not exist. The two statements need no shared snapshot: orders are never deleted, and
/// an order's entries commit in `seq` order (the order lock, see `ops::record`).
pub(crate) async fn order_events(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
    after_seq: Option<i64>,
    limit: u32,
) -> Result<Option<Vec<AuditEntry>>, Failure> {
    let query = q(e, statements::SELECT_ORDER_ID).bind(id.get());
    if one(conn, query, |row| row.int(0), "looking an order up")
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let filter = AuditFilter::order_events(id, after_seq, limit);
    audit(conn, e, &filter).await.map(Some)
}

/// Runs a list query (see [`ListQuery`]).
async fn filtered<T>(
    conn: &mut AnyConnection,
    e: Engine,
    list: &ListQuery,
    read: fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, Failure> {
    let query = list
        .values
        .iter()
        .fold(q_owned(e, list.sql()), |query, value| {
            bind(query, value.param())
        });
    all(conn, query.bind(list.limit), read, "running a list query").await
}

/// Audit entries matching every field of `filter`, oldest first (newest first when
/// [`AuditFilter::descending`]).
pub(crate) async fn audit(
    conn: &mut AnyConnection,
    e: Engine,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, Failure> {
    filtered(conn, e, &ListQuery::audit(filter), rows::audit).await
}

/// Anomalies matching the filter, newest first.
pub(crate) async fn anomalies(
    conn: &mut AnyConnection,
    e: Engine,
    filter: &AnomalyFilter,
) -> Result<Vec<Anomaly>, Failure> {
    filtered(conn, e, &ListQuery::anomalies(filter), rows::anomaly).await
}

/// Kept refused calls, newest first.
pub(crate) async fn rejected_calls(
    conn: &mut AnyConnection,
    e: Engine,
    filter: &RejectedCallFilter,
) -> Result<Vec<RejectedCall>, Failure> {
    let (before, limit) = rows::rejected_calls_page(filter);
    let query = q(e, statements::LIST_REJECTED_CALLS)
        .bind(before)
        .bind(limit);
    all(conn, query, rows::rejected_call, "listing rejected calls").await
}

/// A page of the change events after `after` ([`ticket_ledger::LedgerStore::events`]).
pub(crate) async fn events(
    conn: &mut AnyConnection,
    e: Engine,
    after: i64,
    limit: u32,
) -> Result<ticket_ledger::EventPage, Failure> {
    let (after, limit) = rows::events_page(after, limit);
    let row = q(e, statements::SELECT_LEDGER_ID)
        .fetch_one(&mut *conn)
        .await
        .during("reading the ledger id")?;
    let ledger: (String, i64) = (
        row.try_get(0).during("reading the ledger id")?,
        row.try_get(1).during("reading the last event seq")?,
    );
    let query = q(e, statements::LIST_EVENTS).bind(after).bind(limit);
    let events = all(conn, query, rows::event, "listing events").await?;
    Ok(rows::event_page(ledger, after, events))
}
