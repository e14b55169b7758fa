//! The operator's JSON API (`/admin/...`, bearer token) and the health endpoints.
//!
//! Answers are JSON with conventional HTTP statuses — unlike the TOP gateway, whose callers are
//! SDKs that need 200 for everything. Errors are `{"error": kind, "message": text}` plus
//! `"field"` when a request body names a bad field.
//!
//! One file per area, each with its own `router()` merged here behind the token and the body
//! limits: `apps`, `orders` (creation, view, events), `refunds` (refund requests and
//! reversals), `reconcile`, `anomalies`, `audit`, `rejected` (calls refused before
//! authentication) and `health` (`/healthz`, `/readyz`, `/metrics`, no token). What they
//! share lives here: the error type, the token check, JSON body and query parsing, and the
//! audit record of an operator's action.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use ticket_ledger::{AuditAction, AuditEntry, AuditOutcome, LedgerError, OrderId, RequestMeta};
use top_protocol::envelope::new_request_id;

use crate::server::AppState;

mod anomalies;
mod apps;
mod audit;
mod health;
mod orders;
mod reconcile;
mod refunds;
mod rejected;

pub use anomalies::anomaly_json;
pub use audit::audit_json;
pub use orders::{order_json, refund_json};

/// Health endpoints (no token) and the admin API (bearer token), one router per area.
pub fn router(state: AppState) -> Router<AppState> {
    let admin = Router::new()
        .merge(apps::router())
        .merge(orders::router())
        .merge(refunds::router())
        .merge(reconcile::router())
        .merge(anomalies::router())
        .merge(audit::router())
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
    health::router().merge(admin)
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
            | LedgerError::VendorCountExceedsCapacity { .. }
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
    action: AuditAction,
    app_key: Option<&str>,
    order_id: Option<i64>,
    detail: Value,
) {
    let entry = AuditEntry {
        seq: 0,
        request_id: new_request_id(),
        at: state.clock.now(),
        action: action.as_str().to_owned(),
        app_key: app_key.map(str::to_owned),
        order_id,
        outcome: AuditOutcome::Accepted,
        reason: "ok".to_owned(),
        detail,
        client_ip: None,
    };
    if let Err(e) = state.store.record(entry).await {
        tracing::error!(error = %e, action = action.as_str(), "could not record an admin action");
    }
}
