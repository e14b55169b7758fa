//! The audit trail, oldest first, paged.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ticket_ledger::{AuditEntry, AuditFilter, AuditOutcome};
use top_protocol::timestamp::format_beijing;

use crate::paging::{self, Budget};
use crate::server::AppState;

use super::{query_error, AdminError};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/admin/audit", get(list_audit))
}

/// One entry of the audit trail, as `GET /admin/audit` and an order's `events` show it.
///
/// Fields are declared in alphabetical order, the order the answers have always had on the
/// wire, so a client comparing text sees no change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntryAnswer {
    /// What happened: a TOP method name, `order.status` for a change of the order's status,
    /// or an operator action (`admin.…`).
    pub action: String,
    /// The app that made the call or whose order it concerns; `null` for an operator action
    /// about no app.
    pub app_key: Option<String>,
    /// When, `yyyy-MM-dd HH:mm:ss` UTC+8.
    pub at: String,
    /// The caller's address, when the call came through the gateway.
    pub client_ip: Option<String>,
    /// What the entry records: the request's sanitized parameters, the refusal's `code`,
    /// `sub_code` and `sub_msg`, or a status change's `from`, `to` and `cause`.
    pub detail: Value,
    /// The order it concerns, if any.
    pub order_id: Option<i64>,
    /// `accepted`, `replayed` or `rejected`.
    pub outcome: String,
    /// Why, in a word: `ok`, a refusal's `sub_code`, the status an order moved to, or how
    /// an order was created.
    pub reason: String,
    /// The `request_id` the caller was answered with; every entry of one call shares it.
    pub request_id: String,
    /// The entry's place in the trail: the cursor `after` pages on.
    pub seq: i64,
}

impl From<&AuditEntry> for AuditEntryAnswer {
    fn from(e: &AuditEntry) -> Self {
        Self {
            action: e.action.clone(),
            app_key: e.app_key.clone(),
            at: format_beijing(e.at),
            client_ip: e.client_ip.clone(),
            detail: e.detail.clone(),
            order_id: e.order_id,
            outcome: e.outcome.as_str().to_owned(),
            reason: e.reason.clone(),
            request_id: e.request_id.clone(),
            seq: e.seq,
        }
    }
}

/// `GET /admin/audit`: one page of the trail, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The entries, in increasing `seq`.
    pub entries: Vec<AuditEntryAnswer>,
    /// Pass as `after` for the next page; `null` when the trail ends here.
    pub next: Option<i64>,
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
        ..AuditFilter::default()
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
        |e: &AuditEntry| AuditEntryAnswer::from(e),
    )
    .await?;
    Ok(Json(AuditPage {
        entries: page.entries,
        next: page.next,
    })
    .into_response())
}
