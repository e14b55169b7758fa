//! Verify: the report forms and capacity (R1, R2, R10, R13–R15).

use std::sync::Arc;

use crate::{AuditOutcome, OrderStatus};
use crate::{Flag, OutcomeKind};
use crate::{LedgerError, LedgerStore};

use super::build::{code, gate_time_plus, order, verify_cmd, Fresh};
use super::check::{
    applied, assert_last_entry, assert_used, given_app, given_order, outcome, refused,
    verify_expect, view,
};

/// Registers an app and creates order `f.id(1)` with `vouchers`; returns the app key.
async fn issued(store: &dyn LedgerStore, f: &Fresh, vouchers: &[(&str, i64)]) -> String {
    let a = f.key("app");
    given_app(store, &a).await;
    given_order(store, order(f.id(1), &a, vouchers)).await;
    a
}

/// R1: when `voucher_infos` is present it decides what is used; a legacy `confirm_code` beside
/// it that is one of its codes changes nothing about that.
pub async fn voucher_infos_win_over_legacy_fields(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 3), ("B", 3)]).await;
    let cmd = verify_cmd(&a, f.id(1))
        .entry("B", 2)
        .legacy_code_beside("B")
        .build();
    verify_expect(
        &*store,
        cmd.clone(),
        &applied(f.id(1), 2, vec![]),
        "R1 legacy code in the list",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 0), ("B", 2)], "R1").await;
    assert_last_entry(
        &*store,
        f.id(1),
        &cmd,
        AuditOutcome::Accepted,
        "applied",
        "R1",
    )
    .await;
}

/// R1: a legacy `confirm_code` beside `voucher_infos` that is not in the list — even an issued
/// code — refuses the request with `LegacyCodeNotInList`.
pub async fn legacy_code_not_in_voucher_infos_is_refused(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 3), ("B", 3)]).await;
    let cmd = verify_cmd(&a, f.id(1))
        .entry("A", 1)
        .legacy_code_beside("B")
        .build();
    let expected = LedgerError::LegacyCodeNotInList { code: code("B") };
    refused(
        &*store,
        Some(f.id(1)),
        cmd,
        &expected,
        "R1 stray legacy code",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 0), ("B", 0)], "R1 refusal").await;
}

/// R2: the legacy order-level form (`check_num` without a code) draws uses from the order's
/// codes in issuance order, filling each before the next.
pub async fn order_level_check_num_draws_codes_in_issuance_order(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("C", 2), ("A", 3), ("B", 1)]).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).order_level(3).build(),
        &applied(f.id(1), 3, vec![]),
        "R2 first",
    )
    .await;
    assert_used(
        &*store,
        f.id(1),
        &[("C", 2), ("A", 1), ("B", 0)],
        "R2 after 3 uses",
    )
    .await;
    assert_eq!(
        view(&*store, f.id(1), "R2").await.status(),
        OrderStatus::PartlyUsed
    );

    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).order_level(3).build(),
        &applied(f.id(1), 3, vec![]),
        "R2 second",
    )
    .await;
    assert_used(
        &*store,
        f.id(1),
        &[("C", 2), ("A", 3), ("B", 1)],
        "R2 after 6 uses",
    )
    .await;
    assert_eq!(
        view(&*store, f.id(1), "R2").await.status(),
        OrderStatus::Used
    );
}

/// R2/R13: an order-level `check_num` beyond the order's remaining uses is refused with
/// `OrderCapacityExceeded` (requested, remaining) — never clamped — and writes nothing.
pub async fn order_level_check_num_beyond_remaining_is_refused(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 2), ("B", 1)]).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).order_level(2).build(),
        &applied(f.id(1), 2, vec![]),
        "R2 first",
    )
    .await;
    let expected = LedgerError::OrderCapacityExceeded {
        requested: 2,
        remaining: 1,
    };
    refused(
        &*store,
        Some(f.id(1)),
        verify_cmd(&a, f.id(1)).order_level(2).build(),
        &expected,
        "R2 over",
    )
    .await;
    assert_used(
        &*store,
        f.id(1),
        &[("A", 2), ("B", 0)],
        "R2 after the refusal",
    )
    .await;
}

/// The legacy single-code form (`confirm_code` + `check_num`) uses that code: as a delta, and
/// with `write_off_type` 1 as a total that only ever raises the count.
pub async fn legacy_confirm_code_with_check_num_uses_that_code(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 3), ("B", 3)]).await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).legacy_code("B", 2).build(),
        &applied(f.id(1), 2, vec![]),
        "delta",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 0), ("B", 2)], "legacy delta").await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1))
            .cumulative()
            .legacy_code("B", 3)
            .build(),
        &applied(f.id(1), 1, vec![]),
        "cumulative raise",
    )
    .await;
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1))
            .cumulative()
            .legacy_code("B", 1)
            .build(),
        &outcome(
            f.id(1),
            OutcomeKind::NoChange,
            0,
            0,
            vec![Flag::CountRegressed {
                code: code("B"),
                reported: 1,
                recorded: 3,
            }],
        ),
        "cumulative regression",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 0), ("B", 3)], "legacy cumulative").await;
    let unknown = LedgerError::VoucherNotFound { code: code("Z") };
    refused(
        &*store,
        Some(f.id(1)),
        verify_cmd(&a, f.id(1)).legacy_code("Z", 1).build(),
        &unknown,
        "legacy unknown code",
    )
    .await;
}

/// R10: one code not issued for the order refuses the whole request with `VoucherNotFound`;
/// the valid entries of the same request are not applied, and are not remembered either (the
/// corrected request is applied in full).
pub async fn unknown_code_refuses_the_whole_request(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 2), ("B", 2)]).await;
    let bad = verify_cmd(&a, f.id(1))
        .entry("A", 1)
        .entry("NOT-ISSUED", 1)
        .entry("B", 1)
        .build();
    let expected = LedgerError::VoucherNotFound {
        code: code("NOT-ISSUED"),
    };
    refused(&*store, Some(f.id(1)), bad, &expected, "R10").await;
    assert_used(&*store, f.id(1), &[("A", 0), ("B", 0)], "R10 refusal").await;

    let fixed = verify_cmd(&a, f.id(1)).entry("A", 1).entry("B", 1).build();
    verify_expect(
        &*store,
        fixed,
        &applied(f.id(1), 2, vec![]),
        "R10 corrected request, same gate times",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 1), ("B", 1)], "R10 corrected").await;
}

/// R13: a request that would use any code beyond its capacity is refused as a whole with
/// `CapacityExceeded` naming that code, the uses requested and the uses left; the other
/// entries of the request are not applied.
pub async fn over_capacity_refuses_the_whole_request(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 2), ("B", 3)]).await;
    let single = verify_cmd(&a, f.id(1)).entry("A", 3).build();
    let expected = LedgerError::CapacityExceeded {
        code: code("A"),
        requested: 3,
        remaining: 2,
    };
    refused(
        &*store,
        Some(f.id(1)),
        single,
        &expected,
        "R13 single entry",
    )
    .await;

    let multi = verify_cmd(&a, f.id(1)).entry("A", 1).entry("B", 4).build();
    let expected = LedgerError::CapacityExceeded {
        code: code("B"),
        requested: 4,
        remaining: 3,
    };
    refused(
        &*store,
        Some(f.id(1)),
        multi,
        &expected,
        "R13 one of two entries overflows",
    )
    .await;
    assert_used(
        &*store,
        f.id(1),
        &[("A", 0), ("B", 0)],
        "R13 nothing applied",
    )
    .await;

    let fits = verify_cmd(&a, f.id(1)).entry("A", 1).entry("B", 1).build();
    verify_expect(
        &*store,
        fits,
        &applied(f.id(1), 2, vec![]),
        "R13 fitting request",
    )
    .await;
    let later = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(gate_time_plus(60)))
        .entry_at("B", 3, Some(gate_time_plus(60)))
        .build();
    let expected = LedgerError::CapacityExceeded {
        code: code("B"),
        requested: 3,
        remaining: 2,
    };
    refused(
        &*store,
        Some(f.id(1)),
        later,
        &expected,
        "R13 after partial use",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 1), ("B", 1)], "R13 final").await;
}

/// R14: using some of an order's uses makes it partly used; using the rest makes it used.
pub async fn partial_use_makes_the_order_partly_used_then_used(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("A", 2), ("B", 1)]).await;
    assert_eq!(
        view(&*store, f.id(1), "R14").await.status(),
        OrderStatus::Issued,
        "before any use"
    );
    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1)).entry("A", 1).build(),
        &applied(f.id(1), 1, vec![]),
        "R14 first",
    )
    .await;
    assert_used(&*store, f.id(1), &[("A", 1), ("B", 0)], "R14 partly").await;
    assert_eq!(
        view(&*store, f.id(1), "R14").await.status(),
        OrderStatus::PartlyUsed,
        "after 1 of 3"
    );

    let rest = verify_cmd(&a, f.id(1))
        .entry_at("A", 1, Some(gate_time_plus(1)))
        .entry_at("B", 1, Some(gate_time_plus(1)))
        .build();
    verify_expect(&*store, rest, &applied(f.id(1), 2, vec![]), "R14 rest").await;
    assert_used(&*store, f.id(1), &[("A", 2), ("B", 1)], "R14 used").await;
    assert_eq!(
        view(&*store, f.id(1), "R14").await.status(),
        OrderStatus::Used,
        "after 3 of 3"
    );
}

/// R15: a multi-use code takes separate uses up to its capacity, then refuses the next with
/// nothing remaining.
pub async fn multi_use_code_is_used_up_to_its_capacity(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("PASS", 3)]).await;
    for n in 0..3 {
        let cmd = verify_cmd(&a, f.id(1))
            .entry_at("PASS", 1, Some(gate_time_plus(n)))
            .build();
        verify_expect(
            &*store,
            cmd,
            &applied(f.id(1), 1, vec![]),
            &format!("R15 use {}", n + 1),
        )
        .await;
        assert_used(&*store, f.id(1), &[("PASS", n + 1)], "R15").await;
    }
    assert_eq!(
        view(&*store, f.id(1), "R15").await.status(),
        OrderStatus::Used
    );
    let fourth = verify_cmd(&a, f.id(1))
        .entry_at("PASS", 1, Some(gate_time_plus(3)))
        .build();
    let expected = LedgerError::CapacityExceeded {
        code: code("PASS"),
        requested: 1,
        remaining: 0,
    };
    refused(&*store, Some(f.id(1)), fourth, &expected, "R15 fourth use").await;
}
