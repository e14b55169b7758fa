//! Set-up steps and assertions shared by the cases. Each panics with what the case expected.

use crate::{refusal_anomaly, Anomaly, AnomalyFilter};
use crate::{App, AuditEntry, AuditFilter, AuditOutcome, NewOrder, OrderView};
use crate::{Flag, OutcomeKind, VerifyCommand, VerifyOutcome};
use crate::{LedgerError, LedgerStore, OrderId};

use super::build::{app, order_created_audit, order_id};

/// Registers the app `key`; panics if the store refuses.
pub async fn given_app(store: &dyn LedgerStore, key: &str) -> App {
    store
        .create_app(app(key))
        .await
        .unwrap_or_else(|e| panic!("setup: create_app({key:?}) should succeed, got {e:?}"))
}

/// Creates `order` with its [`order_created_audit`] entry; panics if the store refuses.
pub async fn given_order(store: &dyn LedgerStore, order: NewOrder) -> OrderView {
    let id = order.order_id;
    let audit = order_created_audit(&order);
    store
        .create_order(order, audit)
        .await
        .unwrap_or_else(|e| panic!("setup: create_order({id}) should succeed, got {e:?}"))
}

/// The order's view; panics if the store fails or does not find it.
pub(super) async fn view(store: &dyn LedgerStore, id: i64, ctx: &str) -> OrderView {
    store
        .order(order_id(id))
        .await
        .unwrap_or_else(|e| panic!("{ctx}: order({id}) should answer, got {e:?}"))
        .unwrap_or_else(|| panic!("{ctx}: order({id}) should exist"))
}

/// The order's whole history, walked page by page with `order_events` (oldest first); panics
/// if the store fails or does not find the order.
pub(super) async fn history(store: &dyn LedgerStore, id: i64, ctx: &str) -> Vec<AuditEntry> {
    let mut all: Vec<AuditEntry> = Vec::new();
    loop {
        let after = all.last().map(|e| e.seq);
        let page = store
            .order_events(order_id(id), after, 1000)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: order_events({id}) should answer, got {e:?}"))
            .unwrap_or_else(|| panic!("{ctx}: order_events({id}) should find the order"));
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// `(code, used)` of every voucher in issuance order.
pub(super) fn used_of(view: &OrderView) -> Vec<(String, i64)> {
    view.vouchers
        .iter()
        .map(|v| (v.code.as_str().to_owned(), v.used))
        .collect()
}

/// Asserts the order's counters, read back through `order()`.
pub(super) async fn assert_used(
    store: &dyn LedgerStore,
    id: i64,
    expected: &[(&str, i64)],
    ctx: &str,
) {
    let v = view(store, id, ctx).await;
    let expected: Vec<(String, i64)> = expected.iter().map(|&(c, n)| (c.to_owned(), n)).collect();
    assert_eq!(
        used_of(&v),
        expected,
        "{ctx}: order {id}'s (code, used) counters in issuance order"
    );
}

/// Runs `cmd`, which the case expects to be accepted.
pub(super) async fn verify_ok(
    store: &dyn LedgerStore,
    cmd: VerifyCommand,
    ctx: &str,
) -> VerifyOutcome {
    store
        .verify(cmd)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: verify should be accepted, got Err({e:?})"))
}

/// Runs `cmd` and asserts its whole outcome.
pub(super) async fn verify_expect(
    store: &dyn LedgerStore,
    cmd: VerifyCommand,
    expected: &VerifyOutcome,
    ctx: &str,
) {
    let got = verify_ok(store, cmd, ctx).await;
    assert_eq!(&got, expected, "{ctx}: verify outcome");
}

/// The outcome the case expects.
pub(super) fn outcome(
    id: i64,
    kind: OutcomeKind,
    applied_uses: i64,
    replayed_entries: usize,
    flags: Vec<Flag>,
) -> VerifyOutcome {
    VerifyOutcome {
        order_id: order_id(id),
        kind,
        applied_uses,
        replayed_entries,
        flags,
    }
}

/// An `Applied` outcome with no replayed entries.
pub(super) fn applied(id: i64, uses: i64, flags: Vec<Flag>) -> VerifyOutcome {
    outcome(id, OutcomeKind::Applied, uses, 0, flags)
}

/// Everything a refusal must leave untouched: the order's row, counters and history, and the
/// number of audit entries that name the calling app.
#[derive(Debug, PartialEq)]
struct Untouched {
    order: Option<OrderView>,
    app_entries: usize,
}

async fn untouched(
    store: &dyn LedgerStore,
    watched: Option<i64>,
    app_key: &str,
    ctx: &str,
) -> Untouched {
    let order = match watched {
        Some(id) => store
            .order(order_id(id))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: order({id}) should answer, got {e:?}")),
        None => None,
    };
    let app_entries = audit(
        store,
        AuditFilter {
            app_key: Some(app_key.to_owned()),
            ..AuditFilter::default()
        },
        ctx,
    )
    .await
    .len();
    Untouched { order, app_entries }
}

/// Runs `cmd`, asserts it is refused with exactly `expected`, and that it wrote nothing: the
/// `watched` order (its counters and its events) and the calling app's audit entries are as
/// before. A store records no audit entry for a refusal (the gateway calls `record` itself).
/// The only thing a refusal may leave is the anomaly [`refusal_anomaly`] names for it: when
/// the request names the watched order by id, its anomalies afterwards are exactly those before
/// plus that one (if any).
pub(super) async fn refused(
    store: &dyn LedgerStore,
    watched: Option<i64>,
    cmd: VerifyCommand,
    expected: &LedgerError,
    ctx: &str,
) {
    let app_key = cmd.app_key.as_str().to_owned();
    let named = cmd.order.order_id().map(OrderId::get);
    let anomaly = refusal_anomaly(
        expected,
        cmd.order.order_id(),
        Some(&cmd.app_key),
        &cmd.meta,
    );
    let before = untouched(store, watched, &app_key, ctx).await;
    let anomalies_before = match watched {
        Some(id) => anomalies_of(store, id, ctx).await,
        None => Vec::new(),
    };
    match store.verify(cmd).await {
        Ok(o) => panic!("{ctx}: verify should be refused with {expected:?}, got Ok({o:?})"),
        Err(e) => assert_eq!(&e, expected, "{ctx}: verify's refusal"),
    }
    let after = untouched(store, watched, &app_key, ctx).await;
    assert_eq!(
        before, after,
        "{ctx}: a refused verify must write nothing (order {watched:?}, audit of app {app_key})"
    );
    if let Some(id) = watched {
        let mut got = anomalies_of(store, id, ctx).await;
        if let (Some(want), true) = (&anomaly, named == Some(id)) {
            assert_eq!(
                got.len(),
                anomalies_before.len() + 1,
                "{ctx}: the refusal {expected:?} stores exactly one anomaly, got {got:?}"
            );
            let new = got.remove(0);
            assert_open_anomaly(&new, want, ctx);
        }
        assert_eq!(
            got, anomalies_before,
            "{ctx}: the refusal {expected:?} stores no other anomaly"
        );
    }
}

/// The snapshot a store plans from, read through `order()` (no fingerprints).
pub(super) fn snapshot_of(v: &OrderView) -> crate::OrderSnapshot {
    crate::OrderSnapshot {
        order: v.order.clone(),
        vouchers: v.vouchers.clone(),
        seen: std::collections::HashSet::new(),
        refunds: v.refunds.clone(),
    }
}

/// The order's anomalies, newest first (up to 1000).
pub(super) async fn anomalies_of(store: &dyn LedgerStore, id: i64, ctx: &str) -> Vec<Anomaly> {
    let filter = AnomalyFilter {
        order_id: Some(id),
        limit: Some(1000),
        ..AnomalyFilter::default()
    };
    store
        .anomalies(filter.clone())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: anomalies({filter:?}) should answer, got {e:?}"))
}

/// Asserts `got` is `want` as stored: a positive id, open (no resolution, note or time).
pub(super) fn assert_open_anomaly(got: &Anomaly, want: &crate::NewAnomaly, ctx: &str) {
    assert!(
        got.id > 0,
        "{ctx}: the store assigns a positive id, got {got:?}"
    );
    assert_eq!(&got.anomaly, want, "{ctx}: the anomaly as stored");
    assert_eq!(
        (got.resolution, got.note.as_deref(), got.resolved_at),
        (None, None, None),
        "{ctx}: a new anomaly is open"
    );
}

/// Asserts `got` is `want` as stored: same fields, with a store-assigned positive `seq`.
pub(super) fn assert_stored(got: &AuditEntry, want: &AuditEntry, ctx: &str) {
    assert!(
        got.seq > 0,
        "{ctx}: the store assigns a positive seq, got {}",
        got.seq
    );
    let mut want = want.clone();
    want.seq = got.seq;
    assert_eq!(got, &want, "{ctx}: the entry as recorded");
}

/// Asserts the entries appended to the order since `before` are exactly `want` (in order, as
/// stored), and returns them.
pub(super) async fn assert_appended(
    store: &dyn LedgerStore,
    before: &OrderView,
    want: &[AuditEntry],
    ctx: &str,
) -> OrderView {
    let id = before.order.order_id.get();
    let after = view(store, id, ctx).await;
    assert_eq!(
        after.events.get(..before.events.len()),
        Some(&before.events[..]),
        "{ctx}: earlier events stay as they were"
    );
    let new = &after.events[before.events.len()..];
    assert_eq!(
        new.len(),
        want.len(),
        "{ctx}: the events appended, got {new:?}, want {want:?}"
    );
    for (n, (g, w)) in new.iter().zip(want).enumerate() {
        assert_stored(g, w, &format!("{ctx}: appended event {n}"));
    }
    after
}

/// What a refused lifecycle operation must leave as it was: the order (row, vouchers, refunds,
/// events), the app's audit entries and the order's anomalies.
#[derive(Debug, PartialEq)]
pub(super) struct Ledger {
    order: Option<OrderView>,
    app_entries: usize,
    /// The order's anomalies.
    pub(super) anomalies: Vec<Anomaly>,
}

/// Reads [`Ledger`] for order `id` of app `app_key`.
pub(super) async fn ledger(store: &dyn LedgerStore, id: i64, app_key: &str, ctx: &str) -> Ledger {
    let Untouched { order, app_entries } = untouched(store, Some(id), app_key, ctx).await;
    Ledger {
        order,
        app_entries,
        anomalies: anomalies_of(store, id, ctx).await,
    }
}

/// Asserts `result` is the refusal `expected`.
pub(super) fn assert_refusal<T: std::fmt::Debug>(
    result: Result<T, LedgerError>,
    expected: &LedgerError,
    ctx: &str,
) {
    match result {
        Ok(v) => panic!("{ctx}: should be refused with {expected:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(&e, expected, "{ctx}: the refusal"),
    }
}

/// Lists audit entries; panics if the store fails.
pub(super) async fn audit(
    store: &dyn LedgerStore,
    filter: AuditFilter,
    ctx: &str,
) -> Vec<AuditEntry> {
    store
        .audit(filter.clone())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: audit({filter:?}) should answer, got {e:?}"))
}

/// The order's audit entries with `outcome`.
pub(super) async fn order_entries(
    store: &dyn LedgerStore,
    id: i64,
    outcome: AuditOutcome,
    ctx: &str,
) -> Vec<AuditEntry> {
    audit(
        store,
        AuditFilter {
            order_id: Some(id),
            outcome: Some(outcome),
            ..AuditFilter::default()
        },
        ctx,
    )
    .await
}

/// The last audit entry of the order other than a status transition, which the case expects
/// to be the verify it just ran: asserts it names the request, app and order, and has the
/// expected outcome and reason, and that whatever follows it is a status transition (action
/// `order.status`) caused by the same request.
pub(super) async fn assert_last_entry(
    store: &dyn LedgerStore,
    id: i64,
    cmd: &VerifyCommand,
    outcome: AuditOutcome,
    reason: &str,
    ctx: &str,
) {
    let v = view(store, id, ctx).await;
    let at = v
        .events
        .iter()
        .rposition(|e| e.action != STATUS_ACTION)
        .unwrap_or_else(|| panic!("{ctx}: order {id} should have audit entries"));
    let last = &v.events[at];
    assert_eq!(
        (
            last.request_id.as_str(),
            last.app_key.as_deref(),
            last.order_id,
            last.outcome,
            last.reason.as_str(),
            last.at,
        ),
        (
            cmd.meta.request_id.as_str(),
            Some(cmd.app_key.as_str()),
            Some(id),
            outcome,
            reason,
            cmd.meta.received_at,
        ),
        "{ctx}: the verify's audit entry (request_id, app_key, order_id, outcome, reason, at)"
    );
    for e in &v.events[at + 1..] {
        assert_eq!(
            e.request_id, cmd.meta.request_id,
            "{ctx}: a status transition after the verify is the verify's own: {e:?}"
        );
    }
}

/// The action of a status transition entry.
pub(super) const STATUS_ACTION: &str = "order.status";

/// `(from, to)` of the order's status transition entries, oldest first; asserts each names
/// the order, its app, `reason` = `to`, and is accepted.
pub(super) fn transitions(view: &OrderView) -> Vec<(String, String)> {
    view.events
        .iter()
        .filter(|e| e.action == STATUS_ACTION)
        .map(|e| {
            let from = e.detail["from"].as_str().unwrap_or("?").to_owned();
            let to = e.detail["to"].as_str().unwrap_or("?").to_owned();
            assert_eq!(
                (e.outcome, e.reason.as_str(), e.order_id, e.app_key.as_deref()),
                (
                    AuditOutcome::Accepted,
                    to.as_str(),
                    Some(view.order.order_id.get()),
                    Some(view.order.app_key.as_str())
                ),
                "a status transition entry: accepted, reason = the new status, the order's ids: {e:?}"
            );
            (from, to)
        })
        .collect()
}

/// Asserts an order id is the expected one.
pub(super) fn assert_order(got: OrderId, id: i64, ctx: &str) {
    assert_eq!(got.get(), id, "{ctx}: the order the request resolved to");
}
