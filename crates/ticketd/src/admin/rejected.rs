//! `GET /admin/rejected-calls`: the pruned record of calls refused before their caller was
//! authenticated (`--rejected-calls-keep`), newest first.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ticket_ledger::{RejectedCall, RejectedCallFilter};
use top_protocol::timestamp::format_beijing;

use super::{query_error, AdminError};
use crate::paging::{self, Budget};
use crate::server::AppState;

/// The route, to be merged behind the admin token.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/admin/rejected-calls", get(list))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    /// The `next` of the previous page: only calls older than it.
    after: Option<i64>,
    limit: Option<u32>,
}

/// One call refused before its caller was authenticated. Every text was clipped when it was
/// kept, so a row is at most 1 KiB. Fields in alphabetical order, as the answers have always
/// had them on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedCallAnswer {
    /// The `app_key` it sent, if any: not proof that the app made the call.
    pub app_key: Option<String>,
    /// `yyyy-MM-dd HH:mm:ss`, UTC+8, like every instant of the admin API.
    pub at: String,
    /// The caller's address.
    pub client_ip: Option<String>,
    /// The TOP `code` it was answered with.
    pub code: i64,
    /// The `method` it sent, if any.
    pub method: Option<String>,
    /// The `request_id` the caller was answered with.
    pub request_id: String,
    /// Its place in the record: the cursor `after` pages on (newest first).
    pub seq: i64,
    /// The `sub_code` it was answered with, if any.
    pub sub_code: Option<String>,
}

impl From<&RejectedCall> for RejectedCallAnswer {
    fn from(c: &RejectedCall) -> Self {
        Self {
            seq: c.seq,
            request_id: c.request_id.clone(),
            at: format_beijing(c.at),
            client_ip: c.client_ip.clone(),
            app_key: c.app_key.clone(),
            method: c.method.clone(),
            code: c.code,
            sub_code: c.sub_code.clone(),
        }
    }
}

/// `GET /admin/rejected-calls`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedCallsPage {
    /// The calls, in decreasing `seq`.
    pub calls: Vec<RejectedCallAnswer>,
    /// Pass as `after` for the next page; `null` when the record ends here.
    pub next: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query.map_err(query_error)?;
    // Newest first: a page continues below the last seq it showed.
    let page = paging::page(
        paging::limit(q.limit),
        Budget::for_list(),
        q.after,
        |before, limit| {
            let store = state.store.clone();
            async move {
                store
                    .rejected_calls(RejectedCallFilter {
                        before_seq: before,
                        limit: Some(limit),
                    })
                    .await
                    .map_err(AdminError::from)
            }
        },
        |c: &RejectedCall| c.seq,
        |c: &RejectedCall| RejectedCallAnswer::from(c),
    )
    .await?;
    Ok(Json(RejectedCallsPage {
        calls: page.entries,
        next: page.next,
    })
    .into_response())
}
