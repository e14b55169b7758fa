//! Each write operation of the SQL store, for PostgreSQL and MySQL/MariaDB alike.
//!
//! Every write runs inside the transaction [`super::SqlStore`] opened for it (and may be run
//! again when the engine asks for a retry), so each function here is "one attempt": it locks
//! what it changes, loads the snapshot ([`super::queries`]), calls the domain's planner, and
//! executes the plan's rows ([`super::exec`]). No ledger rule is written in SQL.
//!
//! Concurrency, per order:
//! 1. `SELECT … FROM orders WHERE order_id = ? FOR UPDATE` before anything else is read, so
//!    operations on one order run one after another, across connections and processes, and
//!    each sees everything the previous one committed (READ COMMITTED: every statement after
//!    the lock reads the latest committed rows).
//! 2. Counters change only through conditional updates, each checked to change its row (see
//!    [`super::exec`]): a plan from a stale snapshot (should the lock ever not hold, e.g. on a
//!    database that ignores `FOR UPDATE`) fails instead of over-using.
//! 3. Fingerprints are a primary key: two copies of one report can never both be kept; the
//!    loser's transaction fails and is retried, and the retry answers "replayed".
//! 4. Every audit entry naming an existing order is written under that order's lock, a lone
//!    [`record`] and an anomaly's resolution included, so an order's entries commit in `seq`
//!    order and paging its history by `seq` misses none.

use sqlx::AnyConnection;
use ticket_ledger::{
    plan_issue, plan_refund, plan_refund_request, plan_reversal, plan_verify, Anomaly, App,
    AppAccess, AppKey, AuditEntry, IssueCommand, LedgerError, NewApp, NewOrder, OrderId, OrderRef,
    OrderView, OutcomeKind, RefundCommand, RefundRequest, RefundRequestCommand, RejectedCall,
    ResolveAnomaly, ReversalCommand, SecretRotation, VerifyCommand, VerifyOutcome,
};

use super::db::{During, Failure};
use super::engine::{Engine, ErrorClass};
use super::exec::{self, on_violation, write_row};
use super::queries::{self, lock_order_row, locked_snapshot, one, q};
use crate::plan_rows::{
    AppAccessRow, AppRow, AuditRow, IssueRows, OrderRows, RefundRequestRows, RefundRows,
    RejectedCallRow, ResolutionRows, ReversalRows, SecretRotationRow, VerifyRows, WriteRow,
};
use crate::rows::{self, ReadRow};
use crate::statements;

/// Inserts an app and reads it back (instants are stored to the millisecond).
pub(crate) async fn create_app(
    conn: &mut AnyConnection,
    e: Engine,
    app: &NewApp,
) -> Result<App, Failure> {
    write_row(conn, e, &AppRow::of(app)).await.map_err(|err| {
        on_violation(e, AppRow::DURING, err, |v| {
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
    let changed = write_row(conn, e, &AppAccessRow::of(key, access))
        .await
        .during(AppAccessRow::DURING)?;
    changed_app(conn, e, key, changed).await
}

/// Rotates an app's secret in one statement; `UnknownApp` when no row matched.
pub(crate) async fn rotate_app_secret(
    conn: &mut AnyConnection,
    e: Engine,
    (key, rotation): &(AppKey, SecretRotation),
) -> Result<App, Failure> {
    let changed = write_row(conn, e, &SecretRotationRow::of(key, rotation))
        .await
        .during(SecretRotationRow::DURING)?;
    changed_app(conn, e, key, changed).await
}

/// The app an update changed `changed` rows of, read back; `UnknownApp` when there is none.
/// MySQL counts rows *changed*, so an update that sets the values already stored matches
/// nothing there; only a missing row is unknown.
async fn changed_app(
    conn: &mut AnyConnection,
    e: Engine,
    key: &AppKey,
    changed: u64,
) -> Result<App, Failure> {
    if changed == 0 && queries::app(conn, e, key).await?.is_none() {
        return Err(LedgerError::UnknownApp.into());
    }
    read_back_app(conn, e, key).await
}

/// The app just written, read back in the same transaction.
async fn read_back_app(conn: &mut AnyConnection, e: Engine, key: &AppKey) -> Result<App, Failure> {
    queries::app(conn, e, key).await?.ok_or_else(|| {
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
    exec::write(conn, e, &OrderRows::of(order, audit)).await?;
    queries::order_view(conn, e, order.order_id)
        .await?
        .ok_or_else(|| {
            LedgerError::Internal("a created order could not be read back".into()).into()
        })
}

/// Resolves and locks the order a verify names, runs [`plan_verify`] on what is stored, and
/// writes the plan's rows.
///
/// The order is looked up by `order_id` *without* the caller's app as a filter: ownership is
/// the planner's decision (R6), so a foreign order is refused exactly like a missing one.
pub(crate) async fn verify(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &VerifyCommand,
) -> Result<VerifyOutcome, Failure> {
    let order = match &cmd.order {
        OrderRef::Id(id) | OrderRef::Both(id, _) => queries::lock_order(conn, e, *id).await?,
        OrderRef::Out(out) => queries::lock_order_by_out(conn, e, &cmd.app_key, out).await?,
    }
    .ok_or(LedgerError::OrderNotFound)?;
    let seen = queries::seen_fingerprints(conn, e, order.order_id, cmd.fingerprints()).await?;
    let snapshot = queries::snapshot(conn, e, order, seen).await?;
    let plan = plan_verify(&snapshot, cmd)?;
    exec::write(conn, e, &VerifyRows::of(&snapshot, &plan, cmd)).await?;
    Ok(plan.outcome)
}

/// Applies an issuance report.
pub(crate) async fn issue(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &IssueCommand,
) -> Result<OutcomeKind, Failure> {
    let snapshot = locked_snapshot(conn, e, cmd.order_id).await?;
    let plan = plan_issue(&snapshot, cmd)?;
    exec::write(conn, e, &IssueRows::of(&snapshot, &plan, cmd)).await?;
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
    exec::write(conn, e, &RefundRequestRows::of(&snapshot, &plan, cmd)).await?;
    Ok(plan.request)
}

/// Applies a refund notification; when either of its writes changes no row, the whole
/// notification is refused with `LedgerError::WriteChangedNoRow`.
pub(crate) async fn refund(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &RefundCommand,
) -> Result<(RefundRequest, OutcomeKind), Failure> {
    let snapshot = locked_snapshot(conn, e, cmd.order_id).await?;
    let plan = plan_refund(&snapshot, cmd)?;
    exec::write(conn, e, &RefundRows::of(&snapshot, &plan, cmd)).await?;
    let settled = queries::refunds(conn, e, cmd.order_id)
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
    let uses = queries::reversible_uses(conn, e, cmd).await?;
    let plan = plan_reversal(&snapshot, &uses, cmd)?;
    exec::write(conn, e, &ReversalRows::of(&snapshot, &plan, cmd)).await?;
    Ok(plan.used_after)
}

/// Resolves an open anomaly (locked, so two operators cannot both resolve it).
pub(crate) async fn resolve_anomaly(
    conn: &mut AnyConnection,
    e: Engine,
    cmd: &ResolveAnomaly,
) -> Result<Anomaly, Failure> {
    let current = queries::anomaly(conn, e, cmd.id, true)
        .await?
        .ok_or(LedgerError::AnomalyNotFound)?;
    let plan = ticket_ledger::plan_resolution(&current, cmd)?;
    // The resolution's audit entry names the anomaly's order: written under that order's lock
    // like every entry of an order (see [`record`]). Anomaly, then order: no other transaction
    // locks an existing anomaly, so this order of locks cannot deadlock with the others.
    if let Some(id) = current.anomaly.order_id.and_then(OrderId::new) {
        lock_order_row(conn, e, id).await?;
    }
    exec::write(conn, e, &ResolutionRows::of(&plan, cmd)).await?;
    queries::anomaly(conn, e, cmd.id, false)
        .await?
        .ok_or_else(|| {
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
    exec::write(conn, e, &[AuditRow::of(0, entry.clone())][..]).await
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
    write_row(conn, e, &RejectedCallRow::of(call))
        .await
        .during(RejectedCallRow::DURING)?;
    let newest = one(
        conn,
        q(e, statements::SERVER_NEWEST_REJECTED_CALL),
        |row| row.opt_int(0),
        "reading the newest rejected call",
    )
    .await?
    .flatten();
    if let Some(through) = newest.and_then(|n| rows::rejected_calls_prune_through(n, keep)) {
        q(e, statements::PRUNE_REJECTED_CALLS)
            .bind(through)
            .execute(conn)
            .await
            .during("pruning rejected calls")?;
    }
    Ok(())
}

/// [`ticket_ledger::LedgerStore::claim_relay`]: the lease and the position, in one write.
pub(crate) async fn claim_relay(
    conn: &mut AnyConnection,
    e: Engine,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<Option<i64>, Failure> {
    let claimed = q(e, statements::CLAIM_RELAY)
        .bind(holder.to_owned())
        .bind(until_ms)
        .bind(holder.to_owned())
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .during("claiming the event relay")?
        .rows_affected();
    if claimed != 1 {
        return Ok(None);
    }
    one(
        conn,
        q(e, statements::SELECT_RELAY_POSITION),
        |row| row.int(0),
        "reading the relay position",
    )
    .await
}

/// [`ticket_ledger::LedgerStore::advance_relay`].
pub(crate) async fn advance_relay(
    conn: &mut AnyConnection,
    e: Engine,
    holder: &str,
    from: i64,
    to: i64,
) -> Result<bool, Failure> {
    let moved = q(e, statements::ADVANCE_RELAY)
        .bind(to)
        .bind(holder.to_owned())
        .bind(from)
        .execute(conn)
        .await
        .during("advancing the event relay")?
        .rows_affected();
    Ok(moved == 1)
}
