//! The operator's JSON API (`/admin/...`, bearer token) and the health endpoints.
//!
//! Answers are JSON with conventional HTTP statuses — unlike the TOP gateway, whose callers are
//! SDKs that need 200 for everything. Errors are `{"error": kind, "message": text}` plus
//! `"field"` when a request body names a bad field.
//!
//! One file per area, each with its own `router()` merged here behind the token and the body
//! limits: `apps` (registration, list, access, secrets), `orders` (creation, list, view,
//! events), `refunds` (refund requests and reversals), `reconcile`, `anomalies`, `audit`,
//! `rejected` (calls refused before authentication) and `health` (`/healthz`, `/readyz`,
//! `/metrics`, no token). What they share lives here: the error type, the token check, JSON
//! body and query parsing, and the audit record of an operator's action.
//!
//! Every answer is a typed struct (`…Answer`, `…Page`) defined beside its handler and
//! re-exported here, so tests and clients read answers into the types the server writes.
//! Their fields are declared in alphabetical order: the answers were built as `serde_json`
//! maps, which sort their keys, and keeping that order keeps the bytes on the wire unchanged.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use ticket_ledger::{AuditAction, AuditEntry, AuditOutcome, LedgerError, OrderId, RequestMeta};
use top_protocol::envelope::new_request_id;

use crate::server::AppState;

pub(crate) mod actions;
mod anomalies;
mod apps;
mod audit;
mod events;
mod health;
mod orders;
mod reconcile;
mod refunds;
mod rejected;

pub use actions::Origin;
pub use anomalies::{AnomaliesPage, AnomalyAnswer};
pub use apps::{AppAnswer, AppsPage};
pub use audit::{AuditEntryAnswer, AuditPage};
pub use events::{FeedPage, MAX_WAITING, MAX_WAIT_SECS, POLL};
pub use health::HealthAnswer;
pub use orders::{
    EventsPage, OrderAnswer, OrderSummaryAnswer, OrdersPage, RefundAnswer, VoucherAnswer,
    MAX_SEARCH_BYTES,
};
pub use reconcile::{ReconcileAnswer, ReconcileLineAnswer};
pub use refunds::ReversalAnswer;
pub use rejected::{RejectedCallAnswer, RejectedCallsPage};

/// Health endpoints (no token), the admin API (bearer token), one router per area, and the
/// operator console (its own sign-in, `crate::console`).
pub fn router(state: AppState) -> Router<AppState> {
    let admin = Router::new()
        .merge(apps::router())
        .merge(orders::router())
        .merge(refunds::router())
        .merge(reconcile::router())
        .merge(anomalies::router())
        .merge(audit::router())
        .merge(rejected::router())
        .merge(events::router())
        // Layers run last-added first: the token, then the body limits, so a stranger's body
        // is never read. The extractors' own cap is set to the same size, so only one limit
        // answers (JSON, from `admin_body_limits`), whatever `--max-body-bytes` is.
        .route_layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::server::admin_body_limits,
        ))
        .route_layer(middleware::from_fn_with_state(state, require_token));
    health::router()
        .merge(admin)
        .merge(crate::console::router())
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
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            field: None,
        }
    }

    /// What went wrong, for a person (the console shows it).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status the admin API answers it with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A 400 naming the request field at fault.
    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }
}

/// The body of every admin API refusal. Fields in alphabetical order, as the answers have
/// always had them on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What kind of refusal, stable for programs: `invalid_request`, `not_found`,
    /// `unauthorized`, `refused`, `refund_exceeds_unused`, …
    pub error: String,
    /// The request field at fault (`quantity`, `vouchers[1].confirm_code`, a query
    /// parameter), when one is; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What went wrong, for a person.
    pub message: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = ErrorAnswer {
            error: self.kind.to_owned(),
            field: self.field,
            message: self.message,
        };
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

/// The metadata of an operator's request, as the ledger records it, marked with where it
/// came from ([`Origin`]).
fn operator_meta(state: &AppState, origin: Origin, body: Value) -> RequestMeta {
    RequestMeta {
        request_id: new_request_id(),
        received_at: state.clock.now(),
        client_ip: None,
        summary: origin.mark(body).into(),
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

/// Records an operator action that the ledger call itself does not record (an app's
/// registration and changes); failures are logged, since the action itself already succeeded.
async fn record_admin(
    state: &AppState,
    origin: Origin,
    action: AuditAction,
    app_key: Option<&str>,
    detail: Value,
) {
    let entry = AuditEntry {
        seq: 0,
        request_id: new_request_id(),
        at: state.clock.now(),
        action: action.as_str().to_owned(),
        app_key: app_key.map(str::to_owned),
        order_id: None,
        outcome: AuditOutcome::Accepted,
        reason: "ok".to_owned(),
        detail: origin.mark(detail),
        client_ip: None,
    };
    if let Err(e) = state.store.record(entry).await {
        tracing::error!(error = %e, action = action.as_str(), "could not record an admin action");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    /// Reads `sample` (a `serde_json` map, whose keys are sorted) into `T` and writes it back:
    /// the text must be the sample's own, so every field keeps its name, its null-or-absent
    /// and its place.
    fn same_bytes<T: Serialize + DeserializeOwned>(sample: Value) {
        let typed: T = serde_json::from_value(sample.clone()).unwrap();
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            serde_json::to_string(&sample).unwrap(),
            "{}",
            std::any::type_name::<T>()
        );
    }

    #[test]
    fn typed_answers_write_the_bytes_the_json_maps_wrote() {
        let entry = json!({"seq": 7, "at": "2024-05-01 10:00:00", "request_id": "r1",
            "action": "order.status", "app_key": null, "order_id": 5, "outcome": "accepted",
            "reason": "issued", "detail": {"to": "issued", "from": "awaiting_issuance"},
            "client_ip": "10.0.0.1"});
        same_bytes::<AuditEntryAnswer>(entry.clone());
        same_bytes::<AuditPage>(json!({"entries": [entry.clone()], "next": null}));
        same_bytes::<EventsPage>(json!({"events": [entry.clone()], "next": 7}));
        let refund = json!({"fliggy_refund_flow_id": "RF-1", "quantity": 1, "state": "pending",
            "refunded_tickets": 0, "requested_at": "2024-05-01 10:00:00", "settled_at": null,
            "refund_batch_no": null, "refund_failure_reason": null, "needs_review": false});
        same_bytes::<RefundAnswer>(refund.clone());
        same_bytes::<OrderAnswer>(json!({"order_id": 5, "app_key": "k", "out_order_id": null,
            "status": "issued", "quantity": 2, "capacity": 2, "used": 0, "valid_from": null,
            "valid_until": "2024-06-01 23:59:59", "created_at": "2024-05-01 10:00:00",
            "vouchers": [{"confirm_code": "A", "capacity": 2, "used": 0, "remaining": 2}],
            "refunded_tickets": 0, "refundable_tickets": 2, "issue_describe": null,
            "refunds": [refund], "events": [entry], "events_total": 1, "events_next": null}));
        same_bytes::<AnomaliesPage>(json!({"next": 3, "anomalies": [{"id": 3,
            "kind": "verify_after_refund", "order_id": 5, "app_key": "k", "status": "open",
            "request_id": "r2", "at": "2024-05-01 10:00:00", "detail": {"n": 1},
            "request": {"method": "m"}, "resolution": null, "note": null,
            "resolved_at": null}]}));
        let app = json!({"app_key": "k", "name": "k", "created_at": "2024-05-01 10:00:00",
            "rate_limit": "20/s", "burst": 40, "effective_rate_limit": "20/s",
            "effective_burst": 40, "ip_allowlist": ["10.0.0.0/8"],
            "previous_secret_expires_at": null});
        same_bytes::<AppAnswer>(app.clone());
        let mut with_secret = app;
        with_secret["app_secret"] = json!("s3cret");
        same_bytes::<AppAnswer>(with_secret);
        same_bytes::<ReconcileAnswer>(json!({"order_id": 5, "apply": true, "applied_uses": 1,
            "lines": [{"confirm_code": "A", "ledger_used": 0, "vendor_used": 1, "missing": 1,
            "excess": 0}]}));
        same_bytes::<ReversalAnswer>(json!({"order_id": 5, "confirm_code": "A", "reversed": 1,
            "used": 0, "reason": "scanned twice"}));
        let summary = json!({"order_id": 5, "app_key": "k", "out_order_id": "O-5",
            "status": "partly_used", "quantity": 2, "capacity": 2, "used": 1,
            "refunded_tickets": 0, "created_at": "2024-05-01 10:00:00", "valid_from": null,
            "valid_until": null, "issue_describe": null});
        same_bytes::<OrderSummaryAnswer>(summary.clone());
        same_bytes::<OrdersPage>(json!({"orders": [summary], "next": "1714528800000.5"}));
        same_bytes::<AppsPage>(json!({"apps": [{"app_key": "k", "name": "k",
            "created_at": "2024-05-01 10:00:00", "rate_limit": null, "burst": null,
            "effective_rate_limit": "unlimited", "effective_burst": null, "ip_allowlist": [],
            "previous_secret_expires_at": null}], "next": null}));
        same_bytes::<RejectedCallsPage>(json!({"next": null, "calls": [{"seq": 1,
            "request_id": "r3", "at": "2024-05-01 10:00:00", "client_ip": null,
            "app_key": "k", "method": null, "code": 25, "sub_code": null}]}));
        same_bytes::<HealthAnswer>(json!({"status": "ok"}));
        same_bytes::<HealthAnswer>(json!({"status": "unready", "reason": "disk full"}));
        same_bytes::<ErrorAnswer>(json!({"error": "not_found", "message": "no such order"}));
        same_bytes::<ErrorAnswer>(json!({"error": "invalid_request", "message": "1-256 bytes",
            "field": "app_secret"}));
    }
}
