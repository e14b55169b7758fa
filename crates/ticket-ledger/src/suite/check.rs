//! Set-up steps and assertions shared by the cases. Each panics with what the case expected.

use crate::model::{App, AuditEntry, AuditFilter, AuditOutcome, NewOrder, OrderView};
use crate::verify::{Flag, OutcomeKind, VerifyCommand, VerifyOutcome};
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
pub(super) async fn refused(
    store: &dyn LedgerStore,
    watched: Option<i64>,
    cmd: VerifyCommand,
    expected: &LedgerError,
    ctx: &str,
) {
    let app_key = cmd.app_key.as_str().to_owned();
    let before = untouched(store, watched, &app_key, ctx).await;
    match store.verify(cmd).await {
        Ok(o) => panic!("{ctx}: verify should be refused with {expected:?}, got Ok({o:?})"),
        Err(e) => assert_eq!(&e, expected, "{ctx}: verify's refusal"),
    }
    let after = untouched(store, watched, &app_key, ctx).await;
    assert_eq!(
        before, after,
        "{ctx}: a refused verify must write nothing (order {watched:?}, audit of app {app_key})"
    );
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

/// The last audit entry of the order, which the case expects to be the verify it just ran:
/// asserts it names the request, app and order, and has the expected outcome and reason.
pub(super) async fn assert_last_entry(
    store: &dyn LedgerStore,
    id: i64,
    cmd: &VerifyCommand,
    outcome: AuditOutcome,
    reason: &str,
    ctx: &str,
) {
    let v = view(store, id, ctx).await;
    let last = v
        .events
        .last()
        .unwrap_or_else(|| panic!("{ctx}: order {id} should have audit entries"));
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
}

/// Asserts an order id is the expected one.
pub(super) fn assert_order(got: OrderId, id: i64, ctx: &str) {
    assert_eq!(got.get(), id, "{ctx}: the order the request resolved to");
}
