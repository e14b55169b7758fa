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
    // Verifies that run without savepoints and never failed after writing.
    assert_eq!(value(&text, "ticketd_store_guarded_reruns_total"), 0.0);
    assert_eq!(value(&text, "ticketd_store_errors_total"), 0.0);
    // SQLite has no triggers that fail to load: present, for one dashboard over every engine.
    assert_eq!(value(&text, "ticketd_store_trigger_reloads_total"), 0.0);
    assert_eq!(
        value(&text, "ticketd_store_failed_trigger_reloads_total"),
        0.0
    );
}

/// Every value of label `name` in the exposition's samples (label values here never hold `"`).
fn label_values(text: &str, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for open in ['{', ','] {
            let key = format!("{open}{name}=\"");
            let mut rest = line;
            while let Some(at) = rest.find(&key) {
                let value = &rest[at + key.len()..];
                let end = value.find('"').unwrap_or(value.len());
                values.push(value[..end].to_owned());
                rest = &value[end..];
            }
        }
    }
    values
}

/// Asserts that every `method`, `code` and `sub_code` label comes from the closed sets.
fn assert_labels_closed(text: &str) {
    let methods: Vec<&str> = ticket_api::Method::ALL.iter().map(|m| m.name()).collect();
    for method in label_values(text, "method") {
        assert!(
            method == "unknown" || methods.contains(&method.as_str()),
            "method label {method:.80?}"
        );
    }
    for code in label_values(text, "code") {
        let known = code
            .parse::<u32>()
            .is_ok_and(|c| c == 0 || top_protocol::PlatformCode::from_code(c).is_some());
        assert!(known || code == "other", "code label {code:.80?}");
    }
    let business: Vec<&str> = ticket_api::BusinessError::ALL
        .iter()
        .map(|b| b.entry().sub_code)
        .collect();
    for sub in label_values(text, "sub_code") {
        assert!(
            sub.is_empty()
                || sub == "other"
                || top_protocol::error::sub_code::ALL.contains(&sub.as_str())
                || business.contains(&sub.as_str()),
            "sub_code label {sub:.80?}"
        );
    }
}

/// The longest run of `c` in `text`.
fn longest_run(text: &str, c: char) -> usize {
    text.split(|x| x != c)
        .map(|run| run.chars().count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_repeated_parameter_name_grows_neither_metrics_nor_the_answer() {
    let app = spawn_app().await;
    app.create_app("m-big", "m-secret").await;
    let query = TopCall::verify("m-big", "m-secret")
        .set("order_id", 8802)
        .signed()
        .to_form_urlencoded();
    let name = "K".repeat(400_000);
    let body = format!("{name}=1&{name}=2").into_bytes();
    let before = app.metrics().await.len();

    let clipped = format!("{}…", "K".repeat(64));
    for _ in 0..20 {
        let reply = app
            .raw(
                reqwest::Method::POST,
                &query,
                Some("application/x-www-form-urlencoded;charset=UTF-8"),
                body.clone(),
            )
            .await;
        assert!(reply.body.len() <= 4096, "{} bytes", reply.body.len());
        assert_eq!(
            reply.error(),
            (41, format!("isv.invalid-parameter:{clipped}"))
        );
        assert_eq!(longest_run(&reply.text(), 'K'), 64, "{}", reply.text());
    }

    let text = app.metrics().await;
    assert!(text.len() < 64 * 1024, "/metrics is {} bytes", text.len());
    // One call series and one latency histogram for `unknown` are new; nothing per request.
    assert!(
        text.len() - before < 4096,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
    assert!(longest_run(&text, 'K') < 64, "the name reached /metrics");
    assert_labels_closed(&text);
    assert_eq!(
        value(
            &text,
            "ticketd_top_calls_total{method=\"unknown\",code=\"41\",sub_code=\"isv.invalid-parameter\"}"
        ),
        20.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_names_a_caller_chose_are_labelled_unknown() {
    let app = spawn_app().await;
    app.create_app("m-meth", "m-secret").await;
    let huge = format!("taobao.{}", "x".repeat(100_000));
    for method in ["taobao.travel.ticket.order.verify2", huge.as_str()] {
        let call = TopCall::method(method, "m-meth", "m-secret").set("order_id", 1);
        assert_eq!(app.call(&call).await.error().0, 22);
    }
    let missing = TopCall::verify("m-meth", "m-secret").unset("method");
    assert_eq!(app.call(&missing).await.error().0, 21);
    // `method` in the query and again, huge, in the body: refused as a repeated key before the
    // method is known.
    let query = TopCall::verify("m-meth", "m-secret")
        .signed()
        .to_form_urlencoded();
    let body = format!("method={huge}").into_bytes();
    let reply = app
        .raw(
            reqwest::Method::POST,
            &query,
            Some("application/x-www-form-urlencoded;charset=UTF-8"),
            body,
        )
        .await;
    assert_eq!(
        reply.error(),
        (41, "isv.invalid-parameter:method".to_owned())
    );

    let text = app.metrics().await;
    assert_labels_closed(&text);
    assert!(!text.contains("verify2"), "{text}");
    assert!(
        longest_run(&text, 'x') < 64,
        "the huge name reached /metrics"
    );
    let unknown = |code: u32, sub: &str| {
        value(
            &text,
            &format!(
                "ticketd_top_calls_total{{method=\"unknown\",code=\"{code}\",sub_code=\"{sub}\"}}"
            ),
        )
    };
    assert_eq!(unknown(22, ""), 2.0);
    assert_eq!(unknown(21, ""), 1.0);
    assert_eq!(unknown(41, "isv.invalid-parameter"), 1.0);
    assert_eq!(
        value(
            &text,
            "ticketd_top_call_duration_seconds_count{method=\"unknown\"}"
        ),
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_codes_are_labelled_by_their_base_without_the_parameter_name() {
    let app = spawn_app().await;
    app.create_app("m-sub", "m-secret").await;
    let bad_id = TopCall::verify("m-sub", "m-secret")
        .set("order_id", "abc")
        .set("confirm_code", "A1B2C3D4")
        .set("check_num", 1);
    // The answer keeps the name: only the label drops it.
    assert_eq!(
        app.call(&bad_id).await.error(),
        (41, "isv.invalid-parameter:order_id".to_owned())
    );
    let bad_type = TopCall::verify("m-sub", "m-secret")
        .set("order_id", 8803)
        .set("write_off_type", 9)
        .set("confirm_code", "A1B2C3D4")
        .set("check_num", 1);
    assert_eq!(
        app.call(&bad_type).await.error(),
        (41, "isv.invalid-parameter:write_off_type".to_owned())
    );
    let no_count = TopCall::verify("m-sub", "m-secret")
        .set("order_id", 8803)
        .set("confirm_code", "A1B2C3D4");
    assert_eq!(
        app.call(&no_count).await.error(),
        (40, "isv.missing-parameter:check_num".to_owned())
    );

    let text = app.metrics().await;
    assert_labels_closed(&text);
    assert!(!text.contains(":order_id"), "{text}");
    let verify = "method=\"taobao.travel.ticket.order.verify\"";
    assert_eq!(
        value(
            &text,
            &format!(
                "ticketd_top_calls_total{{{verify},code=\"41\",sub_code=\"isv.invalid-parameter\"}}"
            )
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            &format!(
                "ticketd_top_calls_total{{{verify},code=\"40\",sub_code=\"isv.missing-parameter\"}}"
            )
        ),
        1.0
    );
}
