//! Reversal (撤销核销): uses given back within the window only.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_gives_back_uses_within_the_window_only() {
    let life = Life::with(|s| s.reversal_window = Duration::seconds(60)).await;
    let o = 76_001;
    life.issued(o, 4, &[("REV-1", 3), ("REV-2", 1)]).await;
    let verify = life.verify_ok(o, "REV-1", 3).await;

    // Within the window: 201, the count goes down, the reversal is its own event and the
    // verify stays in the history.
    let (status, body) = life.reverse(o, "REV-1", 1).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"order_id": o, "confirm_code": "REV-1", "reversed": 1, "used": 2,
               "reason": "gate scanned twice"})
    );
    let order = life.order(o).await;
    assert_eq!(life.used(o, "REV-1").await, 2);
    assert_eq!(order.status, "partly_used");
    let v = order
        .events
        .iter()
        .find(|e| e.request_id == verify.as_str() && e.action == VERIFY)
        .unwrap()
        .clone();
    assert_eq!(
        (v.outcome.as_str(), v.reason.as_str()),
        ("accepted", "applied")
    );
    assert_eq!(
        v.detail["changes"][0]["used"], 3,
        "the verify is kept as it was"
    );
    let rid = last_of(&order, REVERSE_ACTION);
    let r = order
        .events
        .iter()
        .find(|e| e.request_id == rid.as_str() && e.action == REVERSE_ACTION)
        .unwrap()
        .clone();
    assert_eq!(
        (r.outcome.as_str(), r.reason.as_str()),
        ("accepted", "reversed")
    );
    assert_eq!(
        r.detail,
        json!({"confirm_code": "****-1", "quantity": 1, "used": 2, "reason": "gate scanned twice"})
    );
    assert_no_transition(&order, &rid);

    // Beyond what was recorded and not yet reversed, or a code with no use: 409, nothing.
    let snap = ledger_snapshot(&life.app, o).await;
    for (code, n) in [("REV-1", 3), ("REV-2", 1)] {
        let (status, body) = life.reverse(o, code, n).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("reversal_not_allowed")),
            "{body}"
        );
    }
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // At the window's edge the use is still reversible; one second later it is not.
    life.clock.advance(Duration::seconds(60));
    life.reverse_ok(o, "REV-1", 1).await;
    assert_eq!(life.used(o, "REV-1").await, 1);
    life.clock.advance(Duration::seconds(1));
    let snap = ledger_snapshot(&life.app, o).await;
    let (status, body) = life.reverse(o, "REV-1", 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("reversal_not_allowed")),
        "{body}"
    );
    assert_eq!(ledger_snapshot(&life.app, o).await, snap);

    // A newer use is reversible, the old one still not; the count never goes below zero.
    life.verify_ok(o, "REV-1", 1).await;
    assert_eq!(life.used(o, "REV-1").await, 2);
    let (status, _) = life.reverse(o, "REV-1", 2).await;
    assert_eq!(status, 409);
    life.reverse_ok(o, "REV-1", 1).await;
    assert_eq!(life.used(o, "REV-1").await, 1);
    let (status, _) = life.reverse(o, "REV-1", 1).await;
    assert_eq!(status, 409);

    // Malformed requests.
    let path = format!("/admin/orders/{o}/reversals");
    for (body, status, field) in [
        (
            json!({"confirm_code": "REV-1", "quantity": 0, "reason": "x"}),
            400,
            Some("quantity"),
        ),
        (
            json!({"confirm_code": "REV-1", "quantity": 1, "reason": "  "}),
            400,
            Some("reason"),
        ),
        (
            json!({"confirm_code": "REV-1", "quantity": 1}),
            400,
            Some("reason"),
        ),
        (
            json!({"confirm_code": "", "quantity": 1, "reason": "x"}),
            400,
            Some("confirm_code"),
        ),
    ] {
        let (got, resp) = life.app.admin_post(&path, body.clone()).await;
        assert_eq!(
            (got, resp["field"].as_str()),
            (status, field),
            "{body}: {resp}"
        );
    }
    let (status, body) = life.reverse(o, "NOPE", 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("refused")),
        "{body}"
    );
    let (status, body) = life.reverse(76_999, "REV-1", 1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );

    // The default window is 24 hours.
    let life = Life::new().await;
    life.issued(o, 2, &[("DEF-1", 2)]).await;
    life.verify_ok(o, "DEF-1", 2).await;
    life.clock.advance(Duration::hours(24));
    life.reverse_ok(o, "DEF-1", 1).await;
    let order = life.order(o).await;
    let rid = last_of(&order, REVERSE_ACTION);
    assert_transition(&order, &rid, "used", "partly_used", REVERSE_ACTION);
    life.clock.advance(Duration::seconds(1));
    let (status, _) = life.reverse(o, "DEF-1", 1).await;
    assert_eq!(status, 409);
}
