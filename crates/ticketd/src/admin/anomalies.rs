//! Anomalies: listed newest first, paged, and resolved by an operator.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use ticket_ledger::{Anomaly, AnomalyFilter, AnomalyKind, Resolution, ResolveAnomaly};
use top_protocol::timestamp::format_beijing;

use crate::paging::{self, Budget};
use crate::server::AppState;

use super::{admin_meta, parse_json, query_error, AdminError};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/anomalies", get(list_anomalies))
        .route("/admin/anomalies/{id}/resolve", post(resolve_anomaly))
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
