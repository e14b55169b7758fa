//! The console's pages and actions over HTTP, signed in as an operator: finding orders, an
//! order's vouchers and timeline, the three order actions with their confirmation step, the
//! anomaly queue, the audit trail, the apps, and the overview's chart. Each action is checked
//! in the ledger through the admin API, and in the audit trail, which must name the console.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;
use ticketd::admin::OrderAnswer;
use ticketd::test_support::{TestApp, TopCall, ADMIN_TOKEN};

use crate::helpers::{assert_success_body, audit_entries, create_order_with, spawn_app, REFUND};

const KEY: &str = "console-vendor";
const SECRET: &str = "console-secret";

/// A signed-in browser (cookies carried by hand, redirects not followed).
struct Console<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    cookie: String,
}

impl<'a> Console<'a> {
    async fn sign_in(app: &'a TestApp) -> Console<'a> {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        let r = http
            .post(app.url("/console/login"))
            .form(&[("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let cookie = r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        Console { app, http, cookie }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(self.app.url(path))
            .header(COOKIE, format!("{}; ticketd_console_lang=en", self.cookie))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts a form; answers the status, the redirect target (if any) and the page.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Option<String>, String) {
        let r = self
            .http
            .post(self.app.url(path))
            .header(COOKIE, format!("{}; ticketd_console_lang=en", self.cookie))
            .form(form)
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), location, r.text().await.unwrap())
    }

    /// The session's CSRF token, read off a page.
    async fn csrf(&self) -> String {
        let (_, page) = self.get("/console/orders").await;
        let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
        page[at..at + 64].to_owned()
    }
}

/// The one-time token of a confirmation form on `page`.
fn once_of(page: &str) -> String {
    let at = page
        .find("name=\"once\" value=\"")
        .expect("a one-time token")
        + 19;
    page[at..at + 64].to_owned()
}

/// A page's text without its tags, whitespace folded, for "the page says" checks.
fn text(page: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in page.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn vendor_app() -> TestApp {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app
}

async fn verify(app: &TestApp, order_id: i64, code: &str, n: i64) {
    let call = TopCall::verify(KEY, SECRET)
        .set("order_id", order_id)
        .set("confirm_code", code)
        .set("check_num", n);
    assert_success_body(&app.call(&call).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_found_by_order_id_vendor_order_id_and_app_key() {
    let app = vendor_app().await;
    app.create_app("other-vendor", "other-secret").await;
    for id in 7001..=7003 {
        create_order_with(
            &app,
            id,
            KEY,
            &[(&format!("FIND-{id}"), 1)],
            json!({"out_order_id": format!("OUT-{id}")}),
        )
        .await;
    }
    app.create_order(7100, "other-vendor", &[("OTHER-1", 1)])
        .await;
    verify(&app, 7002, "FIND-7002", 1).await;
    let console = Console::sign_in(&app).await;

    let (status, page) = console.get("/console/orders?q=OUT-7002").await;
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/console/orders/7002\""), "{page}");
    assert!(!page.contains("/console/orders/7001\""), "{page}");
    let (_, page) = console.get("/console/orders?q=7003").await;
    assert!(page.contains("/console/orders/7003\""));
    assert!(!page.contains("/console/orders/7002\""));
    // By app key: all of that app's orders and none of another's, newest first.
    let (_, page) = console.get(&format!("/console/orders?q={KEY}")).await;
    let at = |id: i64| page.find(&format!("/console/orders/{id}\"")).unwrap();
    assert!(at(7003) < at(7002) && at(7002) < at(7001), "newest first");
    assert!(!page.contains("/console/orders/7100\""));
    // A substring is not a match.
    let (_, page) = console.get("/console/orders?q=OUT-70").await;
    assert!(text(&page).contains("No orders match."), "{page}");
    // By status.
    let (_, page) = console.get("/console/orders?status=used").await;
    assert!(
        page.contains("/console/orders/7002\"") && !page.contains("/console/orders/7001\""),
        "{page}"
    );

    // Bad input is said, never a 500; a search far past its bound is refused whole.
    let (status, page) = console
        .get(&format!("/console/orders?q={}", "x".repeat(8_000)))
        .await;
    assert_eq!(status, 400);
    assert!(text(&page).contains("The search text is too long."));
    let (status, page) = console.get("/console/orders?status=bogus").await;
    assert_eq!(status, 400);
    assert!(text(&page).contains("Unknown status."));
    let (status, _) = console.get("/console/orders?after=not-a-cursor").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_page_masks_codes_until_shown_and_pages_its_timeline_newest_first() {
    let app = vendor_app().await;
    app.create_order(7201, KEY, &[("WHOLE-CODE-7201", 30)])
        .await;
    for _ in 0..25 {
        verify(&app, 7201, "WHOLE-CODE-7201", 1).await;
    }
    let console = Console::sign_in(&app).await;
    let (status, page) = console.get("/console/orders/7201").await;
    assert_eq!(status, 200);
    assert!(!page.contains("WHOLE-CODE-7201"), "masked until shown");
    assert!(page.contains("****7201"));
    assert!(text(&page).contains("25 / 30"), "used of capacity");
    let (_, shown) = console.get("/console/orders/7201?show=0").await;
    assert!(shown.contains("WHOLE-CODE-7201"));

    // The timeline: the newest 20 entries first, then a link to the older ones.
    let order: OrderAnswer = app.order(7201).await;
    let seqs = |page: &str| -> Vec<i64> {
        page.match_indices("data-seq=\"")
            .map(|(i, m)| {
                let rest = &page[i + m.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    };
    let first = seqs(&page);
    assert_eq!(first.len(), 20);
    assert!(first.windows(2).all(|w| w[0] > w[1]), "newest first");
    let newest = order.events.iter().map(|e| e.seq).max().unwrap();
    assert_eq!(first[0], newest);
    let older = format!("/console/orders/7201?before={}", first[19]);
    assert!(
        page.contains(&older.replace('&', "&amp;")),
        "a link to older events"
    );
    let (_, page) = console.get(&older).await;
    let second = seqs(&page);
    assert!(!second.is_empty() && second[0] < first[19]);
    let total = usize::try_from(order.events_total).unwrap();
    assert_eq!(first.len() + second.len(), total, "every event once");
    // Each entry names its request_id and outcome.
    let last_verify = order
        .events
        .iter()
        .rev()
        .find(|e| e.action.contains("verify"))
        .unwrap();
    let (_, page) = console.get("/console/orders/7201").await;
    assert!(page.contains(&last_verify.request_id));

    // An order that does not exist, or an id that is no id.
    assert_eq!(console.get("/console/orders/999999").await.0, 404);
    assert_eq!(console.get("/console/orders/abc").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_actions_show_what_they_change_and_apply_only_when_confirmed() {
    let app = vendor_app().await;
    app.create_order(7301, KEY, &[("ACT-CODE-1", 2), ("ACT-CODE-2", 3)])
        .await;
    verify(&app, 7301, "ACT-CODE-1", 2).await;
    let console = Console::sign_in(&app).await;
    let csrf = console.csrf().await;

    // Reverse one use: the review page says what will change and changes nothing.
    let form = [
        ("csrf", csrf.as_str()),
        ("confirm_code", "ACT-CODE-1"),
        ("quantity", "1"),
        ("reason", "scanned twice at gate 3"),
    ];
    let (status, _, page) = console.post("/console/orders/7301/reverse", &form).await;
    assert_eq!(status, 200);
    assert!(text(&page).contains("2 / 2 → 1 / 2"), "{}", text(&page));
    assert!(page.contains("name=\"confirm\" value=\"yes\""));
    assert!(
        !page.contains("ACT-CODE-1"),
        "the confirmation shows and carries the code masked"
    );
    assert_eq!(
        app.used(7301, "ACT-CODE-1").await,
        2,
        "a review changes nothing"
    );
    // Confirmed: applied, and the order page says so.
    let once = once_of(&page);
    let confirmed = [
        ("csrf", csrf.as_str()),
        ("voucher", "0"),
        ("quantity", "1"),
        ("reason", "scanned twice at gate 3"),
        ("confirm", "yes"),
        ("once", once.as_str()),
    ];
    let (status, location, _) = console
        .post("/console/orders/7301/reverse", &confirmed)
        .await;
    assert_eq!(status, 303);
    // The same confirmation sent again (a double click): refused, applied once.
    let (status, _, page) = console
        .post("/console/orders/7301/reverse", &confirmed)
        .await;
    assert_eq!(status, 409, "{}", text(&page));
    assert_eq!(
        location.as_deref(),
        Some("/console/orders/7301?done=reverse")
    );
    assert_eq!(app.used(7301, "ACT-CODE-1").await, 1);
    let (_, page) = console.get("/console/orders/7301?done=reverse").await;
    assert!(text(&page).contains("Uses given back."));
    assert!(text(&page).contains("1 / 5"), "{}", text(&page));
    // The audit entry is the admin API's, naming the console.
    let entries = audit_entries(&app, "order_id=7301").await;
    let reversal = entries
        .iter()
        .find(|e| e.action.contains("revers"))
        .expect("a reversal entry");
    assert_eq!(reversal.detail["origin"], "console", "{reversal:?}");
    assert_eq!(reversal.detail["reason"], "scanned twice at gate 3");

    // A reason is bounded like every text kept in the audit trail.
    let long = "r".repeat(200_000);
    let (status, _, _) = console
        .post(
            "/console/orders/7301/reverse",
            &[
                ("csrf", csrf.as_str()),
                ("confirm_code", "ACT-CODE-1"),
                ("quantity", "1"),
                ("reason", long.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 400);
    // A forged POST without the CSRF token: 403, nothing changed.
    let forged = [
        ("confirm_code", "ACT-CODE-1"),
        ("quantity", "1"),
        ("reason", "x"),
        ("confirm", "yes"),
    ];
    let (status, _, _) = console.post("/console/orders/7301/reverse", &forged).await;
    assert_eq!(status, 403);
    let (status, _, _) = console
        .post(
            "/console/orders/7301/refund",
            &[("quantity", "1"), ("confirm", "yes"), ("csrf", "0000")],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(app.used(7301, "ACT-CODE-1").await, 1);
    assert!(app.order(7301).await.refunds.is_empty());

    // A refund request: reviewed, then confirmed.
    let form = [("csrf", csrf.as_str()), ("quantity", "2")];
    let (status, _, page) = console.post("/console/orders/7301/refund", &form).await;
    assert_eq!(status, 200);
    assert!(
        text(&page).contains("Refundable now 4 → 2"),
        "{}",
        text(&page)
    );
    assert!(app.order(7301).await.refunds.is_empty());
    let once = once_of(&page);
    let confirmed = [
        ("csrf", csrf.as_str()),
        ("quantity", "2"),
        ("confirm", "yes"),
        ("once", once.as_str()),
    ];
    let (status, _, _) = console
        .post("/console/orders/7301/refund", &confirmed)
        .await;
    assert_eq!(status, 303);
    let (status, _, _) = console
        .post("/console/orders/7301/refund", &confirmed)
        .await;
    assert_eq!(
        status, 409,
        "a resent confirmation asks for no second refund"
    );
    let (status, _, _) = console
        .post(
            "/console/orders/7301/refund",
            &[
                ("csrf", csrf.as_str()),
                ("quantity", "1"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(status, 409, "no confirmation without its page's token");
    let order = app.order(7301).await;
    assert_eq!(order.refunds.len(), 1);
    assert_eq!(order.status, "refunding");
    // Refused by the ledger: the page says why, with the admin API's status.
    let (status, _, page) = console
        .post(
            "/console/orders/7301/refund",
            &[
                ("csrf", csrf.as_str()),
                ("quantity", "99"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(status, 409);
    assert!(text(&page).contains("Not done"));
    assert_eq!(app.order(7301).await.refunds.len(), 1);
    for quantity in ["-5", "0", "3"] {
        let (status, _, page) = console
            .post(
                "/console/orders/7301/refund",
                &[("csrf", csrf.as_str()), ("quantity", quantity)],
            )
            .await;
        assert!(status == 400 || status == 409, "{quantity}: {status}");
        assert!(!page.contains("name=\"once\""), "no confirmation offered");
    }
    let (status, _, page) = console
        .post(
            "/console/orders/7301/refund",
            &[("csrf", csrf.as_str()), ("quantity", "lots")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(text(&page).contains("a whole number"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_previews_the_ledgers_plan_and_records_it_on_confirm() {
    let app = vendor_app().await;
    app.create_order(7401, KEY, &[("REC-A", 3), ("REC-B", 2)])
        .await;
    verify(&app, 7401, "REC-A", 1).await;
    let console = Console::sign_in(&app).await;
    let csrf = console.csrf().await;
    let (_, page) = console.get("/console/orders/7401").await;
    assert!(page.contains("name=\"used\""));
    let form = [("csrf", csrf.as_str()), ("used", "3"), ("used", "1")];
    let (status, _, page) = console.post("/console/orders/7401/reconcile", &form).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        text(&page).contains("Uses that will be recorded: 3"),
        "{}",
        text(&page)
    );
    assert_eq!(
        app.used(7401, "REC-A").await,
        1,
        "the preview records nothing"
    );
    let once = once_of(&page);
    let mut confirmed = form.to_vec();
    confirmed.push(("confirm", "yes"));
    confirmed.push(("once", once.as_str()));
    let (status, location, _) = console
        .post("/console/orders/7401/reconcile", &confirmed)
        .await;
    assert_eq!(status, 303, "{location:?}");
    let (status, _, _) = console
        .post("/console/orders/7401/reconcile", &confirmed)
        .await;
    assert_eq!(status, 409, "sent twice, applied once");
    assert_eq!(app.used(7401, "REC-A").await, 3);
    assert_eq!(app.used(7401, "REC-B").await, 1);
    // More than a code allows: refused, nothing recorded.
    let over = [
        ("csrf", csrf.as_str()),
        ("used", "3"),
        ("used", "9"),
        ("confirm", "yes"),
    ];
    let (status, _, page) = console.post("/console/orders/7401/reconcile", &over).await;
    assert_eq!(status, 409, "{}", text(&page));
    assert!(!page.contains("REC-B"), "the refusal names the code masked");
    assert_eq!(app.used(7401, "REC-B").await, 1);
    // The preview refuses it too, rather than offer a confirmation the ledger would refuse.
    let (status, _, page) = console
        .post("/console/orders/7401/reconcile", &over[..3])
        .await;
    assert_eq!(status, 409);
    assert!(!page.contains("name=\"once\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_are_listed_and_resolved_from_the_console() {
    let app = vendor_app().await;
    app.create_order(7501, KEY, &[("ANOM-1", 2)]).await;
    // A refund notification nobody asked for opens an anomaly.
    let call = TopCall::method(REFUND, KEY, SECRET)
        .set("order_id", 7501)
        .set("refund_status", 1)
        .set("refund_num", 1)
        .set("refund_batch_no", "RB-UNASKED");
    let _ = app.call(&call).await;
    let open = crate::helpers::anomalies(&app, "status=open").await;
    assert!(!open.is_empty(), "an anomaly to resolve");
    let id = open[0].id;

    let console = Console::sign_in(&app).await;
    let (status, page) = console.get("/console/anomalies").await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("id=\"anomaly-{id}\"")), "{page}");
    let csrf = console.csrf().await;
    let path = format!("/console/anomalies/{id}/resolve");
    let (status, _, _) = console
        .post(&path, &[("resolution", "dismissed"), ("note", "forged")])
        .await;
    assert_eq!(status, 403, "no CSRF token");
    let (status, _, page) = console
        .post(
            &path,
            &[
                ("csrf", csrf.as_str()),
                ("resolution", "bogus"),
                ("note", "x"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{}", text(&page));
    let (status, location, _) = console
        .post(
            &path,
            &[
                ("csrf", csrf.as_str()),
                ("resolution", "dismissed"),
                ("note", "vendor test call"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(location.unwrap(), format!("/console/anomalies?done={id}"));
    let resolved = crate::helpers::anomalies(&app, "status=resolved").await;
    let a = resolved.iter().find(|a| a.id == id).unwrap();
    assert_eq!(a.resolution.as_deref(), Some("dismissed"));
    assert_eq!(a.note.as_deref(), Some("vendor test call"));
    let entries = audit_entries(&app, "order_id=7501").await;
    let resolution = entries
        .iter()
        .find(|e| e.action == "admin.resolve_anomaly")
        .expect("the resolution's audit entry");
    assert_eq!(resolution.detail["origin"], "console", "{resolution:?}");
    let (_, page) = console.get("/console/anomalies").await;
    assert!(
        !page.contains(&format!("id=\"anomaly-{id}\"")),
        "no longer open"
    );
    let (_, page) = console.get("/console/anomalies?status=resolved").await;
    assert!(page.contains(&format!("id=\"anomaly-{id}\"")));
    // Again: already resolved, said, not a 500.
    let (status, _, _) = console
        .post(
            &path,
            &[
                ("csrf", csrf.as_str()),
                ("resolution", "dismissed"),
                ("note", "again"),
            ],
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_created_limited_and_rotated_and_a_secret_is_shown_once() {
    let app = spawn_app().await;
    let console = Console::sign_in(&app).await;
    let csrf = console.csrf().await;
    let (status, _, page) = console
        .post(
            "/console/apps",
            &[
                ("csrf", csrf.as_str()),
                ("app_key", "gate-system"),
                ("name", "Gate system"),
                ("rate_limit", "20/s"),
                ("burst", "40"),
                ("ip_allowlist", "10.0.0.0/8\n192.168.1.7"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{}", text(&page));
    let at = page.find("id=\"new-secret\">").unwrap() + 16;
    let secret = page[at..at + page[at..].find('<').unwrap()].to_owned();
    assert!(secret.len() >= 32, "{secret}");
    // The secret signs calls, and is never shown again.
    let (_, listed) = console.get("/console/apps").await;
    assert!(listed.contains("/console/apps/gate-system") && !listed.contains(&secret));
    let (status, page) = console.get("/console/apps/gate-system").await;
    assert_eq!(status, 200);
    assert!(!page.contains(&secret));
    assert!(text(&page).contains("10.0.0.0/8"), "{}", text(&page));
    let (_, shown) = app.admin_get("/admin/apps/gate-system").await;
    assert_eq!(shown["rate_limit"], "20/s");
    assert_eq!(shown["burst"], 40);

    // Access settings: an emptied allow-list is any address; a bad entry is named.
    let (status, location, _) = console
        .post(
            "/console/apps/gate-system/access",
            &[
                ("csrf", csrf.as_str()),
                ("rate_limit", "5/s"),
                ("burst", ""),
                ("ip_allowlist", ""),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some("/console/apps/gate-system?done=access")
    );
    let (_, shown) = app.admin_get("/admin/apps/gate-system").await;
    assert_eq!(shown["rate_limit"], "5/s");
    assert_eq!(shown["ip_allowlist"], json!([]));
    let (status, _, page) = console
        .post(
            "/console/apps/gate-system/access",
            &[
                ("csrf", csrf.as_str()),
                ("rate_limit", "5/s"),
                ("ip_allowlist", "not-an-address"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(text(&page).contains("Not done"));

    // Rotation: a new secret, shown once; the old one keeps working for the overlap.
    let (_, page) = console.get("/console/apps/gate-system").await;
    let once = once_of(&page);
    let rotate = [
        ("csrf", csrf.as_str()),
        ("overlap", "1h"),
        ("once", once.as_str()),
    ];
    let (status, _, page) = console
        .post("/console/apps/gate-system/rotate", &rotate)
        .await;
    assert_eq!(status, 201);
    // Sent again (a reload of the page showing the secret): no second rotation, which would
    // end the overlap of the secret vendors still sign with.
    let (status, _, again) = console
        .post("/console/apps/gate-system/rotate", &rotate)
        .await;
    assert_eq!(status, 409);
    assert!(!again.contains("id=\"new-secret\""));
    let at = page.find("id=\"new-secret\">").unwrap() + 16;
    let rotated = page[at..at + page[at..].find('<').unwrap()].to_owned();
    assert_ne!(rotated, secret);
    let (_, page) = console.get("/console/apps/gate-system").await;
    assert!(!page.contains(&rotated) && !page.contains(&secret));
    let (_, shown) = app.admin_get("/admin/apps/gate-system").await;
    assert!(shown["previous_secret_expires_at"].is_string());
    // Without the token nothing rotates.
    let (status, _, _) = console
        .post("/console/apps/gate-system/rotate", &[("overlap", "0s")])
        .await;
    assert_eq!(status, 403);
    let (_, after) = app.admin_get("/admin/apps/gate-system").await;
    assert_eq!(
        after["previous_secret_expires_at"],
        shown["previous_secret_expires_at"]
    );
    // Every app change is audited as the console's, never with a secret.
    let entries = audit_entries(&app, "app_key=gate-system").await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.len(), 3, "{actions:?}");
    for e in &entries {
        assert_eq!(e.detail["origin"], "console", "{e:?}");
        let detail = e.detail.to_string();
        assert!(!detail.contains(&secret) && !detail.contains(&rotated));
    }
    // A key that is no app.
    assert_eq!(console.get("/console/apps/nobody").await.0, 404);
    // Keys no address can hold are refused, in the console as in the admin API.
    for key in [".", ".."] {
        let (status, _, _) = console
            .post(
                "/console/apps",
                &[("csrf", csrf.as_str()), ("app_key", key)],
            )
            .await;
        assert_eq!(status, 400, "{key}");
        let (status, _) = app.admin_post("/admin/apps", json!({"app_key": key})).await;
        assert_eq!(status, 400, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_charts_the_last_hours_calls_and_the_audit_page_filters() {
    let app = vendor_app().await;
    app.create_order(7601, KEY, &[("CHART-1", 5)]).await;
    verify(&app, 7601, "CHART-1", 2).await;
    // The same gate pass reported twice: accepted, then replayed.
    let date =
        top_protocol::timestamp::format_beijing(chrono::Utc::now() - chrono::Duration::minutes(5));
    let call = TopCall::verify(KEY, SECRET).set("order_id", 7601).set(
        "voucher_infos",
        json!([{"confirm_code": "CHART-1", "used_quantity": 1, "used_date": date}]),
    );
    assert_success_body(&app.call(&call).await);
    assert_success_body(&app.call(&call).await);
    // Refused: a wrong signature.
    let bad = TopCall::verify(KEY, "wrong-secret")
        .set("order_id", 7601)
        .set("confirm_code", "CHART-1")
        .set("check_num", 1);
    let _ = app.call(&bad).await;

    let console = Console::sign_in(&app).await;
    let (status, page) = console.get("/console/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<svg"), "{page}");
    assert!(!page.contains("style="), "no inline style (CSP)");
    let words = text(&page);
    assert!(words.contains("Accepted 2"), "{words}");
    assert!(words.contains("Replayed 1"), "{words}");
    assert!(words.contains("Refused 1"), "{words}");
    assert!(page.contains("<title>Accepted: 2</title>"), "{page}");
    // Answers by code: 0 for the three answered is_success, 25 for the bad signature.
    assert!(words.contains("0 Success 3"), "{words}");
    assert!(words.contains("25 "), "{words}");

    // The audit page, newest first, with the admin API's filters.
    let (status, page) = console
        .get("/console/audit?order_id=7601&outcome=replayed")
        .await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("data-seq=").count(), 1, "{page}");
    let (status, _) = console.get("/console/audit?outcome=nonsense").await;
    assert_eq!(status, 400);
    let (status, _) = console.get("/console/audit?order_id=abc").await;
    assert_eq!(status, 400);
    let (status, _) = console
        .get(&format!("/console/audit?app_key={}", "k".repeat(10_000)))
        .await;
    assert_eq!(status, 400);
    // The refused calls before authentication are listed there too.
    let (_, page) = console.get("/console/audit").await;
    assert!(text(&page).contains("Calls refused before authentication"));
}
