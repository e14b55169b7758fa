//! Verify: retries and count modes (R16–R19).

use std::sync::Arc;

use crate::AuditOutcome;
use crate::{Flag, OutcomeKind};
use crate::{LedgerError, LedgerStore};

use super::build::{code, gate_time_plus, order, retry_of, verify_cmd, Fresh};
use super::check::{
    applied, assert_last_entry, assert_used, given_app, given_order, outcome, refused,
    verify_expect,
};

async fn issued(store: &dyn LedgerStore, f: &Fresh, vouchers: &[(&str, i64)]) -> String {
    let a = f.key("app");
    given_app(store, &a).await;
    given_order(store, order(f.id(1), &a, vouchers)).await;
    a
}

/// R16: a delta report sent again with the same (code, used_date, quantity) is `Replayed`:
/// answered as success, counted once, and recorded as a replay.
pub async fn retried_delta_verify_is_replayed_not_recounted(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 5)]).await;
    let first = verify_cmd(&a, f.id(1)).entry("A", 2).build();
    verify_expect(
        &*store,
        first.clone(),
        &applied(f.id(1), 2, vec![]),
        "R16 first",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2)], "R16 first").await;

    for n in 1..=2 {
        let retry = retry_of(&first, 60 * n);
        let ctx = format!("R16 retry {n}");
        verify_expect(
            &*store,
            retry.clone(),
            &outcome(f.id(1), OutcomeKind::Replayed, 0, 1, vec![]),
            &ctx,
        )
        .await;
        assert_used(&*store, f.id(1), &[("A", 2)], &ctx).await;
        assert_last_entry(
            &*store,
            f.id(1),
            &retry,
            AuditOutcome::Replayed,
            "replayed",
            &ctx,
        )
        .await;
    }
}

/// R16: a delta request that repeats an already recorded entry beside a new one applies only
/// the new one.
pub async fn delta_retry_mixing_old_and_new_entries_applies_only_the_new(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 3), ("B", 3)]).await;
    let first = verify_cmd(&a, f.id(1)).entry("A", 1).build();
    verify_expect(&*store, first, &applied(f.id(1), 1, vec![]), "R16 first").await;
    let mixed = verify_cmd(&a, f.id(1)).entry("A", 1).entry("B", 2).build();
    verify_expect(
        &*store,
        mixed.clone(),
        &outcome(f.id(1), OutcomeKind::Applied, 2, 1, vec![]),
        "R16 mixed",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 1), ("B", 2)], "R16 mixed").await;
    assert_last_entry(
        &*store,
        f.id(1),
        &mixed,
        AuditOutcome::Accepted,
        "applied",
        "R16 mixed",
    )
    .await;
    // Now both entries are known: the mixed request's own retry is a pure replay.
    verify_expect(
        &*store,
        retry_of(&mixed, 30),
        &outcome(f.id(1), OutcomeKind::Replayed, 0, 2, vec![]),
        "R16 retry of the mixed request",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 1), ("B", 2)], "R16 final").await;
}

/// R16: the fingerprint is (code, used_date, quantity): the same code at another gate time, or
/// with another quantity, is a new use; each of them is replayed when retried.
pub async fn same_code_at_another_used_date_is_a_new_use(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 5)]).await;
    let uses = [
        verify_cmd(&a, f.id(1))
            .entry_at("A", 1, Some(gate_time_plus(0)))
            .build(),
        verify_cmd(&a, f.id(1))
            .entry_at("A", 1, Some(gate_time_plus(1)))
            .build(),
        verify_cmd(&a, f.id(1))
            .entry_at("A", 2, Some(gate_time_plus(0)))
            .build(),
    ];
    let mut total = 0;
    for (n, cmd) in uses.iter().enumerate() {
        let qty = if n == 2 { 2 } else { 1 };
        total += qty;
        verify_expect(
            &*store,
            cmd.clone(),
            &applied(f.id(1), qty, vec![]),
            &format!("R16 new use {n}"),
        )
        .await;
        assert_used(
            &*store,
            f.id(1),
            &[("A", total)],
            &format!("R16 new use {n}"),
        )
        .await;
    }
    for (n, cmd) in uses.iter().enumerate() {
        verify_expect(
            &*store,
            retry_of(cmd, 120),
            &outcome(f.id(1), OutcomeKind::Replayed, 0, 1, vec![]),
            &format!("R16 retry of use {n}"),
        )
        .await;
    }
    assert_used(&*store, f.id(1), &[("A", 4)], "R16 final").await;
}

/// R22 and R16 together: a delta report without `used_date` has no gate time to recognise it
/// by, so each such report is a new use.
pub async fn delta_report_without_used_date_is_never_a_replay(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 3)]).await;
    let cmd = verify_cmd(&a, f.id(1)).entry_at("A", 1, None).build();
    let flags = vec![Flag::ServerTimeUsed { code: code("A") }];
    verify_expect(
        &*store,
        cmd.clone(),
        &applied(f.id(1), 1, flags.clone()),
        "R22 first",
    )
    .await;
    verify_expect(
        &*store,
        retry_of(&cmd, 1),
        &applied(f.id(1), 1, flags),
        "R22 again",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2)], "R22 twice").await;
}

/// R17: a cumulative report raises a code's count to the reported total; the same total again
/// is `NoChange` (success, nothing written to the counters, recorded as `no_change`).
pub async fn cumulative_report_equal_to_the_count_changes_nothing(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 3), ("B", 3)]).await;
    let raise = verify_cmd(&a, f.id(1))
        .cumulative()
        .entry("A", 2)
        .entry("B", 1)
        .build();
    verify_expect(&*store, raise, &applied(f.id(1), 3, vec![]), "R17 raise").await;
    assert_used(&*store, f.id(1), &[("A", 2), ("B", 1)], "R17 raise").await;

    let again = verify_cmd(&a, f.id(1))
        .cumulative()
        .entry("A", 2)
        .entry("B", 1)
        .build();
    verify_expect(
        &*store,
        again.clone(),
        &outcome(f.id(1), OutcomeKind::NoChange, 0, 0, vec![]),
        "R17 equal",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2), ("B", 1)], "R17 equal").await;
    assert_last_entry(
        &*store,
        f.id(1),
        &again,
        AuditOutcome::Replayed,
        "no_change",
        "R17 equal",
    )
    .await;

    let one_up = verify_cmd(&a, f.id(1))
        .cumulative()
        .entry("A", 2)
        .entry("B", 3)
        .build();
    verify_expect(
        &*store,
        one_up,
        &applied(f.id(1), 2, vec![]),
        "R17 one code raised",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2), ("B", 3)], "R17 final").await;
}

/// R18: a cumulative report below the recorded count never decreases it: success with
/// `NoChange` and a `CountRegressed` flag per regressed code.
pub async fn cumulative_report_below_the_count_is_flagged_and_never_decreases(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 3), ("B", 2)]).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1))
            .cumulative()
            .entry("A", 3)
            .entry("B", 1)
            .build(),
        &applied(f.id(1), 4, vec![]),
        "R18 setup",
    )
    .await;
    let stale = verify_cmd(&a, f.id(1))
        .cumulative()
        .entry("A", 1)
        .entry("B", 0)
        .build();
    let flags = vec![
        Flag::CountRegressed {
            code: code("A"),
            reported: 1,
            recorded: 3,
        },
        Flag::CountRegressed {
            code: code("B"),
            reported: 0,
            recorded: 1,
        },
    ];
    verify_expect(
        &*store,
        stale,
        &outcome(f.id(1), OutcomeKind::NoChange, 0, 0, flags),
        "R18 stale",
    )
    .await;
    assert_used(
        &*store,
        f.id(1),
        &[("A", 3), ("B", 1)],
        "R18 never decreases",
    )
    .await;

    // A regressed code beside a raised one: the raise applies, the regression is flagged.
    let mixed = verify_cmd(&a, f.id(1))
        .cumulative()
        .entry("A", 2)
        .entry("B", 2)
        .build();
    let flags = vec![Flag::CountRegressed {
        code: code("A"),
        reported: 2,
        recorded: 3,
    }];
    verify_expect(&*store, mixed, &applied(f.id(1), 1, flags), "R18 mixed").await;
    assert_used(&*store, f.id(1), &[("A", 3), ("B", 2)], "R18 final").await;
}

/// R19: a cumulative report beyond a code's capacity is refused as a whole with
/// `CapacityExceeded` (the uses it would add, the uses left).
pub async fn cumulative_report_beyond_capacity_is_refused(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 3), ("B", 2)]).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).cumulative().entry("A", 1).build(),
        &applied(f.id(1), 1, vec![]),
        "R19 setup",
    )
    .await;
    let both = verify_cmd(&a, f.id(1))
        .cumulative()
        .entry("A", 2)
        .entry("B", 3)
        .build();
    let expected = LedgerError::CapacityExceeded {
        code: code("B"),
        requested: 3,
        remaining: 2,
    };
    refused(
        &*store,
        Some(f.id(1)),
        both,
        &expected,
        "R19 one code beyond",
    )
    .await;
    let jump = verify_cmd(&a, f.id(1)).cumulative().entry("A", 4).build();
    let expected = LedgerError::CapacityExceeded {
        code: code("A"),
        requested: 3,
        remaining: 2,
    };
    refused(&*store, Some(f.id(1)), jump, &expected, "R19 jump").await;
    assert_used(&*store, f.id(1), &[("A", 1), ("B", 0)], "R19 final").await;
}

/// R2 with R17–R19: an order-level cumulative `check_num` raises the order's total (drawing in
/// issuance order), is `NoChange` when equal, flags `OrderCountRegressed` when lower, and is
/// refused with `OrderCapacityExceeded` beyond what was sold.
pub async fn cumulative_order_level_report_raises_the_order_total_only(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 2), ("B", 2)]).await;
    let cmd = |n| verify_cmd(&a, f.id(1)).cumulative().order_level(n).build();
    verify_expect(
        &*store,
        cmd(3),
        &applied(f.id(1), 3, vec![]),
        "order total 3",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 2), ("B", 1)], "order total 3").await;
    verify_expect(
        &*store,
        cmd(3),
        &outcome(f.id(1), OutcomeKind::NoChange, 0, 0, vec![]),
        "equal",
    )
    .await;
    let flags = vec![Flag::OrderCountRegressed {
        reported: 1,
        recorded: 3,
    }];
    verify_expect(
        &*store,
        cmd(1),
        &outcome(f.id(1), OutcomeKind::NoChange, 0, 0, flags),
        "lower",
    )
    .await;
    let expected = LedgerError::OrderCapacityExceeded {
        requested: 2,
        remaining: 1,
    };
    refused(&*store, Some(f.id(1)), cmd(5), &expected, "beyond").await;
    assert_used(&*store, f.id(1), &[("A", 2), ("B", 1)], "final").await;
}
