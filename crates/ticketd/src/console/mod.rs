//! The operator console (`/console/`): server-rendered HTML on the admin listener, for the
//! people who run the redemption service — customer service, finance, the on-call engineer.
//!
//! - **One binary, no build step.** Pages are [`maud`] templates (checked at compile time,
//!   escaped by default); the stylesheet is embedded; there is no script at all, so every
//!   action is a plain HTML form and the pages work with a keyboard alone.
//! - **Signed in by the admin token, once.** `POST /console/login` (field `token`) starts a
//!   session: an opaque random id in a cookie that is `HttpOnly`, `SameSite=Strict`,
//!   `Path=/console` (and `Secure` under TLS), which expires after `--console-session-ttl`
//!   and ends server-side on `POST /console/logout`. The token itself never appears in a URL,
//!   a page or a log. Sign-in attempts are limited per client address
//!   ([`session::MAX_ATTEMPTS`] a minute).
//! - **Every state-changing form carries the session's CSRF token**; a POST without it is
//!   answered 403 and changes nothing.
//! - **Headers on every answer**: `Content-Security-Policy: default-src 'self'` (no inline
//!   script or style), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`,
//!   `Cache-Control: no-store` (pages show ledger data) and `X-Content-Type-Options: nosniff`.
//! - **Two languages**, `zh-CN` and English: `?lang=` (the switch on every page, remembered in
//!   a cookie), else the cookie, else `Accept-Language`.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::server::AppState;

mod anomalies;
mod apps;
mod audit;
mod chart;
mod i18n;
mod orders;
pub mod session;
mod view;

pub use i18n::Lang;
use i18n::Texts;
pub use session::{Sessions, SignInLimiter, SignedIn};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ticketd_console";

/// The language cookie's name.
pub const LANG_COOKIE: &str = "ticketd_console_lang";

/// The largest form the console reads: a reconciliation lists every code of an order (up to
/// 999 codes of up to 128 characters, with their counts); every other form is a few short
/// fields.
pub const MAX_FORM_BYTES: usize = 256 * 1024;

/// The stylesheet, embedded (no CDN: machines may have no internet).
const STYLESHEET: &str = include_str!("console.css");

/// The console's routes, merged on the admin listener.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console/login", get(login_page).post(sign_in))
        .route("/console/logout", post(sign_out))
        .route("/console/", get(overview))
        .merge(orders::router())
        .merge(anomalies::router())
        .merge(audit::router())
        .merge(apps::router())
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/assets/console.css", get(stylesheet))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(middleware::from_fn(security_headers))
}

/// The headers every console answer carries (see the module docs).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", "default-src 'self'"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
        .into_response()
}

/// The `?lang=` a page may be asked with (the language switch).
#[derive(Debug, Default, Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// The language of a request, and the cookie that remembers a switch to it.
fn language(headers: &HeaderMap, asked: Option<&str>) -> (Lang, Option<HeaderValue>) {
    if let Some(lang) = asked.and_then(Lang::parse) {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/console; SameSite=Strict; Max-Age=31536000",
            lang.tag()
        );
        return (lang, HeaderValue::from_str(&cookie).ok());
    }
    if let Some(lang) = cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)) {
        return (lang, None);
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    (Lang::negotiate(accept), None)
}

/// The value of the cookie `name`, if the request sent it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The request's session, if it has a live one.
fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<SignedIn> {
    let id = cookie(headers, SESSION_COOKIE)?;
    state.console.sessions.get(&id, Instant::now())
}

/// The session cookie for `id` (`Max-Age` the session's lifetime; 0 clears it).
fn session_cookie(state: &AppState, id: &str, max_age: u64) -> HeaderValue {
    let secure = if state.console.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{SESSION_COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    // The id is hex and the rest fixed text: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A page in the console's frame: the language switch, and the navigation and sign-out once
/// signed in.
fn layout(lang: Lang, title: &str, path: &str, session: Option<&SignedIn>, body: Markup) -> Markup {
    let t = Texts::of(lang);
    html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ticketd" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                header {
                    span.brand { "ticketd" }
                    @if session.is_some() {
                        nav aria-label=(t.navigation) {
                            @for (href, name) in [
                                ("/console/", t.overview),
                                ("/console/orders", t.orders),
                                ("/console/anomalies", t.anomalies),
                                ("/console/audit", t.audit),
                                ("/console/apps", t.apps),
                            ] {
                                @if section_of(path) == href {
                                    a href=(href) aria-current="page" { (name) }
                                } @else {
                                    a href=(href) { (name) }
                                }
                            }
                        }
                    }
                    span.langs {
                        @for other in Lang::ALL {
                            @if other == lang {
                                strong lang=(other.tag()) { (other.name()) }
                            } @else {
                                a href=(with_lang(path, other)) lang=(other.tag()) hreflang=(other.tag()) { (other.name()) }
                            }
                        }
                    }
                    @if let Some(session) = session {
                        form.signout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { (t.sign_out) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The navigation entry a page belongs to: `/console/orders/5` is under `/console/orders`.
fn section_of(path: &str) -> &str {
    let path = path.split('?').next().unwrap_or(path);
    [
        "/console/orders",
        "/console/anomalies",
        "/console/audit",
        "/console/apps",
    ]
    .into_iter()
    .find(|s| path.starts_with(s))
    .unwrap_or("/console/")
}

/// The language switch's link: the page as it is (its query kept, a previous `lang` dropped),
/// in `lang`.
fn with_lang(path: &str, lang: Lang) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "lang" {
            out.append_pair(&k, &v);
        }
    }
    out.append_pair("lang", lang.tag());
    format!("{base}?{}", out.finish())
}

/// What every signed-in page knows of its request.
struct Ctx {
    /// The language the page is in.
    lang: Lang,
    /// Its texts.
    t: &'static Texts,
    /// The cookie that remembers a language switch, when the request made one.
    lang_cookie: Option<HeaderValue>,
    /// The session.
    session: SignedIn,
}

impl Ctx {
    /// The request's context, or the redirect to the sign-in page when it has no live session.
    ///
    /// The refusal is boxed: a `Response` is large, and the happy path should not carry its
    /// size.
    fn of(state: &AppState, headers: &HeaderMap, lang: Option<&str>) -> Result<Ctx, Box<Response>> {
        let (lang, lang_cookie) = language(headers, lang);
        let Some(session) = signed_in(state, headers) else {
            return Err(Box::new(Redirect::to("/console/login").into_response()));
        };
        Ok(Ctx {
            lang,
            t: Texts::of(lang),
            lang_cookie,
            session,
        })
    }

    /// The request's context for a form: as [`Ctx::of`], and 403 unless the form carries the
    /// session's CSRF token.
    fn for_form(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<Ctx, Box<Response>> {
        let ctx = Ctx::of(state, headers, None)?;
        if !ctx.session.csrf_matches(csrf) {
            tracing::warn!("console form without its CSRF token refused");
            return Err(Box::new(forbidden(ctx.lang)));
        }
        Ok(ctx)
    }

    /// A page in the console's frame. `path` is the page's own address with its query, for
    /// the language switch.
    fn page(self, status: StatusCode, title: &str, path: &str, body: Markup) -> Response {
        let markup = layout(self.lang, title, path, Some(&self.session), body);
        page(status, self.lang_cookie, markup)
    }

    /// The hidden field of a confirmation form: a one-time token, spent when the action is
    /// applied ([`Sessions::confirmation`]).
    fn once_field(&self, state: &AppState) -> Markup {
        let token = state.console.sessions.confirmation(&self.session.id);
        html! { input type="hidden" name="once" value=(token); }
    }

    /// Spends the confirmation token a form carried: false when it was spent before (the
    /// form was sent twice) or never issued.
    fn spend_once(&self, state: &AppState, presented: &str) -> bool {
        state.console.sessions.spend(&self.session.id, presented)
    }

    /// The hidden field every state-changing form carries.
    fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.session.csrf); }
    }
}

/// A signed-in page request: its context and its query (`Q::default()` when the query does
/// not parse, so a mangled bookmark shows the page's first view rather than an error). Not
/// signed in: the redirect to the sign-in page.
struct SignedPage<Q>(Ctx, Q);

impl<Q> axum::extract::FromRequestParts<AppState> for SignedPage<Q>
where
    Q: serde::de::DeserializeOwned + Default + Send,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let lang: LangQuery = lenient_query(&parts.uri);
        let ctx = Ctx::of(state, &parts.headers, lang.lang.as_deref()).map_err(|r| *r)?;
        Ok(SignedPage(ctx, lenient_query(&parts.uri)))
    }
}

/// A signed-in form post: its context and its fields (`F::default()` for a body that does not
/// parse, so a mangled form is refused by the action's own checks). Refused with 403, before
/// any field is looked at, unless the body's `csrf` is the session's token; not signed in:
/// the redirect to the sign-in page; a body over [`MAX_FORM_BYTES`]: 413.
struct SignedForm<F>(Ctx, F);

impl<F> axum::extract::FromRequest<AppState> for SignedForm<F>
where
    F: serde::de::DeserializeOwned + Default + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        let csrf = pairs
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        let ctx = Ctx::for_form(state, &headers, csrf).map_err(|r| *r)?;
        Ok(SignedForm(
            ctx,
            serde_urlencoded::from_bytes(&body).unwrap_or_default(),
        ))
    }
}

/// The request's query read into `T`; its default when it does not parse.
fn lenient_query<T: serde::de::DeserializeOwned + Default>(uri: &axum::http::Uri) -> T {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default()
}

/// An HTML answer, with the language cookie when the request switched language.
fn page(status: StatusCode, lang_cookie: Option<HeaderValue>, markup: Markup) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    if let Some(cookie) = lang_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn login_form(lang: Lang, error: Option<&str>) -> Markup {
    let t = Texts::of(lang);
    html! {
        h1 { (t.sign_in_title) }
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        form method="post" action="/console/login" {
            label for="token" { (t.admin_token) }
            input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
            button type="submit" { (t.sign_in) }
        }
        p.hint { (t.sign_in_hint) }
    }
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let (lang, lang_cookie) = language(&headers, q.lang.as_deref());
    if signed_in(&state, &headers).is_some() {
        return Redirect::to("/console/").into_response();
    }
    let t = Texts::of(lang);
    page(
        StatusCode::OK,
        lang_cookie,
        layout(
            lang,
            t.sign_in_title,
            "/console/login",
            None,
            login_form(lang, None),
        ),
    )
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
}

async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (lang, _) = language(&headers, None);
    let t = Texts::of(lang);
    let refuse = |status: StatusCode, why: &str| {
        page(
            status,
            None,
            layout(
                lang,
                t.sign_in_title,
                "/console/login",
                None,
                login_form(lang, Some(why)),
            ),
        )
    };
    if !state.console.sign_ins.attempt(peer.ip(), Instant::now()) {
        tracing::warn!(client_ip = %peer.ip(), "console sign-in attempts over the limit");
        return refuse(StatusCode::TOO_MANY_REQUESTS, t.too_many_attempts);
    }
    let Ok(Form(form)) = form else {
        return refuse(StatusCode::BAD_REQUEST, t.wrong_token);
    };
    let ok: bool = form
        .token
        .as_bytes()
        .ct_eq(state.admin_token.as_bytes())
        .into();
    if !ok {
        tracing::info!(client_ip = %peer.ip(), "console sign-in refused");
        return refuse(StatusCode::UNAUTHORIZED, t.wrong_token);
    }
    let session = state.console.sessions.start(Instant::now());
    tracing::info!(client_ip = %peer.ip(), "console sign-in");
    let mut response = Redirect::to("/console/").into_response();
    let ttl = state.console.sessions.ttl().as_secs();
    response
        .headers_mut()
        .append(header::SET_COOKIE, session_cookie(&state, &session.id, ttl));
    response
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// 403 for a state-changing request whose form lacks the session's CSRF token.
fn forbidden(lang: Lang) -> Response {
    let t = Texts::of(lang);
    page(
        StatusCode::FORBIDDEN,
        None,
        layout(
            lang,
            t.forbidden_title,
            "/console/",
            None,
            html! {
                h1 { (t.forbidden_title) }
                p { (t.forbidden) }
            },
        ),
    )
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (lang, _) = language(&headers, None);
    let Some(session) = signed_in(&state, &headers) else {
        return Redirect::to("/console/login").into_response();
    };
    let presented = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !session.csrf_matches(&presented) {
        return forbidden(lang);
    }
    state.console.sessions.end(&session.id);
    let mut response = Redirect::to("/console/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, session_cookie(&state, "", 0));
    response
}

async fn overview(
    State(state): State<AppState>,
    SignedPage(ctx, _): SignedPage<LangQuery>,
) -> Response {
    let t = ctx.t;
    let totals = state.store.metrics().await;
    let window = state.metrics.traffic().window(state.clock.now());
    let relay = &state.relay;
    let relay_on = relay.enabled.load(std::sync::atomic::Ordering::Relaxed);
    let body = html! {
        h1 { (t.overview) }
        section aria-labelledby="calls" {
            h2 id="calls" { (t.calls_per_minute) }
            (chart::calls_per_minute(t, &window))
            p.hint { (t.this_process_only) }
        }
        section aria-labelledby="codes" {
            h2 id="codes" { (t.answers_by_code) }
            (chart::answers_by_code(t, &window))
        }
        @match &totals {
            Ok(m) => {
                section aria-labelledby="totals" {
                    h2 id="totals" { (t.ledger_totals) }
                    dl.totals {
                        dt { (t.orders) } dd { (m.orders) }
                        dt { (t.uses_issued) } dd { (m.capacity) }
                        dt { (t.uses_recorded) } dd { (m.used) }
                        dt { (t.tickets_refunded) } dd { (m.refunded_tickets) }
                        dt { a href="/console/anomalies" { (t.open_anomalies) } } dd { (m.open_anomalies) }
                    }
                }
            }
            Err(e) => {
                p.error role="alert" { (t.ledger_unavailable) ": " (e) }
            }
        }
        @if relay_on {
            section aria-labelledby="relay" {
                h2 id="relay" { (t.relay) }
                dl.totals {
                    dt { (t.relay_lag_events) }
                    dd { (relay.lag_events.load(std::sync::atomic::Ordering::Relaxed)) }
                    dt { (t.relay_lag_seconds) }
                    dd { (relay.lag_ms.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0) }
                }
            }
        }
    };
    ctx.page(StatusCode::OK, t.overview, "/console/", body)
}

/// The console's part of the server's state.
#[derive(Debug)]
pub struct ConsoleState {
    /// Signed-in sessions.
    pub sessions: Sessions,
    /// Sign-in attempts per client address.
    pub sign_ins: SignInLimiter,
    /// Whether the session cookie is marked `Secure` (the listeners speak TLS).
    pub secure_cookie: bool,
}

impl ConsoleState {
    /// A console whose sessions last `ttl`.
    pub fn new(ttl: std::time::Duration, secure_cookie: bool) -> Self {
        Self {
            sessions: Sessions::new(ttl),
            sign_ins: SignInLimiter::default(),
            secure_cookie,
        }
    }
}
