//! The SQL behind each ledger operation, as plain functions of a connection.
//!
//! Write operations run on the writer thread inside their job's savepoint (see
//! [`super::writer`]); they may return a refusal at any point because the savepoint undoes
//! whatever they did before it. A refusal that raises an anomaly goes through
//! [`keeping_anomaly`], which undoes the job's writes and keeps only the anomaly. Read
//! operations run on a pooled read-only connection. Every statement is prepared once per
//! connection and cached (`prepare_cached`).
//!
//! Every write that must change exactly one row checks that it did ([`one_row`]): one that
//! changes none means the database disagrees with what the plan was made from, and the whole
//! operation is refused with [`LedgerError::WriteChangedNoRow`] and recorded as an anomaly —
//! never answered as a success that changed nothing.

use std::collections::HashSet;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};
use ticket_ledger::{
    plan_issue, plan_refund, plan_refund_request, plan_resolution, plan_reversal, plan_verify,
    refusal_anomaly, Anomaly, AnomalyFilter, App, AppAccess, AppKey, AuditEntry, AuditFilter,
    Fingerprint, IssueCommand, IssueResult, LedgerError, NewAnomaly, NewApp, NewOrder, OrderId,
    OrderRecord, OrderRef, OrderSnapshot, OrderView, OutOrderId, OutcomeKind, RefundCommand,
    RefundRequest, RefundRequestCommand, RejectedCall, RejectedCallFilter, ResolveAnomaly,
    ReversalCommand, SecretRotation, VerifyCommand, VerifyOutcome, VerifyPlan, VoucherRecord,
};

use super::rows::{self, ledger_error, ms, violation, During, Violation};
use super::writer::Tx;
use crate::rows::{
    self as shared, access_values, capacity_refusal, latest_events_sql, one_row,
    previous_secret_values, ListQuery, SqlValue, ANOMALY_COLUMNS, APP_COLUMNS, EVENTS_TOTAL_SQL,
    ORDER_COLUMNS, REFUND_COLUMNS, USE_COLUMNS, VOUCHER_COLUMNS, WRITE_ANOMALY_RESOLUTION,
    WRITE_ISSUE_STATE, WRITE_REFUNDED_TICKETS, WRITE_REFUND_REVIEW, WRITE_REFUND_STATE,
    WRITE_USE_REVERSED, WRITE_VOUCHER_USED,
};

/// `usize` row counts (rusqlite's) as the shared check takes them.
fn changed_rows(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Writes (writer thread, inside a savepoint)
// ---------------------------------------------------------------------------------------------

/// Inserts an app and reads it back, so the caller (and the app cache) holds exactly what a
/// later read returns (instants are stored to the millisecond).
pub(crate) fn create_app(conn: &Connection, app: &NewApp) -> Result<App, LedgerError> {
    let values = [
        Value::Text(app.app_key.as_str().to_owned()),
        Value::Text(app.name.clone()),
        Value::Text(app.secret.clone()),
        Value::Integer(ms(app.created_at)),
    ]
    .into_iter()
    .chain(
        access_values(&app.access)
            .into_iter()
            .map(|v| sql_value(&v)),
    )
    .chain(
        previous_secret_values(app)
            .into_iter()
            .map(|v| sql_value(&v)),
    );
    conn.prepare_cached(&format!(
        "INSERT INTO apps ({APP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .during("preparing the app insert")?
    .execute(rusqlite::params_from_iter(values))
    .map_err(|e| match violation(&e) {
        Some(Violation::Unique(_)) => LedgerError::AppExists,
        _ => ledger_error("registering an app", &e),
    })?;
    read_back_app(conn, &app.app_key)
}

/// Replaces an app's access settings; `UnknownApp` when no row matched.
pub(crate) fn set_app_access(
    conn: &Connection,
    key: &AppKey,
    access: &AppAccess,
) -> Result<App, LedgerError> {
    let values = access_values(access)
        .into_iter()
        .map(|v| sql_value(&v))
        .chain([Value::Text(key.as_str().to_owned())]);
    let changed = conn
        .prepare_cached(
            "UPDATE apps SET rate_limit = ?1, rate_burst = ?2, ip_allowlist = ?3 \
             WHERE app_key = ?4",
        )
        .during("preparing the app access update")?
        .execute(rusqlite::params_from_iter(values))
        .during("updating an app's access settings")?;
    if changed == 0 {
        return Err(LedgerError::UnknownApp);
    }
    read_back_app(conn, key)
}

/// Rotates an app's secret in one statement (the old secret moves to `previous_secret`);
/// `UnknownApp` when no row matched.
pub(crate) fn rotate_app_secret(
    conn: &Connection,
    key: &AppKey,
    rotation: &SecretRotation,
) -> Result<App, LedgerError> {
    let changed = conn
        .prepare_cached(
            "UPDATE apps SET previous_secret = secret, previous_secret_expires_at_ms = ?1, \
             secret = ?2 WHERE app_key = ?3",
        )
        .during("preparing the secret rotation")?
        .execute(params![
            ms(rotation.previous_expires_at),
            rotation.new_secret,
            key.as_str()
        ])
        .during("rotating an app's secret")?;
    if changed == 0 {
        return Err(LedgerError::UnknownApp);
    }
    read_back_app(conn, key)
}

/// The app just written, read back so the caller (and the app cache) holds exactly what a
/// later read returns (instants are stored to the millisecond).
fn read_back_app(conn: &Connection, key: &AppKey) -> Result<App, LedgerError> {
    self::app(conn, key)?
        .ok_or_else(|| LedgerError::Internal("an app just written could not be read back".into()))
}

/// A shared value as rusqlite binds it.
fn sql_value(value: &SqlValue) -> Value {
    match value {
        SqlValue::Int(i) => i.map_or(Value::Null, Value::Integer),
        SqlValue::Text(t) => t.clone().map_or(Value::Null, Value::Text),
    }
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
         valid_until_ms, created_at_ms, issue_state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
        order.first_issue_state().as_str(),
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

/// Resolves the order, runs the domain's rules on its snapshot, and applies the plan; a
/// refusal changes nothing but the anomaly it raises ([`refusal_anomaly`]). The outer `Err` is
/// a failure that must undo the whole job (the writer rolls its savepoint back); the inner
/// result is the answer.
///
/// The order is looked up by `order_id` *without* the caller's app as a filter: ownership is
/// [`plan_verify`]'s decision (R6), so a foreign order is refused exactly like a missing one.
/// Only a lookup by `out_order_id` is scoped to the app, because that id is only unique there.
///
/// The snapshot comes from the writer's memory when it holds the order ([`Snapshots`]), and is
/// put back, with this verify's changes, once they are written. Nothing is written before the
/// plan is complete, so a refusal of the plan needs no undo. A write of the plan that changes
/// no row is refused through [`keeping_anomaly`]: the job's writes are undone, the anomaly is
/// kept, and the snapshot is dropped rather than put back — the database disagreed with it, so
/// the next verify of the order reads the order again.
///
/// [`Snapshots`]: super::snapshots::Snapshots
pub(crate) fn verify_keeping_anomaly(
    tx: &mut Tx<'_>,
    cmd: &VerifyCommand,
) -> Result<Result<VerifyOutcome, LedgerError>, LedgerError> {
    let conn = tx.conn;
    let id = match &cmd.order {
        OrderRef::Id(id) | OrderRef::Both(id, _) => Some(*id),
        OrderRef::Out(out) => order_by_out(conn, &cmd.app_key, out)?.map(|o| o.order_id),
    };
    let refuse = |refusal: LedgerError| -> Result<Result<VerifyOutcome, LedgerError>, LedgerError> {
        // The anomaly names the order the request resolved to, also when the vendor named it
        // by `out_order_id` alone.
        if let Some(anomaly) = refusal_anomaly(&refusal, id, Some(&cmd.app_key), &cmd.meta) {
            insert_anomaly(conn, &anomaly)?;
        }
        Ok(Err(refusal))
    };
    let Some(id) = id else {
        return refuse(LedgerError::OrderNotFound);
    };
    let mut snapshot = match tx.snapshots.take(id) {
        Some(snapshot) => snapshot,
        None => match snapshot_of(conn, id)? {
            Some(snapshot) => snapshot,
            None => return refuse(LedgerError::OrderNotFound),
        },
    };
    snapshot.seen = seen_fingerprints(conn, id, cmd)?;
    let plan = match plan_verify(&snapshot, cmd) {
        Ok(plan) => plan,
        Err(refusal) => {
            tx.snapshots.put(snapshot);
            return refuse(refusal);
        }
    };
    let applied = keeping_anomaly(
        tx,
        |e| refusal_anomaly(e, Some(id), Some(&cmd.app_key), &cmd.meta),
        |conn| apply_verify(conn, &snapshot, &plan, cmd),
    )?;
    match applied {
        Ok(()) => {
            if plan.apply_to(&mut snapshot) {
                tx.snapshots.put(snapshot);
            }
            Ok(Ok(plan.outcome))
        }
        // `snapshot` is dropped here, never put back (see above).
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// Those of the request's fingerprints already recorded for the order. Only these are looked
/// up, never the order's whole history, so the cost of a verify does not grow with its age.
fn seen_fingerprints(
    conn: &Connection,
    id: OrderId,
    cmd: &VerifyCommand,
) -> Result<HashSet<Fingerprint>, LedgerError> {
    let mut seen = HashSet::new();
    let fingerprints = cmd.fingerprints();
    if fingerprints.is_empty() {
        return Ok(seen);
    }
    let mut known = conn
        .prepare_cached(
            "SELECT 1 FROM verify_fingerprints WHERE order_id = ?1 AND confirm_code = ?2 \
             AND used_at_ms = ?3 AND quantity = ?4",
        )
        .during("preparing the fingerprint lookup")?;
    for fp in fingerprints {
        if known
            .exists(params![
                id.get(),
                fp.code.as_str(),
                fp.used_at_ms,
                fp.quantity
            ])
            .during("looking up a fingerprint")?
        {
            seen.insert(fp);
        }
    }
    Ok(seen)
}

/// Writes an accepted plan: counters, the use log, fingerprints, refund review marks, the
/// audit entries and anomalies. An `Err` undoes the job; a conditional update that matches no
/// row (the snapshot was stale, which the single writer rules out) is answered as the refusal
/// it stands for ([`capacity_refusal`]), with nothing kept but the anomaly of a
/// [`LedgerError::WriteChangedNoRow`].
pub(super) fn apply_verify(
    conn: &Connection,
    snapshot: &OrderSnapshot,
    plan: &VerifyPlan,
    cmd: &VerifyCommand,
) -> Result<(), LedgerError> {
    let id = snapshot.order.order_id.get();
    {
        // The single writer already serialises verifies, so the plan's snapshot is current;
        // the condition is defence in depth (STYLE §6) should that ever stop being true.
        let mut add = conn
            .prepare_cached(
                "UPDATE vouchers SET used = used + ?1 \
                 WHERE order_id = ?2 AND confirm_code = ?3 AND used + ?1 <= capacity",
            )
            .during("preparing the voucher update")?;
        let mut log = conn
            .prepare_cached(
                "INSERT INTO voucher_uses (order_id, confirm_code, quantity, used_at_ms, \
                 recorded_at_ms, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .during("preparing the use log insert")?;
        for change in &plan.changes {
            let changed = add
                .execute(params![change.delta, id, change.code.as_str()])
                .during("counting uses")?;
            if changed != 1 {
                return Err(capacity_refusal(change, voucher_now(conn, id, change)?));
            }
            log.execute(params![
                id,
                change.code.as_str(),
                change.delta,
                ms(change.used_at),
                ms(cmd.meta.received_at),
                cmd.meta.request_id
            ])
            .during("logging a use")?;
        }
    }
    remember_fingerprints(conn, id, &plan.new_fingerprints, &cmd.meta.request_id)?;
    {
        let mut review = conn
            .prepare_cached(
                "UPDATE refund_requests SET needs_review = 1 \
                 WHERE flow_id = ?1 AND state = 'pending'",
            )
            .during("preparing the refund review mark")?;
        for flow in &plan.review_refunds {
            let changed = review
                .execute([flow])
                .during("marking a refund for review")?;
            one_row(changed_rows(changed), WRITE_REFUND_REVIEW)?;
        }
    }
    for entry in plan.audit_entries(snapshot, cmd) {
        rows::insert_audit(conn, &entry)?;
    }
    for anomaly in plan.anomalies(cmd) {
        insert_anomaly(conn, &anomaly)?;
    }
    Ok(())
}

fn remember_fingerprints(
    conn: &Connection,
    id: i64,
    fingerprints: &[Fingerprint],
    request_id: &str,
) -> Result<(), LedgerError> {
    let mut remember = conn
        .prepare_cached(
            "INSERT INTO verify_fingerprints \
             (order_id, confirm_code, used_at_ms, quantity, request_id) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .during("preparing the fingerprint insert")?;
    for fp in fingerprints {
        remember
            .execute(params![
                id,
                fp.code.as_str(),
                fp.used_at_ms,
                fp.quantity,
                request_id
            ])
            .during("remembering a fingerprint")?;
    }
    Ok(())
}

/// Runs a refusable operation as the job's work. A business refusal undoes everything the job
/// wrote ([`Tx::undo`]: back to the job's own savepoint, so no savepoint of its own is paid for
/// on the way to a success) but keeps the anomaly the refusal raises ([`refusal_anomaly`]), so
/// the fact reaches the operator although the request changed nothing; the outer `Ok` lets
/// the batch keep it. Infrastructure failures stay outer errors and undo the whole job.
pub(crate) fn keeping_anomaly<T>(
    tx: &Tx<'_>,
    anomaly_of: impl FnOnce(&LedgerError) -> Option<NewAnomaly>,
    op: impl FnOnce(&Connection) -> Result<T, LedgerError>,
) -> Result<Result<T, LedgerError>, LedgerError> {
    match op(tx.conn) {
        Ok(value) => Ok(Ok(value)),
        Err(e @ (LedgerError::Unavailable(_) | LedgerError::Internal(_))) => Err(e),
        Err(refusal) => {
            tx.undo()?;
            if let Some(anomaly) = anomaly_of(&refusal) {
                insert_anomaly(tx.conn, &anomaly)?;
            }
            Ok(Err(refusal))
        }
    }
}

/// The order with everything a planner needs, read from the database, or `None`.
pub(super) fn snapshot_of(
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
fn snapshot_by_id(conn: &Connection, id: OrderId) -> Result<OrderSnapshot, LedgerError> {
    snapshot_of(conn, id)?.ok_or(LedgerError::OrderNotFound)
}

/// Applies an issuance report.
pub(crate) fn issue(conn: &Connection, cmd: &IssueCommand) -> Result<OutcomeKind, LedgerError> {
    let snapshot = snapshot_by_id(conn, cmd.order_id)?;
    let plan = plan_issue(&snapshot, cmd)?;
    let id = cmd.order_id.get();
    if plan.kind == OutcomeKind::Applied || plan.set_out_order_id.is_some() {
        let changed = conn
            .prepare_cached(
                "UPDATE orders SET issue_state = ?2, \
                 issue_describe = coalesce(?3, issue_describe), \
                 issue_attributes = coalesce(?4, issue_attributes), \
                 out_order_id = coalesce(?5, out_order_id) WHERE order_id = ?1",
            )
            .during("preparing the issuance update")?
            .execute(params![
                id,
                plan.state.as_str(),
                plan.describe,
                match &cmd.result {
                    IssueResult::Issued(_) => cmd.attributes.as_deref(),
                    IssueResult::Failed { .. } => None,
                },
                plan.set_out_order_id.as_ref().map(OutOrderId::as_str),
            ])
            .map_err(|e| match violation(&e) {
                Some(Violation::Unique(_)) => LedgerError::OutOrderIdTaken,
                _ => ledger_error("recording an issuance", &e),
            })?;
        one_row(changed_rows(changed), WRITE_ISSUE_STATE)?;
    }
    {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO vouchers (order_id, confirm_code, seq, capacity, used, voucher_type, \
                 extras) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
            )
            .during("preparing the voucher insert")?;
        let first = snapshot.vouchers.len();
        for (i, v) in plan.vouchers.iter().enumerate() {
            insert
                .execute(params![
                    id,
                    v.code.as_str(),
                    first + i,
                    v.capacity,
                    v.voucher_type,
                    v.extras
                ])
                .during("issuing a voucher")?;
        }
    }
    for entry in plan.audit_entries(&snapshot, cmd) {
        rows::insert_audit(conn, &entry)?;
    }
    Ok(plan.kind)
}

/// Opens a refund request.
pub(crate) fn request_refund(
    conn: &Connection,
    cmd: &RefundRequestCommand,
) -> Result<RefundRequest, LedgerError> {
    let snapshot = snapshot_by_id(conn, cmd.order_id)?;
    let plan = plan_refund_request(&snapshot, cmd)?;
    let r = &plan.request;
    conn.prepare_cached(
        "INSERT INTO refund_requests (flow_id, order_id, quantity, requested_at_ms, request_id, \
         state) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
    )
    .during("preparing the refund request insert")?
    .execute(params![
        r.flow_id,
        cmd.order_id.get(),
        r.quantity,
        ms(r.requested_at),
        cmd.meta.request_id
    ])
    .during("opening a refund request")?;
    for entry in plan.audit_entries(&snapshot, cmd) {
        rows::insert_audit(conn, &entry)?;
    }
    Ok(plan.request)
}

/// [`issue`], keeping the anomaly a refusal raises.
pub(crate) fn issue_keeping_anomaly(
    tx: &Tx<'_>,
    cmd: &IssueCommand,
) -> Result<Result<OutcomeKind, LedgerError>, LedgerError> {
    keeping_anomaly(
        tx,
        |e| refusal_anomaly(e, Some(cmd.order_id), Some(&cmd.app_key), &cmd.meta),
        |conn| issue(conn, cmd),
    )
}

/// Applies a refund notification. Both writes must change their row: the request is pending
/// and the refunded tickets fit the order under its lock, as planned; when either changes
/// none, the whole notification is refused ([`LedgerError::WriteChangedNoRow`]).
pub(crate) fn refund(
    conn: &Connection,
    cmd: &RefundCommand,
) -> Result<(RefundRequest, OutcomeKind), LedgerError> {
    let snapshot = snapshot_by_id(conn, cmd.order_id)?;
    let plan = plan_refund(&snapshot, cmd)?;
    if plan.kind == OutcomeKind::Applied {
        let settling = conn
            .prepare_cached(
                "UPDATE refund_requests SET state = ?2, refunded_tickets = ?3, batch_no = ?4, \
             failure_reason = ?5, settled_at_ms = ?6, settled_by = ?7 \
             WHERE flow_id = ?1 AND state = 'pending'",
            )
            .during("preparing the refund settlement")?
            .execute(params![
                plan.flow_id,
                plan.state.as_str(),
                plan.refunded_tickets,
                cmd.batch_no,
                cmd.failure_reason,
                ms(cmd.meta.received_at),
                cmd.meta.request_id
            ])
            .map_err(|e| match violation(&e) {
                Some(Violation::Unique(_)) => LedgerError::RefundConflict,
                _ => ledger_error("settling a refund", &e),
            })?;
        one_row(changed_rows(settling), WRITE_REFUND_STATE)?;
        let counted = conn
            .prepare_cached(
                "UPDATE orders SET refunded_tickets = refunded_tickets + ?2 \
                 WHERE order_id = ?1 AND refunded_tickets + ?2 <= quantity",
            )
            .during("preparing the refund count")?
            .execute(params![cmd.order_id.get(), plan.refunded_tickets])
            .during("counting refunded tickets")?;
        one_row(changed_rows(counted), WRITE_REFUNDED_TICKETS)?;
    }
    for entry in plan.audit_entries(&snapshot, cmd) {
        rows::insert_audit(conn, &entry)?;
    }
    let settled = refunds(conn, cmd.order_id)?
        .into_iter()
        .find(|r| r.flow_id == plan.flow_id)
        .ok_or_else(|| LedgerError::Internal("a settled refund could not be read back".into()))?;
    Ok((settled, plan.kind))
}

/// [`refund`], keeping the anomaly a refusal raises.
pub(crate) fn refund_keeping_anomaly(
    tx: &Tx<'_>,
    cmd: &RefundCommand,
) -> Result<Result<(RefundRequest, OutcomeKind), LedgerError>, LedgerError> {
    keeping_anomaly(
        tx,
        |e| refusal_anomaly(e, Some(cmd.order_id), Some(&cmd.app_key), &cmd.meta),
        |conn| refund(conn, cmd),
    )
}

/// Gives uses back; returns the code's count after.
pub(crate) fn reverse(conn: &Connection, cmd: &ReversalCommand) -> Result<i64, LedgerError> {
    let snapshot = snapshot_by_id(conn, cmd.order_id)?;
    let id = cmd.order_id.get();
    let uses = conn
        .prepare_cached(&format!(
            "SELECT {USE_COLUMNS} FROM voucher_uses WHERE order_id = ?1 AND confirm_code = ?2 \
             AND recorded_at_ms >= ?3 AND reversed < quantity"
        ))
        .during("preparing the use log query")?
        .query_map(
            params![id, cmd.code.as_str(), ms(cmd.meta.received_at - cmd.window)],
            rows::voucher_use,
        )
        .during("reading the use log")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .during("reading the use log")?;
    let plan = plan_reversal(&snapshot, &uses, cmd)?;
    let changed = conn
        .prepare_cached(
            "UPDATE vouchers SET used = used - ?3 \
             WHERE order_id = ?1 AND confirm_code = ?2 AND used - ?3 >= 0",
        )
        .during("preparing the reversal")?
        .execute(params![id, plan.code.as_str(), plan.quantity])
        .during("reversing uses")?;
    one_row(changed_rows(changed), WRITE_VOUCHER_USED)?;
    {
        let mut take = conn
            .prepare_cached(
                "UPDATE voucher_uses SET reversed = reversed + ?2 \
                 WHERE id = ?1 AND reversed + ?2 <= quantity",
            )
            .during("preparing the use log update")?;
        for (use_id, n) in &plan.takes {
            let changed = take
                .execute(params![use_id, n])
                .during("marking uses reversed")?;
            one_row(changed_rows(changed), WRITE_USE_REVERSED)?;
        }
    }
    for entry in plan.audit_entries(&snapshot, cmd) {
        rows::insert_audit(conn, &entry)?;
    }
    Ok(plan.used_after)
}

/// [`reverse`], keeping the anomaly a refusal raises (an operator's request: no app).
pub(crate) fn reverse_keeping_anomaly(
    tx: &Tx<'_>,
    cmd: &ReversalCommand,
) -> Result<Result<i64, LedgerError>, LedgerError> {
    keeping_anomaly(
        tx,
        |e| refusal_anomaly(e, Some(cmd.order_id), None, &cmd.meta),
        |conn| reverse(conn, cmd),
    )
}

/// Stores an anomaly.
pub(crate) fn insert_anomaly(conn: &Connection, a: &NewAnomaly) -> Result<i64, LedgerError> {
    conn.prepare_cached(
        "INSERT INTO anomalies (kind, order_id, app_key, request_id, at_ms, detail, request) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .during("preparing the anomaly insert")?
    .execute(params![
        a.kind.as_str(),
        a.order_id,
        a.app_key,
        a.request_id,
        ms(a.at),
        a.detail.to_string(),
        a.request.to_string()
    ])
    .during("recording an anomaly")?;
    Ok(conn.last_insert_rowid())
}

/// [`resolve_anomaly`], keeping the anomaly a refusal raises (an operator's request: no app;
/// the order is the resolved anomaly's, unknown until it is read).
pub(crate) fn resolve_keeping_anomaly(
    tx: &Tx<'_>,
    cmd: &ResolveAnomaly,
) -> Result<Result<Anomaly, LedgerError>, LedgerError> {
    keeping_anomaly(
        tx,
        |e| refusal_anomaly(e, None, None, &cmd.meta),
        |conn| resolve_anomaly(conn, cmd),
    )
}

/// Resolves an open anomaly.
pub(crate) fn resolve_anomaly(
    conn: &Connection,
    cmd: &ResolveAnomaly,
) -> Result<Anomaly, LedgerError> {
    let current = anomaly(conn, cmd.id)?.ok_or(LedgerError::AnomalyNotFound)?;
    let plan = plan_resolution(&current, cmd)?;
    let changed = conn
        .prepare_cached(
            "UPDATE anomalies SET resolution = ?2, note = ?3, resolved_at_ms = ?4, \
             resolved_by = ?5 WHERE id = ?1 AND resolution IS NULL",
        )
        .during("preparing the anomaly resolution")?
        .execute(params![
            cmd.id,
            cmd.resolution.as_str(),
            cmd.note,
            ms(cmd.meta.received_at),
            cmd.meta.request_id
        ])
        .during("resolving an anomaly")?;
    one_row(changed_rows(changed), WRITE_ANOMALY_RESOLUTION)?;
    rows::insert_audit(conn, &plan.audit)?;
    anomaly(conn, cmd.id)?
        .ok_or_else(|| LedgerError::Internal("a resolved anomaly could not be read back".into()))
}

fn anomaly(conn: &Connection, id: i64) -> Result<Option<Anomaly>, LedgerError> {
    conn.prepare_cached(&format!(
        "SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE id = ?1"
    ))
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

/// An order's refund requests, oldest first.
fn refunds(conn: &Connection, id: OrderId) -> Result<Vec<RefundRequest>, LedgerError> {
    conn.prepare_cached(&format!(
        "SELECT {REFUND_COLUMNS} FROM refund_requests WHERE order_id = ?1 \
         ORDER BY requested_at_ms, flow_id"
    ))
    .during("preparing the refund list")?
    .query_map([id.get()], rows::refund)
    .during("listing refunds")?
    .collect::<rusqlite::Result<_>>()
    .during("reading refunds")
}

/// The voucher's `(capacity, used)` as it is now, for [`capacity_refusal`].
fn voucher_now(
    conn: &Connection,
    order_id: i64,
    change: &ticket_ledger::VoucherChange,
) -> Result<Option<(i64, i64)>, LedgerError> {
    conn.prepare_cached(
        "SELECT capacity, used FROM vouchers WHERE order_id = ?1 AND confirm_code = ?2",
    )
    .during("preparing the voucher lookup")?
    .query_row(params![order_id, change.code.as_str()], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
    })
    .optional()
    .during("reading a voucher")
}

/// Appends one audit entry on its own.
pub(crate) fn record(conn: &Connection, entry: &AuditEntry) -> Result<(), LedgerError> {
    rows::insert_audit(conn, entry).map(drop)
}

/// Keeps a refused anonymous call and prunes the record to the newest `keep`.
pub(crate) fn record_rejected_call(
    conn: &Connection,
    call: &RejectedCall,
    keep: u64,
) -> Result<(), LedgerError> {
    if keep == 0 {
        return Ok(());
    }
    conn.prepare_cached(shared::INSERT_REJECTED_CALL)
        .during("preparing the rejected call insert")?
        .execute(params![
            call.request_id,
            ms(call.at),
            call.client_ip,
            call.app_key,
            call.method,
            call.code,
            call.sub_code
        ])
        .during("recording a rejected call")?;
    if let Some(through) = shared::rejected_calls_prune_through(conn.last_insert_rowid(), keep) {
        conn.prepare_cached(shared::PRUNE_REJECTED_CALLS)
            .during("preparing the rejected call pruning")?
            .execute([through])
            .during("pruning rejected calls")?;
    }
    Ok(())
}

/// Kept refused calls, newest first.
pub(crate) fn rejected_calls(
    conn: &Connection,
    filter: &RejectedCallFilter,
) -> Result<Vec<RejectedCall>, LedgerError> {
    let (before, limit) = shared::rejected_calls_page(filter);
    conn.prepare_cached(shared::LIST_REJECTED_CALLS)
        .during("preparing the rejected call list")?
        .query_map(params![before, limit], |row| shared::rejected_call(row))
        .during("listing rejected calls")?
        .collect::<rusqlite::Result<_>>()
        .during("reading rejected calls")
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

/// An order, its vouchers, its latest events with their total, and its refunds. Callers on a
/// read connection run this inside one read transaction so the queries see the same snapshot.
pub(crate) fn order_view(conn: &Connection, id: OrderId) -> Result<Option<OrderView>, LedgerError> {
    let Some(order) = order_by_id(conn, id)? else {
        return Ok(None);
    };
    let vouchers = vouchers(conn, id)?;
    let mut events: Vec<AuditEntry> = conn
        .prepare_cached(&latest_events_sql())
        .during("preparing the order history")?
        .query_map(
            params![id.get(), i64::from(OrderView::EVENTS_SHOWN)],
            rows::audit,
        )
        .during("listing the order history")?
        .collect::<rusqlite::Result<_>>()
        .during("reading the order history")?;
    events.reverse();
    let events_total = conn
        .prepare_cached(EVENTS_TOTAL_SQL)
        .during("preparing the order history count")?
        .query_row([id.get()], |row| row.get(0))
        .during("counting the order history")?;
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

/// Audit entries matching every field of `filter`, oldest first (see [`filtered`]).
pub(crate) fn audit(
    conn: &Connection,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, LedgerError> {
    filtered(conn, &ListQuery::audit(filter), rows::audit)
}

/// Runs a list query (see [`ListQuery`]).
fn filtered<T>(
    conn: &Connection,
    query: &ListQuery,
    read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, LedgerError> {
    let values = query
        .values
        .iter()
        .map(sql_value)
        .chain([Value::Integer(query.limit)]);
    conn.prepare_cached(&query.sql())
        .during("preparing a filtered query")?
        .query_map(rusqlite::params_from_iter(values), read)
        .during("running a filtered query")?
        .collect::<rusqlite::Result<_>>()
        .during("reading a filtered query")
}
