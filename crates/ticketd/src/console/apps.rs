//! Vendor apps: the list, registration, access settings (rate limit, burst, IP allow-list)
//! and secret rotation.
//!
//! A secret is shown exactly once: in the answer to the form that created it (registration
//! or rotation), which is a page of its own rather than a redirect, so it is in no address,
//! no history entry and (`Cache-Control: no-store`) no cache. Every other page shows none.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use ticket_ledger::{App, AppKey};

use crate::admin::actions::{self, AccessChange, NewAppFields, Origin};
use crate::admin::{AdminError, AppAnswer};
use crate::server::AppState;

use super::i18n::Texts;
use super::{view, Ctx, SignedForm, SignedPage};

/// How many apps a page of the list shows.
const SHOWN: u32 = 50;

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/apps", get(list).post(create))
        .route("/console/apps/{app_key}", get(app_page))
        .route("/console/apps/{app_key}/access", post(set_access))
        .route("/console/apps/{app_key}/rotate", post(rotate))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    after: String,
}

async fn list(
    State(state): State<AppState>,
    SignedPage(ctx, q): SignedPage<ListQuery>,
) -> Response {
    let after = AppKey::parse(&q.after);
    let apps = state.store.list_apps(after, SHOWN).await;
    let t = ctx.t;
    let body = html! {
        h1 { (t.apps) }
        @match &apps {
            Err(e) => { p.error role="alert" { (t.ledger_unavailable) ": " (e) } }
            Ok(apps) if apps.is_empty() => { p { (t.no_apps) } }
            Ok(apps) => {
                div.scroll { table {
                    thead { tr {
                        th scope="col" { (t.app_key) }
                        th scope="col" { (t.name) }
                        th scope="col" { (t.effective_rate) }
                        th scope="col" { (t.allowlist_short) }
                        th scope="col" { (t.created_at) }
                    } }
                    tbody {
                        @for app in apps {
                            @let answer = AppAnswer::new(&state, app, false);
                            tr {
                                td.nowrap { a href=(app_path(app.app_key.as_str())) { (app.app_key.as_str()) } }
                                td { (app.name) }
                                td { (answer.effective_rate_limit) }
                                td { (allowlist_text(t, &answer)) }
                                td.time { (answer.created_at) }
                            }
                        }
                    }
                } }
                @if let (true, Some(last)) = (apps.len() >= SHOWN as usize, apps.last()) {
                    p.pager { a href={ "/console/apps?after=" (encode(last.app_key.as_str())) } rel="next" { (t.more) " →" } }
                }
            }
        }
        (create_form(&ctx, &NewAppForm::default()))
    };
    ctx.page(StatusCode::OK, t.apps, "/console/apps", body)
}

/// An app's page address, its key escaped (keys are visible ASCII, `/` and `?` included).
fn app_path(key: &str) -> String {
    format!("/console/apps/{}", encode(key))
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn allowlist_text(t: &Texts, answer: &AppAnswer) -> String {
    if answer.ip_allowlist.is_empty() {
        t.any_address.to_owned()
    } else {
        answer.ip_allowlist.join(", ")
    }
}

/// The registration form, as the operator filled it (kept when it was refused).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NewAppForm {
    app_key: String,
    name: String,
    app_secret: String,
    rate_limit: String,
    burst: String,
    ip_allowlist: String,
}

fn create_form(ctx: &Ctx, filled: &NewAppForm) -> Markup {
    let t = ctx.t;
    html! {
        section aria-labelledby="create-app" {
            h2 id="create-app" { (t.create_app) }
            form method="post" action="/console/apps" {
                (ctx.csrf_field())
                label for="app_key" { (t.app_key) }
                input id="app_key" name="app_key" type="text" required maxlength="64" value=(filled.app_key) autocomplete="off";
                label for="name" { (t.name) }
                input id="name" name="name" type="text" maxlength="200" value=(filled.name);
                label for="app_secret" { (t.secret_optional) }
                input id="app_secret" name="app_secret" type="password" maxlength="256" autocomplete="new-password";
                (access_fields(t, &filled.rate_limit, &filled.burst, &filled.ip_allowlist))
                button type="submit" { (t.create_app) }
            }
        }
    }
}

/// The rate limit, burst and allow-list fields, shared by registration and the access form.
fn access_fields(t: &Texts, rate: &str, burst: &str, allowlist: &str) -> Markup {
    html! {
        label for="rate_limit" { (t.rate_limit) }
        input id="rate_limit" name="rate_limit" type="text" maxlength="32" value=(rate);
        label for="burst" { (t.burst) }
        input id="burst" name="burst" type="number" min="1" value=(burst);
        label for="ip_allowlist" { (t.ip_allowlist) }
        textarea id="ip_allowlist" name="ip_allowlist" rows="3" { (allowlist) }
    }
}

/// An optional text field: empty means not given.
fn given(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A burst as typed: empty for none, else a whole number.
fn burst(text: &str) -> Result<Option<u32>, AdminError> {
    match given(text) {
        None => Ok(None),
        Some(n) => n
            .parse::<u32>()
            .map(Some)
            .map_err(|_| AdminError::field("burst", "a whole number of calls")),
    }
}

/// Allow-list entries typed one per line (commas and spaces separate too).
fn entries(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The page that shows a new secret, the one time it is shown.
fn secret_page(ctx: Ctx, status: StatusCode, app: &App, heading: &str) -> Response {
    let t = ctx.t;
    let body = html! {
        h1 { (heading) }
        (view::notice(&format!("{} {}", t.app, app.app_key.as_str())))
        section.secret aria-labelledby="secret" {
            h2 id="secret" { (t.new_secret_once) }
            p.secret-value { code #new-secret { (app.secret) } }
        }
        p { a href=(app_path(app.app_key.as_str())) { (t.app) " " (app.app_key.as_str()) } }
    };
    ctx.page(status, heading, "/console/apps", body)
}

async fn create(
    State(state): State<AppState>,
    SignedForm(ctx, form): SignedForm<NewAppForm>,
) -> Response {
    let created = match burst(&form.burst) {
        Ok(burst) => {
            let fields = NewAppFields {
                app_key: form.app_key.trim().to_owned(),
                name: given(&form.name),
                app_secret: (!form.app_secret.is_empty()).then(|| form.app_secret.clone()),
                rate_limit: given(&form.rate_limit),
                burst,
                ip_allowlist: entries(&form.ip_allowlist),
            };
            actions::create_app(&state, Origin::Console, fields).await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok(app) => {
            let heading = ctx.t.app_created;
            secret_page(ctx, StatusCode::CREATED, &app, heading)
        }
        Err(e) => {
            let t = ctx.t;
            let body = html! {
                h1 { (t.apps) }
                (view::refusal(t, &e))
                (create_form(&ctx, &form))
            };
            ctx.page(view::refusal_status(&e), t.not_done, "/console/apps", body)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AppQuery {
    done: Option<String>,
}

async fn app_page(
    State(state): State<AppState>,
    Path(app_key): Path<String>,
    SignedPage(ctx, q): SignedPage<AppQuery>,
) -> Response {
    match actions::find_app(&state, &app_key).await {
        Ok(app) => {
            let notice = (q.done.as_deref() == Some("access")).then_some(ctx.t.access_saved);
            app_view(ctx, &state, &app, notice, None)
        }
        Err(e) => {
            let t = ctx.t;
            let body = html! {
                h1 { (t.no_such_app) }
                (view::refusal(t, &e))
                p { a href="/console/apps" { (t.apps) } }
            };
            ctx.page(
                view::refusal_status(&e),
                t.no_such_app,
                "/console/apps",
                body,
            )
        }
    }
}

/// An app's page: its settings, the access form and the rotation form; a refusal of either
/// form above them.
fn app_view(
    ctx: Ctx,
    state: &AppState,
    app: &App,
    notice: Option<&str>,
    refusal: Option<&AdminError>,
) -> Response {
    let t = ctx.t;
    let answer = AppAnswer::new(state, app, false);
    let key = app.app_key.as_str();
    let path = app_path(key);
    let body = html! {
        h1 { (t.app) " " (key) }
        @if let Some(notice) = notice { (view::notice(notice)) }
        @if let Some(e) = refusal { (view::refusal(t, e)) }
        dl.totals {
            dt { (t.name) } dd { (answer.name) }
            dt { (t.created_at) } dd { (answer.created_at) }
            dt { (t.effective_rate) } dd {
                (answer.effective_rate_limit)
                @if answer.rate_limit.is_none() { " (" (t.default_rate) ")" }
                @if let Some(b) = answer.effective_burst { ", " (t.burst) " " (b) }
            }
            dt { (t.allowlist_short) } dd { (allowlist_text(t, &answer)) }
            @if let Some(until) = &answer.previous_secret_expires_at {
                dt { (t.previous_secret_until) } dd { (until) }
            }
        }
        section aria-labelledby="access" {
            h2 id="access" { (t.save_access) }
            form method="post" action={ (path) "/access" } {
                (ctx.csrf_field())
                (access_fields(t, answer.rate_limit.as_deref().unwrap_or(""),
                    &answer.burst.map(|b| b.to_string()).unwrap_or_default(),
                    &answer.ip_allowlist.join("\n")))
                button type="submit" { (t.save_access) }
            }
        }
        section aria-labelledby="rotate" {
            h2 id="rotate" { (t.rotate_secret) }
            form method="post" action={ (path) "/rotate" } {
                (ctx.csrf_field())
                (ctx.once_field(state))
                label for="overlap" { (t.overlap) }
                input id="overlap" name="overlap" type="text" value="24h" maxlength="16";
                button type="submit" { (t.rotate_secret) }
            }
        }
    };
    let status = refusal.map_or(StatusCode::OK, view::refusal_status);
    ctx.page(status, key, &path, body)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AccessForm {
    rate_limit: String,
    burst: String,
    ip_allowlist: String,
}

async fn set_access(
    State(state): State<AppState>,
    Path(app_key): Path<String>,
    SignedForm(ctx, form): SignedForm<AccessForm>,
) -> Response {
    // The form shows every setting, so it sets every one: an emptied field clears it.
    let changed = match burst(&form.burst) {
        Ok(burst) => {
            let list = entries(&form.ip_allowlist);
            let change = AccessChange {
                rate_limit: Some(given(&form.rate_limit)),
                burst,
                ip_allowlist: Some((!list.is_empty()).then_some(list)),
            };
            actions::set_app_access(&state, Origin::Console, &app_key, change).await
        }
        Err(e) => Err(e),
    };
    match changed {
        Ok(app) => {
            Redirect::to(&format!("{}?done=access", app_path(app.app_key.as_str()))).into_response()
        }
        Err(e) => refused_on_app(ctx, &state, &app_key, &e).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RotateForm {
    overlap: String,
    /// The page's one-time token: a rotation sent twice (a double click, a reload of the page
    /// showing the new secret) must not rotate again and cut off the secret vendors still
    /// use before its overlap ends.
    once: String,
}

async fn rotate(
    State(state): State<AppState>,
    Path(app_key): Path<String>,
    SignedForm(ctx, form): SignedForm<RotateForm>,
) -> Response {
    let overlap = given(&form.overlap);
    let rotated = if ctx.spend_once(&state, &form.once) {
        actions::rotate_app_secret(&state, Origin::Console, &app_key, overlap.as_deref(), None)
            .await
    } else {
        Err(AdminError::new(
            StatusCode::CONFLICT,
            "already_sent",
            ctx.t.already_sent,
        ))
    };
    match rotated {
        Ok(app) => {
            let heading = ctx.t.rotate_secret;
            secret_page(ctx, StatusCode::CREATED, &app, heading)
        }
        Err(e) => refused_on_app(ctx, &state, &app_key, &e).await,
    }
}

/// A refused change of an app: its page with the refusal above the forms, or the refusal
/// alone when the app is gone.
async fn refused_on_app(ctx: Ctx, state: &AppState, app_key: &str, e: &AdminError) -> Response {
    match actions::find_app(state, app_key).await {
        Ok(app) => app_view(ctx, state, &app, None, Some(e)),
        Err(missing) => refused(ctx, &missing),
    }
}

fn refused(ctx: Ctx, e: &AdminError) -> Response {
    let t = ctx.t;
    let body = html! {
        h1 { (t.not_done) }
        (view::refusal(t, e))
        p { a href="/console/apps" { (t.apps) } }
    };
    ctx.page(view::refusal_status(e), t.not_done, "/console/apps", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_entries_split_on_lines_commas_and_spaces() {
        assert_eq!(
            entries("10.0.0.0/8\r\n192.168.1.1, ::1  \n\n"),
            vec!["10.0.0.0/8", "192.168.1.1", "::1"]
        );
        assert!(entries(" \n ").is_empty());
    }

    #[test]
    fn app_keys_are_escaped_in_addresses() {
        assert_eq!(app_path("a/b?c"), "/console/apps/a%2Fb%3Fc");
    }
}
