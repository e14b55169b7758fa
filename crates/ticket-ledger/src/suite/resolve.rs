//! Verify: which order a request names, and who may see it (R4–R7).

use std::sync::Arc;

use crate::{LedgerError, LedgerStore};

use super::build::{order, out, verify_cmd, Fresh};
use super::check::{
    applied, assert_order, assert_used, given_app, given_order, refused, verify_expect,
};

/// R4: a request naming an order the ledger does not have — by `order_id`, by both keys, or by
/// `out_order_id` alone — is refused with `OrderNotFound` and writes nothing.
pub async fn verify_of_unknown_order_is_order_not_found(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 2)])).await;
    let unknown = f.id(2);
    let ghost = f.key("ghost");

    for (what, cmd) in [
        ("by order_id", verify_cmd(&a, unknown).entry("A", 1).build()),
        (
            "by both keys",
            verify_cmd(&a, unknown)
                .by_both(unknown, &ghost)
                .entry("A", 1)
                .build(),
        ),
        (
            "by out_order_id",
            verify_cmd(&a, unknown).by_out(&ghost).entry("A", 1).build(),
        ),
        (
            "legacy order-level",
            verify_cmd(&a, unknown).order_level(1).build(),
        ),
    ] {
        refused(
            &*store,
            Some(f.id(1)),
            cmd,
            &LedgerError::OrderNotFound,
            what,
        )
        .await;
    }
}

/// R5: `out_order_id` beside an `order_id` must be the one recorded for it
/// (`OutOrderIdMismatch` otherwise); the matching pair is accepted; an order whose vendor id is
/// not recorded cannot contradict one.
pub async fn out_order_id_contradicting_order_id_is_refused(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    let known = f.key("vendor-1");
    let mut with_out = order(f.id(1), &a, &[("A", 3)]);
    with_out.out_order_id = Some(out(&known));
    given_order(&*store, with_out).await;
    given_order(&*store, order(f.id(2), &a, &[("A", 3)])).await;

    let wrong = verify_cmd(&a, f.id(1))
        .by_both(f.id(1), &f.key("vendor-2"))
        .entry("A", 1)
        .build();
    refused(
        &*store,
        Some(f.id(1)),
        wrong,
        &LedgerError::OutOrderIdMismatch,
        "R5 mismatch",
    )
    .await;

    let right = verify_cmd(&a, f.id(1))
        .by_both(f.id(1), &known)
        .entry("A", 1)
        .build();
    verify_expect(
        &*store,
        right,
        &applied(f.id(1), 1, vec![]),
        "R5 matching pair",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 1)], "after the matching pair").await;

    let unrecorded = verify_cmd(&a, f.id(2))
        .by_both(f.id(2), &known)
        .entry("A", 1)
        .build();
    verify_expect(
        &*store,
        unrecorded,
        &applied(f.id(2), 1, vec![]),
        "R5: both keys for an order without a recorded out_order_id",
    )
    .await;
    assert_used(
        &*store,
        f.id(2),
        &[("A", 1)],
        "the order without out_order_id",
    )
    .await;
    assert_used(
        &*store,
        f.id(1),
        &[("A", 1)],
        "the order that owns the out_order_id",
    )
    .await;
}

/// R5: `out_order_id` alone resolves within the calling app: two apps sharing a vendor id each
/// reach their own order, and another app's vendor id is `OrderNotFound`.
pub async fn out_order_id_alone_resolves_within_the_calling_app(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let (a, b, c) = (f.key("app-a"), f.key("app-b"), f.key("app-c"));
    for key in [&a, &b, &c] {
        given_app(&*store, key).await;
    }
    let shared = f.key("shared");
    let only_b = f.key("only-b");
    let mut oa = order(f.id(1), &a, &[("A", 5)]);
    oa.out_order_id = Some(out(&shared));
    let mut ob = order(f.id(2), &b, &[("A", 5)]);
    ob.out_order_id = Some(out(&shared));
    let mut ob2 = order(f.id(3), &b, &[("A", 5)]);
    ob2.out_order_id = Some(out(&only_b));
    given_order(&*store, oa).await;
    given_order(&*store, ob).await;
    given_order(&*store, ob2).await;

    // The order id given to the builder is ignored by `by_out`.
    let by_a = verify_cmd(&a, 1).by_out(&shared).entry("A", 2).build();
    let got = store
        .verify(by_a)
        .await
        .expect("app a's out_order_id should resolve");
    assert_order(got.order_id, f.id(1), "app a by out_order_id");
    let by_b = verify_cmd(&b, 1).by_out(&shared).entry("A", 3).build();
    let got = store
        .verify(by_b)
        .await
        .expect("app b's out_order_id should resolve");
    assert_order(got.order_id, f.id(2), "app b by out_order_id");
    assert_used(&*store, f.id(1), &[("A", 2)], "app a's order").await;
    assert_used(&*store, f.id(2), &[("A", 3)], "app b's order").await;

    let foreign = verify_cmd(&a, 1).by_out(&only_b).entry("A", 1).build();
    refused(
        &*store,
        Some(f.id(3)),
        foreign,
        &LedgerError::OrderNotFound,
        "app a with app b's out_order_id",
    )
    .await;
    let stranger = verify_cmd(&c, 1).by_out(&shared).entry("A", 1).build();
    refused(
        &*store,
        Some(f.id(1)),
        stranger,
        &LedgerError::OrderNotFound,
        "app c with a's and b's out_order_id",
    )
    .await;
    assert_used(
        &*store,
        f.id(2),
        &[("A", 3)],
        "app b's order after app c's attempt",
    )
    .await;
}

/// R6: another app's order is refused exactly like an unknown one (`OrderNotFound`), whatever
/// else is wrong with the request — a mismatching `out_order_id` or an unissued order must not
/// reveal that the order exists — and nothing is written.
pub async fn another_apps_order_is_indistinguishable_from_an_unknown_one(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let (owner, intruder) = (f.key("owner"), f.key("intruder"));
    given_app(&*store, &owner).await;
    given_app(&*store, &intruder).await;
    let known = f.key("vendor");
    let mut issued = order(f.id(1), &owner, &[("A", 2)]);
    issued.out_order_id = Some(out(&known));
    given_order(&*store, issued).await;
    given_order(&*store, order(f.id(2), &owner, &[])).await;

    let unknown_err = store
        .verify(verify_cmd(&intruder, f.id(9)).entry("A", 1).build())
        .await
        .expect_err("an unknown order should be refused");
    assert_eq!(unknown_err, LedgerError::OrderNotFound, "R4 baseline");

    for (what, watched, cmd) in [
        (
            "by order_id",
            f.id(1),
            verify_cmd(&intruder, f.id(1)).entry("A", 1).build(),
        ),
        (
            "by both keys",
            f.id(1),
            verify_cmd(&intruder, f.id(1))
                .by_both(f.id(1), &known)
                .entry("A", 1)
                .build(),
        ),
        (
            "by both keys, mismatching",
            f.id(1),
            verify_cmd(&intruder, f.id(1))
                .by_both(f.id(1), &f.key("wrong"))
                .entry("A", 1)
                .build(),
        ),
        (
            "legacy code form",
            f.id(1),
            verify_cmd(&intruder, f.id(1)).legacy_code("A", 1).build(),
        ),
        (
            "unknown code",
            f.id(1),
            verify_cmd(&intruder, f.id(1)).entry("NOPE", 1).build(),
        ),
        (
            "unissued order",
            f.id(2),
            verify_cmd(&intruder, f.id(2)).entry("A", 1).build(),
        ),
    ] {
        refused(
            &*store,
            Some(watched),
            cmd,
            &unknown_err,
            &format!("R6 {what}"),
        )
        .await;
    }
    assert_used(&*store, f.id(1), &[("A", 0)], "the owner's order").await;
}

/// R7: an order with no issued codes cannot be verified (`OrderNotIssued`), in any form.
pub async fn unissued_order_cannot_be_verified(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[])).await;
    for (what, cmd) in [
        (
            "voucher_infos",
            verify_cmd(&a, f.id(1)).entry("A", 1).build(),
        ),
        (
            "legacy code",
            verify_cmd(&a, f.id(1)).legacy_code("A", 1).build(),
        ),
        (
            "order-level",
            verify_cmd(&a, f.id(1)).order_level(1).build(),
        ),
        (
            "cumulative",
            verify_cmd(&a, f.id(1)).cumulative().entry("A", 0).build(),
        ),
    ] {
        refused(
            &*store,
            Some(f.id(1)),
            cmd,
            &LedgerError::OrderNotIssued,
            &format!("R7 {what}"),
        )
        .await;
    }
}

/// R5 + R8: a verify naming its order by `out_order_id` alone is refused like any other when
/// every ticket is refunded, and the `verify_after_refund` anomaly it leaves names the order
/// the request resolved to, so `anomalies` filtered by that order lists it.
pub async fn refusal_anomaly_of_a_verify_by_out_order_id_names_the_order(
    store: Arc<dyn LedgerStore>,
) {
    use crate::AnomalyKind;
    use chrono::Duration;
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    let vendor = f.key("vendor");
    let mut o = order(f.id(1), &a, &[("OUT-0001", 1)]);
    o.out_order_id = Some(out(&vendor));
    given_order(&*store, o).await;
    let t = super::build::received_at() - Duration::hours(3);
    store
        .request_refund(super::build::refund_request(f.id(1), 1, t))
        .await
        .expect("refund request");
    store
        .refund(super::build::refund_cmd(&a, f.id(1)).received_at(t).build())
        .await
        .expect("refund");
    let err = store
        .verify(
            verify_cmd(&a, f.id(1))
                .by_out(&vendor)
                .entry("OUT-0001", 1)
                .build(),
        )
        .await
        .expect_err("a refunded order");
    assert_eq!(err, LedgerError::OrderRefunded, "R8 by out_order_id");
    let listed = super::check::anomalies_of(&*store, f.id(1), "anomalies").await;
    assert_eq!(
        listed.iter().map(|x| x.anomaly.kind).collect::<Vec<_>>(),
        [AnomalyKind::VerifyAfterRefund],
        "the anomaly is listed under the order it concerns: {listed:?}"
    );
}
