//! Orders: creation by the operator, the paged list, the order view and its paged events.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ticket_ledger::{
    plan_order_creation, AppKey, AuditEntry, ConfirmCode, NewOrder, NewVoucher, OrderCursor,
    OrderFilter, OrderId, OrderOrigin, OrderStatus, OrderSummary, OrderView, OutOrderId,
    RefundRequest, RequestMeta,
};
use top_protocol::envelope::new_request_id;
use top_protocol::timestamp::{format_beijing, parse_beijing_date_or_datetime};

use crate::paging::{self, Budget};
use crate::server::AppState;

use super::{parse_json, path_order, query_error, AdminError, AuditEntryAnswer};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/orders", post(create_order).get(list_orders))
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
            summary: Value::Null.into(),
        },
    )?;
    let view = state.store.create_order(order, plan.audit).await?;
    Ok((StatusCode::CREATED, Json(OrderAnswer::from(&view))).into_response())
}

/// `GET /admin/orders`: one page of the order list, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrdersPage {
    /// Pass as `after` for the next page; `null` when the list ends here. Opaque text (it
    /// names the page's last order); a page filtered by `status` may stop short, even empty,
    /// with a `next`, after looking at 2000 orders (keep following it).
    pub next: Option<String>,
    /// The orders, newest first by `created_at` (then by decreasing `order_id`).
    pub orders: Vec<OrderSummaryAnswer>,
}

/// One order in `GET /admin/orders`: its row, totals and status. Its codes, refunds and
/// history are in `GET /admin/orders/{order_id}`. Fields in alphabetical order, like every
/// admin answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderSummaryAnswer {
    /// The vendor app the order belongs to.
    pub app_key: String,
    /// Uses issued over all its codes.
    pub capacity: i64,
    /// When it was paid, `yyyy-MM-dd HH:mm:ss` UTC+8.
    pub created_at: String,
    /// The vendor's reason when issuing failed, else `null`.
    pub issue_describe: Option<String>,
    /// The platform's order id.
    pub order_id: i64,
    /// The vendor's own order id, once given.
    pub out_order_id: Option<String>,
    /// Tickets bought.
    pub quantity: i64,
    /// Tickets refunded so far.
    pub refunded_tickets: i64,
    /// Where it stands, as `GET /admin/orders/{order_id}` derives it (`partly_used`, …).
    pub status: String,
    /// Uses recorded over all its codes.
    pub used: i64,
    /// First instant it may be used, if bounded.
    pub valid_from: Option<String>,
    /// Last instant it may be used, if bounded.
    pub valid_until: Option<String>,
}

impl From<&OrderSummary> for OrderSummaryAnswer {
    fn from(s: &OrderSummary) -> Self {
        let o = &s.order;
        Self {
            app_key: o.app_key.as_str().to_owned(),
            capacity: s.capacity,
            created_at: format_beijing(o.created_at),
            issue_describe: o.issue_describe.clone(),
            order_id: o.order_id.get(),
            out_order_id: o.out_order_id.as_ref().map(|id| id.as_str().to_owned()),
            quantity: o.quantity,
            refunded_tickets: o.refunded_tickets,
            status: s.status.as_str().to_owned(),
            used: s.used,
            valid_from: o.valid_from.map(format_beijing),
            valid_until: o.valid_until.map(format_beijing),
        }
    }
}

/// The longest search text `GET /admin/orders` takes: the longest identifier it can match
/// (an `out_order_id`). Longer text could match nothing, so it is refused rather than read.
pub const MAX_SEARCH_BYTES: usize = OutOrderId::MAX_LEN;

/// `GET /admin/orders`'s query. Every parameter is text, so that an empty one (`q=&status=`,
/// what a search form sends for a blank field) means "not given" and a bad one is refused
/// with a message naming it.
#[derive(Debug, Deserialize)]
struct ListOrdersQuery {
    q: Option<String>,
    status: Option<String>,
    app_key: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// A query parameter's value, `None` when absent or empty.
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// A list's `limit`: `default` when not given, else a whole number in `1..=max`.
pub(super) fn list_limit(text: Option<String>, default: u32, max: u32) -> Result<u32, AdminError> {
    let Some(text) = given(text) else {
        return Ok(default);
    };
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n) && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| AdminError::field("limit", format!("a whole number from 1 to {max}")))
}

/// `GET /admin/orders?q=&status=&app_key=&after=&limit=`: one page of the orders, newest
/// first, `{"orders": [...], "next": CURSOR|null}`.
///
/// `q` finds an order by its `order_id`, its `out_order_id` or its `app_key`, each compared
/// whole; `status` keeps the orders whose derived status it names; `app_key` keeps one app's;
/// `after` is the `next` of the previous page; `limit` is 1–200 (default 50). The page is also
/// bounded in bytes like every admin list ([`paging::MAX_ANSWER_BYTES`]).
async fn list_orders(
    State(state): State<AppState>,
    query: Result<Query<ListOrdersQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(req) = query.map_err(query_error)?;
    let q = match given(req.q) {
        Some(text) if text.len() > MAX_SEARCH_BYTES => {
            return Err(AdminError::field(
                "q",
                format!("at most {MAX_SEARCH_BYTES} bytes: an order_id, out_order_id or app_key"),
            ))
        }
        Some(text) => Some(text.trim().to_owned()).filter(|t| !t.is_empty()),
        None => None,
    };
    let status = given(req.status)
        .map(|text| {
            OrderStatus::parse(&text).ok_or_else(|| {
                let all: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
                AdminError::field("status", format!("one of {}", all.join(", ")))
            })
        })
        .transpose()?;
    let app_key = given(req.app_key)
        .map(|text| {
            AppKey::parse(&text)
                .ok_or_else(|| AdminError::field("app_key", "1-64 visible ASCII characters"))
        })
        .transpose()?;
    let after = given(req.after)
        .map(|text| {
            text.parse::<OrderCursor>().map_err(|_| {
                AdminError::field(
                    "after",
                    "a cursor as the `next` of a previous page gave it, unchanged",
                )
            })
        })
        .transpose()?;
    let limit = list_limit(
        req.limit,
        OrderFilter::DEFAULT_LIMIT,
        OrderFilter::MAX_LIMIT,
    )?;
    let page = state
        .store
        .list_orders(OrderFilter {
            q,
            status,
            app_key,
            after,
            limit,
        })
        .await?;
    // At most 200 orders, but an order's `issue_describe` is the vendor's text: the answer is
    // bounded in bytes like every admin list, ending early with the last order it holds.
    let mut budget = Budget::for_list();
    let mut orders: Vec<OrderSummaryAnswer> = Vec::with_capacity(page.orders.len());
    let mut next = page.next;
    for (n, summary) in page.orders.iter().enumerate() {
        let answer = OrderSummaryAnswer::from(summary);
        if !budget.take(&answer, orders.is_empty()) {
            next = n
                .checked_sub(1)
                .and_then(|last| page.orders.get(last))
                .map(OrderSummary::cursor);
            break;
        }
        orders.push(answer);
    }
    Ok(Json(OrdersPage {
        next: next.map(|cursor| cursor.to_string()),
        orders,
    })
    .into_response())
}

async fn get_order(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<Response, AdminError> {
    let not_found = || AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order");
    let id = OrderId::parse(&order_id).ok_or_else(not_found)?;
    let view = state.store.order(id).await?.ok_or_else(not_found)?;
    Ok(Json(OrderAnswer::from(&view)).into_response())
}

/// `GET /admin/orders/{id}` (and the 201 of `POST /admin/orders`): the operator's view of an
/// order. Codes are shown whole: the operator owns them. Fields in alphabetical order, as the
/// answers have always had them on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderAnswer {
    /// The vendor app the order belongs to.
    pub app_key: String,
    /// Uses issued over all its codes.
    pub capacity: i64,
    /// When it was paid, `yyyy-MM-dd HH:mm:ss` UTC+8.
    pub created_at: String,
    /// The latest part of the order's history, oldest first: the store's latest
    /// [`OrderView::EVENTS_SHOWN`], fewer when they would take the answer past
    /// [`paging::MAX_ANSWER_BYTES`] (the oldest of them give way).
    pub events: Vec<AuditEntryAnswer>,
    /// `0` — the `after` that walks `GET /admin/orders/{id}/events` from the start — when
    /// `events` is not the whole history; `null` when it is.
    pub events_next: Option<i64>,
    /// How many events the order has in all.
    pub events_total: i64,
    /// The vendor's reason when issuing failed (`issue_type` 2), else `null`.
    pub issue_describe: Option<String>,
    /// The platform's order id.
    pub order_id: i64,
    /// The vendor's own order id, once given.
    pub out_order_id: Option<String>,
    /// Tickets bought.
    pub quantity: i64,
    /// Tickets that can still be asked to be refunded: neither refunded, nor held by a
    /// pending request, nor touched by a use.
    pub refundable_tickets: i64,
    /// Tickets refunded so far.
    pub refunded_tickets: i64,
    /// Its refund requests, oldest first.
    pub refunds: Vec<RefundAnswer>,
    /// Where it stands (docs/LIFECYCLE.md), derived from the counters, e.g. `partly_used`.
    pub status: String,
    /// Uses recorded over all its codes.
    pub used: i64,
    /// First instant it may be used, if bounded.
    pub valid_from: Option<String>,
    /// Last instant it may be used, if bounded.
    pub valid_until: Option<String>,
    /// Its codes, in issuance order.
    pub vouchers: Vec<VoucherAnswer>,
}

/// One code of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoucherAnswer {
    /// Uses the code allows.
    pub capacity: i64,
    /// The code, whole.
    pub confirm_code: String,
    /// Uses left: `capacity - used`.
    pub remaining: i64,
    /// Uses recorded.
    pub used: i64,
}

/// One refund request, as the order shows it and `POST /admin/orders/{id}/refunds` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundAnswer {
    /// The flow id the platform (and the vendor's notification) names the request by.
    pub fliggy_refund_flow_id: String,
    /// `true` when uses dated before the request took tickets it holds (docs/DOMAIN.md R9): the
    /// refund may not be payable in full, look before paying.
    pub needs_review: bool,
    /// Tickets asked to be refunded.
    pub quantity: i64,
    /// The vendor's `refund_batch_no` of the notification that settled it.
    pub refund_batch_no: Option<String>,
    /// The vendor's reason when the refund failed (`refund_status` 2).
    pub refund_failure_reason: Option<String>,
    /// Tickets the vendor reported refunded.
    pub refunded_tickets: i64,
    /// When it was asked for, `yyyy-MM-dd HH:mm:ss` UTC+8.
    pub requested_at: String,
    /// When the vendor's notification settled it; `null` while pending.
    pub settled_at: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    pub state: String,
}

impl From<&RefundRequest> for RefundAnswer {
    fn from(r: &RefundRequest) -> Self {
        Self {
            fliggy_refund_flow_id: r.flow_id.clone(),
            needs_review: r.needs_review,
            quantity: r.quantity,
            refund_batch_no: r.batch_no.clone(),
            refund_failure_reason: r.failure_reason.clone(),
            refunded_tickets: r.refunded_tickets,
            requested_at: format_beijing(r.requested_at),
            settled_at: r.settled_at.map(format_beijing),
            state: r.state.as_str().to_owned(),
        }
    }
}

impl From<&OrderView> for OrderAnswer {
    fn from(view: &OrderView) -> Self {
        let o = &view.order;
        let capacity: i64 = view.vouchers.iter().map(|v| v.capacity).sum();
        let used: i64 = view.vouchers.iter().map(|v| v.used).sum();
        let mut answer = OrderAnswer {
            app_key: o.app_key.as_str().to_owned(),
            capacity,
            created_at: format_beijing(o.created_at),
            events: Vec::new(),
            events_next: Some(0),
            events_total: view.events_total,
            issue_describe: o.issue_describe.clone(),
            order_id: o.order_id.get(),
            out_order_id: o.out_order_id.as_ref().map(|id| id.as_str().to_owned()),
            quantity: o.quantity,
            refundable_tickets: view.refundable_tickets(),
            refunded_tickets: o.refunded_tickets,
            refunds: view.refunds.iter().map(RefundAnswer::from).collect(),
            status: view.status().as_str().to_owned(),
            used,
            valid_from: o.valid_from.map(format_beijing),
            valid_until: o.valid_until.map(format_beijing),
            vouchers: view
                .vouchers
                .iter()
                .map(|v| VoucherAnswer {
                    capacity: v.capacity,
                    confirm_code: v.code.as_str().to_owned(),
                    remaining: v.capacity - v.used,
                    used: v.used,
                })
                .collect(),
        };
        // The newest first, until the budget left beside the rest of the order is spent
        // (measured with `events` empty and `events_next` at its longest, `0`).
        let mut budget =
            Budget::new(paging::MAX_ANSWER_BYTES.saturating_sub(paging::json_len(&answer)));
        let mut events: Vec<AuditEntryAnswer> = Vec::with_capacity(view.events.len());
        for entry in view.events.iter().rev() {
            let event = AuditEntryAnswer::from(entry);
            if !budget.take(&event, events.is_empty()) {
                break;
            }
            events.push(event);
        }
        events.reverse();
        if i64::try_from(events.len()).is_ok_and(|shown| shown >= view.events_total) {
            answer.events_next = None;
        }
        answer.events = events;
        answer
    }
}

/// `GET /admin/orders/{id}/events`: one page of the order's whole history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsPage {
    /// The events, in increasing `seq`.
    pub events: Vec<AuditEntryAnswer>,
    /// Pass as `after` for the next page; `null` when the history ends here.
    pub next: Option<i64>,
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
        |e: &AuditEntry| AuditEntryAnswer::from(e),
    )
    .await?;
    Ok(Json(EventsPage {
        events: page.entries,
        next: page.next,
    })
    .into_response())
}
