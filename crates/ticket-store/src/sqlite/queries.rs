//! What the SQLite store reads: an order's snapshot for a planner, the views and lists of the
//! read API, on any connection (the writer's inside a job, or a pooled read-only one).

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};
use ticket_ledger::{
    Anomaly, AnomalyFilter, App, AppKey, AuditEntry, AuditFilter, LedgerError, OrderFilter,
    OrderId, OrderPage, OrderRead, OrderRecord, OrderScan, OrderSnapshot, OrderSummary, OrderView,
    OutOrderId, RefundRequest, RejectedCall, RejectedCallFilter, ReversalCommand, UseRecord,
    VoucherRecord,
};

use super::rows::{self, ms, During};
use crate::rows::{self as shared, ListQuery};
use crate::statements;

/// One app by key.
pub(crate) fn app(conn: &Connection, key: &AppKey) -> Result<Option<App>, LedgerError> {
    conn.prepare_cached(statements::SELECT_APP)
        .during("preparing the app lookup")?
        .query_row([key.as_str()], rows::app)
        .optional()
        .during("reading an app")
}

/// Every app, to fill the cache when the store opens.
pub(crate) fn all_apps(conn: &Connection) -> Result<Vec<App>, LedgerError> {
    conn.prepare_cached(statements::SELECT_APPS)
        .during("preparing the app list")?
        .query_map([], rows::app)
        .during("listing apps")?
        .collect::<rusqlite::Result<_>>()
        .during("reading apps")
}

/// The apps after `after` in key order, at most `limit` clamped (`LedgerStore::list_apps`).
pub(crate) fn list_apps(
    conn: &Connection,
    after: Option<&AppKey>,
    limit: u32,
) -> Result<Vec<App>, LedgerError> {
    let (after, limit) = shared::apps_page(after, limit);
    conn.prepare_cached(statements::LIST_APPS)
        .during("preparing the app list")?
        .query_map(params![after, limit], rows::app)
        .during("listing apps")?
        .collect::<rusqlite::Result<_>>()
        .during("reading apps")
}

/// One page of the order list (`LedgerStore::list_orders`), walked as [`OrderScan`] decides.
/// Callers run it in one read transaction, so every chunk sees the same snapshot.
pub(crate) fn list_orders(
    conn: &Connection,
    filter: &OrderFilter,
) -> Result<OrderPage, LedgerError> {
    let mut scan = OrderScan::new(filter);
    while let Some(read) = scan.next_read() {
        scan.take(order_candidates(conn, filter, read)?);
    }
    Ok(scan.finish())
}

/// One read of the order list: the candidates (one statement per identifier a search text can
/// be, merged) with their totals. On SQLite a statement costs no round trip, so each order's
/// vouchers and pending refund are two indexed look-ups of cached statements.
fn order_candidates(
    conn: &Connection,
    filter: &OrderFilter,
    read: OrderRead,
) -> Result<Vec<OrderSummary>, LedgerError> {
    let found = crate::rows::ListQuery::order_candidates(filter, read)
        .iter()
        .map(|query| filtered(conn, query, rows::order))
        .collect::<Result<Vec<_>, _>>()?;
    let orders = shared::merge_candidates(found, read.limit);
    let mut totals = shared::OrderTotals::default();
    let mut counts = conn
        .prepare_cached(statements::SQLITE_SELECT_VOUCHER_COUNTS)
        .during("preparing the order list's voucher counts")?;
    let mut pending = conn
        .prepare_cached(statements::SQLITE_SELECT_REFUND_PENDING)
        .during("preparing the order list's refund look-up")?;
    for order in &orders {
        let id = order.order_id.get();
        let mut rows = counts.query([id]).during("reading an order's vouchers")?;
        while let Some(row) = rows.next().during("reading an order's vouchers")? {
            let (capacity, used): (i64, i64) = (
                row.get(1).during("reading a voucher's capacity")?,
                row.get(2).during("reading a voucher's uses")?,
            );
            totals.voucher(id, capacity, used);
        }
        if pending
            .exists([id])
            .during("looking up an order's pending refund")?
        {
            totals.refund_pending(id);
        }
    }
    Ok(orders.into_iter().map(|o| totals.summary(o)).collect())
}

pub(crate) fn order_by_id(
    conn: &Connection,
    id: OrderId,
) -> Result<Option<OrderRecord>, LedgerError> {
    conn.prepare_cached(statements::SELECT_ORDER)
        .during("preparing the order lookup")?
        .query_row([id.get()], rows::order)
        .optional()
        .during("reading an order")
}

pub(crate) fn order_by_out(
    conn: &Connection,
    app: &AppKey,
    out: &OutOrderId,
) -> Result<Option<OrderRecord>, LedgerError> {
    conn.prepare_cached(statements::SELECT_ORDER_BY_OUT)
        .during("preparing the out_order_id lookup")?
        .query_row([app.as_str(), out.as_str()], rows::order)
        .optional()
        .during("reading an order by out_order_id")
}

/// An order's vouchers in issuance order.
fn vouchers(conn: &Connection, id: OrderId) -> Result<Vec<VoucherRecord>, LedgerError> {
    conn.prepare_cached(statements::SQLITE_SELECT_VOUCHERS)
        .during("preparing the voucher list")?
        .query_map([id.get()], rows::voucher)
        .during("listing vouchers")?
        .collect::<rusqlite::Result<_>>()
        .during("reading vouchers")
}

/// An order's refund requests, oldest first.
pub(crate) fn refunds(conn: &Connection, id: OrderId) -> Result<Vec<RefundRequest>, LedgerError> {
    conn.prepare_cached(statements::SELECT_REFUNDS)
        .during("preparing the refund list")?
        .query_map([id.get()], rows::refund)
        .during("listing refunds")?
        .collect::<rusqlite::Result<_>>()
        .during("reading refunds")
}

/// The order with everything a planner needs, read from the database, or `None`.
pub(crate) fn snapshot_of(
    conn: &Connection,
    id: OrderId,
) -> Result<Option<OrderSnapshot>, LedgerError> {
    let Some(order) = order_by_id(conn, id)? else {
        return Ok(None);
    };
    Ok(Some(OrderSnapshot {
        vouchers: vouchers(conn, id)?,
        refunds: refunds(conn, id)?,
        seen: HashSet::new(),
        order,
    }))
}

/// The order (by id) with everything a lifecycle planner needs, or `OrderNotFound`.
pub(crate) fn snapshot_by_id(conn: &Connection, id: OrderId) -> Result<OrderSnapshot, LedgerError> {
    snapshot_of(conn, id)?.ok_or(LedgerError::OrderNotFound)
}

/// The uses a reversal may give back: the code's, recorded within the window, not wholly
/// reversed.
pub(crate) fn reversible_uses(
    conn: &Connection,
    cmd: &ReversalCommand,
) -> Result<Vec<UseRecord>, LedgerError> {
    conn.prepare_cached(statements::SQLITE_SELECT_REVERSIBLE_USES)
        .during("preparing the use log query")?
        .query_map(
            params![
                cmd.order_id.get(),
                cmd.code.as_str(),
                ms(cmd.meta.received_at - cmd.window)
            ],
            rows::voucher_use,
        )
        .during("reading the use log")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .during("reading the use log")
}

pub(crate) fn anomaly(conn: &Connection, id: i64) -> Result<Option<Anomaly>, LedgerError> {
    conn.prepare_cached(statements::SELECT_ANOMALY)
        .during("preparing the anomaly lookup")?
        .query_row([id], rows::anomaly)
        .optional()
        .during("reading an anomaly")
}

/// Anomalies matching the filter, newest first.
pub(crate) fn anomalies(
    conn: &Connection,
    filter: &AnomalyFilter,
) -> Result<Vec<Anomaly>, LedgerError> {
    filtered(conn, &ListQuery::anomalies(filter), rows::anomaly)
}

/// An order, its vouchers, its latest events with their total, and its refunds. Callers on a
/// read connection run this inside one read transaction so the queries see the same snapshot.
pub(crate) fn order_view(conn: &Connection, id: OrderId) -> Result<Option<OrderView>, LedgerError> {
    let Some(order) = order_by_id(conn, id)? else {
        return Ok(None);
    };
    let vouchers = vouchers(conn, id)?;
    // Each row carries the total as `events_total`; no row means no entry (the bound
    // is at least one, so an order with entries returns some).
    let rows: Vec<(AuditEntry, i64)> = conn
        .prepare_cached(statements::SQLITE_LATEST_EVENTS_AND_TOTAL)
        .during("preparing the order history")?
        .query_map(
            params![id.get(), i64::from(OrderView::EVENTS_SHOWN)],
            |row| Ok((rows::audit(row)?, row.get("events_total")?)),
        )
        .during("listing the order history")?
        .collect::<rusqlite::Result<_>>()
        .during("reading the order history")?;
    let events_total = rows.first().map_or(0, |(_, total)| *total);
    let events = rows.into_iter().rev().map(|(entry, _)| entry).collect();
    Ok(Some(OrderView {
        refunds: refunds(conn, id)?,
        order,
        vouchers,
        events,
        events_total,
    }))
}

/// One page of an order's history (see `LedgerStore::order_events`), `None` when the order
/// does not exist. Two statements on a read connection need no shared snapshot: orders are
/// never deleted, and an order's entries commit in `seq` order (one writer).
pub(crate) fn order_events(
    conn: &Connection,
    id: OrderId,
    after_seq: Option<i64>,
    limit: u32,
) -> Result<Option<Vec<AuditEntry>>, LedgerError> {
    if order_by_id(conn, id)?.is_none() {
        return Ok(None);
    }
    let filter = AuditFilter::order_events(id, after_seq, limit);
    audit(conn, &filter).map(Some)
}

/// Audit entries matching every field of `filter`, oldest first or, when
/// [`AuditFilter::descending`], newest first (see [`filtered`]).
pub(crate) fn audit(
    conn: &Connection,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, LedgerError> {
    filtered(conn, &ListQuery::sqlite_audit(filter), rows::audit)
}

/// Kept refused calls, newest first.
pub(crate) fn rejected_calls(
    conn: &Connection,
    filter: &RejectedCallFilter,
) -> Result<Vec<RejectedCall>, LedgerError> {
    let (before, limit) = shared::rejected_calls_page(filter);
    conn.prepare_cached(statements::LIST_REJECTED_CALLS)
        .during("preparing the rejected call list")?
        .query_map(params![before, limit], |row| shared::rejected_call(row))
        .during("listing rejected calls")?
        .collect::<rusqlite::Result<_>>()
        .during("reading rejected calls")
}

/// Runs a list query (see [`ListQuery`]).
fn filtered<T>(
    conn: &Connection,
    query: &ListQuery,
    read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, LedgerError> {
    let limit = crate::plan_rows::Param::Int(Some(query.limit));
    let values = query.values.iter().map(|v| v.param()).chain([limit]);
    conn.prepare_cached(&query.sql())
        .during("preparing a filtered query")?
        .query_map(rusqlite::params_from_iter(values), read)
        .during("running a filtered query")?
        .collect::<rusqlite::Result<_>>()
        .during("reading a filtered query")
}

/// A page of the change events after `after` ([`ticket_ledger::LedgerStore::events`]), read
/// in one transaction so the ledger id and the events agree.
pub(crate) fn events(
    conn: &Connection,
    after: i64,
    limit: u32,
) -> Result<ticket_ledger::EventPage, LedgerError> {
    let (after, limit) = shared::events_page(after, limit);
    let ledger: (String, i64) = conn
        .prepare_cached(statements::SQLITE_SELECT_LEDGER_ID)
        .during("preparing the ledger id read")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .during("reading the ledger id")?;
    let events = conn
        .prepare_cached(statements::LIST_EVENTS)
        .during("preparing the event list")?
        .query_map(params![after, limit], |row| shared::event(row))
        .during("listing events")?
        .collect::<rusqlite::Result<_>>()
        .during("reading events")?;
    Ok(shared::event_page(ledger, after, events))
}
