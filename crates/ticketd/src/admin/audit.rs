//! The audit trail, oldest first, paged.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use ticket_ledger::{AuditEntry, AuditFilter, AuditOutcome};
use top_protocol::timestamp::format_beijing;

use crate::paging::{self, Budget};
use crate::server::AppState;

use super::{query_error, AdminError};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/admin/audit", get(list_audit))
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
