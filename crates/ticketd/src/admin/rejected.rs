//! `GET /admin/rejected-calls`: the pruned record of calls refused before their caller was
//! authenticated (`--rejected-calls-keep`), newest first.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
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

/// One kept call. Every text was clipped when it was kept, so a row is at most 1 KiB.
#[derive(Debug, Serialize)]
struct CallJson<'a> {
    seq: i64,
    /// The `request_id` the caller was answered with.
    request_id: &'a str,
    /// `yyyy-MM-dd HH:mm:ss`, UTC+8, like every instant of the admin API.
    at: String,
    client_ip: Option<&'a str>,
    app_key: Option<&'a str>,
    method: Option<&'a str>,
    code: i64,
    sub_code: Option<&'a str>,
}

impl<'a> From<&'a RejectedCall> for CallJson<'a> {
    fn from(c: &'a RejectedCall) -> Self {
        Self {
            seq: c.seq,
            request_id: &c.request_id,
            at: format_beijing(c.at),
            client_ip: c.client_ip.as_deref(),
            app_key: c.app_key.as_deref(),
            method: c.method.as_deref(),
            code: c.code,
            sub_code: c.sub_code.as_deref(),
        }
    }
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
        |c| serde_json::to_value(CallJson::from(c)).unwrap_or(Value::Null),
    )
    .await?;
    Ok(Json(json!({"calls": page.entries, "next": page.next})).into_response())
}
