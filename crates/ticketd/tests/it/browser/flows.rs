//! The operator's work in a real browser, page by page: find an order by the vendor's order
//! id, read its codes and timeline, reverse a use, request a refund, reconcile a code, resolve
//! an anomaly, register an app and rotate its secret — each through the console's forms and
//! its confirmation step, each checked afterwards through the admin API. The main flow (find
//! an order, reverse a use) runs in English and in Chinese.
//!
//! Every test signs in itself and makes its own data first (admin API, signed TOP calls).
//! Screenshots (both sizes, `target/console-screenshots/`): overview, orders, order,
//! order-confirm, anomalies, audit, apps, app, app-secret, and order-zh, overview-zh; plus
//! order-confirm-zh, and order-timeline and order-actions (the lower parts of an order's page,
//! which its top does not show on a phone).

use serde_json::json;
use ticketd::test_support::{TopCall, ADMIN_TOKEN};

use super::Console;
use crate::helpers::{anomalies, assert_success_body, create_order_with, minutes_ago, REFUND};

const KEY: &str = "gate-vendor";
const SECRET: &str = "gate-vendor-secret";

/// A verify call of `n` uses of `code` on `order_id`, which must succeed; its `request_id`.
async fn verify(console: &Console, order_id: i64, code: &str, n: i64) -> String {
    let call = TopCall::verify(KEY, SECRET)
        .set("order_id", order_id)
        .set("confirm_code", code)
        .set("check_num", n);
    assert_success_body(&console.app.call(&call).await)
}

/// A text with its runs of whitespace (the line breaks between a page's blocks) made one
/// space, for "the page says" checks.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Signs in with the admin token and checks the overview opened.
async fn sign_in(console: &Console, overview: &str) {
    console.sign_in(ADMIN_TOKEN).await;
    assert_eq!(console.path().await, "/console/");
    assert_eq!(console.text("h1").await, overview);
}

/// The texts the main flow reads, in one language (as `console/i18n.rs` has them).
struct Words {
    lang: &'static str,
    overview: &'static str,
    orders: &'static str,
    order: &'static str,
    status_used: &'static str,
    status_partly_used: &'static str,
    vouchers: &'static str,
    show: &'static str,
    hide: &'static str,
    timeline: &'static str,
    reverse_use: &'static str,
    confirm_title: &'static str,
    reverse_will_give_back: &'static str,
    confirm: &'static str,
    cancel: &'static str,
    uses_reversed: &'static str,
    /// The screenshots' names' suffix.
    suffix: &'static str,
}

const EN: Words = Words {
    lang: "en",
    overview: "Overview",
    orders: "Orders",
    order: "Order",
    status_used: "Used",
    status_partly_used: "Partly used",
    vouchers: "Codes",
    show: "show",
    hide: "hide",
    timeline: "Timeline, newest first",
    reverse_use: "Reverse a use",
    confirm_title: "Check and confirm",
    reverse_will_give_back: "This gives back 1 use(s) of code",
    confirm: "Confirm",
    cancel: "Cancel",
    uses_reversed: "Uses given back.",
    suffix: "",
};

const ZH_CN: Words = Words {
    lang: "zh-CN",
    overview: "概览",
    orders: "订单",
    order: "订单",
    status_used: "已核销",
    status_partly_used: "部分核销",
    vouchers: "核销码",
    show: "显示",
    hide: "隐藏",
    timeline: "时间线（最新在前）",
    reverse_use: "撤销核销",
    confirm_title: "请核对并确认",
    reverse_will_give_back: "将撤销 1 次核销，核销码",
    confirm: "确认",
    cancel: "取消",
    uses_reversed: "已撤销核销。",
    suffix: "-zh",
};

/// The main flow, in the language of `w`: the vendor's order is found from the orders page's
/// search form by its `out_order_id`, opened, its codes read masked and then one whole, the
/// verify's `request_id` found in its timeline, and one of two uses given back with a reason
/// through the confirmation step — checked on the page and in the admin API.
async fn find_an_order_and_reverse_a_use(w: &Words) {
    let Some(console) = Console::start(w.lang).await else {
        return;
    };
    let app = &console.app;
    app.create_app(KEY, SECRET).await;
    // Another order first, so the search has something to leave out.
    create_order_with(
        app,
        8100,
        KEY,
        &[("GATE-X-30000099", 1)],
        json!({"out_order_id": "TB-20250601-0099"}),
    )
    .await;
    create_order_with(
        app,
        8101,
        KEY,
        &[("GATE-A-20250001", 2), ("GATE-B-20250002", 1)],
        json!({"out_order_id": "TB-20250601-0042"}),
    )
    .await;
    verify(&console, 8101, "GATE-B-20250002", 1).await;
    verify(&console, 8101, "GATE-A-20250001", 1).await;
    let last_verify = verify(&console, 8101, "GATE-A-20250001", 1).await;
    sign_in(&console, w.overview).await;
    if w.lang == "zh-CN" {
        assert_eq!(console.attr("html", "lang").await.as_deref(), Some("zh-CN"));
        assert_eq!(console.text("form.signout button").await, "退出登录");
        console.screenshot("overview-zh").await;
    }

    // Find it by the vendor's order id, from the search form.
    console.click_link(w.orders).await;
    assert_eq!(console.path().await, "/console/orders");
    assert_eq!(console.text("h1").await, w.orders);
    console.fill("q", "TB-20250601-0042").await;
    console.submit("form.search").await;
    assert_eq!(console.path().await, "/console/orders");
    let rows = console.texts("main table tbody tr").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("TB-20250601-0042"), "{rows:?}");
    assert!(rows[0].contains(w.status_used), "every use used: {rows:?}");
    if w.lang == "en" {
        console.screenshot("orders").await;
    }
    console.click_link("8101").await;
    assert_eq!(console.path().await, "/console/orders/8101");
    assert_eq!(
        console.text("h1").await,
        format!("{} 8101 {}", w.order, w.status_used)
    );

    // The codes: masked, and nowhere whole on the page until one is shown.
    assert_eq!(console.text("#vouchers").await, w.vouchers);
    assert_eq!(
        console.texts("td.code code[data-code=masked]").await,
        ["****0001", "****0002"]
    );
    assert!(!console.html().await.contains("GATE-A-20250001"));
    console.click_link(w.show).await;
    assert_eq!(
        console.text("td.code code[data-code=whole]").await,
        "GATE-A-20250001"
    );
    assert_eq!(
        console.texts("td.code code[data-code=masked]").await,
        ["****0002"]
    );
    console.click_link(w.hide).await;
    assert!(!console.html().await.contains("GATE-A-20250001"));
    assert_eq!(
        console.texts("main table tbody tr td.num").await[..2],
        ["2 / 2".to_owned(), "0".to_owned()]
    );

    // The timeline, newest first: the last verify's request_id is there.
    let heading = console.text("#timeline").await;
    assert!(heading.starts_with(w.timeline), "{heading}");
    let timeline = console
        .texts("section[aria-labelledby=timeline] tr[data-seq]")
        .await;
    assert!(
        timeline.iter().any(|row| row.contains(&last_verify)),
        "the verify {last_verify} in {timeline:?}"
    );
    let seqs: Vec<i64> = {
        let mut out = Vec::new();
        for row in console
            .find_all("section[aria-labelledby=timeline] tr[data-seq]")
            .await
        {
            let seq = row.attr("data-seq").await.unwrap().unwrap();
            out.push(seq.parse().unwrap());
        }
        out
    };
    assert!(
        seqs.windows(2).all(|p| p[0] > p[1]),
        "newest first: {seqs:?}"
    );
    if w.lang == "en" {
        console
            .screenshot_at("order-timeline", "section[aria-labelledby=timeline]")
            .await;
    }

    // Reverse one of the two uses, with a reason: first what it will change.
    let reverse = "form[action='/console/orders/8101/reverse']";
    assert_eq!(console.text(&format!("{reverse} h3")).await, w.reverse_use);
    console.fill_in("#reverse-code", "GATE-A-20250001").await;
    console.fill_in("#reverse-quantity", "1").await;
    console
        .fill_in("#reverse-reason", "scanned twice at gate 3")
        .await;
    if w.lang == "en" {
        console
            .screenshot_at("order-actions", "section[aria-labelledby=actions]")
            .await;
    }
    console.submit(reverse).await;
    assert_eq!(console.text("#confirm").await, w.confirm_title);
    let what = words(&console.text("section.confirm").await);
    assert!(what.contains("2 / 2 → 1 / 2"), "{what}");
    assert!(
        what.contains(&format!("{} ****0001", w.reverse_will_give_back)),
        "{what}"
    );
    assert!(what.contains("scanned twice at gate 3"), "{what}");
    assert_eq!(console.text("section.confirm button").await, w.confirm);
    assert_eq!(console.text("section.confirm a.cancel").await, w.cancel);
    assert_eq!(app.used(8101, "GATE-A-20250001").await, 2, "nothing yet");
    console
        .screenshot(&format!("order-confirm{}", w.suffix))
        .await;

    // Confirmed: the notice, the new count, and the ledger's.
    console.submit("section.confirm form").await;
    assert_eq!(console.path().await, "/console/orders/8101");
    assert_eq!(console.text("p.notice").await, w.uses_reversed);
    assert_eq!(
        console.texts("main table tbody tr td.num").await[..2],
        ["1 / 2".to_owned(), "1".to_owned()]
    );
    let order = app.order(8101).await;
    assert_eq!(order.used, 2, "3 uses, 1 given back: {order:?}");
    assert_eq!(order.status, "partly_used");
    assert_eq!(app.used(8101, "GATE-A-20250001").await, 1);
    // The reversal is in the timeline, above the verify it gave back.
    let timeline = console
        .texts("section[aria-labelledby=timeline] tr[data-seq]")
        .await;
    let at = |text: &str| timeline.iter().position(|row| row.contains(text));
    let reversal = at("scanned twice at gate 3");
    assert!(
        reversal.is_some() && reversal < at(&last_verify),
        "the reversal, newest first: {timeline:#?}"
    );
    assert_eq!(
        console.text("h1").await,
        format!("{} 8101 {}", w.order, w.status_partly_used)
    );
    console.screenshot(&format!("order{}", w.suffix)).await;
    console.finish().await;
}

#[tokio::test]
async fn an_order_is_found_read_and_a_use_reversed_in_english() {
    find_an_order_and_reverse_a_use(&EN).await;
}

#[tokio::test]
async fn an_order_is_found_read_and_a_use_reversed_in_chinese() {
    find_an_order_and_reverse_a_use(&ZH_CN).await;
}

#[tokio::test]
async fn a_code_is_reconciled_and_a_refund_requested_through_their_previews() {
    let Some(console) = Console::start("en").await else {
        return;
    };
    let app = &console.app;
    app.create_app(KEY, SECRET).await;
    app.create_order(8201, KEY, &[("PARK-A-0000001", 3), ("PARK-B-0000002", 2)])
        .await;
    verify(&console, 8201, "PARK-A-0000001", 1).await;
    sign_in(&console, "Overview").await;
    console.goto("/console/orders/8201").await;
    assert_eq!(console.text("h1").await, "Order 8201 Partly used");

    // Reconcile: the vendor's system has 2 uses of the second code that the ledger lacks.
    let reconcile = "form[action='/console/orders/8201/reconcile']";
    assert_eq!(
        console.text("label[for=vendor-used-1]").await,
        "Vendor's uses of ****0002"
    );
    assert_eq!(
        console.attr("#vendor-used-0", "value").await.as_deref(),
        Some("1")
    );
    console.fill_in("#vendor-used-1", "2").await;
    console.submit(reconcile).await;
    assert_eq!(console.text("#confirm").await, "Check and confirm");
    let plan = console.texts("section.confirm tbody tr").await;
    assert_eq!(plan, ["****0001 1 1 0 0", "****0002 0 2 2 0"], "{plan:?}");
    let what = words(&console.text("section.confirm").await);
    assert!(what.contains("Uses that will be recorded: 2"), "{what}");
    assert_eq!(
        app.used(8201, "PARK-B-0000002").await,
        0,
        "a preview records nothing"
    );
    console.submit("section.confirm form").await;
    assert_eq!(console.path().await, "/console/orders/8201");
    assert_eq!(
        console.text("p.notice").await,
        "Reconciled: the missing uses are recorded."
    );
    assert_eq!(app.used(8201, "PARK-B-0000002").await, 2);
    assert_eq!(app.used(8201, "PARK-A-0000001").await, 1);

    // A refund: reviewed, cancelled (nothing asked), reviewed again and confirmed.
    let refund = "form[action='/console/orders/8201/refund']";
    console.fill_in("#refund-quantity", "2").await;
    console.submit(refund).await;
    let what = words(&console.text("section.confirm").await);
    assert!(what.contains("Refundable now 2 → 0"), "{what}");
    assert!(what.contains("Partly used → Refund pending"), "{what}");
    console.click_link("Cancel").await;
    assert_eq!(console.path().await, "/console/orders/8201");
    assert!(app.order(8201).await.refunds.is_empty(), "cancelled");
    console.fill_in("#refund-quantity", "2").await;
    console.submit(refund).await;
    console.submit("section.confirm form").await;
    assert_eq!(console.path().await, "/console/orders/8201");
    assert_eq!(
        console.text("p.notice").await,
        "Refund requested: the vendor is asked to refund."
    );
    assert_eq!(console.text("h1").await, "Order 8201 Refund pending");
    assert_eq!(
        console.attr("h1 .status", "data-status").await.as_deref(),
        Some("refunding")
    );
    let refunds = console
        .texts("section[aria-labelledby=refunds] tbody tr")
        .await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    let order = app.order(8201).await;
    assert_eq!(order.status, "refunding");
    assert_eq!(order.refunds.len(), 1);
    assert_eq!(order.refunds[0].quantity, 2);
    console.finish().await;
}

#[tokio::test]
async fn an_anomaly_is_resolved_and_leaves_the_open_queue() {
    let Some(console) = Console::start("en").await else {
        return;
    };
    let app = &console.app;
    app.create_app(KEY, SECRET).await;
    app.create_order(8301, KEY, &[("ZOO-0000301", 2)]).await;
    // A refund notification nobody asked for opens an anomaly.
    let call = TopCall::method(REFUND, KEY, SECRET)
        .set("order_id", 8301)
        .set("refund_status", 1)
        .set("refund_num", 1)
        .set("refund_batch_no", "RB-UNASKED-8301");
    let _ = app.call(&call).await;
    let open = anomalies(app, "status=open").await;
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0].id;
    let article = format!("article#anomaly-{id}");

    sign_in(&console, "Overview").await;
    console.click_link("Anomalies").await;
    assert_eq!(console.path().await, "/console/anomalies");
    assert_eq!(console.text("h1").await, "Anomalies");
    let title = console.text(&format!("{article} h2")).await;
    assert!(title.starts_with(&format!("#{id} ")), "{title}");
    assert!(
        console
            .exists(&format!("{article} a[href='/console/orders/8301']"))
            .await,
        "a link to its order"
    );
    console.screenshot("anomalies").await;

    console
        .choose(&format!("#resolution-{id}"), "dismissed")
        .await;
    console
        .fill_in(&format!("#note-{id}"), "vendor's test notification")
        .await;
    console.submit(&format!("{article} form.resolve")).await;
    assert_eq!(console.path().await, "/console/anomalies");
    assert_eq!(
        console.text("p.notice").await,
        format!("Resolved anomaly #{id}")
    );
    assert!(
        !console.exists(&article).await,
        "no longer in the open queue"
    );
    assert!(console.text("main").await.contains("No anomalies match."));
    let resolved = anomalies(app, "status=resolved").await;
    let a = resolved.iter().find(|a| a.id == id).expect("resolved");
    assert_eq!(a.resolution.as_deref(), Some("dismissed"));
    assert_eq!(a.note.as_deref(), Some("vendor's test notification"));

    // Among the resolved, with its resolution and without a form.
    console.choose("#status", "resolved").await;
    console.submit("form.search").await;
    let shown = console.text(&article).await;
    assert!(shown.contains("dismissed"), "{shown}");
    assert!(shown.contains("vendor's test notification"), "{shown}");
    assert!(!console.exists(&format!("{article} form")).await);
    console.finish().await;
}

/// The secret shown on the page, in `code#new-secret`.
async fn shown_secret(console: &Console) -> String {
    let secret = console.text("code#new-secret").await;
    assert!(secret.len() >= 32, "a generated secret: {secret:?}");
    secret
}

#[tokio::test]
async fn an_app_is_registered_and_its_secret_shown_once_then_rotated() {
    let Some(console) = Console::start("en").await else {
        return;
    };
    let app = &console.app;
    app.create_app(KEY, SECRET).await;
    sign_in(&console, "Overview").await;
    console.click_link("Apps").await;
    assert_eq!(console.path().await, "/console/apps");
    assert_eq!(console.text("h1").await, "Apps");
    assert_eq!(console.text("#create-app").await, "Register an app");

    let form = "form[action='/console/apps']";
    console
        .fill_in(&format!("{form} #app_key"), "ferry-gates")
        .await;
    console
        .fill_in(&format!("{form} #name"), "Ferry gates")
        .await;
    console
        .fill_in(&format!("{form} #rate_limit"), "20/s")
        .await;
    console.fill_in(&format!("{form} #burst"), "40").await;
    console
        .fill_in(&format!("{form} #ip_allowlist"), "10.0.0.0/8\n192.168.1.7")
        .await;
    console.screenshot("apps").await;
    console.submit(form).await;
    assert_eq!(console.text("h1").await, "App registered.");
    let secret = shown_secret(&console).await;
    console.screenshot("app-secret").await;
    let (_, registered) = app.admin_get("/admin/apps/ferry-gates").await;
    assert_eq!(registered["rate_limit"], "20/s");
    assert_eq!(registered["burst"], 40);
    assert_eq!(
        registered["ip_allowlist"],
        json!(["10.0.0.0/8", "192.168.1.7"])
    );

    // Never shown again: not on the app's page, not in the list.
    console.click_link("App ferry-gates").await;
    assert_eq!(console.path().await, "/console/apps/ferry-gates");
    assert_eq!(console.text("h1").await, "App ferry-gates");
    assert!(!console.exists("#new-secret").await);
    assert!(!console.html().await.contains(&secret));
    let settings = console.text("dl.totals").await;
    assert!(settings.contains("10.0.0.0/8, 192.168.1.7"), "{settings}");
    console.screenshot("app").await;
    console.goto("/console/apps").await;
    let listed = console.html().await;
    assert!(listed.contains("/console/apps/ferry-gates") && !listed.contains(&secret));

    // Rotated: another secret, shown once; the old one keeps working for the overlap.
    console.goto("/console/apps/ferry-gates").await;
    assert_eq!(console.text("#rotate").await, "Rotate the secret");
    console.fill("overlap", "1h").await;
    console
        .submit("form[action='/console/apps/ferry-gates/rotate']")
        .await;
    assert_eq!(console.text("h1").await, "Rotate the secret");
    let rotated = shown_secret(&console).await;
    assert_ne!(rotated, secret);
    console.goto("/console/apps/ferry-gates").await;
    let page = console.html().await;
    assert!(!page.contains(&rotated) && !page.contains(&secret));
    let until = console.text("dl.totals").await;
    assert!(until.contains("Previous secret works until"), "{until}");
    let (_, rotated_app) = app.admin_get("/admin/apps/ferry-gates").await;
    assert!(rotated_app["previous_secret_expires_at"].is_string());
    console.finish().await;
}

#[tokio::test]
async fn the_overview_charts_the_calls_and_the_audit_trail_filters_them() {
    let Some(console) = Console::start("en").await else {
        return;
    };
    let app = &console.app;
    app.create_app(KEY, SECRET).await;
    app.create_order(8401, KEY, &[("TOWER-0008401", 5)]).await;
    // Accepted, the same gate pass again (replayed), and a wrong signature (refused).
    verify(&console, 8401, "TOWER-0008401", 2).await;
    let pass = TopCall::verify(KEY, SECRET).set("order_id", 8401).set(
        "voucher_infos",
        json!([{"confirm_code": "TOWER-0008401", "used_quantity": 1, "used_date": minutes_ago(5)}]),
    );
    assert_success_body(&app.call(&pass).await);
    let replayed = assert_success_body(&app.call(&pass).await);
    let forged = TopCall::verify(KEY, "not-the-secret")
        .set("order_id", 8401)
        .set("confirm_code", "TOWER-0008401")
        .set("check_num", 1);
    let _ = app.call(&forged).await;

    sign_in(&console, "Overview").await;
    // One stacked bar per minute with calls, each part titled "<outcome>: <calls>" (the calls
    // may fall in two minutes); the legend has the hour's totals.
    let titles = console
        .execute(
            "return [...document.querySelectorAll('figure.chart > svg > rect > title')]\
             .map(t => t.textContent);",
        )
        .await;
    let titles: Vec<String> = serde_json::from_value(titles).unwrap();
    assert!(!titles.is_empty(), "the chart has bars");
    let calls = |series: &str| -> u64 {
        titles
            .iter()
            .filter_map(|t| t.strip_prefix(&format!("{series}: ")))
            .map(|n| n.parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(
        [calls("Accepted"), calls("Replayed"), calls("Refused")],
        [2, 1, 1],
        "{titles:?}"
    );
    let legend = words(&console.text("ul.legend").await);
    assert_eq!(legend, "Accepted 2 Replayed 1 Refused 1");
    let totals = words(&console.text("dl.totals").await);
    assert!(totals.contains("Uses recorded 3"), "{totals}");
    console.screenshot("overview").await;

    // The audit trail, filtered to the order's replayed calls: the one replay.
    console.click_link("Audit trail").await;
    assert_eq!(console.path().await, "/console/audit");
    assert_eq!(console.text("h1").await, "Audit trail");
    assert!(console.find_all("tr[data-seq]").await.len() >= 4);
    console.fill("order_id", "8401").await;
    console.choose("#outcome", "replayed").await;
    console.submit("form.search").await;
    assert_eq!(console.path().await, "/console/audit");
    let rows = console.texts("tr[data-seq]").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains(&replayed), "{rows:?}");
    assert!(rows[0].contains("Replayed"), "{rows:?}");
    console.goto("/console/audit").await;
    console.screenshot("audit").await;
    console.finish().await;
}
