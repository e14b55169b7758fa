//! Verify: gate times and the vendor's legacy totals (R22–R27).

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::NewOrder;
use crate::UsedDateProblem;
use crate::{Flag, VerifyPolicy};
use crate::{LedgerError, LedgerStore};

use super::build::{code, order, order_created_at, received_at, verify_cmd, Fresh};
use super::check::{applied, assert_used, given_app, given_order, refused, verify_expect};

async fn issued_with(
    store: &dyn LedgerStore,
    f: &Fresh,
    edit: impl FnOnce(&mut NewOrder),
) -> String {
    let a = f.key("app");
    given_app(store, &a).await;
    let mut o = order(f.id(1), &a, &[("A", 5)]);
    edit(&mut o);
    given_order(store, o).await;
    a
}

fn beijing(at: DateTime<Utc>) -> String {
    let tz = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    tz.from_utc_datetime(&at.naive_utc())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn date_refusal(at: DateTime<Utc>, why: UsedDateProblem) -> LedgerError {
    LedgerError::UsedDateInvalid {
        used_date: beijing(at),
        why,
    }
}

/// R22: an entry without `used_date` is applied at the receive time and flagged
/// `ServerTimeUsed`.
pub async fn missing_used_date_uses_server_time_and_is_flagged(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued_with(&*store, &f, |_| {}).await;
    let cmd = verify_cmd(&a, f.id(1)).entry_at("A", 2, None).build();
    let flags = vec![Flag::ServerTimeUsed { code: code("A") }];
    verify_expect(&*store, cmd, &applied(f.id(1), 2, flags), "R22").await;
    assert_used(&*store, f.id(1), &[("A", 2)], "R22").await;
}

/// R23: a gate time later than the receive time plus the skew tolerance is refused as
/// `UsedDateInvalid { InFuture }`; up to the tolerance it is accepted.
pub async fn used_date_beyond_the_skew_tolerance_is_refused_as_future(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued_with(&*store, &f, |_| {}).await;
    let tolerance = VerifyPolicy::default().future_tolerance;
    let too_late = received_at() + tolerance + Duration::seconds(1);
    let cmd = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(too_late))
        .build();
    refused(
        &*store,
        Some(f.id(1)),
        cmd,
        &date_refusal(too_late, UsedDateProblem::InFuture),
        "R23 beyond",
    )
    .await;

    let at_edge = received_at() + tolerance;
    let cmd = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(at_edge))
        .build();
    verify_expect(
        &*store,
        cmd,
        &applied(f.id(1), 1, vec![]),
        "R23 at the tolerance",
    )
    .await;

    let strict = VerifyPolicy {
        future_tolerance: Duration::zero(),
        ..VerifyPolicy::default()
    };
    let one_second = received_at() + Duration::seconds(1);
    let cmd = verify_cmd(&a, f.id(1))
        .policy(strict)
        .entry_at("A", 1, Some(one_second))
        .build();
    refused(
        &*store,
        Some(f.id(1)),
        cmd,
        &date_refusal(one_second, UsedDateProblem::InFuture),
        "R23 zero tolerance",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 1)], "R23 final").await;
}

/// R24: a gate time before the order was created (paid) is refused as
/// `UsedDateInvalid { BeforeOrder }`; the creation instant itself is accepted.
pub async fn used_date_before_the_order_is_refused(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued_with(&*store, &f, |_| {}).await;
    let before = order_created_at() - Duration::seconds(1);
    let cmd = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(before))
        .build();
    refused(
        &*store,
        Some(f.id(1)),
        cmd,
        &date_refusal(before, UsedDateProblem::BeforeOrder),
        "R24",
    )
    .await;
    let cmd = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(order_created_at()))
        .build();
    verify_expect(
        &*store,
        cmd,
        &applied(f.id(1), 1, vec![]),
        "R24 at creation",
    )
    .await;
}

/// R25: a gate time before the order's `valid_from` is refused as
/// `UsedDateInvalid { BeforeValidFrom }`, unless the policy allows early use; from
/// `valid_from` on it is accepted.
pub async fn used_date_before_valid_from_is_refused_unless_allowed(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let valid_from = order_created_at() + Duration::days(7);
    let a = issued_with(&*store, &f, |o| o.valid_from = Some(valid_from)).await;
    let early = valid_from - Duration::seconds(1);
    let cmd = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(early))
        .build();
    refused(
        &*store,
        Some(f.id(1)),
        cmd,
        &date_refusal(early, UsedDateProblem::BeforeValidFrom),
        "R25",
    )
    .await;

    let cmd = verify_cmd(&a, f.id(1))
        .allow_before_valid_from()
        .entry_at("A", 1, Some(early))
        .build();
    verify_expect(
        &*store,
        cmd,
        &applied(f.id(1), 1, vec![]),
        "R25 allowed by policy",
    )
    .await;
    let cmd = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(valid_from))
        .build();
    verify_expect(
        &*store,
        cmd,
        &applied(f.id(1), 1, vec![]),
        "R25 at valid_from",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2)], "R25 final").await;
}

/// R26: a gate time after the order's `valid_until` is a fact to record: accepted, flagged
/// `LateRedemption`; at `valid_until` itself there is no flag.
pub async fn used_date_after_valid_until_is_accepted_and_flagged_late(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let valid_until = order_created_at() + Duration::days(10);
    let a = issued_with(&*store, &f, |o| o.valid_until = Some(valid_until)).await;
    let late = valid_until + Duration::hours(1);
    let cmd = verify_cmd(&a, f.id(1)).entry_at("A", 1, Some(late)).build();
    let flags = vec![Flag::LateRedemption { code: code("A") }];
    verify_expect(&*store, cmd, &applied(f.id(1), 1, flags), "R26 late").await;
    let cmd = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(valid_until))
        .build();
    verify_expect(
        &*store,
        cmd,
        &applied(f.id(1), 1, vec![]),
        "R26 at valid_until",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2)], "R26 final").await;
}

/// R27: a legacy `total_num` above the uses sold is refused with `TotalNumExceeds`.
pub async fn total_num_beyond_the_uses_sold_is_refused(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 2), ("B", 1)])).await;
    let cmd = verify_cmd(&a, f.id(1))
        .legacy_code("A", 1)
        .total_num(4)
        .build();
    let expected = LedgerError::TotalNumExceeds {
        reported: 4,
        ledger: 3,
    };
    refused(&*store, Some(f.id(1)), cmd, &expected, "R27 total_num").await;
}

/// R27: a legacy `total_num` below the uses sold is accepted and flagged `TotalNumMismatch`;
/// equal to them, it is not flagged.
pub async fn total_num_below_the_uses_sold_is_accepted_and_flagged(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 2), ("B", 1)])).await;
    let cmd = verify_cmd(&a, f.id(1))
        .legacy_code("A", 1)
        .total_num(2)
        .build();
    let flags = vec![Flag::TotalNumMismatch {
        reported: 2,
        ledger: 3,
    }];
    verify_expect(
        &*store,
        cmd,
        &applied(f.id(1), 1, flags),
        "R27 total_num below",
    )
    .await;
    let cmd = verify_cmd(&a, f.id(1))
        .legacy_code("A", 1)
        .total_num(3)
        .build();
    verify_expect(
        &*store,
        cmd,
        &applied(f.id(1), 1, vec![]),
        "R27 total_num equal",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2), ("B", 0)], "R27 final").await;
}

/// R27: a legacy `return_num` other than the ledger's refunded count (0: refunds are not
/// recorded yet) is accepted and flagged `ReturnNumMismatch`; 0 is not flagged.
pub async fn nonzero_return_num_is_accepted_and_flagged(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("A", 3)])).await;
    let cmd = verify_cmd(&a, f.id(1))
        .legacy_code("A", 1)
        .return_num(1)
        .build();
    let flags = vec![Flag::ReturnNumMismatch {
        reported: 1,
        ledger: 0,
    }];
    verify_expect(
        &*store,
        cmd,
        &applied(f.id(1), 1, flags),
        "R27 return_num 1",
    )
    .await;
    let cmd = verify_cmd(&a, f.id(1))
        .legacy_code("A", 1)
        .return_num(0)
        .build();
    verify_expect(
        &*store,
        cmd,
        &applied(f.id(1), 1, vec![]),
        "R27 return_num 0",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2)], "R27 final").await;
}
