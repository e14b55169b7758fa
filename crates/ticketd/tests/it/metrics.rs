//! `/metrics`: what an operator's Prometheus sees after real calls.

use crate::helpers::{minutes_ago, spawn_app, voucher_infos, TopCall};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_by_code_latency_and_the_ledger() {
    let app = spawn_app().await;
    app.create_app("m-app", "m-secret").await;
    app.create_order(8801, "m-app", &[("M-1", 2)]).await;
    let ok = TopCall::verify("m-app", "m-secret")
        .set("order_id", 8801)
        .set(
            "voucher_infos",
            voucher_infos(&[("M-1", 1, &minutes_ago(2))]),
        );
    app.call(&ok).await.assert_success();
    let over = TopCall::verify("m-app", "m-secret")
        .set("order_id", 8801)
        .set(
            "voucher_infos",
            voucher_infos(&[("M-1", 5, &minutes_ago(1))]),
        );
    assert_eq!(app.call(&over).await.error().1, "isv.verify-num-exceed");
    let forged = TopCall::verify("m-app", "wrong").set("order_id", 8801);
    assert_eq!(app.call(&forged).await.error().0, 25);

    // Unauthenticated, like the health endpoints.
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let verify = "method=\"taobao.travel.ticket.order.verify\"";
    assert_eq!(
        value(
            &text,
            &format!("ticketd_top_calls_total{{{verify},code=\"0\",sub_code=\"\"}}")
        ),
        1.0
    );
    assert_eq!(value(&text, &format!("ticketd_top_calls_total{{{verify},code=\"50\",sub_code=\"isv.verify-num-exceed\"}}")), 1.0);
    assert_eq!(
        value(
            &text,
            &format!("ticketd_top_calls_total{{{verify},code=\"25\",sub_code=\"\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ticketd_top_call_duration_seconds_count{{{verify}}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ticketd_top_call_duration_seconds_bucket{{{verify},le=\"+Inf\"}}")
        ),
        3.0
    );
    assert_eq!(value(&text, "ticketd_ledger_orders"), 1.0);
    assert_eq!(value(&text, "ticketd_ledger_capacity_uses"), 2.0);
    assert_eq!(value(&text, "ticketd_ledger_used_uses"), 1.0);
    assert_eq!(value(&text, "ticketd_ledger_up"), 1.0);
    assert!(value(&text, "ticketd_store_commits_total") >= 1.0);
    assert!(value(&text, "ticketd_store_largest_batch") >= 1.0);
    assert_eq!(value(&text, "ticketd_store_errors_total"), 0.0);
}
