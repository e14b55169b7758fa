//! Anomalies: the queue of facts that could not be applied but matter, newest first, and the
//! operator's resolution of one (the fields and values of `POST /admin/anomalies/{id}/resolve`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use serde::Deserialize;
use ticket_ledger::{AnomalyFilter, AnomalyKind, Resolution};

use crate::admin::actions::{self, Origin};
use crate::server::AppState;

use super::{view, SignedForm, SignedPage};

/// How many anomalies a page shows.
const SHOWN: u32 = 50;

/// The longest note the form takes (a note is a sentence or two); a longer one is refused,
/// never cut.
const MAX_NOTE_CHARS: usize = 2_000;

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/anomalies", get(list))
        .route("/console/anomalies/{id}/resolve", post(resolve))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    /// `open` (the default), `resolved` or `all`.
    status: String,
    kind: String,
    order_id: String,
    before: Option<i64>,
    done: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    SignedPage(ctx, q): SignedPage<ListQuery>,
) -> Response {
    let t = ctx.t;
    let open = match q.status.as_str() {
        "" | "open" => Some(true),
        "resolved" => Some(false),
        _ => None,
    };
    let known_status = matches!(q.status.as_str(), "" | "open" | "resolved" | "all");
    let kind = AnomalyKind::parse(&q.kind);
    let order_id = q.order_id.trim().parse::<i64>().ok();
    let mut problems = Vec::new();
    if !known_status {
        problems.push(t.unknown_status);
    }
    if !q.kind.is_empty() && kind.is_none() {
        problems.push(t.unknown_kind);
    }
    if !q.order_id.trim().is_empty() && order_id.is_none() {
        problems.push(t.bad_order_id);
    }
    // A filter that did not parse lists nothing rather than everything.
    let anomalies = if !problems.is_empty() {
        Ok(Vec::new())
    } else {
        state
            .store
            .anomalies(AnomalyFilter {
                open,
                order_id,
                kind,
                before_id: q.before,
                limit: Some(SHOWN),
            })
            .await
    };
    let status_value = if open == Some(false) {
        "resolved"
    } else if open.is_none() {
        "all"
    } else {
        "open"
    };
    let filters = |before: Option<i64>| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("status", status_value);
        if let Some(kind) = kind {
            s.append_pair("kind", kind.as_str());
        }
        if let Some(id) = order_id {
            s.append_pair("order_id", &id.to_string());
        }
        if let Some(before) = before {
            s.append_pair("before", &before.to_string());
        }
        format!("/console/anomalies?{}", s.finish())
    };
    let body = html! {
        h1 { (t.anomalies) }
        @if let Some(id) = q.done { (view::notice(&format!("{} #{id}", t.anomaly_resolved))) }
        form.search method="get" action="/console/anomalies" {
            div.field {
                label for="status" { (t.status) }
                select id="status" name="status" {
                    option value="open" selected[status_value == "open"] { (t.open) }
                    option value="resolved" selected[status_value == "resolved"] { (t.resolved) }
                    option value="all" selected[status_value == "all"] { (t.all) }
                }
            }
            div.field {
                label for="kind" { (t.kind) }
                select id="kind" name="kind" {
                    option value="" selected[kind.is_none()] { (t.any_kind) }
                    @for k in AnomalyKind::ALL {
                        option value=(k.as_str()) selected[kind == Some(*k)] { (k.as_str()) }
                    }
                }
            }
            div.field {
                label for="order_id" { (t.order_id) }
                input id="order_id" name="order_id" type="text" inputmode="numeric" value=(q.order_id.trim()) maxlength="20";
            }
            button type="submit" { (t.filter) }
        }
        @for problem in &problems { p.error role="alert" { (problem) } }
        @match &anomalies {
            Err(e) => { p.error role="alert" { (t.ledger_unavailable) ": " (e) } }
            Ok(list) if list.is_empty() => { p { (t.no_anomalies) } }
            Ok(list) => {
                @for a in list {
                    article.anomaly id={ "anomaly-" (a.id) } aria-labelledby={ "anomaly-" (a.id) "-title" } {
                        h2 id={ "anomaly-" (a.id) "-title" } { "#" (a.id) " " (a.anomaly.kind.as_str()) }
                        dl.totals {
                            dt { (t.at) } dd { (view::time(a.anomaly.at)) }
                            @if let Some(order) = a.anomaly.order_id {
                                dt { (t.order_id) } dd { a href={ "/console/orders/" (order) } { (order) } }
                            }
                            @if let Some(app) = &a.anomaly.app_key {
                                dt { (t.app_key) } dd { (app) }
                            }
                            dt { "request_id" } dd { code { (a.anomaly.request_id) } }
                            dt { (t.detail) } dd.detail { code { (view::detail(&a.anomaly.detail)) } }
                            @if let Some(resolution) = a.resolution {
                                dt { (t.resolution) } dd { (resolution.as_str()) }
                                dt { (t.note) } dd { (a.note.as_deref().unwrap_or("")) }
                                dt { (t.resolved_at) } dd { (a.resolved_at.map(view::time).unwrap_or_default()) }
                            }
                        }
                        @if a.resolution.is_none() {
                            form.resolve method="post" action={ "/console/anomalies/" (a.id) "/resolve" } {
                                (ctx.csrf_field())
                                label for={ "resolution-" (a.id) } { (t.resolution) }
                                select id={ "resolution-" (a.id) } name="resolution" required {
                                    @for r in Resolution::ALL {
                                        option value=(r.as_str()) { (r.as_str()) }
                                    }
                                }
                                label for={ "note-" (a.id) } { (t.note) }
                                input id={ "note-" (a.id) } name="note" type="text" required maxlength=(MAX_NOTE_CHARS);
                                button type="submit" { (t.resolve) }
                            }
                        }
                    }
                }
                @if let (true, Some(last)) = (list.len() >= SHOWN as usize, list.last()) {
                    p.pager { a href=(filters(Some(last.id))) rel="next" { (t.older) " →" } }
                }
            }
        }
    };
    let path = filters(q.before);
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    ctx.page(status, t.anomalies, &path, body)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResolveForm {
    resolution: String,
    note: String,
}

async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm(ctx, form): SignedForm<ResolveForm>,
) -> Response {
    let t = ctx.t;
    let outcome = match id.parse::<i64>() {
        Ok(_) if form.note.chars().count() > MAX_NOTE_CHARS => {
            Err(crate::admin::AdminError::field("note", t.note_too_long))
        }
        Ok(id) => {
            actions::resolve_anomaly(&state, Origin::Console, id, &form.resolution, form.note)
                .await
                .map(|a| a.id)
        }
        Err(_) => Err(crate::admin::AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such anomaly",
        )),
    };
    match outcome {
        Ok(id) => Redirect::to(&format!("/console/anomalies?done={id}")).into_response(),
        Err(e) => {
            let body = html! {
                h1 { (t.anomalies) }
                (view::refusal(t, &e))
                p { a href="/console/anomalies" { (t.anomalies) } }
            };
            ctx.page(
                view::refusal_status(&e),
                t.not_done,
                "/console/anomalies",
                body,
            )
        }
    }
}
