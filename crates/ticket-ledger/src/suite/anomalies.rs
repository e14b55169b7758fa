//! Anomalies: facts that matter to money or trust, stored for an operator to resolve.

use std::sync::Arc;

use chrono::Duration;

use crate::{plan_verify, VerifyCommand, VerifyOutcome};
use crate::{Anomaly, AnomalyFilter, AnomalyKind, Resolution};
use crate::{LedgerError, LedgerStore};

use super::build::{gate_time, order, received_at, refund_cmd, resolve_cmd, verify_cmd, Fresh};
use super::check::{
    anomalies_of, assert_open_anomaly, assert_refusal, given_app, given_order, snapshot_of,
    verify_ok, view,
};

/// Runs an accepted verify and asserts the anomalies it stored for its order are exactly the
/// plan's (`VerifyPlan::anomalies`), open; returns the outcome and the new anomalies, newest
/// first.
async fn verify_storing(
    store: &dyn LedgerStore,
    id: i64,
    cmd: VerifyCommand,
    ctx: &str,
) -> (VerifyOutcome, Vec<Anomaly>) {
    let before = view(store, id, ctx).await;
    let plan = plan_verify(&snapshot_of(&before), &cmd)
        .unwrap_or_else(|e| panic!("{ctx}: the rules should accept it, got {e:?}"));
    let want = plan.anomalies(&cmd);
    let old = anomalies_of(store, id, ctx).await;
    let outcome = verify_ok(store, cmd, ctx).await;
    assert_eq!(outcome, plan.outcome, "{ctx}: the plan's outcome");
    let mut all = anomalies_of(store, id, ctx).await;
    assert_eq!(
        all.len(),
        old.len() + want.len(),
        "{ctx}: one anomaly per flag that is one, got {all:?}"
    );
    let new: Vec<Anomaly> = all.drain(..want.len()).collect();
    assert_eq!(all, old, "{ctx}: earlier anomalies unchanged");
    for (n, (got, want)) in new.iter().rev().zip(&want).enumerate() {
        assert_open_anomaly(got, want, &format!("{ctx}: anomaly {n}"));
    }
    (outcome, new)
}

fn kinds(list: &[Anomaly]) -> Vec<AnomalyKind> {
    list.iter().map(|a| a.anomaly.kind).collect()
}

/// The flags of accepted verifies that matter are stored as open anomalies with the raw
/// request: a cumulative count that went backwards (`count_regressed`), a use after the
/// tickets expired (`late_redemption`), legacy `total_num`/`return_num` disagreeing with the
/// ledger; a missing `used_date` (server time used) is not one.
pub async fn flags_of_accepted_verifies_are_stored_as_anomalies(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("FLAG-0001", 5)])).await;
    let mut expired = order(f.id(2), &a, &[("LATE-0001", 2)]);
    expired.valid_until = Some(gate_time() - Duration::days(1));
    given_order(&*store, expired).await;

    let (_, new) = verify_storing(
        &*store,
        f.id(1),
        verify_cmd(&a, f.id(1))
            .entry_at("FLAG-0001", 1, None)
            .build(),
        "server time",
    )
    .await;
    assert!(new.is_empty(), "server time is no anomaly: {new:?}");
    verify_storing(
        &*store,
        f.id(1),
        verify_cmd(&a, f.id(1))
            .cumulative()
            .entry("FLAG-0001", 3)
            .build(),
        "cumulative 3",
    )
    .await;
    let (_, new) = verify_storing(
        &*store,
        f.id(1),
        verify_cmd(&a, f.id(1))
            .cumulative()
            .entry("FLAG-0001", 2)
            .build(),
        "cumulative 2 after 3",
    )
    .await;
    assert_eq!(kinds(&new), [AnomalyKind::CountRegressed], "R18");
    let (_, new) = verify_storing(
        &*store,
        f.id(1),
        verify_cmd(&a, f.id(1))
            .legacy_code("FLAG-0001", 1)
            .total_num(4)
            .return_num(1)
            .build(),
        "legacy totals",
    )
    .await;
    assert_eq!(
        kinds(&new),
        [
            AnomalyKind::ReturnNumMismatch,
            AnomalyKind::TotalNumMismatch
        ],
        "R27, newest first"
    );
    let (_, new) = verify_storing(
        &*store,
        f.id(2),
        verify_cmd(&a, f.id(2)).entry("LATE-0001", 1).build(),
        "after valid_until",
    )
    .await;
    assert_eq!(kinds(&new), [AnomalyKind::LateRedemption], "R26");
    assert_eq!(
        new[0].anomaly.detail["kind"], "late_redemption",
        "the detail is the flag"
    );
}

/// `anomalies` lists newest first and filters by status (open or resolved), order and kind,
/// alone and combined, up to `limit`.
pub async fn anomalies_are_listed_newest_first_and_filtered_by_status_order_and_kind(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    for n in 1..=2 {
        given_order(&*store, order(f.id(n), &a, &[("LIST-0001", 5)])).await;
        verify_ok(
            &*store,
            verify_cmd(&a, f.id(n))
                .cumulative()
                .entry("LIST-0001", 2)
                .build(),
            "cumulative 2",
        )
        .await;
    }
    let regress = |n: i64| {
        verify_cmd(&a, f.id(n))
            .cumulative()
            .entry("LIST-0001", 1)
            .build()
    };
    verify_ok(&*store, regress(1), "o1 regressed").await;
    assert_refusal(
        store.refund(refund_cmd(&a, f.id(1)).build()).await,
        &LedgerError::RefundNotRequested,
        "o1 refund nobody asked for",
    );
    verify_ok(&*store, regress(2), "o2 regressed").await;

    let o1 = anomalies_of(&*store, f.id(1), "o1").await;
    assert_eq!(
        kinds(&o1),
        [AnomalyKind::RefundNotRequested, AnomalyKind::CountRegressed],
        "o1's anomalies, newest first"
    );
    let o2 = anomalies_of(&*store, f.id(2), "o2").await;
    assert_eq!(kinds(&o2), [AnomalyKind::CountRegressed], "o2's anomalies");
    let resolved = store
        .resolve_anomaly(resolve_cmd(o1[1].id, Resolution::Accepted, "stale retry"))
        .await
        .expect("resolve should succeed");

    let list = |filter: AnomalyFilter| {
        let store = Arc::clone(&store);
        async move {
            let got = store
                .anomalies(filter.clone())
                .await
                .unwrap_or_else(|e| panic!("anomalies({filter:?}) should answer, got {e:?}"));
            for pair in got.windows(2) {
                assert!(pair[0].id > pair[1].id, "newest first in {filter:?}");
            }
            got
        }
    };
    let ids = |v: &[Anomaly]| v.iter().map(|x| x.id).collect::<Vec<_>>();
    let by_order = |id: i64| AnomalyFilter {
        order_id: Some(id),
        ..AnomalyFilter::default()
    };
    assert_eq!(
        ids(&list(AnomalyFilter {
            open: Some(true),
            ..by_order(f.id(1))
        })
        .await),
        [o1[0].id],
        "o1 open"
    );
    let got = list(AnomalyFilter {
        open: Some(false),
        ..by_order(f.id(1))
    })
    .await;
    assert_eq!(got, std::slice::from_ref(&resolved), "o1 resolved");
    assert_eq!(
        ids(&list(AnomalyFilter {
            kind: Some(AnomalyKind::CountRegressed),
            ..by_order(f.id(1))
        })
        .await),
        [o1[1].id],
        "o1 count_regressed"
    );
    assert_eq!(
        ids(&list(AnomalyFilter {
            kind: Some(AnomalyKind::LateRedemption),
            ..by_order(f.id(1))
        })
        .await),
        Vec::<i64>::new(),
        "o1 has no late_redemption"
    );
    assert_eq!(
        ids(&list(AnomalyFilter {
            limit: Some(1),
            ..by_order(f.id(1))
        })
        .await),
        [o1[0].id],
        "limit keeps the newest"
    );

    let regressed = list(AnomalyFilter {
        kind: Some(AnomalyKind::CountRegressed),
        limit: Some(1000),
        ..AnomalyFilter::default()
    })
    .await;
    assert!(
        regressed
            .iter()
            .all(|x| x.anomaly.kind == AnomalyKind::CountRegressed),
        "kind alone"
    );
    let ours = |v: &[Anomaly]| -> Vec<i64> {
        v.iter()
            .filter(|x| [Some(f.id(1)), Some(f.id(2))].contains(&x.anomaly.order_id))
            .map(|x| x.id)
            .collect()
    };
    // A database shared with other cases may hold more than the limit; ours are then not
    // necessarily among the newest 1000.
    if regressed.len() < 1000 {
        assert_eq!(
            ours(&regressed),
            [o2[0].id, o1[1].id],
            "kind alone: both orders'"
        );
    }
    let open = list(AnomalyFilter {
        open: Some(true),
        limit: Some(1000),
        ..AnomalyFilter::default()
    })
    .await;
    assert!(
        open.iter().all(|x| x.resolution.is_none()),
        "open alone lists no resolved anomaly"
    );
    if open.len() < 1000 {
        assert_eq!(
            ours(&open),
            [o2[0].id, o1[0].id],
            "open alone: ours still open"
        );
    }
}

/// Resolving an open anomaly records the resolution (each of `accepted`, `reversed`,
/// `refund_adjusted`, `dismissed`), the note and the time and answers the anomaly as stored;
/// resolving it again is refused with `AnomalyResolved` and keeps the first resolution; an
/// unknown id is `AnomalyNotFound`.
pub async fn resolving_an_anomaly_records_resolution_note_and_time(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    given_order(&*store, order(f.id(1), &a, &[("RES-0001", 1)])).await;
    for n in 0..Resolution::ALL.len() {
        let cmd = refund_cmd(&a, f.id(1))
            .received_at(received_at() + Duration::minutes(i64::try_from(n).expect("few")))
            .build();
        assert_refusal(
            store.refund(cmd).await,
            &LedgerError::RefundNotRequested,
            "an anomaly to resolve",
        );
    }
    let open = anomalies_of(&*store, f.id(1), "open").await;
    assert_eq!(open.len(), Resolution::ALL.len(), "one per resolution");
    for (anomaly, &resolution) in open.iter().zip(Resolution::ALL) {
        let cmd = resolve_cmd(
            anomaly.id,
            resolution,
            &format!("note {}", resolution.as_str()),
        );
        let at = cmd.meta.received_at;
        let got = store
            .resolve_anomaly(cmd)
            .await
            .unwrap_or_else(|e| panic!("resolve {resolution:?} should succeed, got {e:?}"));
        let want = Anomaly {
            resolution: Some(resolution),
            note: Some(format!("note {}", resolution.as_str())),
            resolved_at: Some(at),
            ..anomaly.clone()
        };
        assert_eq!(got, want, "resolved {resolution:?}");
    }
    let resolved = anomalies_of(&*store, f.id(1), "resolved").await;
    assert!(
        resolved.iter().all(|x| x.resolution.is_some()),
        "listed resolved: {resolved:?}"
    );

    let err = store
        .resolve_anomaly(resolve_cmd(open[0].id, Resolution::Dismissed, "again"))
        .await;
    assert_refusal(err, &LedgerError::AnomalyResolved, "resolving twice");
    assert_eq!(
        anomalies_of(&*store, f.id(1), "after").await,
        resolved,
        "the first resolutions stand"
    );
    assert_refusal(
        store
            .resolve_anomaly(resolve_cmd(i64::MAX, Resolution::Dismissed, "ghost"))
            .await,
        &LedgerError::AnomalyNotFound,
        "an unknown id",
    );
}
