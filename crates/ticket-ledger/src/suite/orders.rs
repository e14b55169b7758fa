//! Orders: creation, its refusals, and what `order()` shows afterwards.

use std::sync::Arc;

use chrono::Duration;

use crate::{AuditFilter, NewVoucher, OrderStatus, VoucherRecord};
use crate::{LedgerError, LedgerStore};

use super::build::{
    code, order, order_created_at, order_created_audit, order_id, out, record_of, Fresh,
};
use super::check::{audit, given_app, given_order, view};

/// An order created without vouchers awaits issuance: it has no vouchers, its row is stored as
/// given, and `order()` reads back what `create_order` answered.
pub async fn order_without_vouchers_awaits_issuance(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    let new = order(f.id(1), &a, &[]);
    let created = store
        .create_order(new.clone(), order_created_audit(&new))
        .await
        .expect("create_order of an order without vouchers should succeed");
    assert_eq!(
        created.order,
        record_of(&new),
        "create_order's answer: the order row"
    );
    assert!(created.vouchers.is_empty(), "no vouchers were issued");
    assert_eq!(created.status(), OrderStatus::AwaitingIssuance, "status");

    let read = view(&*store, f.id(1), "order() after create_order").await;
    assert_eq!(
        read, created,
        "order() should read back what create_order answered"
    );
    assert_eq!(
        read.status(),
        OrderStatus::AwaitingIssuance,
        "status read back"
    );
}

/// An order created with vouchers is issued: every voucher is stored in issuance order with its
/// capacity and nothing used, and every field of the row round-trips.
pub async fn order_with_vouchers_is_issued_with_nothing_used(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    // Issuance order deliberately not alphabetical, so a store sorting by code is caught.
    let mut new = order(f.id(1), &a, &[("ZETA-9", 2), ("ALPHA-1", 1), ("MID-5", 3)]);
    new.out_order_id = Some(out(&f.key("out")));
    new.quantity = 4;
    new.valid_from = Some(order_created_at() + Duration::days(2));
    new.valid_until = Some(order_created_at() + Duration::days(30));
    let created = given_order(&*store, new.clone()).await;

    let expected_vouchers = vec![
        VoucherRecord {
            code: code("ZETA-9"),
            capacity: 2,
            used: 0,
        },
        VoucherRecord {
            code: code("ALPHA-1"),
            capacity: 1,
            used: 0,
        },
        VoucherRecord {
            code: code("MID-5"),
            capacity: 3,
            used: 0,
        },
    ];
    for (what, v) in [
        ("create_order's answer", created),
        ("order()", view(&*store, f.id(1), "read").await),
    ] {
        assert_eq!(v.order, record_of(&new), "{what}: the order row");
        assert_eq!(
            v.vouchers, expected_vouchers,
            "{what}: vouchers in issuance order"
        );
        assert_eq!(v.status(), OrderStatus::Issued, "{what}: status");
    }
}

/// Creating an order id twice is refused with `OrderExists`; the first order is unchanged.
pub async fn duplicate_order_id_is_refused_with_order_exists(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 1)])).await;
    let before = view(&*store, f.id(1), "before the duplicate").await;

    let dup = order(f.id(1), &a, &[("B", 5)]);
    let err = store
        .create_order(dup.clone(), order_created_audit(&dup))
        .await
        .expect_err("a second create_order with the same id should be refused");
    assert_eq!(err, LedgerError::OrderExists, "duplicate order id");
    assert_eq!(
        view(&*store, f.id(1), "after the duplicate").await,
        before,
        "the refused duplicate must change nothing (vouchers, events)"
    );
}

/// An order naming an unregistered app is refused with `UnknownApp` and not stored; an
/// unknown order id reads as `None`.
pub async fn order_for_unknown_app_is_refused_with_unknown_app(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let new = order(f.id(1), &f.key("ghost"), &[("A", 1)]);
    let err = store
        .create_order(new.clone(), order_created_audit(&new))
        .await
        .expect_err("create_order for an unregistered app should be refused");
    assert_eq!(err, LedgerError::UnknownApp, "unknown app");
    let read = store
        .order(order_id(f.id(1)))
        .await
        .expect("order() of an unknown id should answer Ok(None)");
    assert!(
        read.is_none(),
        "the refused order must not be stored, got {read:?}"
    );
    let entries = audit(
        &*store,
        AuditFilter {
            order_id: Some(f.id(1)),
            ..AuditFilter::default()
        },
        "audit of the refused order",
    )
    .await;
    assert!(
        entries.is_empty(),
        "a refused create_order must not append its audit entry, got {entries:?}"
    );
}

/// `out_order_id` is unique within an app (`OutOrderIdTaken`) but two apps may use the same one.
pub async fn out_order_id_is_unique_per_app_not_across_apps(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let (a, b) = (f.key("app-a"), f.key("app-b"));
    given_app(&*store, &a).await;
    given_app(&*store, &b).await;
    let shared = f.key("vendor-order");

    let mut first = order(f.id(1), &a, &[("A", 1)]);
    first.out_order_id = Some(out(&shared));
    given_order(&*store, first).await;

    let mut taken = order(f.id(2), &a, &[("A", 1)]);
    taken.out_order_id = Some(out(&shared));
    let err = store
        .create_order(taken.clone(), order_created_audit(&taken))
        .await
        .expect_err("a second order of the same app with the same out_order_id should be refused");
    assert_eq!(
        err,
        LedgerError::OutOrderIdTaken,
        "out_order_id reused in one app"
    );
    let read = store
        .order(order_id(f.id(2)))
        .await
        .expect("order() should answer");
    assert!(
        read.is_none(),
        "the refused order must not be stored, got {read:?}"
    );

    let mut other_app = order(f.id(3), &b, &[("A", 1)]);
    other_app.out_order_id = Some(out(&shared));
    given_order(&*store, other_app).await;
}

/// Orders that are inconsistent in themselves (no tickets, a voucher listed twice, a voucher
/// allowing no use, a validity window inside out) are refused with `InvalidOrder` and leave
/// nothing behind: the same id can then be created properly.
pub async fn invalid_order_is_refused_and_not_stored(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;

    let mut no_tickets = order(f.id(1), &a, &[("A", 1)]);
    no_tickets.quantity = 0;
    let twice = order(f.id(1), &a, &[("A", 1), ("B", 1), ("A", 2)]);
    let mut no_use = order(f.id(1), &a, &[("A", 1)]);
    no_use.vouchers.push(NewVoucher {
        code: code("B"),
        capacity: 0,
    });
    let mut inside_out = order(f.id(1), &a, &[("A", 1)]);
    inside_out.valid_from = Some(order_created_at() + Duration::days(5));
    inside_out.valid_until = Some(order_created_at() + Duration::days(4));

    for (what, bad) in [
        ("quantity 0", no_tickets),
        ("a code listed twice", twice),
        ("a voucher with capacity 0", no_use),
        ("valid_from after valid_until", inside_out),
    ] {
        let err = store
            .create_order(bad.clone(), order_created_audit(&bad))
            .await
            .expect_err(what);
        assert!(
            matches!(err, LedgerError::InvalidOrder(_)),
            "{what}: should be refused with InvalidOrder, got {err:?}"
        );
        let read = store
            .order(order_id(f.id(1)))
            .await
            .expect("order() should answer");
        assert!(
            read.is_none(),
            "{what}: nothing may be stored, got {read:?}"
        );
    }
    let fine = given_order(&*store, order(f.id(1), &a, &[("A", 1), ("B", 2)])).await;
    assert_eq!(fine.vouchers.len(), 2, "the valid order after the refusals");
    assert_eq!(
        fine.events.len(),
        1,
        "only the valid order's audit entry exists"
    );
}

/// `create_order` appends its audit entry in the same write: the order's `events` hold it
/// (with a store-assigned positive `seq`) and `audit` lists it by order and by app.
pub async fn order_creation_is_recorded_in_its_events(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    let new = order(f.id(1), &a, &[("A", 2)]);
    let entry = order_created_audit(&new);
    let created = store
        .create_order(new, entry.clone())
        .await
        .expect("create_order should succeed");

    for (what, events) in [
        ("create_order's answer", created.events),
        ("order()", view(&*store, f.id(1), "read").await.events),
        (
            "audit(order_id)",
            audit(
                &*store,
                AuditFilter {
                    order_id: Some(f.id(1)),
                    ..AuditFilter::default()
                },
                "audit by order",
            )
            .await,
        ),
        (
            "audit(app_key)",
            audit(
                &*store,
                AuditFilter {
                    app_key: Some(a.clone()),
                    ..AuditFilter::default()
                },
                "audit by app",
            )
            .await,
        ),
    ] {
        assert_eq!(
            events.len(),
            1,
            "{what}: exactly the creation entry, got {events:?}"
        );
        let got = &events[0];
        assert!(
            got.seq > 0,
            "{what}: the store assigns a positive seq, got {}",
            got.seq
        );
        let mut want = entry.clone();
        want.seq = got.seq;
        assert_eq!(got, &want, "{what}: the creation entry as given");
    }
}
