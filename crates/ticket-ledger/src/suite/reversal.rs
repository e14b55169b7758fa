//! Reversal (撤销核销): an operator gives wrongly recorded uses back, within a window counted
//! from when each use was recorded.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::{LedgerError, LedgerStore};
use crate::{OrderStatus, OrderView};
use crate::{ReversalCommand, ReversalPlan, StatusChange};

use super::build::{code, gate_time_plus, order, received_at, reversal, verify_cmd, Fresh};
use super::check::{
    applied, assert_appended, assert_refusal, assert_used, given_app, given_order, ledger,
    snapshot_of, transitions, verify_expect, view,
};

/// Registers an app and creates order `f.id(1)` with `vouchers`; returns the app key.
async fn issued(store: &dyn LedgerStore, f: &Fresh, vouchers: &[(&str, i64)]) -> String {
    let a = f.key("app");
    given_app(store, &a).await;
    given_order(store, order(f.id(1), &a, vouchers)).await;
    a
}

/// Records `n` uses of `code` with a verify received at `at` (gate time a minute before).
async fn used_at(store: &dyn LedgerStore, a: &str, id: i64, code: &str, n: i64, at: DateTime<Utc>) {
    verify_expect(
        store,
        verify_cmd(a, id)
            .entry_at(code, n, Some(at - Duration::minutes(1)))
            .received_at(at)
            .build(),
        &applied(id, n, vec![]),
        &format!("{n} uses of {code} recorded at {at}"),
    )
    .await;
}

/// Runs a reversal the case expects to be accepted, leaving `used_after` uses of its code: the
/// store answers that count, and appends exactly the plan's events — the reversal, then the
/// status transition it caused, if any — keeping every earlier event (the original verifies
/// stay in the history).
async fn reverse_ok(
    store: &dyn LedgerStore,
    cmd: ReversalCommand,
    used_after: i64,
    ctx: &str,
) -> OrderView {
    let before = view(store, cmd.order_id.get(), ctx).await;
    let snapshot = snapshot_of(&before);
    // The plan's events do not depend on which use records it takes, so they can be computed
    // from the outcome the case expects.
    let mut after_state = snapshot.clone();
    for v in &mut after_state.vouchers {
        if v.code == cmd.code {
            v.used = used_after;
        }
    }
    let plan = ReversalPlan {
        code: cmd.code.clone(),
        quantity: cmd.quantity,
        takes: Vec::new(),
        used_after,
        status: StatusChange {
            from: snapshot.status(),
            to: after_state.status(),
        },
    };
    let want = plan.audit_entries(&snapshot, &cmd);
    let got = store
        .reverse(cmd)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: reverse should be accepted, got Err({e:?})"));
    assert_eq!(
        got, used_after,
        "{ctx}: the code's count after the reversal"
    );
    assert_appended(store, &before, &want, ctx).await
}

/// Asserts a reversal is refused with `expected` and writes nothing at all.
async fn reverse_refused(
    store: &dyn LedgerStore,
    cmd: ReversalCommand,
    app: &str,
    expected: &LedgerError,
    ctx: &str,
) {
    let id = cmd.order_id.get();
    let before = ledger(store, id, app, ctx).await;
    assert_refusal(store.reverse(cmd).await, expected, ctx);
    assert_eq!(
        ledger(store, id, app, ctx).await,
        before,
        "{ctx}: a refused reversal writes nothing"
    );
}

/// A reversal gives back the newest uses first: of two verifies within the window, it takes
/// from the later one, so a narrower window afterwards finds nothing left to reverse.
pub async fn reversal_gives_uses_back_newest_first(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("REV-0001", 5)]).await;
    let now = received_at();
    used_at(
        &*store,
        &a,
        f.id(1),
        "REV-0001",
        2,
        now - Duration::hours(2),
    )
    .await;
    used_at(
        &*store,
        &a,
        f.id(1),
        "REV-0001",
        1,
        now - Duration::hours(1),
    )
    .await;

    let wide = Duration::hours(3);
    let narrow = Duration::minutes(90);
    reverse_ok(
        &*store,
        reversal(f.id(1), "REV-0001", 1, wide, now),
        2,
        "reverse 1 of 3",
    )
    .await;
    reverse_refused(
        &*store,
        reversal(f.id(1), "REV-0001", 1, narrow, now),
        &a,
        &LedgerError::ReversalNotAllowed {
            requested: 1,
            reversible: 0,
        },
        "the newest use was the one reversed",
    )
    .await;
    reverse_refused(
        &*store,
        reversal(f.id(1), "REV-0001", 3, wide, now),
        &a,
        &LedgerError::ReversalNotAllowed {
            requested: 3,
            reversible: 2,
        },
        "more than is left",
    )
    .await;
    reverse_ok(
        &*store,
        reversal(f.id(1), "REV-0001", 2, wide, now),
        0,
        "the older verify's uses",
    )
    .await;
    assert_used(&*store, f.id(1), &[("REV-0001", 0)], "everything reversed").await;
}

/// Uses recorded longer ago than the window are not reversible; those within it are.
pub async fn uses_older_than_the_reversal_window_are_not_reversible(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("OLD-0001", 5)]).await;
    let day = Duration::hours(24);
    let later = received_at() + Duration::days(2);
    used_at(&*store, &a, f.id(1), "OLD-0001", 2, received_at()).await;
    used_at(
        &*store,
        &a,
        f.id(1),
        "OLD-0001",
        1,
        later - Duration::hours(1),
    )
    .await;
    reverse_refused(
        &*store,
        reversal(f.id(1), "OLD-0001", 2, day, later),
        &a,
        &LedgerError::ReversalNotAllowed {
            requested: 2,
            reversible: 1,
        },
        "two days old",
    )
    .await;
    reverse_ok(
        &*store,
        reversal(f.id(1), "OLD-0001", 1, day, later),
        2,
        "the recent use",
    )
    .await;
    reverse_refused(
        &*store,
        reversal(f.id(1), "OLD-0001", 1, day, later),
        &a,
        &LedgerError::ReversalNotAllowed {
            requested: 1,
            reversible: 0,
        },
        "only old uses remain",
    )
    .await;
    reverse_ok(
        &*store,
        reversal(f.id(1), "OLD-0001", 2, Duration::days(3), later),
        0,
        "a window wide enough",
    )
    .await;
}

/// A reversal never takes a count below zero: more than was used, none, a code never used are
/// refused with `ReversalNotAllowed { requested, reversible }`; an unknown code with
/// `VoucherNotFound`, an unknown order with `OrderNotFound`.
pub async fn reversal_never_takes_a_count_below_zero(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("NEG-0001", 2), ("NEG-0002", 1)]).await;
    used_at(&*store, &a, f.id(1), "NEG-0001", 1, received_at()).await;
    let day = Duration::hours(24);
    let at = received_at() + Duration::minutes(5);
    for (what, code, n, reversible) in [
        ("more than used", "NEG-0001", 2, 1),
        ("none", "NEG-0001", 0, 1),
        ("a code never used", "NEG-0002", 1, 0),
    ] {
        reverse_refused(
            &*store,
            reversal(f.id(1), code, n, day, at),
            &a,
            &LedgerError::ReversalNotAllowed {
                requested: n,
                reversible,
            },
            what,
        )
        .await;
    }
    reverse_refused(
        &*store,
        reversal(f.id(1), "NEG-0009", 1, day, at),
        &a,
        &LedgerError::VoucherNotFound {
            code: code("NEG-0009"),
        },
        "an unknown code",
    )
    .await;
    assert_refusal(
        store
            .reverse(reversal(f.id(9), "NEG-0001", 1, day, at))
            .await,
        &LedgerError::OrderNotFound,
        "an unknown order",
    );
    reverse_ok(
        &*store,
        reversal(f.id(1), "NEG-0001", 1, day, at),
        0,
        "the use",
    )
    .await;
    reverse_refused(
        &*store,
        reversal(f.id(1), "NEG-0001", 1, day, at),
        &a,
        &LedgerError::ReversalNotAllowed {
            requested: 1,
            reversible: 0,
        },
        "at zero",
    )
    .await;
    assert_used(
        &*store,
        f.id(1),
        &[("NEG-0001", 0), ("NEG-0002", 0)],
        "never below zero",
    )
    .await;
}

/// A reversal is its own `admin.reverse` event with the operator's reason; the original verify
/// stays in the history; the status moves back (`used` → `partly_used` → `issued`), each move an
/// event of the reversal; the uses given back can be used again.
pub async fn reversal_is_its_own_event_and_moves_the_status_back(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = issued(&*store, &f, &[("BACK-0001", 2)]).await;
    used_at(&*store, &a, f.id(1), "BACK-0001", 2, received_at()).await;
    let day = Duration::hours(24);
    let at = received_at() + Duration::minutes(5);
    let used = view(&*store, f.id(1), "used").await;
    assert_eq!(used.status(), OrderStatus::Used, "before");

    let after = reverse_ok(
        &*store,
        reversal(f.id(1), "BACK-0001", 1, day, at),
        1,
        "reverse one",
    )
    .await;
    assert_eq!(
        after.status(),
        OrderStatus::PartlyUsed,
        "after one reversal"
    );
    let reversal_event = &after.events[used.events.len()];
    assert_eq!(
        (
            reversal_event.action.as_str(),
            reversal_event.reason.as_str(),
            reversal_event.detail["quantity"].as_i64(),
            reversal_event.detail["reason"].as_str()
        ),
        (
            "admin.reverse",
            "reversed",
            Some(1),
            Some("suite reversal of 1")
        ),
        "the reversal's event"
    );
    assert!(
        after
            .events
            .iter()
            .any(|e| e.action == "taobao.travel.ticket.order.verify" && e.reason == "applied"),
        "the original verify stays in the history"
    );

    verify_expect(
        &*store,
        verify_cmd(&a, f.id(1))
            .entry_at("BACK-0001", 1, Some(gate_time_plus(30)))
            .build(),
        &applied(f.id(1), 1, vec![]),
        "the use given back is usable again",
    )
    .await;
    let after = reverse_ok(
        &*store,
        reversal(f.id(1), "BACK-0001", 2, day, at + Duration::minutes(1)),
        0,
        "reverse both",
    )
    .await;
    assert_eq!(after.status(), OrderStatus::Issued, "nothing used");
    assert_eq!(
        transitions(&after)
            .iter()
            .map(|(from, to)| format!("{from}->{to}"))
            .collect::<Vec<_>>(),
        [
            "issued->used",
            "used->partly_used",
            "partly_used->used",
            "used->issued"
        ],
        "status transitions"
    );
}
