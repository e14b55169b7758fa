//! Each write operation of the SQLite store: load the snapshot ([`super::queries`]), call the
//! domain's planner, turn the plan into rows ([`crate::plan_rows`]) and execute them
//! ([`super::exec`]).
//!
//! They run on the writer thread inside their job's savepoint (see [`super::writer`]); they
//! may return a refusal at any point because the savepoint undoes whatever they did before
//! it. A verify runs without one (it can run again), and the writer runs its batch again with
//! savepoints if it fails after writing, so the same holds for it. A refusal that raises an
//! anomaly goes through [`keeping_anomaly`], which undoes the job's writes and keeps only the
//! anomaly.

use std::collections::HashSet;

use rusqlite::Connection;
use ticket_ledger::{
    plan_issue, plan_refund, plan_refund_request, plan_reversal, plan_verify, refusal_anomaly,
    Anomaly, App, AppAccess, AppKey, AuditEntry, Fingerprint, IssueCommand, LedgerError,
    NewAnomaly, NewApp, NewOrder, OrderId, OrderRef, OrderView, OutcomeKind, RefundCommand,
    RefundRequest, RefundRequestCommand, RejectedCall, ResolveAnomaly, ReversalCommand,
    SecretRotation, VerifyCommand, VerifyOutcome,
};

use super::exec::{self, write_row};
use super::fold;
use super::queries::{self, snapshot_by_id};
use super::rows::{ledger_error, violation, During, Violation};
use super::writer::Tx;
use crate::plan_rows::{
    AnomalyRow, AppAccessRow, AppRow, AuditRow, IssueRows, OrderRows, RefundRequestRows,
    RefundRows, RejectedCallRow, ResolutionRows, ReversalRows, SecretRotationRow, VerifyRows,
    WriteRow,
};
use crate::rows as shared;
use crate::statements;

/// Inserts an app and reads it back, so the caller (and the app cache) holds exactly what a
/// later read returns (instants are stored to the millisecond).
pub(crate) fn create_app(conn: &Connection, app: &NewApp) -> Result<App, LedgerError> {
    write_row(conn, &AppRow::of(app)).map_err(|e| match violation(&e) {
        Some(Violation::Unique(_)) => LedgerError::AppExists,
        _ => ledger_error(AppRow::DURING, &e),
    })?;
    read_back_app(conn, &app.app_key)
}

/// Replaces an app's access settings; `UnknownApp` when no row matched.
pub(crate) fn set_app_access(
    conn: &Connection,
    key: &AppKey,
    access: &AppAccess,
) -> Result<App, LedgerError> {
    let changed = write_row(conn, &AppAccessRow::of(key, access)).during(AppAccessRow::DURING)?;
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
    let changed =
        write_row(conn, &SecretRotationRow::of(key, rotation)).during(SecretRotationRow::DURING)?;
    if changed == 0 {
        return Err(LedgerError::UnknownApp);
    }
    read_back_app(conn, key)
}

/// The app just written, read back so the caller (and the app cache) holds exactly what a
/// later read returns (instants are stored to the millisecond).
fn read_back_app(conn: &Connection, key: &AppKey) -> Result<App, LedgerError> {
    queries::app(conn, key)?
        .ok_or_else(|| LedgerError::Internal("an app just written could not be read back".into()))
}

/// Inserts an order, its vouchers (in list order) and its audit entry, then reads the order
/// back with the same connection so the answer is exactly what was written.
pub(crate) fn create_order(
    conn: &Connection,
    order: &NewOrder,
    audit: &AuditEntry,
) -> Result<OrderView, LedgerError> {
    order.validate()?;
    exec::write(conn, &OrderRows::of(order, audit))?;
    queries::order_view(conn, order.order_id)?
        .ok_or_else(|| LedgerError::Internal("a created order could not be read back".into()))
}

/// Resolves the order, runs the domain's rules on its snapshot, and applies the plan; a
/// refusal changes nothing but the anomaly it raises ([`refusal_anomaly`]). The outer `Err` is
/// a failure that must undo the whole job (the writer rolls its savepoint back, or runs the
/// batch again with one); the inner result is the answer.
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
        OrderRef::Out(out) => queries::order_by_out(conn, &cmd.app_key, out)?.map(|o| o.order_id),
    };
    let refuse = |refusal: LedgerError| -> Result<Result<VerifyOutcome, LedgerError>, LedgerError> {
        // The anomaly names the order the request resolved to, also when the vendor named it
        // by `out_order_id` alone.
        if let Some(anomaly) = refusal_anomaly(&refusal, id, Some(&cmd.app_key), &cmd.meta) {
            exec::write(conn, &AnomalyRow::of(0, &anomaly))?;
        }
        Ok(Err(refusal))
    };
    let Some(id) = id else {
        return refuse(LedgerError::OrderNotFound);
    };
    let (mut snapshot, mut horizon) = match tx.snapshots.take(id) {
        Some(held) => held,
        None => match queries::snapshot_of(conn, id)? {
            Some(snapshot) => (snapshot, fold::Horizon::default()),
            None => return refuse(LedgerError::OrderNotFound),
        },
    };
    snapshot.seen = seen_fingerprints(tx, id, cmd, &mut horizon)?;
    let plan = match plan_verify(&snapshot, cmd) {
        Ok(plan) => plan,
        Err(refusal) => {
            tx.snapshots.put(snapshot, horizon);
            return refuse(refusal);
        }
    };
    let mut rows = VerifyRows::of(&snapshot, &plan, cmd);
    let direct = plan.changes.len() >= fold::FOLD_DIRECTLY_AT;
    // A large report's fingerprints go straight to the folded table, not through the pending
    // one it would fold them from a moment later.
    let folded_fingerprints = if direct {
        std::mem::take(&mut rows.fingerprints)
    } else {
        Vec::new()
    };
    // Through the statements the writer holds: a verify's four or so statements are the
    // writer's most frequent (`exec::Held`).
    let prepared = tx.prepared;
    let applied = keeping_anomaly(
        tx,
        |e| refusal_anomaly(e, Some(id), Some(&cmd.app_key), &cmd.meta),
        |conn| {
            if direct {
                fold::fold(conn)?;
                exec::write_held(prepared, &rows)?;
                fold::write_folded(conn, &folded_fingerprints)?;
                fold::fold(conn).map(drop)
            } else {
                exec::write_held(prepared, &rows)
            }
        },
    )?;
    match applied {
        Ok(()) => {
            if direct {
                // The folds emptied `pending_fingerprints`, but only if this batch commits:
                // read it again rather than guess.
                tx.snapshots.pending.invalidate();
            } else {
                tx.snapshots.pending.add(id, &plan.new_fingerprints);
            }
            if plan.apply_to(&mut snapshot) {
                horizon.add(&plan.new_fingerprints);
                tx.snapshots.put(snapshot, horizon);
            }
            Ok(Ok(plan.outcome))
        }
        // `snapshot` is dropped here, never put back (see above).
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// Those of the request's fingerprints already recorded for the order. Only these are looked
/// up, never the order's whole history, so the cost of a verify does not grow with its age;
/// and only those the order's `horizon` says may be recorded (a pass later than the latest
/// recorded cannot be a retry).
fn seen_fingerprints(
    tx: &mut Tx<'_>,
    id: OrderId,
    cmd: &VerifyCommand,
    horizon: &mut fold::Horizon,
) -> Result<HashSet<Fingerprint>, LedgerError> {
    let mut seen = HashSet::new();
    let fingerprints = cmd.fingerprints();
    if !fingerprints.is_empty() {
        horizon.read(tx.conn, &mut tx.snapshots.pending, id)?;
    }
    for fp in fingerprints {
        if !horizon.may_hold(&fp) {
            continue;
        }
        tx.snapshots.lookups += 1;
        if fold::seen(tx.conn, &mut tx.snapshots.pending, id, &fp)? {
            seen.insert(fp);
        }
    }
    Ok(seen)
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
                exec::write(tx.conn, &AnomalyRow::of(0, &anomaly))?;
            }
            Ok(Err(refusal))
        }
    }
}

/// Applies an issuance report.
pub(crate) fn issue(conn: &Connection, cmd: &IssueCommand) -> Result<OutcomeKind, LedgerError> {
    let snapshot = snapshot_by_id(conn, cmd.order_id)?;
    let plan = plan_issue(&snapshot, cmd)?;
    exec::write(conn, &IssueRows::of(&snapshot, &plan, cmd))?;
    Ok(plan.kind)
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

/// Opens a refund request.
pub(crate) fn request_refund(
    conn: &Connection,
    cmd: &RefundRequestCommand,
) -> Result<RefundRequest, LedgerError> {
    let snapshot = snapshot_by_id(conn, cmd.order_id)?;
    let plan = plan_refund_request(&snapshot, cmd)?;
    exec::write(conn, &RefundRequestRows::of(&snapshot, &plan, cmd))?;
    Ok(plan.request)
}

/// Applies a refund notification; when either of its writes changes no row, the whole
/// notification is refused ([`LedgerError::WriteChangedNoRow`]).
pub(crate) fn refund(
    conn: &Connection,
    cmd: &RefundCommand,
) -> Result<(RefundRequest, OutcomeKind), LedgerError> {
    let snapshot = snapshot_by_id(conn, cmd.order_id)?;
    let plan = plan_refund(&snapshot, cmd)?;
    exec::write(conn, &RefundRows::of(&snapshot, &plan, cmd))?;
    let settled = queries::refunds(conn, cmd.order_id)?
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
    // The stored count is changed below: it must hold every logged use first.
    fold::count_all(conn)?;
    let snapshot = snapshot_by_id(conn, cmd.order_id)?;
    let uses = queries::reversible_uses(conn, cmd)?;
    let plan = plan_reversal(&snapshot, &uses, cmd)?;
    exec::write(conn, &ReversalRows::of(&snapshot, &plan, cmd))?;
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

/// Resolves an open anomaly.
pub(crate) fn resolve_anomaly(
    conn: &Connection,
    cmd: &ResolveAnomaly,
) -> Result<Anomaly, LedgerError> {
    let current = queries::anomaly(conn, cmd.id)?.ok_or(LedgerError::AnomalyNotFound)?;
    let plan = ticket_ledger::plan_resolution(&current, cmd)?;
    exec::write(conn, &ResolutionRows::of(&plan, cmd))?;
    queries::anomaly(conn, cmd.id)?
        .ok_or_else(|| LedgerError::Internal("a resolved anomaly could not be read back".into()))
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

/// Appends one audit entry on its own.
pub(crate) fn record(conn: &Connection, entry: &AuditEntry) -> Result<(), LedgerError> {
    exec::write(conn, &[AuditRow::of(0, entry.clone())][..])
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
    write_row(conn, &RejectedCallRow::of(call)).during(RejectedCallRow::DURING)?;
    if let Some(through) = shared::rejected_calls_prune_through(conn.last_insert_rowid(), keep) {
        conn.prepare_cached(statements::PRUNE_REJECTED_CALLS)
            .during("preparing the rejected call pruning")?
            .execute([through])
            .during("pruning rejected calls")?;
    }
    Ok(())
}

/// [`ticket_ledger::LedgerStore::claim_relay`]: the lease and the position, in one write.
pub(crate) fn claim_relay(
    conn: &Connection,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<Option<i64>, LedgerError> {
    let claimed = conn
        .prepare_cached(statements::CLAIM_RELAY)
        .during("preparing the relay claim")?
        .execute(rusqlite::params![holder, until_ms, holder, now_ms])
        .during("claiming the event relay")?;
    if claimed != 1 {
        return Ok(None);
    }
    conn.prepare_cached(statements::SELECT_RELAY_POSITION)
        .during("preparing the relay position read")?
        .query_row([], |row| row.get(0))
        .during("reading the relay position")
        .map(Some)
}

/// [`ticket_ledger::LedgerStore::advance_relay`].
pub(crate) fn advance_relay(
    conn: &Connection,
    holder: &str,
    from: i64,
    to: i64,
) -> Result<bool, LedgerError> {
    let moved = conn
        .prepare_cached(statements::ADVANCE_RELAY)
        .during("preparing the relay advance")?
        .execute(rusqlite::params![to, holder, from])
        .during("advancing the event relay")?;
    Ok(moved == 1)
}
