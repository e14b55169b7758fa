//! The SQL behind each ledger operation, as plain functions of a connection.
//!
//! Write operations run on the writer thread inside their job's savepoint (see
//! [`super::writer`]); they may return a refusal at any point because the savepoint undoes
//! whatever they did before it. Read operations run on a pooled read-only connection. Every
//! statement is prepared once per connection and cached (`prepare_cached`).

use std::collections::HashSet;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};
use ticket_ledger::{
    plan_verify, App, AppKey, AuditEntry, AuditFilter, LedgerError, NewApp, NewOrder, OrderId,
    OrderRecord, OrderRef, OrderSnapshot, OrderView, OutOrderId, VerifyCommand, VerifyOutcome,
    VoucherRecord,
};

use super::rows::{
    self, ledger_error, ms, violation, During, Violation, APP_COLUMNS, AUDIT_COLUMNS,
    ORDER_COLUMNS, VOUCHER_COLUMNS,
};

/// The audit `action` of a verify, the TOP method it answers.
pub(crate) const VERIFY_ACTION: &str = "taobao.travel.ticket.order.verify";

/// Entries [`audit`] returns when the filter names no limit.
pub(crate) const DEFAULT_AUDIT_LIMIT: u32 = 100;
/// Entries [`audit`] returns at most, whatever the filter asks.
pub(crate) const MAX_AUDIT_LIMIT: u32 = 1000;

// ---------------------------------------------------------------------------------------------
// Writes (writer thread, inside a savepoint)
// ---------------------------------------------------------------------------------------------

/// Inserts an app and reads it back, so the caller (and the app cache) holds exactly what a
/// later read returns (instants are stored to the millisecond).
pub(crate) fn create_app(conn: &Connection, app: &NewApp) -> Result<App, LedgerError> {
    conn.prepare_cached(
        "INSERT INTO apps (app_key, name, secret, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )
    .during("preparing the app insert")?
    .execute(params![
        app.app_key.as_str(),
        app.name,
        app.secret,
        ms(app.created_at)
    ])
    .map_err(|e| match violation(&e) {
        Some(Violation::Unique(_)) => LedgerError::AppExists,
        _ => ledger_error("registering an app", &e),
    })?;
    self::app(conn, &app.app_key)?
        .ok_or_else(|| LedgerError::Internal("a registered app could not be read back".into()))
}

/// Inserts an order, its vouchers (in list order) and its audit entry, then reads the order
/// back with the same connection so the answer is exactly what was written.
pub(crate) fn create_order(
    conn: &Connection,
    order: &NewOrder,
    audit: &AuditEntry,
) -> Result<OrderView, LedgerError> {
    order.validate()?;
    let id = order.order_id.get();
    conn.prepare_cached(
        "INSERT INTO orders (order_id, app_key, out_order_id, quantity, valid_from_ms, \
         valid_until_ms, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .during("preparing the order insert")?
    .execute(params![
        id,
        order.app_key.as_str(),
        order.out_order_id.as_ref().map(OutOrderId::as_str),
        order.quantity,
        order.valid_from.map(ms),
        order.valid_until.map(ms),
        ms(order.created_at),
    ])
    // The constraints decide, not a racy look-up first (STYLE §3.6). `orders` has one foreign
    // key (its app) and two unique keys, which SQLite names by their columns.
    .map_err(|e| match violation(&e) {
        Some(Violation::ForeignKey) => LedgerError::UnknownApp,
        Some(Violation::Unique(columns)) if columns.contains("out_order_id") => {
            LedgerError::OutOrderIdTaken
        }
        Some(Violation::Unique("orders.order_id")) => LedgerError::OrderExists,
        _ => ledger_error("creating an order", &e),
    })?;
    {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO vouchers (order_id, confirm_code, seq, capacity, used) \
                 VALUES (?1, ?2, ?3, ?4, 0)",
            )
            .during("preparing the voucher insert")?;
        for (seq, voucher) in order.vouchers.iter().enumerate() {
            insert
                .execute(params![id, voucher.code.as_str(), seq, voucher.capacity])
                .during("issuing a voucher")?;
        }
    }
    rows::insert_audit(conn, audit)?;
    order_view(conn, order.order_id)?
        .ok_or_else(|| LedgerError::Internal("a created order could not be read back".into()))
}

/// Resolves the order, runs the domain's rules on what is stored, and applies the plan.
///
/// The order is looked up by `order_id` *without* the caller's app as a filter: ownership is
/// [`plan_verify`]'s decision (R6), so a foreign order is refused exactly like a missing one.
/// Only a lookup by `out_order_id` is scoped to the app, because that id is only unique there.
pub(crate) fn verify(conn: &Connection, cmd: &VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
    let order = match &cmd.order {
        OrderRef::Id(id) | OrderRef::Both(id, _) => order_by_id(conn, *id)?,
        OrderRef::Out(out) => order_by_out(conn, &cmd.app_key, out)?,
    }
    .ok_or(LedgerError::OrderNotFound)?;
    let id = order.order_id.get();
    let vouchers = vouchers(conn, order.order_id)?;

    // Only the fingerprints this request could replay are looked up, never the order's whole
    // history, so the cost of a verify does not grow with the order's age.
    let mut seen = HashSet::new();
    {
        let mut known = conn
            .prepare_cached(
                "SELECT 1 FROM verify_fingerprints WHERE order_id = ?1 AND confirm_code = ?2 \
                 AND used_at_ms = ?3 AND quantity = ?4",
            )
            .during("preparing the fingerprint lookup")?;
        for fp in cmd.fingerprints() {
            if known
                .exists(params![id, fp.code.as_str(), fp.used_at_ms, fp.quantity])
                .during("looking up a fingerprint")?
            {
                seen.insert(fp);
            }
        }
    }

    let snapshot = OrderSnapshot {
        order,
        vouchers,
        seen,
    };
    let plan = plan_verify(&snapshot, cmd)?;

    {
        // The single writer already serialises verifies, so the plan's snapshot is current;
        // the condition is defence in depth (STYLE §6) should that ever stop being true.
        let mut add = conn
            .prepare_cached(
                "UPDATE vouchers SET used = used + ?1 \
                 WHERE order_id = ?2 AND confirm_code = ?3 AND used + ?1 <= capacity",
            )
            .during("preparing the voucher update")?;
        for change in &plan.changes {
            let changed = add
                .execute(params![change.delta, id, change.code.as_str()])
                .during("counting uses")?;
            if changed != 1 {
                return Err(capacity_refusal(conn, id, change)?);
            }
        }
    }
    {
        let mut remember = conn
            .prepare_cached(
                "INSERT INTO verify_fingerprints \
                 (order_id, confirm_code, used_at_ms, quantity, request_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .during("preparing the fingerprint insert")?;
        for fp in &plan.new_fingerprints {
            remember
                .execute(params![
                    id,
                    fp.code.as_str(),
                    fp.used_at_ms,
                    fp.quantity,
                    cmd.meta.request_id
                ])
                .during("remembering a fingerprint")?;
        }
    }
    rows::insert_audit(conn, &plan.audit_entry(cmd, VERIFY_ACTION))?;
    Ok(plan.outcome)
}

/// The refusal for a conditional update that changed no row, computed from the row as it is
/// now rather than from the (evidently stale) plan.
fn capacity_refusal(
    conn: &Connection,
    order_id: i64,
    change: &ticket_ledger::VoucherChange,
) -> Result<LedgerError, LedgerError> {
    let current = conn
        .prepare_cached(
            "SELECT capacity, used FROM vouchers WHERE order_id = ?1 AND confirm_code = ?2",
        )
        .during("preparing the voucher lookup")?
        .query_row(params![order_id, change.code.as_str()], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()
        .during("reading a voucher")?;
    Ok(match current {
        Some((capacity, used)) => LedgerError::CapacityExceeded {
            code: change.code.clone(),
            requested: change.delta,
            remaining: (capacity - used).max(0),
        },
        None => LedgerError::VoucherNotFound {
            code: change.code.clone(),
        },
    })
}

/// Appends one audit entry on its own.
pub(crate) fn record(conn: &Connection, entry: &AuditEntry) -> Result<(), LedgerError> {
    rows::insert_audit(conn, entry).map(drop)
}

// ---------------------------------------------------------------------------------------------
// Reads (any connection)
// ---------------------------------------------------------------------------------------------

/// One app by key.
pub(crate) fn app(conn: &Connection, key: &AppKey) -> Result<Option<App>, LedgerError> {
    conn.prepare_cached(&format!(
        "SELECT {APP_COLUMNS} FROM apps WHERE app_key = ?1"
    ))
    .during("preparing the app lookup")?
    .query_row([key.as_str()], rows::app)
    .optional()
    .during("reading an app")
}

/// Every app, to fill the cache when the store opens.
pub(crate) fn all_apps(conn: &Connection) -> Result<Vec<App>, LedgerError> {
    conn.prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps"))
        .during("preparing the app list")?
        .query_map([], rows::app)
        .during("listing apps")?
        .collect::<rusqlite::Result<_>>()
        .during("reading apps")
}

fn order_by_id(conn: &Connection, id: OrderId) -> Result<Option<OrderRecord>, LedgerError> {
    conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?1"
    ))
    .during("preparing the order lookup")?
    .query_row([id.get()], rows::order)
    .optional()
    .during("reading an order")
}

fn order_by_out(
    conn: &Connection,
    app: &AppKey,
    out: &OutOrderId,
) -> Result<Option<OrderRecord>, LedgerError> {
    conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE app_key = ?1 AND out_order_id = ?2"
    ))
    .during("preparing the out_order_id lookup")?
    .query_row([app.as_str(), out.as_str()], rows::order)
    .optional()
    .during("reading an order by out_order_id")
}

/// An order's vouchers in issuance order.
fn vouchers(conn: &Connection, id: OrderId) -> Result<Vec<VoucherRecord>, LedgerError> {
    conn.prepare_cached(&format!(
        "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE order_id = ?1 ORDER BY seq"
    ))
    .during("preparing the voucher list")?
    .query_map([id.get()], rows::voucher)
    .during("listing vouchers")?
    .collect::<rusqlite::Result<_>>()
    .during("reading vouchers")
}

/// An order, its vouchers and its history. Callers on a read connection run this inside one
/// read transaction so the three queries see the same snapshot.
pub(crate) fn order_view(conn: &Connection, id: OrderId) -> Result<Option<OrderView>, LedgerError> {
    let Some(order) = order_by_id(conn, id)? else {
        return Ok(None);
    };
    let vouchers = vouchers(conn, id)?;
    let events = conn
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE order_id = ?1 ORDER BY seq"
        ))
        .during("preparing the order history")?
        .query_map([id.get()], rows::audit)
        .during("listing the order history")?
        .collect::<rusqlite::Result<_>>()
        .during("reading the order history")?;
    Ok(Some(OrderView {
        order,
        vouchers,
        events,
    }))
}

/// Audit entries matching every field of `filter`, oldest first.
///
/// The SQL names only the filters that are set (at most 16 distinct texts, each prepared once
/// per connection), so each query can use the index that fits instead of `? IS NULL OR ...`.
pub(crate) fn audit(
    conn: &Connection,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, LedgerError> {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if let Some(order_id) = filter.order_id {
        clauses.push("order_id = ?");
        values.push(Value::Integer(order_id));
    }
    if let Some(app_key) = &filter.app_key {
        clauses.push("app_key = ?");
        values.push(Value::Text(app_key.clone()));
    }
    if let Some(outcome) = filter.outcome {
        clauses.push("outcome = ?");
        values.push(Value::Text(outcome.as_str().to_owned()));
    }
    if let Some(after) = filter.after_seq {
        clauses.push("seq > ?");
        values.push(Value::Integer(after));
    }
    let limit = filter
        .limit
        .unwrap_or(DEFAULT_AUDIT_LIMIT)
        .min(MAX_AUDIT_LIMIT);
    values.push(Value::Integer(i64::from(limit)));
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    conn.prepare_cached(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log{filter_sql} ORDER BY seq LIMIT ?"
    ))
    .during("preparing the audit query")?
    .query_map(rusqlite::params_from_iter(values), rows::audit)
    .during("querying the audit trail")?
    .collect::<rusqlite::Result<_>>()
    .during("reading the audit trail")
}
