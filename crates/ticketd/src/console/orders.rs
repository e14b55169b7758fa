//! Orders: find one, read its whole story, and act on it.
//!
//! Every action is a form that first shows what it will change (a confirmation section on
//! its own page, never a browser dialog) and is applied only when that page's "confirm"
//! button sends it again with `confirm=yes`. Applying goes through [`crate::admin::actions`],
//! the calls the admin API makes, so the ledger's checks and audit entries are the same.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use ticket_ledger::{AuditFilter, OrderCursor, OrderFilter, OrderId, OrderStatus, OrderView};

use crate::admin::actions::{self, Origin, Reversal};
use crate::admin::AdminError;
use crate::server::AppState;

use super::i18n::Texts;
use super::{view, Ctx, SignedForm, SignedPage};

/// How many orders a page of the list shows.
const ORDERS_SHOWN: u32 = 50;

/// How many events a page of an order's timeline shows.
const EVENTS_SHOWN: u32 = 20;

/// The longest search text read: longer than any order id, vendor order id or app key.
const MAX_QUERY_CHARS: usize = 128;

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/orders", get(list))
        .route("/console/orders/{order_id}", get(order_page))
        .route("/console/orders/{order_id}/refund", post(refund))
        .route("/console/orders/{order_id}/reverse", post(reverse))
        .route("/console/orders/{order_id}/reconcile", post(reconcile))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    q: String,
    status: String,
    after: String,
}

async fn list(
    State(state): State<AppState>,
    SignedPage(ctx, q): SignedPage<ListQuery>,
) -> Response {
    let t = ctx.t;
    let search = q.q.trim();
    let status = OrderStatus::ALL
        .iter()
        .copied()
        .find(|s| s.as_str() == q.status);
    let mut problems = Vec::new();
    if search.chars().count() > MAX_QUERY_CHARS {
        problems.push(t.search_too_long);
    }
    if !q.status.is_empty() && status.is_none() {
        problems.push(t.unknown_status);
    }
    let after = match q.after.as_str() {
        "" => None,
        text => match text.parse::<OrderCursor>() {
            Ok(cursor) => Some(cursor),
            Err(_) => {
                problems.push(t.bad_page);
                None
            }
        },
    };
    let page = if problems.is_empty() {
        Some(
            state
                .store
                .list_orders(OrderFilter {
                    q: (!search.is_empty()).then(|| search.to_owned()),
                    status,
                    app_key: None,
                    after,
                    limit: ORDERS_SHOWN,
                })
                .await,
        )
    } else {
        None
    };
    let self_path = list_path(search, &q.status, &q.after);
    let body = html! {
        h1 { (t.orders) }
        form.search method="get" action="/console/orders" role="search" {
            div.field {
                label for="q" { (t.find_order) }
                input id="q" name="q" type="search" value=(search) maxlength=(MAX_QUERY_CHARS);
            }
            div.field {
                label for="status" { (t.status) }
                select id="status" name="status" {
                    option value="" selected[status.is_none()] { (t.any_status) }
                    @for s in OrderStatus::ALL {
                        option value=(s.as_str()) selected[status == Some(*s)] { (t.status_name(*s)) }
                    }
                }
            }
            button type="submit" { (t.search) }
        }
        @for problem in &problems {
            p.error role="alert" { (problem) }
        }
        @match &page {
            None => {}
            Some(Err(e)) => { p.error role="alert" { (t.ledger_unavailable) ": " (e) } }
            Some(Ok(page)) => {
                @if page.orders.is_empty() {
                    p { (t.no_orders) }
                } @else {
                    div.scroll {
                        table {
                            thead { tr {
                                th scope="col" { (t.order_id) }
                                th scope="col" { (t.out_order_id) }
                                th scope="col" { (t.app_key) }
                                th scope="col" { (t.status) }
                                th.num scope="col" { (t.used_of_capacity) }
                                th.num scope="col" { (t.tickets_refunded) }
                                th scope="col" { (t.created_at) }
                            } }
                            tbody {
                                @for o in &page.orders {
                                    tr {
                                        td.nowrap { a href={ "/console/orders/" (o.order.order_id.get()) } { (o.order.order_id.get()) } }
                                        td.nowrap { (o.order.out_order_id.as_ref().map(|id| id.as_str()).unwrap_or("—")) }
                                        td.nowrap { (o.order.app_key.as_str()) }
                                        td { (view::status(t, o.status)) }
                                        td.num { (o.used) " / " (o.capacity) }
                                        td.num { (o.order.refunded_tickets) " / " (o.order.quantity) }
                                        td.time { (view::time(o.order.created_at)) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(next) = page.next {
                    p.pager { a href=(list_path(search, &q.status, &next.to_string())) rel="next" { (t.older) " →" } }
                }
            }
        }
    };
    let status_code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    ctx.page(status_code, t.orders, &self_path, body)
}

/// The list's address for a search and a page.
fn list_path(q: &str, status: &str, after: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("q", q), ("status", status), ("after", after)] {
        if !v.is_empty() {
            query.append_pair(k, v);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        "/console/orders".to_owned()
    } else {
        format!("/console/orders?{query}")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OrderQuery {
    /// The timeline page: events before this `seq`.
    before: Option<i64>,
    /// The index of the voucher whose code is shown whole.
    show: Option<usize>,
    /// The action just applied, for the notice.
    done: Option<String>,
}

/// Reads the order a path names; `None` when there is none (to this operator, every order).
async fn load(state: &AppState, order_id: &str) -> Result<Option<OrderView>, AdminError> {
    let Some(id) = OrderId::parse(order_id) else {
        return Ok(None);
    };
    Ok(state.store.order(id).await?)
}

async fn order_page(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    SignedPage(ctx, q): SignedPage<OrderQuery>,
) -> Response {
    let view = match load(&state, &order_id).await {
        Ok(Some(view)) => view,
        Ok(None) => return not_found(ctx),
        Err(e) => return failed(ctx, &e),
    };
    let notice = match q.done.as_deref() {
        Some("refund") => Some(ctx.t.refund_requested),
        Some("reverse") => Some(ctx.t.uses_reversed),
        Some("reconcile") => Some(ctx.t.reconciled),
        _ => None,
    };
    let timeline = state
        .store
        .audit(AuditFilter::order_events_newest_first(
            view.order.order_id,
            q.before,
            EVENTS_SHOWN,
        ))
        .await;
    let t = ctx.t;
    let id = view.order.order_id.get();
    let body = html! {
        @if let Some(notice) = notice { (view::notice(notice)) }
        (summary(t, &view))
        (vouchers(t, &view, q.show))
        (refunds(t, &view))
        section aria-labelledby="timeline" {
            h2 id="timeline" { (t.timeline) " (" (view.events_total) ")" }
            @match &timeline {
                Err(e) => { p.error role="alert" { (t.ledger_unavailable) ": " (e) } }
                Ok(events) => {
                    (events_table(t, events))
                    @let full = u32::try_from(events.len()).is_ok_and(|n| n >= EVENTS_SHOWN);
                    p.pager {
                        @if q.before.is_some() {
                            a href={ "/console/orders/" (id) "#timeline" } { "← " (t.newest) }
                            " "
                        }
                        @if let (true, Some(last)) = (full, events.last()) {
                            a href={ "/console/orders/" (id) "?before=" (last.seq) "#timeline" } rel="next" { (t.older) " →" }
                        }
                    }
                }
            }
        }
        (action_forms(&ctx, &view))
    };
    let title = format!("{} {id}", t.order);
    let path = format!("/console/orders/{id}");
    ctx.page(StatusCode::OK, &title, &path, body)
}

fn summary(t: &Texts, view: &OrderView) -> Markup {
    let o = &view.order;
    let capacity: i64 = view.vouchers.iter().map(|v| v.capacity).sum();
    let used: i64 = view.vouchers.iter().map(|v| v.used).sum();
    html! {
        h1 { (t.order) " " (o.order_id.get()) " " (view::status(t, view.status())) }
        dl.totals {
            dt { (t.app_key) } dd { (o.app_key.as_str()) }
            dt { (t.out_order_id) } dd { (o.out_order_id.as_ref().map(|id| id.as_str()).unwrap_or("—")) }
            dt { (t.tickets) } dd { (o.quantity) }
            dt { (t.used_of_capacity) } dd { (used) " / " (capacity) }
            dt { (t.tickets_refunded) } dd { (o.refunded_tickets) }
            dt { (t.refundable) } dd { (view.refundable_tickets()) }
            dt { (t.valid) } dd {
                (o.valid_from.map(view::time).unwrap_or_else(|| "—".to_owned()))
                " – "
                (o.valid_until.map(view::time).unwrap_or_else(|| "—".to_owned()))
            }
            dt { (t.created_at) } dd { (view::time(o.created_at)) }
            @if let Some(describe) = &o.issue_describe {
                dt { (t.issue_note) } dd { (describe) }
            }
        }
    }
}

fn vouchers(t: &Texts, view: &OrderView, show: Option<usize>) -> Markup {
    let id = view.order.order_id.get();
    html! {
        section aria-labelledby="vouchers" {
            h2 id="vouchers" { (t.vouchers) }
            @if view.vouchers.is_empty() {
                p { (t.no_vouchers) }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th scope="col" { (t.confirm_code) }
                        th.num scope="col" { (t.used_of_capacity) }
                        th.num scope="col" { (t.remaining) }
                    } }
                    tbody {
                        @for (i, v) in view.vouchers.iter().enumerate() {
                            tr {
                                td.code {
                                    @if show == Some(i) {
                                        code data-code="whole" { (v.code.as_str()) }
                                        " "
                                        a href={ "/console/orders/" (id) "#vouchers" } { (t.hide) }
                                    } @else {
                                        code data-code="masked" { (v.code.masked()) }
                                        " "
                                        a href={ "/console/orders/" (id) "?show=" (i) "#vouchers" }
                                            aria-label={ (t.show_code) " " (v.code.masked()) } { (t.show) }
                                    }
                                }
                                td.num { (v.used) " / " (v.capacity) }
                                td.num { (v.capacity.saturating_sub(v.used)) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn refunds(t: &Texts, view: &OrderView) -> Markup {
    html! {
        section aria-labelledby="refunds" {
            h2 id="refunds" { (t.refunds) }
            @if view.refunds.is_empty() {
                p { (t.no_refunds) }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th scope="col" { (t.refund_flow) }
                        th.num scope="col" { (t.tickets) }
                        th scope="col" { (t.state) }
                        th.num scope="col" { (t.tickets_refunded) }
                        th scope="col" { (t.requested_at) }
                        th scope="col" { (t.settled_at) }
                    } }
                    tbody {
                        @for r in &view.refunds {
                            tr {
                                td { (r.flow_id) }
                                td.num { (r.quantity) }
                                td { (r.state.as_str())
                                    @if let Some(why) = &r.failure_reason { " (" (why) ")" }
                                    @if r.needs_review { " · " strong { (t.needs_review) } }
                                }
                                td.num { (r.refunded_tickets) }
                                td.time { (view::time(r.requested_at)) }
                                td.time { (r.settled_at.map(view::time).unwrap_or_else(|| "—".to_owned())) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// Audit entries as a table, in the order given: the order's timeline and the audit page.
pub(super) fn events_table(t: &Texts, events: &[ticket_ledger::AuditEntry]) -> Markup {
    html! {
        @if events.is_empty() {
            p { (t.no_events) }
        } @else {
            div.scroll { table.events {
                thead { tr {
                    th scope="col" { (t.at) }
                    th scope="col" { (t.action) }
                    th scope="col" { (t.outcome) }
                    th scope="col" { (t.reason) }
                    th scope="col" { "request_id" }
                    th scope="col" { (t.detail) }
                } }
                tbody {
                    @for e in events {
                        tr data-seq=(e.seq) {
                            td.time data-label=(t.at) { (view::time(e.at)) }
                            td data-label=(t.action) { (e.action)
                                @if let Some(order) = e.order_id { " " a href={ "/console/orders/" (order) } { "#" (order) } }
                            }
                            td data-label=(t.outcome) { (view::outcome(t, e.outcome.as_str())) }
                            td data-label=(t.reason) { (e.reason) }
                            td data-label="request_id" { code { (e.request_id) } }
                            td.detail data-label=(t.detail) { code { (view::detail(&e.detail)) } }
                        }
                    }
                }
            } }
        }
    }
}

/// The three actions' forms. Each is sent first without `confirm`, which shows what it will
/// change; nothing is applied until that page is confirmed.
fn action_forms(ctx: &Ctx, view: &OrderView) -> Markup {
    let t = ctx.t;
    let id = view.order.order_id.get();
    html! {
        section aria-labelledby="actions" {
            h2 id="actions" { (t.actions) }
            div.actions {
                form method="post" action={ "/console/orders/" (id) "/refund" } {
                    h3 { (t.request_refund) }
                    (ctx.csrf_field())
                    label for="refund-quantity" { (t.tickets_to_refund) }
                    input id="refund-quantity" name="quantity" type="number" min="1" required;
                    button type="submit" { (t.review) }
                }
                form method="post" action={ "/console/orders/" (id) "/reverse" } {
                    h3 { (t.reverse_use) }
                    (ctx.csrf_field())
                    label for="reverse-code" { (t.confirm_code) }
                    input id="reverse-code" name="confirm_code" type="text" required autocomplete="off";
                    label for="reverse-quantity" { (t.uses_to_give_back) }
                    input id="reverse-quantity" name="quantity" type="number" min="1" required;
                    label for="reverse-reason" { (t.reason) }
                    input id="reverse-reason" name="reason" type="text" required;
                    button type="submit" { (t.review) }
                }
                @if !view.vouchers.is_empty() {
                    form method="post" action={ "/console/orders/" (id) "/reconcile" } {
                        h3 { (t.reconcile) }
                        p.hint { (t.reconcile_hint) }
                        (ctx.csrf_field())
                        @for (i, v) in view.vouchers.iter().enumerate() {
                            label for={ "vendor-used-" (i) } { (t.vendor_uses_of) " " (v.code.masked()) }
                            input id={ "vendor-used-" (i) } name="used" type="number" min="0" value=(v.used) required;
                        }
                        button type="submit" { (t.compare) }
                    }
                }
            }
        }
    }
}

fn not_found(ctx: Ctx) -> Response {
    let t = ctx.t;
    let body = html! {
        h1 { (t.no_such_order) }
        p { a href="/console/orders" { (t.orders) } }
    };
    ctx.page(
        StatusCode::NOT_FOUND,
        t.no_such_order,
        "/console/orders",
        body,
    )
}

fn failed(ctx: Ctx, e: &AdminError) -> Response {
    let t = ctx.t;
    let body = html! { (view::refusal(t, e)) };
    ctx.page(view::refusal_status(e), t.not_done, "/console/orders", body)
}

/// The confirmation step: what the action will change, the fields again as hidden inputs
/// with `confirm=yes` and a one-time token (so sending it twice applies it once), and a way
/// back that changes nothing.
fn confirmation(
    ctx: &Ctx,
    state: &AppState,
    action: &str,
    id: i64,
    what: Markup,
    fields: &[(&str, String)],
) -> Markup {
    let t = ctx.t;
    html! {
        section.confirm aria-labelledby="confirm" {
            h2 id="confirm" { (t.confirm_title) }
            (what)
            form method="post" action={ "/console/orders/" (id) "/" (action) } {
                (ctx.csrf_field())
                (ctx.once_field(state))
                @for (name, value) in fields {
                    input type="hidden" name=(name) value=(value);
                }
                input type="hidden" name="confirm" value="yes";
                button type="submit" { (t.confirm) }
                " "
                a.cancel href={ "/console/orders/" (id) } { (t.cancel) }
            }
        }
    }
}

/// The confirmation page of an action, with the order's summary above it.
fn confirm_page(
    ctx: Ctx,
    state: &AppState,
    view: &OrderView,
    action: &str,
    what: Markup,
    fields: &[(&str, String)],
) -> Response {
    let t = ctx.t;
    let id = view.order.order_id.get();
    let body = html! {
        (summary(t, view))
        (confirmation(&ctx, state, action, id, what, fields))
    };
    let path = format!("/console/orders/{id}");
    ctx.page(StatusCode::OK, t.confirm_title, &path, body)
}

/// Spends a confirmation's one-time token; the refusal when it was spent before (the form
/// was sent twice: the first one applied the action) or is unknown.
fn spend(ctx: &Ctx, state: &AppState, once: &str) -> Result<(), AdminError> {
    if ctx.spend_once(state, once) {
        Ok(())
    } else {
        Err(AdminError::new(
            StatusCode::CONFLICT,
            "already_sent",
            ctx.t.already_sent,
        ))
    }
}

/// Where an applied action sends the browser: the order, with a notice of what was done.
fn applied(id: i64, done: &str) -> Response {
    Redirect::to(&format!("/console/orders/{id}?done={done}")).into_response()
}

/// A refused action: the order page's summary and why.
fn refused(ctx: Ctx, view: &OrderView, e: &AdminError) -> Response {
    let t = ctx.t;
    let id = view.order.order_id.get();
    let body = html! {
        (summary(t, view))
        (view::refusal(t, e))
        p { a href={ "/console/orders/" (id) } { (t.back_to_order) } }
    };
    let path = format!("/console/orders/{id}");
    ctx.page(view::refusal_status(e), t.not_done, &path, body)
}

/// The order an action's form names (its CSRF token already checked by [`SignedForm`]); a
/// missing order is answered as the order page answers it.
async fn action_target(
    state: &AppState,
    ctx: Ctx,
    order_id: &str,
) -> Result<(Ctx, OrderView), Box<Response>> {
    match load(state, order_id).await {
        Ok(Some(view)) => Ok((ctx, view)),
        Ok(None) => Err(Box::new(not_found(ctx))),
        Err(e) => Err(Box::new(failed(ctx, &e))),
    }
}

/// A refund request's form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RefundForm {
    quantity: String,
    confirm: String,
    once: String,
}

/// A count as typed in a form: a whole number, else the refusal naming the field.
fn count(field: &str, text: &str) -> Result<i64, AdminError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| AdminError::field(field, "a whole number"))
}

async fn refund(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    SignedForm(ctx, form): SignedForm<RefundForm>,
) -> Response {
    let (ctx, view) = match action_target(&state, ctx, &order_id).await {
        Ok(target) => target,
        Err(refusal) => return *refusal,
    };
    let id = view.order.order_id;
    let t = ctx.t;
    let refundable = view.refundable_tickets();
    let quantity = match count("quantity", &form.quantity) {
        Ok(q) if q < 1 => Err(AdminError::field("quantity", "at least 1 ticket")),
        // What the ledger would refuse is refused here, with no confirmation to offer.
        Ok(q) if q > refundable => Err(AdminError::new(
            StatusCode::CONFLICT,
            "refund_exceeds_unused",
            format!("{} ({refundable})", t.refund_over_refundable),
        )),
        other => other,
    };
    let quantity = match quantity {
        Ok(q) => q,
        Err(e) => return refused(ctx, &view, &e),
    };
    if form.confirm == "yes" {
        let applied_now = match spend(&ctx, &state, &form.once) {
            Ok(()) => actions::request_refund(&state, Origin::Console, id, quantity).await,
            Err(e) => Err(e),
        };
        return match applied_now {
            Ok(_) => applied(id.get(), "refund"),
            Err(e) => refused(ctx, &view, &e),
        };
    }
    let what = html! {
        p { (t.refund_will_ask) " " strong { (quantity) } " " (t.tickets_of_order) " " (id.get()) "." }
        dl.totals {
            dt { (t.refundable) } dd { (refundable) " → " (refundable - quantity) }
            dt { (t.status) } dd { (view::status(t, view.status())) " → " (view::status(t, OrderStatus::Refunding)) }
        }
    };
    confirm_page(
        ctx,
        &state,
        &view,
        "refund",
        what,
        &[("quantity", quantity.to_string())],
    )
}

/// A reversal's form: the code as the operator typed it, or (from the confirmation page,
/// which shows the code masked and must not carry it whole) its place in the order.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReverseForm {
    confirm_code: String,
    voucher: String,
    quantity: String,
    reason: String,
    confirm: String,
    once: String,
}

async fn reverse(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    SignedForm(ctx, form): SignedForm<ReverseForm>,
) -> Response {
    let (ctx, view) = match action_target(&state, ctx, &order_id).await {
        Ok(target) => target,
        Err(refusal) => return *refusal,
    };
    let id = view.order.order_id;
    let t = ctx.t;
    let code = match form.voucher.trim().parse::<usize>() {
        Ok(i) => view.vouchers.get(i).map(|v| v.code.as_str().to_owned()),
        Err(_) => Some(form.confirm_code.trim().to_owned()),
    };
    let reversal = match count("quantity", &form.quantity).and_then(|q| {
        let code = code.ok_or_else(|| AdminError::field("voucher", t.code_not_in_order))?;
        Reversal::parse(&code, q, &form.reason)
    }) {
        Ok(r) => r,
        Err(e) => return refused(ctx, &view, &e),
    };
    let Some((index, voucher)) = view
        .vouchers
        .iter()
        .enumerate()
        .find(|(_, v)| v.code == reversal.code)
    else {
        let e = AdminError::field("confirm_code", t.code_not_in_order);
        return refused(ctx, &view, &e);
    };
    if reversal.quantity > voucher.used {
        let e = AdminError::new(
            StatusCode::CONFLICT,
            "reversal_not_allowed",
            t.reverse_over_used,
        );
        return refused(ctx, &view, &e);
    }
    if form.confirm == "yes" {
        let applied_now = match spend(&ctx, &state, &form.once) {
            Ok(()) => actions::reverse(&state, Origin::Console, id, &reversal).await,
            Err(e) => Err(e),
        };
        return match applied_now {
            Ok(_) => applied(id.get(), "reverse"),
            Err(e) => refused(ctx, &view, &e),
        };
    }
    let what = html! {
        p { (t.reverse_will_give_back) " " strong { (reversal.quantity) } " " (t.uses_of_code) " " code { (reversal.code.masked()) } "." }
        dl.totals {
            dt { (t.used_of_capacity) }
            dd { (voucher.used) " / " (voucher.capacity) " → " (voucher.used - reversal.quantity) " / " (voucher.capacity) }
            dt { (t.reason) } dd { (reversal.reason) }
        }
        p.hint { (t.reversal_window_hint) }
    };
    let fields = [
        ("voucher", index.to_string()),
        ("quantity", reversal.quantity.to_string()),
        ("reason", reversal.reason.clone()),
    ];
    confirm_page(ctx, &state, &view, "reverse", what, &fields)
}

/// A reconciliation form: `confirm`, and one `used` per code of the order, in the order the
/// page lists them (read as a list of pairs: a struct cannot hold repeated names). Codes are
/// not sent back: the page shows them masked, so the form must not carry them whole.
async fn reconcile(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    SignedForm(ctx, pairs): SignedForm<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let confirm = field("confirm") == "yes";
    let (ctx, view) = match action_target(&state, ctx, &order_id).await {
        Ok(target) => target,
        Err(refusal) => return *refusal,
    };
    let id = view.order.order_id;
    let t = ctx.t;
    let used: Vec<&String> = pairs
        .iter()
        .filter(|(k, _)| k == "used")
        .map(|(_, v)| v)
        .collect();
    if used.len() != view.vouchers.len() {
        let e = AdminError::field("used", t.codes_changed);
        return refused(ctx, &view, &e);
    }
    let mut vendor = Vec::with_capacity(used.len());
    for (v, used) in view.vouchers.iter().zip(used) {
        let reported = match count("used", used) {
            Ok(n) if n < 0 => Err(AdminError::field("used", "0 or more")),
            Ok(n) if n > v.capacity => Err(AdminError::new(
                StatusCode::CONFLICT,
                "refused",
                format!(
                    "{} {}: {} > {}",
                    t.vendor_over_capacity,
                    v.code.masked(),
                    n,
                    v.capacity
                ),
            )),
            other => other,
        };
        match reported {
            Ok(n) => vendor.push((v.code.as_str().to_owned(), n)),
            Err(e) => return refused(ctx, &view, &e),
        }
    }
    if confirm {
        if let Err(e) = spend(&ctx, &state, field("once")) {
            return refused(ctx, &view, &e);
        }
    }
    // The comparison itself is the preview: the ledger's comparison, applied only on confirm.
    match actions::reconcile(&state, Origin::Console, id, &vendor, confirm).await {
        Err(e) => refused(ctx, &view, &e),
        Ok(_) if confirm => applied(id.get(), "reconcile"),
        Ok(outcome) => {
            let missing: i64 = outcome.lines.iter().map(|l| l.missing()).sum();
            let what = html! {
                div.scroll { table {
                    thead { tr {
                        th scope="col" { (t.confirm_code) }
                        th.num scope="col" { (t.ledger_uses) }
                        th.num scope="col" { (t.vendor_uses) }
                        th.num scope="col" { (t.missing_uses) }
                        th.num scope="col" { (t.excess_uses) }
                    } }
                    tbody {
                        @for l in &outcome.lines {
                            tr {
                                td { code { (l.code.masked()) } }
                                td.num { (l.ledger_used) }
                                td.num { (l.vendor_used) }
                                td.num { (l.missing()) }
                                td.num { (l.excess()) }
                            }
                        }
                    }
                } }
                p { (t.reconcile_will_record) " " strong { (missing) } "." }
                p.hint { (t.excess_hint) }
            };
            let fields: Vec<(&str, String)> = vendor
                .iter()
                .map(|(_, used)| ("used", used.to_string()))
                .collect();
            confirm_page(ctx, &state, &view, "reconcile", what, &fields)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_addresses_keep_only_what_is_set() {
        assert_eq!(list_path("", "", ""), "/console/orders");
        assert_eq!(
            list_path("a b&c", "used", "1.2"),
            "/console/orders?q=a+b%26c&status=used&after=1.2"
        );
    }

    #[test]
    fn counts_are_whole_numbers() {
        assert_eq!(count("quantity", " 3 ").ok(), Some(3));
        assert!(count("quantity", "3.5").is_err());
        assert!(count("quantity", "99999999999999999999999").is_err());
    }
}
