//! Reconciliation: a diff first, then only the missing uses recorded.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_diffs_then_records_missing_uses_only() {
    let life = Life::new().await;
    let o = 78_001;
    life.issued(o, 5, &[("REC-1", 3), ("REC-2", 2)]).await;
    life.verify_ok(o, "REC-1", 1).await;
    let line = |code: &str, ledger: i64, vendor: i64| {
        json!({"confirm_code": code, "ledger_used": ledger, "vendor_used": vendor,
               "missing": (vendor - ledger).max(0), "excess": (ledger - vendor).max(0)})
    };

    // A diff changes nothing; an unlisted code counts as 0 on the vendor's side.
    let snap = ledger_snapshot(&life.app, o).await;
    let (status, body) = life.reconcile(o, &[("REC-1", 2)], false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"order_id": o, "apply": false, "applied_uses": 0,
               "lines": [line("REC-1", 1, 2), line("REC-2", 0, 0)]})
    );
    let (_, body) = life
        .reconcile(o, &[("REC-1", 0), ("REC-2", 1)], false)
        .await;
    assert_eq!(
        body["lines"],
        json!([line("REC-1", 1, 0), line("REC-2", 0, 1)])
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // A count beyond capacity refuses the whole reconciliation, before anything is applied.
    let (status, body) = life.reconcile(o, &[("REC-1", 2), ("REC-2", 3)], true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("refused")),
        "{body}"
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);
    // Unknown codes and negative counts are refused too.
    let (status, body) = life.reconcile(o, &[("NOPE", 1)], true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("unknown_code")),
        "{body}"
    );
    let (status, body) = life.reconcile(o, &[("REC-1", -1)], true).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // Apply: the missing uses, one `admin.reconcile` event per code; excess is never removed.
    let (status, body) = life.reconcile(o, &[("REC-1", 2), ("REC-2", 1)], true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"order_id": o, "apply": true, "applied_uses": 2,
               "lines": [line("REC-1", 1, 2), line("REC-2", 0, 1)]})
    );
    let order = life.order(o).await;
    assert_eq!(
        (life.used(o, "REC-1").await, life.used(o, "REC-2").await),
        (2, 1)
    );
    let healed: Vec<Value> = order
        .events
        .iter()
        .filter(|e| e.action == RECONCILE_ACTION)
        .map(|e| json!({"outcome": e.outcome, "reason": e.reason, "changes": e.detail["changes"]}))
        .collect();
    assert_eq!(
        healed,
        [
            json!({"outcome": "accepted", "reason": "applied",
                   "changes": [{"confirm_code": "****-1", "delta": 1, "used": 2, "capacity": 3}]}),
            json!({"outcome": "accepted", "reason": "applied",
                   "changes": [{"confirm_code": "****-2", "delta": 1, "used": 1, "capacity": 2}]}),
        ]
    );
    let rids: std::collections::HashSet<&str> = order
        .events
        .iter()
        .filter(|e| e.action == RECONCILE_ACTION)
        .map(|e| e.request_id.as_str())
        .collect();
    assert_eq!(rids.len(), 2, "each code is its own request");
    assert_eq!(order.status, "partly_used");

    // Lower vendor counts never decrease the ledger, and record nothing.
    let snap = ledger_snapshot(&life.app, o).await;
    let (status, body) = life.reconcile(o, &[("REC-1", 0), ("REC-2", 1)], true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied_uses"], 0);
    assert_eq!(
        body["lines"],
        json!([line("REC-1", 2, 0), line("REC-2", 1, 1)])
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // Healing the last uses moves the status, under the reconciling request.
    let (_, body) = life.reconcile(o, &[("REC-1", 3), ("REC-2", 2)], true).await;
    assert_eq!(body["applied_uses"], 2);
    let order = life.order(o).await;
    assert_eq!(order.status, "used");
    let rid = last_of(&order, RECONCILE_ACTION);
    assert_transition(&order, &rid, "partly_used", "used", RECONCILE_ACTION);

    let (status, _) = life.reconcile(78_999, &[("REC-1", 1)], false).await;
    assert_eq!(status, 404);
}
