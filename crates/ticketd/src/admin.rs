//! The operator's JSON API (`/admin/...`, bearer token) and the health endpoints.
//!
//! Answers are JSON with conventional HTTP statuses — unlike the TOP gateway, whose callers are
//! SDKs that need 200 for everything. Errors are `{"error": kind, "message": text}` plus
//! `"field"` when a request body names a bad field.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use ticket_ledger::{
    reconcile_diff, Anomaly, AnomalyFilter, AnomalyKind, App, AppAccess, AppKey, AuditEntry,
    AuditFilter, AuditOutcome, ConfirmCode, IpRange, LedgerError, NewOrder, NewVoucher, OrderId,
    OrderRef, OrderView, OutOrderId, RateLimit, RefundRequest, RefundRequestCommand, RequestMeta,
    Resolution, ResolveAnomaly, ReversalCommand, SecretRotation, VerifyCommand, VerifyOrigin,
    VerifyUses, VoucherUse, WriteOffType,
};
use top_protocol::envelope::new_request_id;
use top_protocol::timestamp::{format_beijing, parse_beijing_date_or_datetime};

use crate::paging::{self, Budget};
use crate::server::{random_token, AppState};

mod rejected;

/// Health endpoints (no token) and the admin API (bearer token).
pub fn router(state: AppState) -> Router<AppState> {
    let admin = Router::new()
        .route("/admin/apps", post(create_app))
        .route("/admin/apps/{app_key}", get(get_app).patch(patch_app))
        .route(
            "/admin/apps/{app_key}/secret-rotations",
            post(rotate_secret),
        )
        .route("/admin/orders", post(create_order))
        .route("/admin/orders/{order_id}", get(get_order))
        .route("/admin/orders/{order_id}/events", get(list_order_events))
        .route("/admin/orders/{order_id}/refunds", post(request_refund))
        .route("/admin/orders/{order_id}/reversals", post(reverse))
        .route("/admin/orders/{order_id}/reconcile", post(reconcile))
        .route("/admin/anomalies", get(list_anomalies))
        .route("/admin/anomalies/{id}/resolve", post(resolve_anomaly))
        .route("/admin/audit", get(list_audit))
        .merge(rejected::router())
        // Layers run last-added first: the token, then the body limits, so a stranger's body
        // is never read. The extractors' own cap is set to the same size, so only one limit
        // answers (JSON, from `admin_body_limits`), whatever `--max-body-bytes` is.
        .route_layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::server::admin_body_limits,
        ))
        .route_layer(middleware::from_fn_with_state(state, require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(admin)
}

/// An admin API refusal.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    field: Option<String>,
}

impl AdminError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            field: None,
        }
    }

    fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.kind, "message": self.message});
        if let Some(f) = self.field {
            body["field"] = Value::from(f);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<LedgerError> for AdminError {
    fn from(e: LedgerError) -> Self {
        use StatusCode as S;
        let (status, kind) = match &e {
            LedgerError::AppExists => (S::CONFLICT, "app_exists"),
            LedgerError::OrderExists => (S::CONFLICT, "order_exists"),
            LedgerError::OutOrderIdTaken => (S::CONFLICT, "out_order_id_taken"),
            LedgerError::UnknownApp => (S::UNPROCESSABLE_ENTITY, "unknown_app"),
            LedgerError::InvalidOrder(_) => (S::UNPROCESSABLE_ENTITY, "invalid_order"),
            LedgerError::OrderNotFound => (S::NOT_FOUND, "not_found"),
            LedgerError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable"),
            LedgerError::Internal(msg) => {
                tracing::error!(error = %msg, "ledger failure in the admin API");
                return Self::new(S::INTERNAL_SERVER_ERROR, "internal", "internal error");
            }
            // Neither "done" nor "nothing written": the operator must look (the anomaly the
            // store opened names the request) before trying again.
            LedgerError::OutcomeUnknown { .. } => (S::INTERNAL_SERVER_ERROR, "outcome_unknown"),
            // A count above the ledger's bounds: the request's field, named as it named it.
            LedgerError::CountTooLarge { field, .. } => {
                let field = field.clone();
                return Self {
                    field: Some(field),
                    ..Self::new(S::UNPROCESSABLE_ENTITY, "count_too_large", e.to_string())
                };
            }
            LedgerError::CountOverflow { .. } => (S::CONFLICT, "count_overflow"),
            // Nothing was written (an anomaly records it): sending the request again is
            // planned afresh.
            LedgerError::WriteChangedNoRow { .. } => (S::CONFLICT, "write_changed_no_row"),
            LedgerError::AnomalyNotFound => (S::NOT_FOUND, "not_found"),
            LedgerError::AnomalyResolved => (S::CONFLICT, "already_resolved"),
            LedgerError::RefundExceedsUnused { .. } => (S::CONFLICT, "refund_exceeds_unused"),
            LedgerError::ReversalNotAllowed { .. } => (S::CONFLICT, "reversal_not_allowed"),
            LedgerError::OrderRefunded
            | LedgerError::RefundedUsesExceeded { .. }
            | LedgerError::IssueConflict(_)
            | LedgerError::RefundNotRequested
            | LedgerError::RefundConflict
            | LedgerError::RefundNumExceeds { .. }
            | LedgerError::OutOrderIdMismatch
            | LedgerError::OrderNotIssued
            | LedgerError::VoucherNotFound { .. }
            | LedgerError::LegacyCodeNotInList { .. }
            | LedgerError::CapacityExceeded { .. }
            | LedgerError::OrderCapacityExceeded { .. }
            | LedgerError::TotalNumExceeds { .. }
            | LedgerError::UsedDateInvalid { .. } => (S::CONFLICT, "refused"),
        };
        Self::new(status, kind, e.to_string())
    }
}

/// Compares the bearer token in constant time, so response timing leaks nothing about it.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let ok: bool = presented
        .as_bytes()
        .ct_eq(state.admin_token.as_bytes())
        .into();
    if !ok {
        return AdminError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
        .into_response();
    }
    next.run(request).await
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unready", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

/// Prometheus text exposition. Unauthenticated like the health endpoints (scrapers rarely send
/// tokens); move it off the public listener with `--admin-listen` where that matters.
async fn metrics(State(state): State<AppState>) -> Response {
    let mut extra = Vec::new();
    let gauge = |name: &str, help: &str, value: f64| (name.to_owned(), help.to_owned(), value);
    match state.store.metrics().await {
        Ok(m) => {
            extra.push(gauge(
                "ticketd_ledger_orders",
                "Orders in the ledger.",
                m.orders as f64,
            ));
            extra.push(gauge(
                "ticketd_ledger_capacity_uses",
                "Uses issued over all vouchers.",
                m.capacity,
            ));
            extra.push(gauge(
                "ticketd_ledger_used_uses",
                "Uses recorded over all vouchers.",
                m.used,
            ));
            extra.push(gauge(
                "ticketd_ledger_refunded_tickets",
                "Tickets refunded over all orders.",
                m.refunded_tickets,
            ));
            extra.push(gauge(
                "ticketd_ledger_open_anomalies",
                "Anomalies waiting for an operator.",
                m.open_anomalies as f64,
            ));
            if let Some(b) = m.batches {
                extra.push(gauge(
                    "ticketd_store_commits_total",
                    "Group-commit transactions committed.",
                    b.commits as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_failed_batches_total",
                    "Group-commit transactions that failed.",
                    b.failed_batches as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_jobs_total",
                    "Writes run through group commit.",
                    b.jobs as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_largest_batch",
                    "The most writes one transaction carried.",
                    b.largest_batch as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_syncs_total",
                    "fsyncs that made committed transactions durable.",
                    b.syncs as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_queued_writes",
                    "Writes waiting for a batch.",
                    b.queued as f64,
                ));
            }
            extra.push(gauge(
                "ticketd_ledger_up",
                "1 when the ledger answered this scrape.",
                1.0,
            ));
        }
        Err(e) => {
            state.metrics.store_error();
            tracing::warn!(error = %e, "ledger metrics unavailable");
            extra.push(gauge(
                "ticketd_ledger_up",
                "1 when the ledger answered this scrape.",
                0.0,
            ));
        }
    }
    let body = state.metrics.render(&extra);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Parses a JSON body, naming the offending field on failure.
fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, AdminError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde reports a missing field in its message, with the path of the object that
        // lacks it; join the two so the answer names the field itself.
        let missing = inner
            .to_string()
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name,
            (_, Some(name)) => format!("{path}.{name}"),
            (".", None) => "body".to_owned(),
            (_, None) => path,
        };
        AdminError::field(&field, format!("invalid JSON at {field}: {inner}"))
    })
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

/// The operator's view of an app. The secret only when `with_secret` (the answers that create
/// or rotate it); previous secrets never.
fn app_json(state: &AppState, app: &App, with_secret: bool) -> Value {
    let own = app.access.rate_limit;
    let effective = state.rate_limiter.effective(app);
    let mut v = json!({
        "app_key": app.app_key.as_str(),
        "name": app.name,
        "created_at": format_beijing(app.created_at),
        // null: the server's --default-rate-limit applies (shown as effective_rate_limit).
        "rate_limit": own.map(|r| r.rate_text()),
        "burst": own.and_then(|r| r.burst()),
        "effective_rate_limit": effective.rate_text(),
        "effective_burst": effective.burst(),
        "ip_allowlist": app.access.ip_allowlist.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "previous_secret_expires_at":
            app.previous_secret.as_ref().map(|p| format_beijing(p.expires_at)),
    });
    if with_secret {
        v["app_secret"] = Value::from(app.secret.clone());
    }
    v
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
        "admin.create_app",
        Some(app.app_key.as_str()),
        None,
        access_detail(&app),
    )
    .await;
    Ok((StatusCode::CREATED, Json(app_json(&state, &app, true))).into_response())
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
    Ok(Json(app_json(&state, &app, false)).into_response())
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
        "admin.set_app_access",
        Some(app.app_key.as_str()),
        None,
        access_detail(&app),
    )
    .await;
    Ok(Json(app_json(&state, &app, false)).into_response())
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
        "admin.rotate_app_secret",
        Some(app.app_key.as_str()),
        None,
        json!({"previous_secret_expires_at": format_beijing(expires_at)}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(app_json(&state, &app, true))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrder {
    order_id: i64,
    app_key: String,
    quantity: i64,
    #[serde(default)]
    out_order_id: Option<String>,
    #[serde(default)]
    valid_from: Option<String>,
    #[serde(default)]
    valid_until: Option<String>,
    /// When the order was paid; defaults to now. Lets operators import existing orders.
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    vouchers: Vec<CreateVoucher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateVoucher {
    confirm_code: String,
    quantity: i64,
}

/// Parses an admin date (`yyyy-MM-dd` or `yyyy-MM-dd HH:mm:ss`, UTC+8). A bare date used as an
/// end bound means the end of that day, which is what an operator typing it means.
fn admin_date(field: &str, text: &str, end_of_day: bool) -> Result<DateTime<Utc>, AdminError> {
    let t = parse_beijing_date_or_datetime(text).ok_or_else(|| {
        AdminError::field(field, "expected yyyy-MM-dd or yyyy-MM-dd HH:mm:ss (UTC+8)")
    })?;
    Ok(if end_of_day && text.len() == 10 {
        t + chrono::Duration::days(1) - chrono::Duration::milliseconds(1)
    } else {
        t
    })
}

async fn create_order(State(state): State<AppState>, body: Bytes) -> Result<Response, AdminError> {
    let req: CreateOrder = parse_json(&body)?;
    let order_id = OrderId::new(req.order_id)
        .ok_or_else(|| AdminError::field("order_id", "a positive int64"))?;
    let app_key = AppKey::parse(&req.app_key)
        .ok_or_else(|| AdminError::field("app_key", "1-64 visible ASCII characters"))?;
    let out_order_id = req
        .out_order_id
        .as_deref()
        .map(|s| {
            OutOrderId::parse(s)
                .ok_or_else(|| AdminError::field("out_order_id", "1-128 visible ASCII characters"))
        })
        .transpose()?;
    let vouchers = req
        .vouchers
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let code = ConfirmCode::parse(&v.confirm_code).ok_or_else(|| {
                AdminError::field(
                    &format!("vouchers[{i}].confirm_code"),
                    "1-128 visible ASCII characters",
                )
            })?;
            Ok(NewVoucher {
                code,
                capacity: v.quantity,
            })
        })
        .collect::<Result<Vec<_>, AdminError>>()?;
    let now = state.clock.now();
    let order = NewOrder {
        order_id,
        app_key,
        quantity: req.quantity,
        out_order_id,
        valid_from: req
            .valid_from
            .as_deref()
            .map(|t| admin_date("valid_from", t, false))
            .transpose()?,
        valid_until: req
            .valid_until
            .as_deref()
            .map(|t| admin_date("valid_until", t, true))
            .transpose()?,
        vouchers,
        created_at: req
            .created_at
            .as_deref()
            .map(|t| admin_date("created_at", t, false))
            .transpose()?
            .unwrap_or(now),
    };
    let audit = AuditEntry {
        seq: 0,
        request_id: new_request_id(),
        at: now,
        action: "admin.create_order".to_owned(),
        app_key: Some(order.app_key.as_str().to_owned()),
        order_id: Some(order_id.get()),
        outcome: AuditOutcome::Accepted,
        reason: if order.vouchers.is_empty() {
            "created_awaiting_issuance".to_owned()
        } else {
            "created_issued".to_owned()
        },
        detail: json!({
            "quantity": order.quantity,
            "vouchers": order.vouchers.iter().map(|v| json!({
                "confirm_code": v.code.masked(), "capacity": v.capacity})).collect::<Vec<_>>(),
        }),
        client_ip: None,
    };
    let view = state.store.create_order(order, audit).await?;
    Ok((StatusCode::CREATED, Json(order_json(&view))).into_response())
}

async fn get_order(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<Response, AdminError> {
    let not_found = || AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order");
    let id = OrderId::parse(&order_id).ok_or_else(not_found)?;
    let view = state.store.order(id).await?.ok_or_else(not_found)?;
    Ok(Json(order_json(&view)).into_response())
}

/// The operator's view of an order. Codes are shown whole: the operator owns them.
///
/// `events` is the latest part of the order's history, oldest first: the store's latest
/// [`OrderView::EVENTS_SHOWN`], fewer when they would take the answer past
/// [`paging::MAX_ANSWER_BYTES`] (the oldest of them give way). `events_total` counts the whole
/// history, and `events_next` is `0` — the `after` that walks `GET /admin/orders/{id}/events`
/// from the start — when `events` is not all of it, `null` when it is.
pub fn order_json(view: &OrderView) -> Value {
    let o = &view.order;
    let capacity: i64 = view.vouchers.iter().map(|v| v.capacity).sum();
    let used: i64 = view.vouchers.iter().map(|v| v.used).sum();
    let mut body = json!({
        "order_id": o.order_id.get(),
        "app_key": o.app_key.as_str(),
        "out_order_id": o.out_order_id.as_ref().map(OutOrderId::as_str),
        "status": view.status().as_str(),
        "quantity": o.quantity,
        "capacity": capacity,
        "used": used,
        "valid_from": o.valid_from.map(format_beijing),
        "valid_until": o.valid_until.map(format_beijing),
        "created_at": format_beijing(o.created_at),
        "vouchers": view.vouchers.iter().map(|v| json!({
            "confirm_code": v.code.as_str(),
            "capacity": v.capacity,
            "used": v.used,
            "remaining": v.capacity - v.used,
        })).collect::<Vec<_>>(),
        "refunded_tickets": o.refunded_tickets,
        "refundable_tickets": refundable_tickets(view),
        "issue_describe": o.issue_describe,
        "refunds": view.refunds.iter().map(refund_json).collect::<Vec<_>>(),
        "events": [],
        "events_total": view.events_total,
        "events_next": 0,
    });
    // The newest first, until the budget left beside the rest of the order is spent.
    let mut budget = Budget::new(paging::MAX_ANSWER_BYTES.saturating_sub(paging::json_len(&body)));
    let mut events: Vec<Value> = Vec::with_capacity(view.events.len());
    for entry in view.events.iter().rev() {
        let event = audit_json(entry);
        if !budget.take(&event, events.is_empty()) {
            break;
        }
        events.push(event);
    }
    events.reverse();
    if i64::try_from(events.len()).is_ok_and(|shown| shown >= view.events_total) {
        body["events_next"] = Value::Null;
    }
    body["events"] = Value::Array(events);
    body
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /admin/orders/{id}/events?after=SEQ&limit=N`: one page of the order's whole history,
/// `{"events": [...], "next": SEQ|null}` in increasing `seq`. Following `next` as `after`
/// returns every event exactly once, even while the order is being written to (see
/// `LedgerStore::order_events`).
async fn list_order_events(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query.map_err(query_error)?;
    let id = path_order(&order_id)?;
    let page = paging::page(
        paging::limit(q.limit),
        Budget::for_list(),
        q.after,
        |after, limit| {
            let store = state.store.clone();
            async move {
                store.order_events(id, after, limit).await?.ok_or_else(|| {
                    AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order")
                })
            }
        },
        |e: &AuditEntry| e.seq,
        audit_json,
    )
    .await?;
    Ok(Json(json!({"events": page.entries, "next": page.next})).into_response())
}

/// Tickets that can still be asked to be refunded.
fn refundable_tickets(view: &OrderView) -> i64 {
    ticket_ledger::OrderSnapshot {
        order: view.order.clone(),
        vouchers: view.vouchers.clone(),
        seen: Default::default(),
        refunds: view.refunds.clone(),
    }
    .refundable_tickets()
}

/// One refund request as JSON.
pub fn refund_json(r: &RefundRequest) -> Value {
    json!({
        "fliggy_refund_flow_id": r.flow_id,
        "quantity": r.quantity,
        "state": r.state.as_str(),
        "refunded_tickets": r.refunded_tickets,
        "requested_at": format_beijing(r.requested_at),
        "settled_at": r.settled_at.map(format_beijing),
        "refund_batch_no": r.batch_no,
        "refund_failure_reason": r.failure_reason,
        "needs_review": r.needs_review,
    })
}

/// The metadata of an operator's request, as the ledger records it.
fn admin_meta(state: &AppState, body: Value) -> RequestMeta {
    RequestMeta {
        request_id: new_request_id(),
        received_at: state.clock.now(),
        client_ip: None,
        summary: body,
    }
}

fn path_order(order_id: &str) -> Result<OrderId, AdminError> {
    OrderId::parse(order_id)
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRefund {
    quantity: i64,
}

async fn request_refund(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: CreateRefund = parse_json(&body)?;
    let order_id = path_order(&order_id)?;
    if req.quantity < 1 {
        return Err(AdminError::field("quantity", "at least 1 ticket"));
    }
    let refund = state
        .store
        .request_refund(RefundRequestCommand {
            order_id,
            quantity: req.quantity,
            meta: admin_meta(&state, json!({"quantity": req.quantity})),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(refund_json(&refund))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReversal {
    confirm_code: String,
    quantity: i64,
    reason: String,
}

async fn reverse(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: CreateReversal = parse_json(&body)?;
    let order_id = path_order(&order_id)?;
    let code = ConfirmCode::parse(&req.confirm_code)
        .ok_or_else(|| AdminError::field("confirm_code", "1-128 visible ASCII characters"))?;
    if req.quantity < 1 {
        return Err(AdminError::field("quantity", "at least 1 use"));
    }
    if req.reason.trim().is_empty() {
        return Err(AdminError::field(
            "reason",
            "say why the uses are given back",
        ));
    }
    let used = state
        .store
        .reverse(ReversalCommand {
            order_id,
            code: code.clone(),
            quantity: req.quantity,
            reason: req.reason.clone(),
            window: state.reversal_window,
            meta: admin_meta(
                &state,
                json!({"confirm_code": code.masked(), "quantity": req.quantity, "reason": req.reason}),
            ),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"order_id": order_id.get(), "confirm_code": code.as_str(),
                    "reversed": req.quantity, "used": used, "reason": req.reason}),
        ),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reconcile {
    vouchers: Vec<VendorCount>,
    #[serde(default)]
    apply: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VendorCount {
    confirm_code: String,
    used: i64,
}

/// Compares the vendor's per-code counts with the ledger and, with `apply`, records the
/// missing uses as a cumulative report would (never decreasing a count).
async fn reconcile(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: Reconcile = parse_json(&body)?;
    let order_id = path_order(&order_id)?;
    let vendor = req
        .vouchers
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let code = ConfirmCode::parse(&v.confirm_code).ok_or_else(|| {
                AdminError::field(&format!("vouchers[{i}].confirm_code"), "unknown code")
            })?;
            Ok((code, v.used))
        })
        .collect::<Result<Vec<_>, AdminError>>()?;
    let view = state
        .store
        .order(order_id)
        .await?
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order"))?;
    let lines = reconcile_diff(&view.vouchers, &vendor).map_err(|e| match e {
        LedgerError::VoucherNotFound { code } => AdminError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_code",
            format!("voucher {} is not a code of this order", code.as_str()),
        ),
        other => AdminError::from(other),
    })?;
    let missing: Vec<_> = lines.iter().filter(|l| l.missing() > 0).collect();
    let mut applied = 0;
    if req.apply {
        // Refuse the whole reconciliation before recording anything if a count is impossible.
        for line in &missing {
            let capacity = view
                .vouchers
                .iter()
                .find(|v| v.code == line.code)
                .map_or(0, |v| v.capacity);
            if line.vendor_used > capacity {
                return Err(AdminError::new(
                    StatusCode::CONFLICT,
                    "refused",
                    format!(
                        "voucher {} allows {capacity} uses; the vendor reports {}",
                        line.code.as_str(),
                        line.vendor_used
                    ),
                ));
            }
        }
        // One cumulative report per code, so each healed code is its own event.
        for line in missing {
            let outcome = state
                .store
                .verify(VerifyCommand {
                    origin: VerifyOrigin::Reconciliation,
                    app_key: view.order.app_key.clone(),
                    order: OrderRef::Id(order_id),
                    mode: WriteOffType::Cumulative,
                    uses: VerifyUses::Vouchers {
                        entries: vec![VoucherUse {
                            code: line.code.clone(),
                            quantity: line.vendor_used,
                            used_at: None,
                        }],
                        legacy_code: None,
                    },
                    total_num: None,
                    return_num: None,
                    // The vendor's counts are facts already admitted at the gate.
                    policy: ticket_ledger::VerifyPolicy {
                        allow_before_valid_from: true,
                        ..state.verify_policy
                    },
                    meta: admin_meta(
                        &state,
                        json!({"confirm_code": line.code.masked(), "used": line.vendor_used}),
                    ),
                })
                .await?;
            applied += outcome.applied_uses;
        }
    }
    Ok(Json(json!({
        "order_id": order_id.get(),
        "apply": req.apply,
        "applied_uses": applied,
        "lines": lines.iter().map(|l| json!({
            "confirm_code": l.code.as_str(),
            "ledger_used": l.ledger_used,
            "vendor_used": l.vendor_used,
            "missing": l.missing(),
            "excess": l.excess(),
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// One anomaly as JSON.
pub fn anomaly_json(a: &Anomaly) -> Value {
    json!({
        "id": a.id,
        "kind": a.anomaly.kind.as_str(),
        "order_id": a.anomaly.order_id,
        "app_key": a.anomaly.app_key,
        "status": if a.resolution.is_some() { "resolved" } else { "open" },
        "request_id": a.anomaly.request_id,
        "at": format_beijing(a.anomaly.at),
        "detail": a.anomaly.detail,
        "request": a.anomaly.request,
        "resolution": a.resolution.map(Resolution::as_str),
        "note": a.note,
        "resolved_at": a.resolved_at.map(format_beijing),
    })
}

#[derive(Debug, Deserialize)]
struct AnomalyQuery {
    status: Option<String>,
    order_id: Option<i64>,
    kind: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

async fn list_anomalies(
    State(state): State<AppState>,
    query: Result<Query<AnomalyQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query.map_err(query_error)?;
    let open = match q.status.as_deref() {
        None => None,
        Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some(_) => return Err(AdminError::field("status", "open or resolved")),
    };
    let kind = q
        .kind
        .as_deref()
        .map(|k| {
            AnomalyKind::parse(k).ok_or_else(|| {
                let all: Vec<_> = AnomalyKind::ALL.iter().map(|k| k.as_str()).collect();
                AdminError::field("kind", format!("one of {}", all.join(", ")))
            })
        })
        .transpose()?;
    let filter = AnomalyFilter {
        open,
        order_id: q.order_id,
        kind,
        before_id: None,
        limit: None,
    };
    // Newest first, so a page continues below the last id it showed (`before`).
    let page = paging::page(
        paging::limit(q.limit),
        Budget::for_list(),
        q.before,
        |before, limit| {
            let store = state.store.clone();
            let filter = AnomalyFilter {
                before_id: before,
                limit: Some(limit),
                ..filter.clone()
            };
            async move { store.anomalies(filter).await.map_err(AdminError::from) }
        },
        |a: &Anomaly| a.id,
        anomaly_json,
    )
    .await?;
    Ok(Json(json!({"anomalies": page.entries, "next": page.next})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolve {
    resolution: String,
    #[serde(default)]
    note: String,
}

async fn resolve_anomaly(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: Resolve = parse_json(&body)?;
    let id: i64 = id
        .parse()
        .map_err(|_| AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such anomaly"))?;
    let resolution = Resolution::parse(&req.resolution).ok_or_else(|| {
        AdminError::field(
            "resolution",
            "one of accepted, reversed, refund_adjusted, dismissed",
        )
    })?;
    let anomaly = state
        .store
        .resolve_anomaly(ResolveAnomaly {
            id,
            resolution,
            note: req.note.clone(),
            meta: admin_meta(
                &state,
                json!({"resolution": req.resolution, "note": req.note}),
            ),
        })
        .await?;
    Ok(Json(anomaly_json(&anomaly)).into_response())
}

/// One audit entry as JSON.
pub fn audit_json(e: &AuditEntry) -> Value {
    json!({
        "seq": e.seq,
        "at": format_beijing(e.at),
        "request_id": e.request_id,
        "action": e.action,
        "app_key": e.app_key,
        "order_id": e.order_id,
        "outcome": e.outcome.as_str(),
        "reason": e.reason,
        "detail": e.detail,
        "client_ip": e.client_ip,
    })
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    order_id: Option<i64>,
    app_key: Option<String>,
    outcome: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
}

async fn list_audit(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query.map_err(query_error)?;
    let outcome = q
        .outcome
        .as_deref()
        .map(|o| {
            AuditOutcome::parse(o)
                .ok_or_else(|| AdminError::field("outcome", "one of accepted, replayed, rejected"))
        })
        .transpose()?;
    let filter = AuditFilter {
        order_id: q.order_id,
        app_key: q.app_key,
        outcome,
        after_seq: None,
        limit: None,
    };
    let page = paging::page(
        paging::limit(q.limit),
        Budget::for_list(),
        q.after,
        |after, limit| {
            let store = state.store.clone();
            let filter = AuditFilter {
                after_seq: after,
                limit: Some(limit),
                ..filter.clone()
            };
            async move { store.audit(filter).await.map_err(AdminError::from) }
        },
        |e: &AuditEntry| e.seq,
        audit_json,
    )
    .await?;
    Ok(Json(json!({"entries": page.entries, "next": page.next})).into_response())
}

/// A malformed query string as a JSON 400 naming the field. axum names it first:
/// "Failed to deserialize query string: order_id: …".
fn query_error(e: QueryRejection) -> AdminError {
    let text = e.body_text();
    let field = text
        .split(": ")
        .nth(1)
        .filter(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or("query")
        .to_owned();
    AdminError::field(&field, text)
}

/// Records an operator action; failures are logged (the action itself already succeeded).
async fn record_admin(
    state: &AppState,
    action: &str,
    app_key: Option<&str>,
    order_id: Option<i64>,
    detail: Value,
) {
    let entry = AuditEntry {
        seq: 0,
        request_id: new_request_id(),
        at: state.clock.now(),
        action: action.to_owned(),
        app_key: app_key.map(str::to_owned),
        order_id,
        outcome: AuditOutcome::Accepted,
        reason: "ok".to_owned(),
        detail,
        client_ip: None,
    };
    if let Err(e) = state.store.record(entry).await {
        tracing::error!(error = %e, action, "could not record an admin action");
    }
}
