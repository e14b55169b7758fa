//! Anomalies: listed, filtered and resolved once.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_are_listed_filtered_and_resolved_once() {
    let life = Life::new().await;
    // refund_not_requested on one order…
    let o1 = 77_001;
    life.issued(o1, 2, &[("AN-1", 2)]).await;
    let nobody = assert_business(
        &life
            .send(life.notify_call(o1, &[("refund_status", "1")]))
            .await,
        "isv.refund-not-requested",
        "没有对应的退票申请",
    );
    // …verify_after_refund on another…
    let o2 = 77_002;
    life.issued(o2, 1, &[("ANOM-2", 1)]).await;
    life.request_ok(o2, 1).await;
    life.notify_ok(o2, &[("refund_status", "1")]).await;
    let (after_refund, _) = refused_with(
        &life
            .send(life.verify_call(o2, &[("ANOM-2", 1, life.gate())]))
            .await,
        "isv.ticket-refunded",
    );
    // …and the verify flags that are accepted but recorded: count_regressed, late_redemption,
    // total_num_mismatch, return_num_mismatch.
    let o3 = 77_003;
    create_order_with(
        &life.app,
        o3,
        KEY,
        &[("AN-3", 5)],
        json!({"valid_until": format_beijing(life.now() - Duration::hours(2))}),
    )
    .await;
    let cumulative = |n: i64| {
        life.call(VERIFY)
            .set("order_id", o3)
            .set("write_off_type", 1)
            .set(
                "voucher_infos",
                json!([{"confirm_code": "AN-3", "used_quantity": n,
                "used_date": format_beijing(life.now() - Duration::hours(3))}]),
            )
    };
    assert_success_for(&life.send(cumulative(2)).await, VERIFY);
    let regressed = assert_success_for(&life.send(cumulative(1)).await, VERIFY);
    let late = assert_success_for(
        &life
            .send(life.verify_call(o3, &[("AN-3", 1, Some(life.now() - Duration::hours(1)))]))
            .await,
        VERIFY,
    );
    let total = assert_success_for(
        &life
            .send(
                life.call(VERIFY)
                    .set("order_id", o3)
                    .set("confirm_code", "AN-3")
                    .set("check_num", 1)
                    .set("total_num", 4),
            )
            .await,
        VERIFY,
    );
    let returned = assert_success_for(
        &life
            .send(
                life.call(VERIFY)
                    .set("order_id", o3)
                    .set("confirm_code", "AN-3")
                    .set("check_num", 1)
                    .set("return_num", 1),
            )
            .await,
        VERIFY,
    );
    // (The two legacy reports carry no gate time: the receive time is after valid_until, so
    // they are late redemptions too.)

    let all = life.anomalies("").await;
    let seen: Vec<(String, i64, String)> = all
        .iter()
        .map(|a| {
            (
                a.kind.as_str().to_owned(),
                a.order_id.unwrap(),
                a.request_id.as_str().to_owned(),
            )
        })
        .collect();
    let want = |kind: &str, o: i64, rid: &str| (kind.to_owned(), o, rid.to_owned());
    for w in [
        want("refund_not_requested", o1, &nobody),
        want("verify_after_refund", o2, &after_refund),
        want("count_regressed", o3, &regressed),
        want("late_redemption", o3, &late),
        want("total_num_mismatch", o3, &total),
        want("return_num_mismatch", o3, &returned),
    ] {
        assert!(seen.contains(&w), "{w:?} missing in {seen:#?}");
    }
    let ids: Vec<i64> = all.iter().map(|a| a.id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    // Every field is on the wire, null or not (the typed answers cannot tell absent from
    // null).
    let (status, on_wire) = life.app.admin_get("/admin/anomalies?limit=1000").await;
    assert_eq!(status, 200, "{on_wire}");
    for a in on_wire["anomalies"].as_array().unwrap() {
        for field in [
            "id",
            "kind",
            "order_id",
            "app_key",
            "status",
            "request_id",
            "at",
            "detail",
            "request",
            "resolution",
            "note",
            "resolved_at",
        ] {
            assert!(a.get(field).is_some(), "{field} missing in {a}");
        }
    }
    for a in &all {
        assert_eq!(a.status, "open");
        assert_eq!(a.app_key.as_deref(), Some(KEY));
        assert!(a.request.get("sign").is_none(), "{a:?}");
    }
    let a2 = all
        .iter()
        .find(|a| a.request_id == after_refund.as_str())
        .unwrap();
    assert_eq!(
        a2.request["voucher_infos"][0]["confirm_code"], "****M-2",
        "codes are masked in the stored request: {a2:?}"
    );

    // Filters: order, kind, status, and together.
    let kinds =
        |list: &[AnomalyAnswer]| -> Vec<String> { list.iter().map(|a| a.kind.clone()).collect() };
    assert_eq!(
        kinds(&life.anomalies(&format!("order_id={o1}")).await),
        ["refund_not_requested"]
    );
    assert_eq!(
        kinds(&life.anomalies(&format!("order_id={o2}")).await),
        ["verify_after_refund"]
    );
    let by_kind = life.anomalies("kind=count_regressed").await;
    assert_eq!(by_kind.len(), 1);
    assert_eq!(by_kind[0].request_id, regressed.as_str());
    assert_eq!(life.anomalies("status=open").await, all);
    assert!(life.anomalies("status=resolved").await.is_empty());
    assert_eq!(life.anomalies("limit=2").await, all[..2].to_vec());

    // Resolve: 200 with the decision; a second time 409; the list follows.
    let id = all
        .iter()
        .find(|a| a.request_id == nobody.as_str())
        .unwrap()
        .id;
    let resolved_at = format_beijing(life.now());
    let (status, body) = life
        .app
        .admin_post(
            &format!("/admin/anomalies/{id}/resolve"),
            json!({"resolution": "dismissed", "note": "the vendor's test call"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body: AnomalyAnswer = answer(&body);
    assert_eq!(
        (
            body.id,
            body.status.as_str(),
            body.resolution.as_deref(),
            body.note.as_deref(),
            body.resolved_at.as_deref()
        ),
        (
            id,
            "resolved",
            Some("dismissed"),
            Some("the vendor's test call"),
            Some(resolved_at.as_str())
        ),
        "{body:?}"
    );
    assert_eq!(body.kind, "refund_not_requested");
    let (status, again) = life
        .app
        .admin_post(
            &format!("/admin/anomalies/{id}/resolve"),
            json!({"resolution": "accepted"}),
        )
        .await;
    assert_eq!(
        (status, refusal(&again).error.as_str()),
        (409, "already_resolved"),
        "{again}"
    );
    assert_eq!(life.anomalies("status=resolved").await, vec![body.clone()]);
    assert!(life
        .anomalies(&format!("status=open&order_id={o1}"))
        .await
        .is_empty());
    assert_eq!(
        life.anomalies(&format!(
            "status=resolved&order_id={o1}&kind=refund_not_requested"
        ))
        .await
        .len(),
        1
    );
    assert_eq!(life.anomalies("status=open").await.len(), all.len() - 1);
    // The decision is in the order's history.
    let order = life.order(o1).await;
    let e = order.events.last().unwrap().clone();
    assert_eq!(
        (e.action.as_str(), e.reason.as_str()),
        ("admin.resolve_anomaly", "dismissed")
    );
    assert_eq!(
        e.detail,
        json!({"anomaly_id": id, "kind": "refund_not_requested", "note": "the vendor's test call"})
    );

    // Every resolution is accepted.
    let open = life.anomalies("status=open").await;
    for (a, resolution) in open
        .iter()
        .zip(["accepted", "reversed", "refund_adjusted", "dismissed"])
    {
        let (status, body) = life
            .app
            .admin_post(
                &format!("/admin/anomalies/{}/resolve", a.id),
                json!({"resolution": resolution}),
            )
            .await;
        assert_eq!(
            (status, body["resolution"].as_str()),
            (200, Some(resolution)),
            "{body}"
        );
    }

    // Refusals: a resolution that is not one of the four, a missing one, unknown ids, bad
    // filters.
    let last = open.last().unwrap().id;
    for body in [
        json!({"resolution": "ignored"}),
        json!({"note": "no resolution"}),
    ] {
        let (status, resp) = life
            .app
            .admin_post(&format!("/admin/anomalies/{last}/resolve"), body.clone())
            .await;
        assert_eq!(
            (status, resp["error"].as_str(), resp["field"].as_str()),
            (400, Some("invalid_request"), Some("resolution")),
            "{body}: {resp}"
        );
    }
    for path in [
        "/admin/anomalies/999999/resolve",
        "/admin/anomalies/abc/resolve",
    ] {
        let (status, resp) = life
            .app
            .admin_post(path, json!({"resolution": "accepted"}))
            .await;
        assert_eq!(
            (status, resp["error"].as_str()),
            (404, Some("not_found")),
            "{path}: {resp}"
        );
    }
    for (query, field) in [
        ("status=maybe", "status"),
        ("kind=nope", "kind"),
        ("order_id=abc", "order_id"),
    ] {
        let (status, resp) = life
            .app
            .admin_get(&format!("/admin/anomalies?{query}"))
            .await;
        assert_eq!(
            (status, resp["error"].as_str(), resp["field"].as_str()),
            (400, Some("invalid_request"), Some(field)),
            "{query}: {resp}"
        );
    }
}
