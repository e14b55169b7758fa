//! Vendor apps: registration, the list, access settings (rate limit, IP allow-list) and secret
//! rotation.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ticket_ledger::{App, AppKey};
use top_protocol::timestamp::format_beijing;

use crate::paging::Budget;
use crate::server::AppState;

use super::actions::{self, AccessChange, NewAppFields, Origin};
use super::orders::list_limit;
use super::{parse_json, query_error, AdminError};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/apps", post(create_app).get(list_apps))
        .route("/admin/apps/{app_key}", get(get_app).patch(patch_app))
        .route(
            "/admin/apps/{app_key}/secret-rotations",
            post(rotate_secret),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApp {
    app_key: String,
    #[serde(default)]
    app_secret: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rate_limit: Option<String>,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    ip_allowlist: Option<Vec<String>>,
}

/// The operator's view of an app (`GET`/`PATCH /admin/apps/{app_key}`, and the 201 of the
/// calls that create or rotate its secret). Fields in alphabetical order, as the answers have
/// always had them on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppAnswer {
    /// The key vendors sign their calls with.
    pub app_key: String,
    /// The secret, only in the answers that create or rotate it (absent from every other);
    /// previous secrets never appear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_secret: Option<String>,
    /// The burst of the app's own rate limit; `null` when it has none or it is unlimited.
    pub burst: Option<u32>,
    /// When it was registered, `yyyy-MM-dd HH:mm:ss` UTC+8.
    pub created_at: String,
    /// The burst the gateway applies to this app now; `null` when unlimited.
    pub effective_burst: Option<u32>,
    /// The rate the gateway applies to this app now: its own, or the server's
    /// `--default-rate-limit` when it has none (`unlimited`, `20/s`, …).
    pub effective_rate_limit: String,
    /// The addresses allowed to call as this app; empty: any address.
    pub ip_allowlist: Vec<String>,
    /// Its display name.
    pub name: String,
    /// Until when the secret replaced by the last rotation keeps working; `null` when no
    /// previous secret works any more.
    pub previous_secret_expires_at: Option<String>,
    /// The app's own rate limit; `null`: the server's `--default-rate-limit` applies (shown as
    /// `effective_rate_limit`).
    pub rate_limit: Option<String>,
}

impl AppAnswer {
    /// The answer for `app`; its secret only when `with_secret`.
    pub(crate) fn new(state: &AppState, app: &App, with_secret: bool) -> Self {
        let own = app.access.rate_limit;
        let effective = state.rate_limiter.effective(app);
        Self {
            app_key: app.app_key.as_str().to_owned(),
            app_secret: with_secret.then(|| app.secret.clone()),
            burst: own.and_then(|r| r.burst()),
            created_at: format_beijing(app.created_at),
            effective_burst: effective.burst(),
            effective_rate_limit: effective.rate_text(),
            ip_allowlist: app
                .access
                .ip_allowlist
                .iter()
                .map(ToString::to_string)
                .collect(),
            name: app.name.clone(),
            previous_secret_expires_at: app
                .previous_secret
                .as_ref()
                .map(|p| format_beijing(p.expires_at)),
            rate_limit: own.map(|r| r.rate_text()),
        }
    }
}

async fn create_app(State(state): State<AppState>, body: Bytes) -> Result<Response, AdminError> {
    let req: CreateApp = parse_json(&body)?;
    let fields = NewAppFields {
        app_key: req.app_key,
        name: req.name,
        app_secret: req.app_secret,
        rate_limit: req.rate_limit,
        burst: req.burst,
        ip_allowlist: req.ip_allowlist.unwrap_or_default(),
    };
    let app = actions::create_app(&state, Origin::AdminApi, fields).await?;
    Ok((
        StatusCode::CREATED,
        Json(AppAnswer::new(&state, &app, true)),
    )
        .into_response())
}

async fn get_app(
    State(state): State<AppState>,
    Path(app_key): Path<String>,
) -> Result<Response, AdminError> {
    let app = actions::find_app(&state, &app_key).await?;
    Ok(Json(AppAnswer::new(&state, &app, false)).into_response())
}

/// A field that may be absent (`None`: unchanged), `null` (`Some(None)`) or a value.
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchApp {
    /// `"20/s"`, `"0"`/`"unlimited"`, or `null` to follow the server's default.
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<String>>,
    #[serde(default)]
    burst: Option<u32>,
    /// A list, `[]` or `null` for any address.
    #[serde(default, deserialize_with = "present")]
    ip_allowlist: Option<Option<Vec<String>>>,
}

/// `PATCH /admin/apps/{app_key}`: changes the fields given and keeps the others. A `burst`
/// alone changes the burst of the app's own limited rate.
async fn patch_app(
    State(state): State<AppState>,
    Path(app_key): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: PatchApp = parse_json(&body)?;
    let change = AccessChange {
        rate_limit: req.rate_limit,
        burst: req.burst,
        ip_allowlist: req.ip_allowlist,
    };
    let app = actions::set_app_access(&state, Origin::AdminApi, &app_key, change).await?;
    Ok(Json(AppAnswer::new(&state, &app, false)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateSecret {
    /// How long the replaced secret keeps working: `24h` unless given, at most 30 days.
    #[serde(default)]
    overlap: Option<String>,
    /// The new secret; generated unless given.
    #[serde(default)]
    app_secret: Option<String>,
}

/// `POST /admin/apps/{app_key}/secret-rotations`: a new secret, answered once; the replaced
/// one keeps working until `previous_secret_expires_at` (`"overlap": "0s"` ends it at once,
/// for a leaked secret).
async fn rotate_secret(
    State(state): State<AppState>,
    Path(app_key): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: RotateSecret = if body.iter().all(u8::is_ascii_whitespace) {
        RotateSecret {
            overlap: None,
            app_secret: None,
        }
    } else {
        parse_json(&body)?
    };
    let app = actions::rotate_app_secret(
        &state,
        Origin::AdminApi,
        &app_key,
        req.overlap.as_deref(),
        req.app_secret,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(AppAnswer::new(&state, &app, true)),
    )
        .into_response())
}

/// `GET /admin/apps`: one page of the registered apps, by key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppsPage {
    /// The apps in the byte order of their keys, each as `GET /admin/apps/{app_key}` shows it:
    /// never a secret.
    pub apps: Vec<AppAnswer>,
    /// Pass as `after` for the next page (the last key shown); `null` when the list ends here.
    pub next: Option<String>,
}

/// Apps a page holds when the request names no `limit`.
const DEFAULT_APPS_LIMIT: u32 = 50;

#[derive(Debug, Deserialize)]
struct ListAppsQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /admin/apps?after=&limit=`: the apps after the key `after`, by key, at most `limit`
/// (1-200, default 50), `{"apps": [...], "next": KEY|null}`. Like `GET /admin/apps/{app_key}`,
/// never a secret (current or previous). An empty parameter counts as not given.
async fn list_apps(
    State(state): State<AppState>,
    query: Result<Query<ListAppsQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(req) = query.map_err(query_error)?;
    let after = req
        .after
        .filter(|text| !text.is_empty())
        .map(|text| {
            AppKey::parse(&text).ok_or_else(|| {
                AdminError::field(
                    "after",
                    "an app_key (1-64 visible ASCII characters), as `next` gave it",
                )
            })
        })
        .transpose()?;
    let limit = list_limit(
        req.limit,
        DEFAULT_APPS_LIMIT,
        ticket_ledger::MAX_APPS_LISTED,
    )?;
    let apps = state.store.list_apps(after, limit).await?;
    // An app's name and allow-list are the operator's text, as long as the body limit let
    // through: the answer is bounded in bytes like every admin list.
    let mut budget = Budget::for_list();
    let mut shown: Vec<AppAnswer> = Vec::with_capacity(apps.len());
    for app in &apps {
        let answer = AppAnswer::new(&state, app, false);
        if !budget.take(&answer, shown.is_empty()) {
            break;
        }
        shown.push(answer);
    }
    let next = match shown.last().map(|a| a.app_key.clone()) {
        // Cut short by the byte budget: the rest follows.
        Some(key) if shown.len() < apps.len() => Some(key),
        // A full page: whether another app follows is one more look-up of one row, so that
        // the last page says it is the last.
        Some(key) if u32::try_from(apps.len()).is_ok_and(|n| n >= limit) => {
            let follows = match AppKey::parse(&key) {
                Some(after) => !state.store.list_apps(Some(after), 1).await?.is_empty(),
                None => false,
            };
            follows.then_some(key)
        }
        _ => None,
    };
    Ok(Json(AppsPage { apps: shown, next }).into_response())
}
