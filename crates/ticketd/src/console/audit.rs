//! The audit trail with the admin API's filters (order, app, outcome), newest first, paged;
//! and the calls refused before their caller was known (`GET /admin/rejected-calls`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::html;
use serde::Deserialize;
use ticket_ledger::{AuditFilter, AuditOutcome, RejectedCallFilter};

use crate::server::AppState;

use super::orders::events_table;
use super::{view, SignedPage};

/// How many entries a page shows.
const SHOWN: u32 = 50;

/// How many refused anonymous calls the page shows (the newest).
const REJECTED_SHOWN: u32 = 20;

/// The longest app key the filter reads (app keys are at most 64 bytes).
const MAX_APP_KEY_CHARS: usize = 64;

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/console/audit", get(page))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuditQuery {
    order_id: String,
    app_key: String,
    outcome: String,
    before: Option<i64>,
}

async fn page(
    State(state): State<AppState>,
    SignedPage(ctx, q): SignedPage<AuditQuery>,
) -> Response {
    let t = ctx.t;
    let mut problems = Vec::new();
    let order_id = match q.order_id.trim() {
        "" => None,
        text => {
            let parsed = text.parse::<i64>().ok();
            if parsed.is_none() {
                problems.push(t.bad_order_id);
            }
            parsed
        }
    };
    let app_key = match q.app_key.trim() {
        "" => None,
        text if text.chars().count() > MAX_APP_KEY_CHARS => {
            problems.push(t.search_too_long);
            None
        }
        text => Some(text.to_owned()),
    };
    let outcome = match q.outcome.as_str() {
        "" => None,
        text => {
            let parsed = AuditOutcome::parse(text);
            if parsed.is_none() {
                problems.push(t.unknown_outcome);
            }
            parsed
        }
    };
    let entries = if problems.is_empty() {
        Some(
            state
                .store
                .audit(AuditFilter {
                    order_id,
                    app_key: app_key.clone(),
                    outcome,
                    before_seq: q.before,
                    newest_first: true,
                    limit: Some(SHOWN),
                    ..AuditFilter::default()
                })
                .await,
        )
    } else {
        None
    };
    let rejected = state
        .store
        .rejected_calls(RejectedCallFilter {
            before_seq: None,
            limit: Some(REJECTED_SHOWN),
        })
        .await;
    let link = |before: Option<i64>| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(id) = order_id {
            s.append_pair("order_id", &id.to_string());
        }
        if let Some(app) = &app_key {
            s.append_pair("app_key", app);
        }
        if let Some(outcome) = outcome {
            s.append_pair("outcome", outcome.as_str());
        }
        if let Some(before) = before {
            s.append_pair("before", &before.to_string());
        }
        let query = s.finish();
        if query.is_empty() {
            "/console/audit".to_owned()
        } else {
            format!("/console/audit?{query}")
        }
    };
    let body = html! {
        h1 { (t.audit) }
        form.search method="get" action="/console/audit" {
            div.field {
                label for="order_id" { (t.order_id) }
                input id="order_id" name="order_id" type="text" inputmode="numeric" value=(q.order_id.trim()) maxlength="20";
            }
            div.field {
                label for="app_key" { (t.app_key) }
                input id="app_key" name="app_key" type="text" value=(app_key.as_deref().unwrap_or("")) maxlength=(MAX_APP_KEY_CHARS);
            }
            div.field {
                label for="outcome" { (t.outcome) }
                select id="outcome" name="outcome" {
                    option value="" selected[outcome.is_none()] { (t.any_outcome) }
                    @for o in [AuditOutcome::Accepted, AuditOutcome::Replayed, AuditOutcome::Rejected] {
                        option value=(o.as_str()) selected[outcome == Some(o)] { (view::outcome(t, o.as_str())) }
                    }
                }
            }
            button type="submit" { (t.filter) }
        }
        @for problem in &problems { p.error role="alert" { (problem) } }
        @match &entries {
            None => {}
            Some(Err(e)) => { p.error role="alert" { (t.ledger_unavailable) ": " (e) } }
            Some(Ok(entries)) => {
                (events_table(t, entries))
                p.pager {
                    @if q.before.is_some() {
                        a href=(link(None)) { "← " (t.newest) } " "
                    }
                    @if let (true, Some(last)) = (entries.len() >= SHOWN as usize, entries.last()) {
                        a href=(link(Some(last.seq))) rel="next" { (t.older) " →" }
                    }
                }
            }
        }
        section aria-labelledby="rejected" {
            h2 id="rejected" { (t.rejected_calls) }
            p.hint { (t.rejected_hint) }
            @match &rejected {
                Err(e) => { p.error role="alert" { (t.ledger_unavailable) ": " (e) } }
                Ok(calls) if calls.is_empty() => { p { (t.no_events) } }
                Ok(calls) => {
                    div.scroll { table {
                        thead { tr {
                            th scope="col" { (t.at) }
                            th scope="col" { (t.client_ip) }
                            th scope="col" { (t.app_key) }
                            th scope="col" { "method" }
                            th scope="col" { (t.code) }
                            th scope="col" { "request_id" }
                        } }
                        tbody {
                            @for c in calls {
                                tr {
                                    td.time { (view::time(c.at)) }
                                    td { (c.client_ip.as_deref().unwrap_or("—")) }
                                    td { (c.app_key.as_deref().unwrap_or("—")) }
                                    td { (c.method.as_deref().unwrap_or("—")) }
                                    td { (c.code) @if let Some(sub) = &c.sub_code { " " (sub) } }
                                    td { code { (c.request_id) } }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let path = link(q.before);
    ctx.page(status, t.audit, &path, body)
}
