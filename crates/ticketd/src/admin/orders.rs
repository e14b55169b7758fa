//! Orders: creation by the operator, the order view and its paged events.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use ticket_ledger::{
    plan_order_creation, AppKey, AuditEntry, ConfirmCode, NewOrder, NewVoucher, OrderId,
    OrderOrigin, OrderView, OutOrderId, RefundRequest, RequestMeta,
};
use top_protocol::envelope::new_request_id;
use top_protocol::timestamp::{format_beijing, parse_beijing_date_or_datetime};

use crate::paging::{self, Budget};
use crate::server::AppState;

use super::{audit_json, parse_json, path_order, query_error, AdminError};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/orders", post(create_order))
        .route("/admin/orders/{order_id}", get(get_order))
        .route("/admin/orders/{order_id}/events", get(list_order_events))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrder {
    order_id: i64,
    app_key: String,
    quantity: i64,
    #[serde(default)]
    out_order_id: Option<String>,
    #[serde(default)]
    valid_from: Option<String>,
    #[serde(default)]
    valid_until: Option<String>,
    /// When the order was paid; defaults to now. Lets operators import existing orders.
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    vouchers: Vec<CreateVoucher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateVoucher {
    confirm_code: String,
    quantity: i64,
}

/// Parses an admin date (`yyyy-MM-dd` or `yyyy-MM-dd HH:mm:ss`, UTC+8). A bare date used as an
/// end bound means the end of that day, which is what an operator typing it means.
fn admin_date(field: &str, text: &str, end_of_day: bool) -> Result<DateTime<Utc>, AdminError> {
    let t = parse_beijing_date_or_datetime(text).ok_or_else(|| {
        AdminError::field(field, "expected yyyy-MM-dd or yyyy-MM-dd HH:mm:ss (UTC+8)")
    })?;
    Ok(if end_of_day && text.len() == 10 {
        t + chrono::Duration::days(1) - chrono::Duration::milliseconds(1)
    } else {
        t
    })
}

async fn create_order(State(state): State<AppState>, body: Bytes) -> Result<Response, AdminError> {
    let req: CreateOrder = parse_json(&body)?;
    let order_id = OrderId::new(req.order_id)
        .ok_or_else(|| AdminError::field("order_id", "a positive int64"))?;
    let app_key = AppKey::parse(&req.app_key)
        .ok_or_else(|| AdminError::field("app_key", "1-64 visible ASCII characters"))?;
    let out_order_id = req
        .out_order_id
        .as_deref()
        .map(|s| {
            OutOrderId::parse(s)
                .ok_or_else(|| AdminError::field("out_order_id", "1-128 visible ASCII characters"))
        })
        .transpose()?;
    let vouchers = req
        .vouchers
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let code = ConfirmCode::parse(&v.confirm_code).ok_or_else(|| {
                AdminError::field(
                    &format!("vouchers[{i}].confirm_code"),
                    "1-128 visible ASCII characters",
                )
            })?;
            Ok(NewVoucher {
                code,
                capacity: v.quantity,
            })
        })
        .collect::<Result<Vec<_>, AdminError>>()?;
    let now = state.clock.now();
    let order = NewOrder {
        order_id,
        app_key,
        quantity: req.quantity,
        out_order_id,
        valid_from: req
            .valid_from
            .as_deref()
            .map(|t| admin_date("valid_from", t, false))
            .transpose()?,
        valid_until: req
            .valid_until
            .as_deref()
            .map(|t| admin_date("valid_until", t, true))
            .transpose()?,
        vouchers,
        created_at: req
            .created_at
            .as_deref()
            .map(|t| admin_date("created_at", t, false))
            .transpose()?
            .unwrap_or(now),
    };
    let plan = plan_order_creation(
        &order,
        OrderOrigin::Operator,
        &RequestMeta {
            request_id: new_request_id(),
            received_at: now,
            client_ip: None,
            summary: Value::Null,
        },
    )?;
    let view = state.store.create_order(order, plan.audit).await?;
    Ok((StatusCode::CREATED, Json(order_json(&view))).into_response())
}

async fn get_order(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<Response, AdminError> {
    let not_found = || AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order");
    let id = OrderId::parse(&order_id).ok_or_else(not_found)?;
    let view = state.store.order(id).await?.ok_or_else(not_found)?;
    Ok(Json(order_json(&view)).into_response())
}

/// The operator's view of an order. Codes are shown whole: the operator owns them.
///
/// `events` is the latest part of the order's history, oldest first: the store's latest
/// [`OrderView::EVENTS_SHOWN`], fewer when they would take the answer past
/// [`paging::MAX_ANSWER_BYTES`] (the oldest of them give way). `events_total` counts the whole
/// history, and `events_next` is `0` — the `after` that walks `GET /admin/orders/{id}/events`
/// from the start — when `events` is not all of it, `null` when it is.
pub fn order_json(view: &OrderView) -> Value {
    let o = &view.order;
    let capacity: i64 = view.vouchers.iter().map(|v| v.capacity).sum();
    let used: i64 = view.vouchers.iter().map(|v| v.used).sum();
    let mut body = json!({
        "order_id": o.order_id.get(),
        "app_key": o.app_key.as_str(),
        "out_order_id": o.out_order_id.as_ref().map(OutOrderId::as_str),
        "status": view.status().as_str(),
        "quantity": o.quantity,
        "capacity": capacity,
        "used": used,
        "valid_from": o.valid_from.map(format_beijing),
        "valid_until": o.valid_until.map(format_beijing),
        "created_at": format_beijing(o.created_at),
        "vouchers": view.vouchers.iter().map(|v| json!({
            "confirm_code": v.code.as_str(),
            "capacity": v.capacity,
            "used": v.used,
            "remaining": v.capacity - v.used,
        })).collect::<Vec<_>>(),
        "refunded_tickets": o.refunded_tickets,
        "refundable_tickets": view.refundable_tickets(),
        "issue_describe": o.issue_describe,
        "refunds": view.refunds.iter().map(refund_json).collect::<Vec<_>>(),
        "events": [],
        "events_total": view.events_total,
        "events_next": 0,
    });
    // The newest first, until the budget left beside the rest of the order is spent.
    let mut budget = Budget::new(paging::MAX_ANSWER_BYTES.saturating_sub(paging::json_len(&body)));
    let mut events: Vec<Value> = Vec::with_capacity(view.events.len());
    for entry in view.events.iter().rev() {
        let event = audit_json(entry);
        if !budget.take(&event, events.is_empty()) {
            break;
        }
        events.push(event);
    }
    events.reverse();
    if i64::try_from(events.len()).is_ok_and(|shown| shown >= view.events_total) {
        body["events_next"] = Value::Null;
    }
    body["events"] = Value::Array(events);
    body
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /admin/orders/{id}/events?after=SEQ&limit=N`: one page of the order's whole history,
/// `{"events": [...], "next": SEQ|null}` in increasing `seq`. Following `next` as `after`
/// returns every event exactly once, even while the order is being written to (see
/// `LedgerStore::order_events`).
async fn list_order_events(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query.map_err(query_error)?;
    let id = path_order(&order_id)?;
    let page = paging::page(
        paging::limit(q.limit),
        Budget::for_list(),
        q.after,
        |after, limit| {
            let store = state.store.clone();
            async move {
                store.order_events(id, after, limit).await?.ok_or_else(|| {
                    AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order")
                })
            }
        },
        |e: &AuditEntry| e.seq,
        audit_json,
    )
    .await?;
    Ok(Json(json!({"events": page.entries, "next": page.next})).into_response())
}

/// One refund request as JSON.
pub fn refund_json(r: &RefundRequest) -> Value {
    json!({
        "fliggy_refund_flow_id": r.flow_id,
        "quantity": r.quantity,
        "state": r.state.as_str(),
        "refunded_tickets": r.refunded_tickets,
        "requested_at": format_beijing(r.requested_at),
        "settled_at": r.settled_at.map(format_beijing),
        "refund_batch_no": r.batch_no,
        "refund_failure_reason": r.failure_reason,
        "needs_review": r.needs_review,
    })
}
