//! Anomalies: listed newest first, paged, and resolved by an operator.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ticket_ledger::{Anomaly, AnomalyFilter, AnomalyKind};
use top_protocol::timestamp::format_beijing;

use crate::paging::{self, Budget};
use crate::server::AppState;

use super::actions::{self, Origin};
use super::{parse_json, query_error, AdminError};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/anomalies", get(list_anomalies))
        .route("/admin/anomalies/{id}/resolve", post(resolve_anomaly))
}

/// One anomaly: a fact that could not be applied but matters, waiting for an operator.
/// Fields in alphabetical order, as the answers have always had them on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyAnswer {
    /// The app whose call revealed it, if any.
    pub app_key: Option<String>,
    /// When it was found, `yyyy-MM-dd HH:mm:ss` UTC+8.
    pub at: String,
    /// What was found (counts, codes masked); `landed` for `commit_outcome_unknown`.
    pub detail: Value,
    /// Its id: what `POST /admin/anomalies/{id}/resolve` names and `before` pages on.
    pub id: i64,
    /// What kind of fact (docs/LIFECYCLE.md lists them), e.g. `verify_after_refund`.
    pub kind: String,
    /// The operator's note when resolving; `null` while open.
    pub note: Option<String>,
    /// The order it concerns, if any.
    pub order_id: Option<i64>,
    /// The raw request that revealed it, sanitized (no signature, codes masked).
    pub request: Value,
    /// The `request_id` that caller was answered with.
    pub request_id: String,
    /// The operator's decision (`accepted`, `reversed`, `refund_adjusted`, `dismissed`);
    /// `null` while open.
    pub resolution: Option<String>,
    /// When it was resolved; `null` while open.
    pub resolved_at: Option<String>,
    /// `open` or `resolved`.
    pub status: String,
}

impl From<&Anomaly> for AnomalyAnswer {
    fn from(a: &Anomaly) -> Self {
        Self {
            app_key: a.anomaly.app_key.clone(),
            at: format_beijing(a.anomaly.at),
            detail: a.anomaly.detail.clone(),
            id: a.id,
            kind: a.anomaly.kind.as_str().to_owned(),
            note: a.note.clone(),
            order_id: a.anomaly.order_id,
            request: a.anomaly.request.clone(),
            request_id: a.anomaly.request_id.clone(),
            resolution: a.resolution.map(|r| r.as_str().to_owned()),
            resolved_at: a.resolved_at.map(format_beijing),
            status: if a.resolution.is_some() {
                "resolved"
            } else {
                "open"
            }
            .to_owned(),
        }
    }
}

/// `GET /admin/anomalies`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomaliesPage {
    /// The anomalies, in decreasing `id`.
    pub anomalies: Vec<AnomalyAnswer>,
    /// Pass as `before` for the next page; `null` when the list ends here.
    pub next: Option<i64>,
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
        |a: &Anomaly| AnomalyAnswer::from(a),
    )
    .await?;
    Ok(Json(AnomaliesPage {
        anomalies: page.entries,
        next: page.next,
    })
    .into_response())
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
    let anomaly =
        actions::resolve_anomaly(&state, Origin::AdminApi, id, &req.resolution, req.note).await?;
    Ok(Json(AnomalyAnswer::from(&anomaly)).into_response())
}
