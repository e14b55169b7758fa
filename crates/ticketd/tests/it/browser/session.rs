//! Signing in and out of the console in a real browser: the admin token and nothing else opens
//! it, the language switch, every page closed after sign-out, and a forged POST without the
//! session's CSRF token changing nothing.

use ticketd::test_support::ADMIN_TOKEN;

use super::{Console, SESSION_COOKIE};

/// Every page of the console that needs a session. Signed out, each must land on the sign-in
/// page. Add a page here when it lands; one the server does not have yet (404) is reported and
/// passed over, except `/console/`, which must always be there.
const SIGNED_IN_PAGES: &[&str] = &[
    "/console/",
    "/console/orders",
    "/console/anomalies",
    "/console/audit",
    "/console/apps",
];

/// The pages that must exist today (no 404 allowed): all of them.
const REQUIRED_PAGES: &[&str] = &[
    "/console/",
    "/console/orders",
    "/console/anomalies",
    "/console/audit",
    "/console/apps",
];

#[tokio::test]
async fn the_admin_token_and_nothing_else_signs_in() {
    let Some(console) = Console::start("en").await else {
        return;
    };
    console.goto("/console/").await;
    assert_eq!(console.path().await, "/console/login", "not signed in yet");
    assert_eq!(console.text("h1").await, "Sign in to the ticketd console");
    assert_eq!(console.text("label[for=token]").await, "Admin token");
    console.screenshot("login").await;

    // A wrong token: the error, still the sign-in page, and no session.
    console.sign_in("not-the-admin-token").await;
    assert_eq!(console.path().await, "/console/login");
    assert_eq!(
        console.text("p.error[role=alert]").await,
        "That is not this server's admin token."
    );
    assert_eq!(console.cookie(SESSION_COOKIE).await, None);
    console.screenshot("login-refused").await;
    console.goto("/console/").await;
    assert_eq!(console.path().await, "/console/login", "no session");

    // The right one: the overview, signed in.
    console.sign_in(ADMIN_TOKEN).await;
    assert_eq!(console.path().await, "/console/");
    assert_eq!(console.text("h1").await, "Overview");
    assert!(console.cookie(SESSION_COOKIE).await.is_some());
    assert!(console.exists("form.signout").await, "the sign-out button");
    assert!(
        !console
            .execute("return document.documentElement.outerHTML;")
            .await
            .as_str()
            .unwrap()
            .contains(ADMIN_TOKEN),
        "the token never appears on a page"
    );
    console.screenshot("overview-empty").await;

    // Signed in, the sign-in page sends to the overview.
    console.goto("/console/login").await;
    assert_eq!(console.path().await, "/console/");
    console.finish().await;
}

#[tokio::test]
async fn the_language_switch_changes_the_pages_language() {
    let Some(console) = Console::start("en").await else {
        return;
    };
    console.sign_in(ADMIN_TOKEN).await;
    assert_eq!(console.text("h1").await, "Overview");
    assert_eq!(console.attr("html", "lang").await.as_deref(), Some("en"));

    console.click_link("简体中文").await;
    assert_eq!(console.path().await, "/console/");
    assert_eq!(console.text("h1").await, "概览");
    assert_eq!(console.attr("html", "lang").await.as_deref(), Some("zh-CN"));
    assert_eq!(console.text("form.signout button").await, "退出登录");
    console.screenshot("overview-empty-zh").await;

    // Remembered: the next page opened without `?lang=` is still Chinese.
    console.goto("/console/").await;
    assert_eq!(console.text("h1").await, "概览");

    console.click_link("English").await;
    assert_eq!(console.text("h1").await, "Overview");
    assert_eq!(console.text("form.signout button").await, "Sign out");
    console.goto("/console/").await;
    assert_eq!(console.text("h1").await, "Overview");
    console.finish().await;
}

#[tokio::test]
async fn a_chinese_browser_gets_chinese_pages() {
    let Some(console) = Console::start("zh-CN").await else {
        return;
    };
    console.goto("/console/login").await;
    assert_eq!(console.text("h1").await, "登录 ticketd 控制台");
    assert_eq!(console.text("label[for=token]").await, "管理令牌");
    console.screenshot("login-zh").await;
    console.sign_in("wrong").await;
    assert_eq!(
        console.text("p.error[role=alert]").await,
        "管理令牌不正确。"
    );
    console.sign_in(ADMIN_TOKEN).await;
    assert_eq!(console.text("h1").await, "概览");
    console.finish().await;
}

#[tokio::test]
async fn after_sign_out_every_console_page_sends_to_the_sign_in_page() {
    let Some(console) = Console::start("en").await else {
        return;
    };
    console.sign_in(ADMIN_TOKEN).await;
    assert_eq!(console.text("h1").await, "Overview");
    let session = console
        .cookie(SESSION_COOKIE)
        .await
        .expect("a session cookie");

    console.sign_out().await;
    assert_eq!(console.text("h1").await, "Sign in to the ticketd console");
    assert_eq!(console.cookie(SESSION_COOKIE).await, None, "cookie cleared");

    // A page the server has no route for yet answers 404 whoever asks; it is passed over
    // until it lands (see SIGNED_IN_PAGES).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut checked = Vec::new();
    for &page in SIGNED_IN_PAGES {
        let status = http
            .get(console.url(page))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 404 && !REQUIRED_PAGES.contains(&page) {
            eprintln!("note: {page} is not a console page yet (404); not checked");
            continue;
        }
        console.goto(page).await;
        assert_eq!(
            console.path().await,
            "/console/login",
            "{page} after sign-out"
        );
        checked.push(page);
    }

    // The old session is over on the server too: sending its cookie again opens nothing.
    // (A live session's cookie, set the same way, does open the console: the check below
    // sends the cookie.)
    let live = http
        .post(console.url("/console/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 303);
    let live = live
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{SESSION_COOKIE}=")))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    console.set_cookie(SESSION_COOKIE, &live).await;
    console.goto("/console/").await;
    assert_eq!(console.path().await, "/console/", "a live session's cookie");
    assert_eq!(console.text("h1").await, "Overview");
    console.set_cookie(SESSION_COOKIE, &session).await;
    for &page in &checked {
        console.goto(page).await;
        assert_eq!(
            console.path().await,
            "/console/login",
            "{page} with the signed-out session's cookie"
        );
    }
    console.finish().await;
}

#[tokio::test]
async fn a_forged_sign_out_without_the_csrf_token_changes_nothing() {
    let Some(console) = Console::start("en").await else {
        return;
    };
    console.sign_in(ADMIN_TOKEN).await;
    assert_eq!(console.text("h1").await, "Overview");
    let session = console.cookie(SESSION_COOKIE).await;
    assert!(session.is_some());

    // A form built by a script, posted from the signed-in browser (its cookie goes along):
    // without the csrf field, then with a wrong one.
    for fields in ["", "csrf=forged"] {
        console.mark_page().await;
        console
            .execute(&format!(
                r#"
                const form = document.createElement("form");
                form.method = "post";
                form.action = "/console/logout";
                for (const pair of "{fields}".split("&").filter(Boolean)) {{
                    const [name, value] = pair.split("=");
                    const input = document.createElement("input");
                    input.type = "hidden";
                    input.name = name;
                    input.value = value;
                    form.appendChild(input);
                }}
                document.body.appendChild(form);
                form.submit();
                "#
            ))
            .await;
        console.wait_for_new_page().await;
        assert_eq!(console.path().await, "/console/logout", "{fields:?}");
        assert_eq!(console.text("h1").await, "Refused", "{fields:?}");
        assert!(
            console.text("main p").await.contains("Nothing was changed"),
            "{fields:?}"
        );
        if fields.is_empty() {
            console.screenshot("forbidden").await;
        }
        assert_eq!(console.cookie(SESSION_COOKIE).await, session, "{fields:?}");
        console.goto("/console/").await;
        assert_eq!(console.text("h1").await, "Overview", "still signed in");
    }

    // The same from fetch(), as a script on another page of the site would: 403.
    let status = console
        .execute_async(
            r#"
            const done = arguments[arguments.length - 1];
            fetch("/console/logout", {
                method: "POST",
                credentials: "same-origin",
                headers: { "content-type": "application/x-www-form-urlencoded" },
                body: "csrf=",
                redirect: "manual",
            }).then((r) => done(r.status), (e) => done(String(e)));
            "#,
        )
        .await;
    assert_eq!(status, serde_json::json!(403));
    console.goto("/console/").await;
    assert_eq!(console.path().await, "/console/");
    assert_eq!(console.text("h1").await, "Overview", "still signed in");

    // And the real button still signs out.
    console.sign_out().await;
    console.goto("/console/").await;
    assert_eq!(console.path().await, "/console/login");
    console.finish().await;
}
