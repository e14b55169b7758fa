//! The operator console over HTTP, as a browser would call it (no redirects followed, cookies
//! carried by hand): sign-in by the admin token, the session cookie's attributes, CSRF on
//! sign-out, the security headers, the per-address sign-in limit, the session's lifetime and
//! both languages.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT_LANGUAGE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use ticketd::clock::SystemClock;
use ticketd::console::session::MAX_ATTEMPTS;
use ticketd::test_support::ADMIN_TOKEN;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The session cookie (`name=value`) a sign-in answer set.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("ticketd_console="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

async fn sign_in(app: &TestApp, http: &reqwest::Client, token: &str) -> reqwest::Response {
    http.post(app.url("/console/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// Signs in; answers the cookie to send.
async fn signed_in(app: &TestApp, http: &reqwest::Client) -> String {
    let r = sign_in(app, http, ADMIN_TOKEN).await;
    assert_eq!(r.status(), 303);
    session_cookie(r.headers()).expect("a session cookie")
}

async fn get(
    app: &TestApp,
    http: &reqwest::Client,
    path: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    get_in(app, http, path, "", cookie).await
}

/// [`get`] from a browser whose languages are `accept_language`.
async fn get_in(
    app: &TestApp,
    http: &reqwest::Client,
    path: &str,
    accept_language: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut request = http.get(app.url(path));
    if !accept_language.is_empty() {
        request = request.header(ACCEPT_LANGUAGE, accept_language);
    }
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.send().await.unwrap()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_owned()
}

#[tokio::test]
async fn an_operator_signs_in_with_the_admin_token_and_out_again() {
    let app = spawn_app().await;
    let http = browser();

    // Not signed in: every page sends to the sign-in page.
    let r = get(&app, &http, "/console/", None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/console/login");
    let r = get(&app, &http, "/console/login", None).await;
    assert_eq!(r.status(), 200);
    for (name, value) in [
        ("content-security-policy", "default-src 'self'"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(r.headers()[name], value, "{name}");
    }
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"name="token""#), "{page}");
    assert!(
        page.contains(r#"<label for="token">"#),
        "the field is labelled"
    );
    assert!(!page.contains("<script"), "no script");

    // A wrong token: refused, no session.
    let r = sign_in(&app, &http, "not-the-token").await;
    assert_eq!(r.status(), 401);
    assert_eq!(session_cookie(r.headers()), None);

    // The right one: a session cookie with the attributes the issue names.
    let r = sign_in(&app, &http, ADMIN_TOKEN).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/console/");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(
        !set.contains(ADMIN_TOKEN),
        "the token is not the session: {set}"
    );
    let cookie = session_cookie(r.headers()).unwrap();

    let r = get(&app, &http, "/console/", Some(&cookie)).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Overview"), "{page}");
    assert!(
        !page.contains(ADMIN_TOKEN),
        "the token never appears on a page"
    );
    let csrf = csrf_of(&page);

    // Signing out without the form's CSRF token: 403, still signed in.
    let r = http
        .post(app.url("/console/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(app.url("/console/logout"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        get(&app, &http, "/console/", Some(&cookie)).await.status(),
        200
    );

    // With it: signed out server-side; the old cookie opens nothing.
    let r = http
        .post(app.url("/console/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = get(&app, &http, "/console/", Some(&cookie)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/console/login");
    app.stop().await;
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address() {
    let app = spawn_app().await;
    let http = browser();
    for _ in 0..MAX_ATTEMPTS {
        assert_eq!(sign_in(&app, &http, "guess").await.status(), 401);
    }
    // Over the limit, even the right token is refused without being looked at.
    for _ in 0..50 {
        let r = sign_in(&app, &http, ADMIN_TOKEN).await;
        assert_eq!(r.status(), 429);
        assert_eq!(session_cookie(r.headers()), None);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_session_ends_after_its_ttl() {
    let app = spawn_app_with(
        |s| s.console_session_ttl = Duration::from_secs(1),
        Arc::new(SystemClock),
    )
    .await;
    let http = browser();
    let cookie = signed_in(&app, &http).await;
    assert_eq!(
        get(&app, &http, "/console/", Some(&cookie)).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        get(&app, &http, "/console/", Some(&cookie)).await.status(),
        303
    );
    app.stop().await;
}

#[tokio::test]
async fn pages_speak_the_browsers_language_and_switch_on_request() {
    let app = spawn_app().await;
    let http = browser();
    let r = get_in(
        &app,
        &http,
        "/console/login",
        "zh-CN,zh;q=0.9,en;q=0.8",
        None,
    )
    .await;
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"<html lang="zh-CN">"#), "{page}");
    assert!(page.contains("登录 ticketd 控制台"), "{page}");
    assert!(
        page.contains(r#"href="/console/login?lang=en""#),
        "the switch: {page}"
    );

    // The switch to English is remembered in a cookie of the console's own.
    let r = get_in(&app, &http, "/console/login?lang=en", "zh-CN", None).await;
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("ticketd_console_lang=en;"), "{set}");
    assert!(set.contains("Path=/console"), "{set}");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Sign in to the ticketd console"));
    let cookie = Some("ticketd_console_lang=en");
    let r = get_in(&app, &http, "/console/login", "zh-CN", cookie).await;
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"<html lang="en">"#), "{page}");

    // A signed-in page in Chinese: its totals and the sign-out form.
    let cookie = signed_in(&app, &http).await;
    let r = get_in(&app, &http, "/console/", "zh", Some(&cookie)).await;
    let page = r.text().await.unwrap();
    assert!(page.contains("概览") && page.contains("退出登录"), "{page}");
    app.stop().await;
}

#[tokio::test]
async fn hostile_cookies_and_forms_open_nothing() {
    let app = spawn_app().await;
    let http = browser();
    let huge = "a".repeat(64);
    for cookie in [
        "ticketd_console=".to_owned(),
        format!("ticketd_console={huge}"),
        "ticketd_console=../../etc".to_owned(),
        format!("x=1; ticketd_console={}", "f".repeat(64)),
    ] {
        let r = get(&app, &http, "/console/", Some(&cookie)).await;
        assert_eq!(r.status(), 303, "{cookie}");
    }
    // A sign-in form far past the console's form limit is refused, not read.
    let r = http
        .post(app.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", "x".repeat(1 << 20)))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 413, "{}", r.status());
    assert_eq!(session_cookie(r.headers()), None);
    app.stop().await;
}
