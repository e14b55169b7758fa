//! What a store does when the database disagrees with what the ledger read: a write that must
//! change exactly one row changes none. Through [`LedgerStore`] alone that cannot happen — each
//! operation reads and writes under its order's lock — so the case asks the harness to make it
//! happen with its own means ([`Tamper`]), as a trigger, a bug or someone with a database
//! shell would.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{AnomalyKind, RefundState};
use crate::{AuditFilter, AuditOutcome};
use crate::{LedgerError, LedgerStore};

use super::build::{order, received_at, refund_cmd, refund_request, verify_cmd, Fresh};
use super::check::{audit, given_app, given_order, ledger, verify_ok, view};

/// The harness's way to make its store's database disagree with what the ledger reads. Every
/// store harness implements it with the store's own tools (SQL triggers for the SQL stores), so
/// the behaviour suite can hold every store to the same answer when a write changes no row.
#[async_trait]
pub trait Tamper: Send + Sync {
    /// From now on, whenever a refund request of order `order_id` is settled, the order's
    /// `quantity` drops to `quantity` in the same transaction, right after the request's row is
    /// updated and before the refunded tickets are counted — as an `AFTER UPDATE` trigger on
    /// `refund_requests` does. The guarded count (`refunded_tickets + n <= quantity`) then
    /// matches no row.
    async fn lower_quantity_when_a_refund_settles(&self, order_id: i64, quantity: i64);
}

/// A refund notification whose guarded `orders.refunded_tickets` update changes no row (the
/// harness lowered the order's quantity under it) is refused with
/// [`LedgerError::WriteChangedNoRow`] — not answered as a success that changed nothing. The
/// whole operation is rolled back: the refund request is still pending, the order's counts,
/// quantity and events are as before, the app's trail holds no new entry. One open
/// `write_changed_no_row` anomaly names the order, the app and the request. The same
/// notification again is refused the same way, and the order still takes verifies (a store
/// that remembers orders was not left with the undone state).
pub async fn a_write_that_changes_no_row_refuses_the_call_keeps_nothing_and_records_an_anomaly(
    store: Arc<dyn LedgerStore>,
    tamper: Arc<dyn Tamper>,
) {
    let ctx = "write changed no row";
    let f = Fresh::new();
    let a = f.key("app");
    let id = f.id(1);
    given_app(&*store, &a).await;
    given_order(&*store, order(id, &a, &[("TAMPER-01", 2)])).await;
    // A verify first, so a store that remembers orders holds this one.
    verify_ok(
        &*store,
        verify_cmd(&a, id)
            .entry("TAMPER-01", 0)
            .cumulative()
            .build(),
        ctx,
    )
    .await;
    let request = store
        .request_refund(refund_request(id, 2, received_at()))
        .await
        .unwrap_or_else(|e| panic!("{ctx}: the refund request should open, got {e:?}"));
    tamper.lower_quantity_when_a_refund_settles(id, 1).await;

    let before = ledger(&*store, id, &a, ctx).await;
    let accepted_before = accepted_entries(&*store, id, ctx).await;
    let cmd = refund_cmd(&a, id)
        .flow(&request.flow_id)
        .batch("B-TAMPER")
        .refund_num(2)
        .build();
    let request_id = cmd.meta.request_id.clone();
    let refused = store.refund(cmd.clone()).await;
    assert_eq!(
        refused.as_ref().err(),
        Some(&LedgerError::WriteChangedNoRow {
            write: "orders.refunded_tickets"
        }),
        "{ctx}: the notification is refused, never a success that changed nothing: {refused:?}"
    );

    let mut after = ledger(&*store, id, &a, ctx).await;
    assert_eq!(
        after.anomalies.len(),
        before.anomalies.len() + 1,
        "{ctx}: one anomaly is recorded: {:?}",
        after.anomalies
    );
    let anomaly = after.anomalies.remove(0);
    assert_eq!(
        (
            anomaly.anomaly.kind,
            anomaly.anomaly.order_id,
            anomaly.anomaly.app_key.as_deref(),
            anomaly.anomaly.request_id.as_str(),
            anomaly.resolution,
        ),
        (
            AnomalyKind::WriteChangedNoRow,
            Some(id),
            Some(a.as_str()),
            request_id.as_str(),
            None
        ),
        "{ctx}: the anomaly names the order, the app and the request: {anomaly:?}"
    );
    assert_eq!(
        anomaly.anomaly.detail["write"], "orders.refunded_tickets",
        "{ctx}: the anomaly names the write: {anomaly:?}"
    );
    assert_eq!(
        after, before,
        "{ctx}: nothing else changed (order, quantity, counts, refunds, events, the app's trail)"
    );
    let v = view(&*store, id, ctx).await;
    assert_eq!(
        (
            v.order.quantity,
            v.order.refunded_tickets,
            v.refunds[0].state
        ),
        (2, 0, RefundState::Pending),
        "{ctx}: the tampered quantity was rolled back with the rest; the request still pends"
    );
    assert_eq!(
        accepted_entries(&*store, id, ctx).await,
        accepted_before,
        "{ctx}: no accepted audit entry for the refused notification"
    );

    let again = store.refund(cmd).await;
    assert_eq!(
        again.err(),
        Some(LedgerError::WriteChangedNoRow {
            write: "orders.refunded_tickets"
        }),
        "{ctx}: a retry is refused the same way"
    );
    // The request still holds both tickets; a use dated before it was asked may take one (R9).
    // The store plans it from the database, not from the undone state.
    let outcome = verify_ok(
        &*store,
        verify_cmd(&a, id).entry("TAMPER-01", 1).build(),
        ctx,
    )
    .await;
    assert_eq!(
        outcome.applied_uses, 1,
        "{ctx}: the order still takes verifies"
    );
    assert_eq!(
        view(&*store, id, ctx).await.vouchers[0].used,
        1,
        "{ctx}: counted once, from the stored count"
    );
}

/// The accepted entries of order `id`'s history.
async fn accepted_entries(store: &dyn LedgerStore, id: i64, ctx: &str) -> usize {
    audit(
        store,
        AuditFilter {
            order_id: Some(id),
            outcome: Some(AuditOutcome::Accepted),
            limit: Some(1000),
            ..AuditFilter::default()
        },
        ctx,
    )
    .await
    .len()
}
