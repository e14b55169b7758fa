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
use crate::server::AppState;

/// Calls a page lists when the query names no limit, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

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

#[derive(Debug, Serialize)]
struct Page<'a> {
    calls: Vec<CallJson<'a>>,
    /// Pass as `after` for the next (older) page; `null` when this page was not full, i.e.
    /// reached the oldest call kept.
    next: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query.map_err(query_error)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let calls = state
        .store
        .rejected_calls(RejectedCallFilter {
            before_seq: q.after,
            limit: Some(limit),
        })
        .await?;
    // A full page may have older calls behind it; a short one reached the oldest kept.
    let next = if calls.len() == limit as usize {
        calls.last().map(|c| c.seq)
    } else {
        None
    };
    Ok(Json(Page {
        calls: calls.iter().map(CallJson::from).collect(),
        next,
    })
    .into_response())
}
