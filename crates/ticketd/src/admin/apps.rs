//! Vendor apps: registration, access settings (rate limit, IP allow-list) and secret rotation.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use ticket_ledger::{
    App, AppAccess, AppKey, AuditAction, IpRange, LedgerError, RateLimit, SecretRotation,
};
use top_protocol::timestamp::format_beijing;

use crate::server::{random_token, AppState};

use super::{parse_json, record_admin, AdminError};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/apps", post(create_app))
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
    fn new(state: &AppState, app: &App, with_secret: bool) -> Self {
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

/// A rate limit from the admin API's `rate_limit` and `burst` fields, naming the bad one.
fn rate_limit(rate: &str, burst: Option<u32>) -> Result<RateLimit, AdminError> {
    if let Some(b) = burst {
        if !(1..=RateLimit::MAX).contains(&b) {
            return Err(AdminError::field(
                "burst",
                format!("1..={} calls", RateLimit::MAX),
            ));
        }
    }
    match RateLimit::parse(rate, None) {
        Err(why) => Err(AdminError::field("rate_limit", why)),
        Ok(RateLimit::Unlimited) if burst.is_some() => Err(AdminError::field(
            "burst",
            "a burst needs a limited rate_limit",
        )),
        Ok(_) => RateLimit::parse(rate, burst).map_err(|why| AdminError::field("burst", why)),
    }
}

/// An allow-list from the admin API's `ip_allowlist`, naming the bad entry. Repeated entries
/// are kept once.
fn ip_allowlist(entries: &[String]) -> Result<Vec<IpRange>, AdminError> {
    if entries.len() > AppAccess::MAX_ALLOWLIST {
        return Err(AdminError::field(
            "ip_allowlist",
            format!("at most {} entries", AppAccess::MAX_ALLOWLIST),
        ));
    }
    let mut list: Vec<IpRange> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let range = IpRange::parse(entry)
            .map_err(|why| AdminError::field(&format!("ip_allowlist[{i}]"), why))?;
        if !list.contains(&range) {
            list.push(range);
        }
    }
    Ok(list)
}

/// A secret the operator chose: 1-256 bytes.
fn chosen_secret(secret: String) -> Result<String, AdminError> {
    if secret.is_empty() || secret.len() > 256 {
        return Err(AdminError::field("app_secret", "1-256 bytes"));
    }
    Ok(secret)
}

async fn create_app(State(state): State<AppState>, body: Bytes) -> Result<Response, AdminError> {
    let req: CreateApp = parse_json(&body)?;
    let app_key = AppKey::parse(&req.app_key)
        .ok_or_else(|| AdminError::field("app_key", "1-64 visible ASCII characters"))?;
    let secret = match req.app_secret {
        Some(s) => chosen_secret(s)?,
        None => random_token(),
    };
    let access = AppAccess {
        rate_limit: match (req.rate_limit.as_deref(), req.burst) {
            (Some(rate), burst) => Some(rate_limit(rate, burst)?),
            (None, Some(_)) => {
                return Err(AdminError::field("burst", "a burst needs a rate_limit"))
            }
            (None, None) => None,
        },
        ip_allowlist: ip_allowlist(req.ip_allowlist.as_deref().unwrap_or_default())?,
    };
    let now = state.clock.now();
    let mut new = App::new(
        app_key.clone(),
        req.name.unwrap_or_else(|| app_key.as_str().to_owned()),
        secret,
        now,
    );
    new.access = access;
    let app = state.store.create_app(new).await?;
    record_admin(
        &state,
        AuditAction::CreateApp,
        Some(app.app_key.as_str()),
        None,
        access_detail(&app),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(AppAnswer::new(&state, &app, true)),
    )
        .into_response())
}

/// What an audit entry records of an app's access settings (never a secret).
fn access_detail(app: &App) -> Value {
    json!({
        "rate_limit": app.access.rate_limit.map(|r| r.rate_text()),
        "burst": app.access.rate_limit.and_then(|r| r.burst()),
        "ip_allowlist": app.access.ip_allowlist.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The app named by the path; 404 when there is none.
async fn path_app(state: &AppState, app_key: &str) -> Result<App, AdminError> {
    let not_found = || AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such app");
    let key = AppKey::parse(app_key).ok_or_else(not_found)?;
    state.store.app(&key).await?.ok_or_else(not_found)
}

/// A store refusal of an app change: the app vanished between the lookup and the write.
fn app_change_error(e: LedgerError) -> AdminError {
    match e {
        LedgerError::UnknownApp => {
            AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such app")
        }
        other => AdminError::from(other),
    }
}

async fn get_app(
    State(state): State<AppState>,
    Path(app_key): Path<String>,
) -> Result<Response, AdminError> {
    let app = path_app(&state, &app_key).await?;
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
    let current = path_app(&state, &app_key).await?;
    let mut access = current.access.clone();
    match (req.rate_limit, req.burst) {
        (Some(Some(rate)), burst) => access.rate_limit = Some(rate_limit(&rate, burst)?),
        (Some(None), None) => access.rate_limit = None,
        (Some(None), Some(_)) => {
            return Err(AdminError::field("burst", "a burst needs a rate_limit"))
        }
        (None, Some(burst)) => match current.access.rate_limit {
            Some(own @ RateLimit::Limited { .. }) => {
                access.rate_limit = Some(rate_limit(&own.rate_text(), Some(burst))?);
            }
            _ => {
                return Err(AdminError::field(
                    "burst",
                    "the app has no limited rate_limit of its own: give rate_limit too",
                ))
            }
        },
        (None, None) => {}
    }
    if let Some(list) = req.ip_allowlist {
        access.ip_allowlist = ip_allowlist(list.as_deref().unwrap_or_default())?;
    }
    let app = state
        .store
        .set_app_access(&current.app_key, access)
        .await
        .map_err(app_change_error)?;
    record_admin(
        &state,
        AuditAction::SetAppAccess,
        Some(app.app_key.as_str()),
        None,
        access_detail(&app),
    )
    .await;
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

/// The longest overlap a rotation may give the replaced secret.
const MAX_OVERLAP_DAYS: i64 = 30;

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
    let overlap = match req.overlap.as_deref() {
        None => chrono::Duration::hours(24),
        Some(text) => crate::settings::parse_duration(text)
            .ok()
            .filter(|d| *d <= chrono::Duration::days(MAX_OVERLAP_DAYS))
            .ok_or_else(|| {
                AdminError::field(
                    "overlap",
                    format!("a duration such as 24h, 90m or 0s, at most {MAX_OVERLAP_DAYS}d"),
                )
            })?,
    };
    let current = path_app(&state, &app_key).await?;
    let new_secret = match req.app_secret {
        Some(s) => chosen_secret(s)?,
        None => random_token(),
    };
    if new_secret == current.secret {
        return Err(AdminError::field(
            "app_secret",
            "must differ from the current secret",
        ));
    }
    let expires_at = state.clock.now() + overlap;
    let app = state
        .store
        .rotate_app_secret(
            &current.app_key,
            SecretRotation {
                new_secret,
                previous_expires_at: expires_at,
            },
        )
        .await
        .map_err(app_change_error)?;
    record_admin(
        &state,
        AuditAction::RotateAppSecret,
        Some(app.app_key.as_str()),
        None,
        json!({"previous_secret_expires_at": format_beijing(expires_at)}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(AppAnswer::new(&state, &app, true)),
    )
        .into_response())
}
