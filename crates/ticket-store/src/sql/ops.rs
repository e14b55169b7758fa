//! The SQL behind each ledger operation, written once for PostgreSQL and MySQL/MariaDB.
//!
//! Every write runs inside the transaction [`super::SqlStore`] opened for it (and may be run
//! again when the engine asks for a retry), so each function here is "one attempt": it locks
//! what it changes, loads the snapshot, calls the domain's planner, and applies the plan. No
//! ledger rule is written in SQL.
//!
//! Concurrency, per order:
//! 1. `SELECT … FROM orders WHERE order_id = ? FOR UPDATE` before anything else is read, so
//!    operations on one order run one after another, across connections and processes, and
//!    each sees everything the previous one committed (READ COMMITTED: every statement after
//!    the lock reads the latest committed rows).
//! 2. Counters change only through conditional updates (`used + ? <= capacity`): a plan from a
//!    stale snapshot (should the lock ever not hold, e.g. on a database that ignores
//!    `FOR UPDATE`) fails instead of over-using. Every write that must change exactly one row
//!    checks its row count ([`one_row`]; sqlx asks MySQL for rows *matched*, as PostgreSQL
//!    counts them): one that changes none refuses the whole operation with
//!    `LedgerError::WriteChangedNoRow`, the transaction is rolled back, and the store records
//!    the anomaly (`Db::keeping_anomaly`).
//! 3. Fingerprints are a primary key: two copies of one report can never both be kept; the
//!    loser's transaction fails and is retried, and the retry answers "replayed".
//! 4. Every audit entry naming an existing order is written under that order's lock, a lone
//!    [`record`] and an anomaly's resolution included, so an order's entries commit in `seq`
//!    order and paging its history by `seq` misses none.

use std::collections::HashSet;

use futures::TryStreamExt;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::AnyConnection;
use sqlx::{Any, Row};
use ticket_ledger::{
    plan_issue, plan_refund, plan_refund_request, plan_resolution, plan_reversal, plan_verify,
    Anomaly, AnomalyFilter, App, AppAccess, AppKey, AuditEntry, AuditFilter, Fingerprint,
    IssueCommand, IssueResult, LedgerError, NewAnomaly, NewApp, NewOrder, OrderId, OrderRecord,
    OrderRef, OrderSnapshot, OrderView, OutOrderId, OutcomeKind, RefundCommand, RefundRequest,
    RefundRequestCommand, RejectedCall, RejectedCallFilter, ResolveAnomaly, ReversalCommand,
    SecretRotation, UseRecord, VerifyCommand, VerifyOutcome, VerifyPlan, VoucherRecord,
};

use super::engine::{Engine, ErrorClass};
use crate::rows::{
    self, access_values, capacity_refusal, latest_events_sql, ms, one_row, previous_secret_values,
    ListQuery, ReadRow, SqlValue, ANOMALY_COLUMNS, APP_COLUMNS, EVENTS_TOTAL_SQL, ORDER_COLUMNS,
    REFUND_COLUMNS, USE_COLUMNS, VOUCHER_COLUMNS, WRITE_ANOMALY_RESOLUTION, WRITE_ISSUE_STATE,
    WRITE_REFUNDED_TICKETS, WRITE_REFUND_REVIEW, WRITE_REFUND_STATE, WRITE_USE_REVERSED,
    WRITE_VOUCHER_USED,
};

/// Why one attempt at an operation did not commit.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The ledger's rules (or a constraint standing for one) refused it: final.
    Refused(LedgerError),
    /// Another transaction changed what this one read: run it again (it will see the change).
    Conflict(&'static str),
    /// The database failed; [`Engine::classify`] decides whether to try again.
    Db {
        /// The step that failed.
        during: &'static str,
        /// The driver's error.
        error: sqlx::Error,
    },
    /// The connection failed while committing and no lookup could tell in time whether the
    /// commit happened (see [`super::outcome`]): final, never run again.
    OutcomeUnknown {
        /// The requests the write served (none for an app's settings).
        request_ids: Vec<String>,
        /// The commit's error, for the logs.
        why: String,
    },
}

impl From<LedgerError> for Failure {
    fn from(e: LedgerError) -> Self {
        Self::Refused(e)
    }
}

/// `.during("what")` on driver results.
pub(crate) trait During<T> {
    fn during(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> During<T> for Result<T, sqlx::Error> {
    fn during(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|error| Failure::Db {
            during: what,
            error,
        })
    }
}

/// A constraint violation turned into a domain refusal (STYLE §3.6, A3's `on_constraint`):
/// `refine` names the refusal for the violation, or `None` to keep the database error.
fn on_violation(
    engine: Engine,
    during: &'static str,
    error: sqlx::Error,
    refine: impl FnOnce(&ErrorClass) -> Option<LedgerError>,
) -> Failure {
    match refine(&engine.classify(&error)) {
        Some(refusal) => Failure::Refused(refusal),
        None => Failure::Db { during, error },
    }
}

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
fn q(engine: Engine, sql: &'static str) -> Query<'static, Any, AnyArguments> {
    sqlx::query(engine.sql(sql))
}

/// A statement built at run time (column lists, `IN` lists), in the engine's syntax.
fn q_owned(engine: Engine, sql: String) -> Query<'static, Any, AnyArguments> {
    sqlx::query(engine.sql(sql))
}

/// Binds a shared value.
pub(crate) fn bind(
    query: Query<'static, Any, AnyArguments>,
    value: &SqlValue,
) -> Query<'static, Any, AnyArguments> {
    match value {
        SqlValue::Int(i) => query.bind(*i),
        SqlValue::Text(t) => query.bind(t.clone()),
    }
}

/// Reads every row with `read`.
pub(super) async fn all<T>(
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
async fn one<T>(
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

// ---------------------------------------------------------------------------------------------
// Writes (inside the operation's transaction)
// ---------------------------------------------------------------------------------------------

/// Inserts an app and reads it back (instants are stored to the millisecond).
pub(crate) async fn create_app(
    conn: &mut AnyConnection,
    e: Engine,
    app: &NewApp,
) -> Result<App, Failure> {
    let mut insert = q_owned(
        e,
        format!("INSERT INTO apps ({APP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
    )
    .bind(app.app_key.as_str().to_owned())
    .bind(app.name.clone())
    .bind(app.secret.clone())
    .bind(ms(app.created_at));
    for value in access_values(&app.access)
        .iter()
        .chain(&previous_secret_values(app))
    {
        insert = bind(insert, value);
    }
    insert.execute(&mut *conn).await.map_err(|err| {
        on_violation(e, "registering an app", err, |v| {
            matches!(v, ErrorClass::Unique(_)).then_some(LedgerError::AppExists)
        })
    })?;
    read_back_app(conn, e, &app.app_key).await
}

/// Replaces an app's access settings; `UnknownApp` when no row matched.
pub(crate) async fn set_app_access(
    conn: &mut AnyConnection,
    e: Engine,
    (key, access): &(AppKey, AppAccess),
) -> Result<App, Failure> {
    let mut update = q(
        e,
        "UPDATE apps SET rate_limit = ?, rate_burst = ?, ip_allowlist = ? WHERE app_key = ?",
    );
    for value in &access_values(access) {
        update = bind(update, value);
    }
    let done = update
        .bind(key.as_str().to_owned())
        .execute(&mut *conn)
        .await
        .during("updating an app's access settings")?;
    // MySQL counts rows *changed*, so an update that sets the values already stored matches
    // nothing there; only a missing row is unknown.
    if done.rows_affected() == 0 && self::app(conn, e, key).await?.is_none() {
        return Err(LedgerError::UnknownApp.into());
    }
    read_back_app(conn, e, key).await
}

/// Rotates an app's secret in one statement; `UnknownApp` when no row matched.
///
/// `previous_secret = secret` comes first: MySQL evaluates the assignments of an `UPDATE` left
/// to right with the values already assigned, PostgreSQL with the old row, and this order means
/// the same on both.
pub(crate) async fn rotate_app_secret(
    conn: &mut AnyConnection,
    e: Engine,
    (key, rotation): &(AppKey, SecretRotation),
) -> Result<App, Failure> {
    let done = q(
        e,
        "UPDATE apps SET previous_secret = secret, previous_secret_expires_at_ms = ?, \
         secret = ? WHERE app_key = ?",
    )
    .bind(ms(rotation.previous_expires_at))
    .bind(rotation.new_secret.clone())
    .bind(key.as_str().to_owned())
    .execute(&mut *conn)
    .await
    .during("rotating an app's secret")?;
    if done.rows_affected() == 0 && self::app(conn, e, key).await?.is_none() {
        return Err(LedgerError::UnknownApp.into());
    }
    read_back_app(conn, e, key).await
}

/// The app just written, read back in the same transaction.
async fn read_back_app(conn: &mut AnyConnection, e: Engine, key: &AppKey) -> Result<App, Failure> {
    self::app(conn, e, key).await?.ok_or_else(|| {
        LedgerError::Internal("an app just written could not be read back".into()).into()
    })
}

/// Inserts an order, its vouchers and its audit entry, and reads the order back.
pub(crate) async fn create_order(
    conn: &mut AnyConnection,
    e: Engine,
    (order, audit): &(NewOrder, AuditEntry),
) -> Result<OrderView, Failure> {
    order.validate()?;
    let id = order.order_id.get();
    q(
        e,
        "INSERT INTO orders (order_id, app_key, out_order_id, quantity, valid_from_ms, \
         valid_until_ms, created_at_ms, issue_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(order.app_key.as_str())
    .bind(order.out_order_id.as_ref().map(|o| o.as_str().to_owned()))
    .bind(order.quantity)
    .bind(order.valid_from.map(ms))
    .bind(order.valid_until.map(ms))
    .bind(ms(order.created_at))
    .bind(order.first_issue_state().as_str())
    .execute(&mut *conn)
    .await
    // The constraints decide, not a racy look-up first (STYLE §3.6).
    .map_err(|err| {
        on_violation(e, "creating an order", err, |v| match v {
            ErrorClass::ForeignKey => Some(LedgerError::UnknownApp),
            ErrorClass::Unique(Some(name)) if name.contains("out_order_id") => {
                Some(LedgerError::OutOrderIdTaken)
            }
            ErrorClass::Unique(_) => Some(LedgerError::OrderExists),
            _ => None,
        })
    })?;
    for (seq, voucher) in order.vouchers.iter().enumerate() {
        insert_voucher(
            conn,
            e,
            id,
            seq,
            &voucher.code,
            voucher.capacity,
            None,
            None,
        )
        .await?;
    }
    insert_audit(conn, e, audit).await?;
    order_view(conn, e, order.order_id).await?.ok_or_else(|| {
        LedgerError::Internal("a created order could not be read back".into()).into()
    })
}

#[allow(clippy::too_many_arguments)] // one column each
async fn insert_voucher(
    conn: &mut AnyConnection,
    e: Engine,
    order_id: i64,
    seq: usize,
    code: &ticket_ledger::ConfirmCode,
    capacity: i64,
    voucher_type: Option<i64>,
    extras: Option<&str>,
) -> Result<(), Failure> {
    q(
        e,
        "INSERT INTO vouchers (order_id, confirm_code, seq, capacity, used, voucher_type, \
         extras) VALUES (?, ?, ?, ?, 0, ?, ?)",
    )
    .bind(order_id)
    .bind(code.as_str())
    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
    .bind(capacity)
    .bind(voucher_type)
    .bind(extras.map(str::to_owned))
    .execute(conn)
    .await
    .during("issuing a voucher")
    .map(drop)
}

/// Resolves and locks the order a verify names, runs [`plan_verify`] on what is stored, and
/// applies the plan.
///
/// The order is looked up by `order_id` *without* the caller's app as a filter: ownership is
/// the planner's decision (R6), so a foreign order is refused exactly like a missing one.
pub(crate) async fn verify(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &VerifyCommand,
) -> Result<VerifyOutcome, Failure> {
    let order = match &cmd.order {
        OrderRef::Id(id) | OrderRef::Both(id, _) => lock_order(conn, e, *id).await?,
        OrderRef::Out(out) => lock_order_by_out(conn, e, &cmd.app_key, out).await?,
    }
    .ok_or(LedgerError::OrderNotFound)?;
    let id = order.order_id;
    let snapshot = OrderSnapshot {
        vouchers: vouchers(conn, e, id).await?,
        refunds: refunds(conn, e, id).await?,
        seen: seen_fingerprints(conn, e, id, cmd.fingerprints()).await?,
        order,
    };
    let plan = plan_verify(&snapshot, cmd)?;
    apply_verify(conn, e, &snapshot, &plan, cmd).await?;
    Ok(plan.outcome)
}

/// Writes a verify plan planned on `snapshot` (whose order is locked): the counters, the use
/// log, fingerprints, refund review marks, audit entries and anomalies.
pub(crate) async fn apply_verify(
    conn: &mut AnyConnection,
    e: Engine,
    snapshot: &OrderSnapshot,
    plan: &VerifyPlan,
    cmd: &VerifyCommand,
) -> Result<(), Failure> {
    let id = snapshot.order.order_id;
    for change in &plan.changes {
        let changed = q(
            e,
            "UPDATE vouchers SET used = used + ? \
             WHERE order_id = ? AND confirm_code = ? AND used + ? <= capacity",
        )
        .bind(change.delta)
        .bind(id.get())
        .bind(change.code.as_str())
        .bind(change.delta)
        .execute(&mut *conn)
        .await
        .during("counting uses")?
        .rows_affected();
        if changed != 1 {
            let now = one(
                conn,
                q(
                    e,
                    "SELECT capacity, used FROM vouchers WHERE order_id = ? AND confirm_code = ?",
                )
                .bind(id.get())
                .bind(change.code.as_str()),
                |row| Ok((row.int(0)?, row.int(1)?)),
                "reading a voucher",
            )
            .await?;
            return Err(capacity_refusal(change, now).into());
        }
        q(
            e,
            "INSERT INTO voucher_uses (order_id, confirm_code, quantity, used_at_ms, \
             recorded_at_ms, request_id) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id.get())
        .bind(change.code.as_str())
        .bind(change.delta)
        .bind(ms(change.used_at))
        .bind(ms(cmd.meta.received_at))
        .bind(cmd.meta.request_id.as_str())
        .execute(&mut *conn)
        .await
        .during("logging a use")?;
    }
    for fp in &plan.new_fingerprints {
        q(
            e,
            "INSERT INTO verify_fingerprints \
             (order_id, confirm_code, used_at_ms, quantity, request_id) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.get())
        .bind(fp.code.as_str())
        .bind(fp.used_at_ms)
        .bind(fp.quantity)
        .bind(cmd.meta.request_id.as_str())
        .execute(&mut *conn)
        .await
        // Only possible if the order lock did not serialise us: the retry will see the
        // fingerprint and answer "replayed".
        .map_err(|error| match e.classify(&error) {
            ErrorClass::Unique(_) => Failure::Conflict("a concurrent copy of the report won"),
            _ => Failure::Db {
                during: "remembering a fingerprint",
                error,
            },
        })?;
    }
    for flow in &plan.review_refunds {
        let changed = q(
            e,
            "UPDATE refund_requests SET needs_review = 1 WHERE flow_id = ? AND state = 'pending'",
        )
        .bind(flow.as_str())
        .execute(&mut *conn)
        .await
        .during("marking a refund for review")?
        .rows_affected();
        one_row(changed, WRITE_REFUND_REVIEW)?;
    }
    for entry in plan.audit_entries(snapshot, cmd) {
        insert_audit(conn, e, &entry).await?;
    }
    for anomaly in plan.anomalies(cmd) {
        insert_anomaly(conn, e, &anomaly).await?;
    }
    Ok(())
}

/// Those of `fingerprints` already recorded for the order, in one query over the codes the
/// request names (never the order's whole history).
async fn seen_fingerprints(
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
    let marks = vec!["?"; codes.len()].join(", ");
    let mut query = q_owned(
        e,
        format!(
            "SELECT confirm_code, used_at_ms, quantity FROM verify_fingerprints \
             WHERE order_id = ? AND confirm_code IN ({marks})"
        ),
    )
    .bind(id.get());
    for code in &codes {
        query = query.bind(code.to_string());
    }
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

/// The order (by id), locked, with everything a lifecycle planner needs, or `OrderNotFound`.
pub(crate) async fn locked_snapshot(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<OrderSnapshot, Failure> {
    let order = lock_order(conn, e, id)
        .await?
        .ok_or(LedgerError::OrderNotFound)?;
    Ok(OrderSnapshot {
        vouchers: vouchers(conn, e, id).await?,
        refunds: refunds(conn, e, id).await?,
        seen: HashSet::new(),
        order,
    })
}

/// Applies an issuance report.
pub(crate) async fn issue(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &IssueCommand,
) -> Result<OutcomeKind, Failure> {
    let snapshot = locked_snapshot(conn, e, cmd.order_id).await?;
    let plan = plan_issue(&snapshot, cmd)?;
    let id = cmd.order_id.get();
    if plan.kind == OutcomeKind::Applied || plan.set_out_order_id.is_some() {
        let changed = q(
            e,
            "UPDATE orders SET issue_state = ?, issue_describe = coalesce(?, issue_describe), \
             issue_attributes = coalesce(?, issue_attributes), \
             out_order_id = coalesce(?, out_order_id) WHERE order_id = ?",
        )
        .bind(plan.state.as_str())
        .bind(plan.describe.clone())
        .bind(match &cmd.result {
            IssueResult::Issued(_) => cmd.attributes.clone(),
            IssueResult::Failed { .. } => None,
        })
        .bind(
            plan.set_out_order_id
                .as_ref()
                .map(|o| o.as_str().to_owned()),
        )
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(|err| {
            on_violation(e, "recording an issuance", err, |v| {
                matches!(v, ErrorClass::Unique(_)).then_some(LedgerError::OutOrderIdTaken)
            })
        })?
        .rows_affected();
        one_row(changed, WRITE_ISSUE_STATE)?;
    }
    let first = snapshot.vouchers.len();
    for (i, v) in plan.vouchers.iter().enumerate() {
        insert_voucher(
            conn,
            e,
            id,
            first + i,
            &v.code,
            v.capacity,
            v.voucher_type,
            v.extras.as_deref(),
        )
        .await?;
    }
    for entry in plan.audit_entries(&snapshot, cmd) {
        insert_audit(conn, e, &entry).await?;
    }
    Ok(plan.kind)
}

/// Opens a refund request.
pub(crate) async fn request_refund(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &RefundRequestCommand,
) -> Result<RefundRequest, Failure> {
    let snapshot = locked_snapshot(conn, e, cmd.order_id).await?;
    let plan = plan_refund_request(&snapshot, cmd)?;
    let r = &plan.request;
    q(
        e,
        "INSERT INTO refund_requests (flow_id, order_id, quantity, requested_at_ms, request_id, \
         state) VALUES (?, ?, ?, ?, ?, 'pending')",
    )
    .bind(r.flow_id.as_str())
    .bind(cmd.order_id.get())
    .bind(r.quantity)
    .bind(ms(r.requested_at))
    .bind(cmd.meta.request_id.as_str())
    .execute(&mut *conn)
    .await
    .during("opening a refund request")?;
    for entry in plan.audit_entries(&snapshot, cmd) {
        insert_audit(conn, e, &entry).await?;
    }
    Ok(plan.request)
}

/// Applies a refund notification. Both writes must change their row (the request is pending
/// and the tickets fit the order, as planned under its lock); when either changes none, the
/// whole notification is refused with `LedgerError::WriteChangedNoRow`.
pub(crate) async fn refund(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &RefundCommand,
) -> Result<(RefundRequest, OutcomeKind), Failure> {
    let snapshot = locked_snapshot(conn, e, cmd.order_id).await?;
    let plan = plan_refund(&snapshot, cmd)?;
    if plan.kind == OutcomeKind::Applied {
        let settling = q(
            e,
            "UPDATE refund_requests SET state = ?, refunded_tickets = ?, batch_no = ?, \
             failure_reason = ?, settled_at_ms = ?, settled_by = ? \
             WHERE flow_id = ? AND state = 'pending'",
        )
        .bind(plan.state.as_str())
        .bind(plan.refunded_tickets)
        .bind(cmd.batch_no.clone())
        .bind(cmd.failure_reason.clone())
        .bind(ms(cmd.meta.received_at))
        .bind(cmd.meta.request_id.as_str())
        .bind(plan.flow_id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|err| {
            on_violation(e, "settling a refund", err, |v| {
                matches!(v, ErrorClass::Unique(_)).then_some(LedgerError::RefundConflict)
            })
        })?
        .rows_affected();
        one_row(settling, WRITE_REFUND_STATE)?;
        let counted = q(
            e,
            "UPDATE orders SET refunded_tickets = refunded_tickets + ? \
             WHERE order_id = ? AND refunded_tickets + ? <= quantity",
        )
        .bind(plan.refunded_tickets)
        .bind(cmd.order_id.get())
        .bind(plan.refunded_tickets)
        .execute(&mut *conn)
        .await
        .during("counting refunded tickets")?
        .rows_affected();
        one_row(counted, WRITE_REFUNDED_TICKETS)?;
    }
    for entry in plan.audit_entries(&snapshot, cmd) {
        insert_audit(conn, e, &entry).await?;
    }
    let settled = refunds(conn, e, cmd.order_id)
        .await?
        .into_iter()
        .find(|r| r.flow_id == plan.flow_id)
        .ok_or_else(|| LedgerError::Internal("a settled refund could not be read back".into()))?;
    Ok((settled, plan.kind))
}

/// Gives uses back; returns the code's count after.
pub(crate) async fn reverse(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &ReversalCommand,
) -> Result<i64, Failure> {
    let snapshot = locked_snapshot(conn, e, cmd.order_id).await?;
    let id = cmd.order_id.get();
    let uses: Vec<UseRecord> = all(
        conn,
        q_owned(
            e,
            format!(
                "SELECT {USE_COLUMNS} FROM voucher_uses WHERE order_id = ? AND confirm_code = ? \
                 AND recorded_at_ms >= ? AND reversed < quantity"
            ),
        )
        .bind(id)
        .bind(cmd.code.as_str())
        .bind(ms(cmd.meta.received_at - cmd.window)),
        rows::voucher_use,
        "reading the use log",
    )
    .await?;
    let plan = plan_reversal(&snapshot, &uses, cmd)?;
    let changed = q(
        e,
        "UPDATE vouchers SET used = used - ? \
         WHERE order_id = ? AND confirm_code = ? AND used - ? >= 0",
    )
    .bind(plan.quantity)
    .bind(id)
    .bind(plan.code.as_str())
    .bind(plan.quantity)
    .execute(&mut *conn)
    .await
    .during("reversing uses")?
    .rows_affected();
    one_row(changed, WRITE_VOUCHER_USED)?;
    for (use_id, n) in &plan.takes {
        let changed = q(
            e,
            "UPDATE voucher_uses SET reversed = reversed + ? \
             WHERE id = ? AND reversed + ? <= quantity",
        )
        .bind(*n)
        .bind(*use_id)
        .bind(*n)
        .execute(&mut *conn)
        .await
        .during("marking uses reversed")?
        .rows_affected();
        one_row(changed, WRITE_USE_REVERSED)?;
    }
    for entry in plan.audit_entries(&snapshot, cmd) {
        insert_audit(conn, e, &entry).await?;
    }
    Ok(plan.used_after)
}

/// Stores an anomaly.
pub(crate) async fn insert_anomaly(
    conn: &mut AnyConnection,
    e: Engine,
    a: &NewAnomaly,
) -> Result<(), Failure> {
    q(
        e,
        "INSERT INTO anomalies (kind, order_id, app_key, request_id, at_ms, detail, request) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(a.kind.as_str())
    .bind(a.order_id)
    .bind(a.app_key.clone())
    .bind(a.request_id.as_str())
    .bind(ms(a.at))
    .bind(a.detail.to_string())
    .bind(a.request.to_string())
    .execute(conn)
    .await
    .during("recording an anomaly")
    .map(drop)
}

/// Resolves an open anomaly (locked, so two operators cannot both resolve it).
pub(crate) async fn resolve_anomaly(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &ResolveAnomaly,
) -> Result<Anomaly, Failure> {
    let current = one(
        conn,
        q_owned(
            e,
            format!("SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE id = ? FOR UPDATE"),
        )
        .bind(cmd.id),
        rows::anomaly,
        "reading an anomaly",
    )
    .await?
    .ok_or(LedgerError::AnomalyNotFound)?;
    let plan = plan_resolution(&current, cmd)?;
    // The resolution's audit entry names the anomaly's order: written under that order's lock
    // like every entry of an order (see [`record`]). Anomaly, then order: no other transaction
    // locks an existing anomaly, so this order of locks cannot deadlock with the others.
    if let Some(id) = current.anomaly.order_id.and_then(OrderId::new) {
        lock_order_row(conn, e, id).await?;
    }
    let changed = q(
        e,
        "UPDATE anomalies SET resolution = ?, note = ?, resolved_at_ms = ?, resolved_by = ? \
         WHERE id = ? AND resolution IS NULL",
    )
    .bind(cmd.resolution.as_str())
    .bind(cmd.note.as_str())
    .bind(ms(cmd.meta.received_at))
    .bind(cmd.meta.request_id.as_str())
    .bind(cmd.id)
    .execute(&mut *conn)
    .await
    .during("resolving an anomaly")?
    .rows_affected();
    one_row(changed, WRITE_ANOMALY_RESOLUTION)?;
    insert_audit(conn, e, &plan.audit).await?;
    anomaly(conn, e, cmd.id).await?.ok_or_else(|| {
        LedgerError::Internal("a resolved anomaly could not be read back".into()).into()
    })
}

/// Appends one audit entry on its own ([`ticket_ledger::LedgerStore::record`]), in turn with
/// the other writes of the order it names, for [`ticket_ledger::LedgerStore::order_events`].
///
/// Why the lock: `seq` comes from a sequence (PostgreSQL identity, InnoDB `AUTO_INCREMENT`)
/// when a transaction inserts, but the entry becomes visible when it commits, so two
/// transactions writing entries of one order could commit out of `seq` order — and a reader
/// walking the order's history with `after = <last seq seen>` would pass over the one that
/// committed second with the smaller `seq`. Every other write of an order's entries already
/// holds the order's row lock (`SELECT … FOR UPDATE`, a batch locks all its orders) from
/// before its first insert until its commit; taking the same lock here makes all of them
/// one queue per order, in which a later writer's `seq` is drawn after the earlier writer
/// committed. What a reader sees of an order is then always a prefix of its history.
///
/// The one exception is an entry naming an order that does not exist yet (a call refused as
/// `isv.order-not-exist`): there is no row to lock, so such an entry racing the order's
/// creation can still commit after the creation entry with a smaller `seq`.
pub(crate) async fn record(
    conn: &mut AnyConnection,
    e: Engine,
    entry: &AuditEntry,
) -> Result<(), Failure> {
    if let Some(id) = entry.order_id.and_then(OrderId::new) {
        lock_order_row(conn, e, id).await?;
    }
    insert_audit(conn, e, entry).await
}

/// Takes an order's row lock without reading the row (nothing when the order does not exist).
async fn lock_order_row(conn: &mut AnyConnection, e: Engine, id: OrderId) -> Result<(), Failure> {
    one(
        conn,
        q(
            e,
            "SELECT order_id FROM orders WHERE order_id = ? FOR UPDATE",
        )
        .bind(id.get()),
        |row| row.int(0),
        "locking an order",
    )
    .await
    .map(drop)
}

/// Appends one audit entry.
pub(crate) async fn insert_audit(
    conn: &mut AnyConnection,
    e: Engine,
    entry: &AuditEntry,
) -> Result<(), Failure> {
    q(
        e,
        "INSERT INTO audit_log \
         (request_id, at_ms, action, app_key, order_id, outcome, reason, detail, client_ip) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(entry.request_id.as_str())
    .bind(ms(entry.at))
    .bind(entry.action.as_str())
    .bind(entry.app_key.clone())
    .bind(entry.order_id)
    .bind(entry.outcome.as_str())
    .bind(entry.reason.as_str())
    .bind(entry.detail.to_string())
    .bind(entry.client_ip.clone())
    .execute(conn)
    .await
    .during("appending to the audit trail")
    .map(drop)
}

/// Keeps a refused anonymous call and prunes the record to the newest `keep`.
///
/// The newest `seq` is read back rather than taken from the insert's result because the
/// engines disagree on how to return it (`RETURNING` or `LAST_INSERT_ID()`); a concurrent
/// insert between the two statements only makes the pruning keep one row fewer.
pub(crate) async fn record_rejected_call(
    conn: &mut AnyConnection,
    e: Engine,
    call: &RejectedCall,
    keep: u64,
) -> Result<(), Failure> {
    if keep == 0 {
        return Ok(());
    }
    q(e, rows::INSERT_REJECTED_CALL)
        .bind(call.request_id.clone())
        .bind(ms(call.at))
        .bind(call.client_ip.clone())
        .bind(call.app_key.clone())
        .bind(call.method.clone())
        .bind(call.code)
        .bind(call.sub_code.clone())
        .execute(&mut *conn)
        .await
        .during("recording a rejected call")?;
    let newest = one(
        conn,
        q(e, "SELECT max(seq) FROM rejected_calls"),
        |row| row.opt_int(0),
        "reading the newest rejected call",
    )
    .await?
    .flatten();
    if let Some(through) = newest.and_then(|n| rows::rejected_calls_prune_through(n, keep)) {
        q(e, rows::PRUNE_REJECTED_CALLS)
            .bind(through)
            .execute(conn)
            .await
            .during("pruning rejected calls")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

/// Kept refused calls, newest first.
pub(crate) async fn rejected_calls(
    conn: &mut AnyConnection,
    e: Engine,
    filter: &RejectedCallFilter,
) -> Result<Vec<RejectedCall>, Failure> {
    let (before, limit) = rows::rejected_calls_page(filter);
    all(
        conn,
        q(e, rows::LIST_REJECTED_CALLS).bind(before).bind(limit),
        rows::rejected_call,
        "listing rejected calls",
    )
    .await
}

/// One app by key.
pub(crate) async fn app(
    conn: &mut AnyConnection,
    e: Engine,
    key: &AppKey,
) -> Result<Option<App>, Failure> {
    one(
        conn,
        q_owned(
            e,
            format!("SELECT {APP_COLUMNS} FROM apps WHERE app_key = ?"),
        )
        .bind(key.as_str()),
        rows::app,
        "reading an app",
    )
    .await
}

/// Every app, to fill the cache when the store opens.
pub(crate) async fn all_apps(conn: &mut AnyConnection, e: Engine) -> Result<Vec<App>, Failure> {
    all(
        conn,
        q_owned(e, format!("SELECT {APP_COLUMNS} FROM apps")),
        rows::app,
        "listing apps",
    )
    .await
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
            one(
                conn,
                q(
                    e,
                    "SELECT order_id FROM orders WHERE app_key = ? AND out_order_id = ?",
                )
                .bind(cmd.app_key.as_str())
                .bind(out.as_str()),
                |row| row.int(0),
                "resolving an out_order_id",
            )
            .await?
        }
    };
    Ok(found.and_then(OrderId::new))
}

/// The order's row, locked for the rest of the transaction.
async fn lock_order(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<Option<OrderRecord>, Failure> {
    one(
        conn,
        q_owned(
            e,
            format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ? FOR UPDATE"),
        )
        .bind(id.get()),
        rows::order,
        "locking an order",
    )
    .await
}

async fn lock_order_by_out(
    conn: &mut AnyConnection,
    e: Engine,
    app: &AppKey,
    out: &OutOrderId,
) -> Result<Option<OrderRecord>, Failure> {
    one(
        conn,
        q_owned(
            e,
            format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE app_key = ? AND out_order_id = ? \
                 FOR UPDATE"
            ),
        )
        .bind(app.as_str())
        .bind(out.as_str()),
        rows::order,
        "locking an order by out_order_id",
    )
    .await
}

/// An order's vouchers in issuance order.
async fn vouchers(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<Vec<VoucherRecord>, Failure> {
    all(
        conn,
        q_owned(
            e,
            format!("SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE order_id = ? ORDER BY seq"),
        )
        .bind(id.get()),
        rows::voucher,
        "reading vouchers",
    )
    .await
}

/// An order's refund requests, oldest first.
async fn refunds(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
) -> Result<Vec<RefundRequest>, Failure> {
    all(
        conn,
        q_owned(
            e,
            format!(
                "SELECT {REFUND_COLUMNS} FROM refund_requests WHERE order_id = ? \
                 ORDER BY requested_at_ms, flow_id"
            ),
        )
        .bind(id.get()),
        rows::refund,
        "reading refunds",
    )
    .await
}

async fn anomaly(conn: &mut AnyConnection, e: Engine, id: i64) -> Result<Option<Anomaly>, Failure> {
    one(
        conn,
        q_owned(
            e,
            format!("SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE id = ?"),
        )
        .bind(id),
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
    let Some(order) = one(
        conn,
        q_owned(
            e,
            format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?"),
        )
        .bind(id.get()),
        rows::order,
        "reading an order",
    )
    .await?
    else {
        return Ok(None);
    };
    let vouchers = vouchers(conn, e, id).await?;
    let mut events = all(
        conn,
        q_owned(e, latest_events_sql())
            .bind(id.get())
            .bind(i64::from(OrderView::EVENTS_SHOWN)),
        rows::audit,
        "reading the order history",
    )
    .await?;
    events.reverse();
    let events_total = one(
        conn,
        q(e, EVENTS_TOTAL_SQL).bind(id.get()),
        |row| row.int(0),
        "counting the order history",
    )
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
/// an order's entries commit in `seq` order (the order lock, see [`record`]).
pub(crate) async fn order_events(
    conn: &mut AnyConnection,
    e: Engine,
    id: OrderId,
    after_seq: Option<i64>,
    limit: u32,
) -> Result<Option<Vec<AuditEntry>>, Failure> {
    let exists = one(
        conn,
        q(e, "SELECT order_id FROM orders WHERE order_id = ?").bind(id.get()),
        |row| row.int(0),
        "looking an order up",
    )
    .await?;
    if exists.is_none() {
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
    let mut query = q_owned(e, list.sql());
    for value in &list.values {
        query = bind(query, value);
    }
    all(conn, query.bind(list.limit), read, "running a list query").await
}

/// Audit entries matching every field of `filter`, oldest first.
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
