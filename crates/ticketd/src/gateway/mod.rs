//! The TOP gateway at `/router/rest`: parse → authenticate → dispatch → render.
//!
//! Every answer is HTTP 200 with a TOP envelope (PROTOCOL.md §5.3: real SDKs break on any other
//! status), including refusals and internal faults. Checks run in the order PROTOCOL.md §5.1
//! fixes, so a request with several faults always gets the same code. Every attempt leaves an
//! audit entry: accepted and replayed ones are written by the store in the transaction that
//! applies them, refusals by `audit_rejection` here.

pub mod access;
pub mod errors;
pub mod issue;
pub mod refund;
pub mod verify;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;
use ticket_api::Method;
use ticket_ledger::{
    AppKey, AuditEntry, AuditOutcome, ConfirmCode, OrderId, OutOrderId, RequestMeta,
};
use top_protocol::check::{authenticate, check_envelope};
use top_protocol::envelope::{new_request_id, render_error, render_success};
use top_protocol::params::{merge, parse_body, parse_urlencoded};
use top_protocol::{Field, Format, Params, PlatformCode, TopError};

use crate::server::AppState;

/// Routes of the gateway. A trailing `/` is tolerated (PROTOCOL.md §1.1).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/router/rest", any(router_rest))
        .route("/router/rest/", any(router_rest))
}

/// What one request is, once known, for the audit trail and the logs.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The id answered to the caller and recorded everywhere.
    pub request_id: String,
    /// Arrival instant.
    pub received_at: DateTime<Utc>,
    /// The peer address.
    pub client_ip: Option<String>,
}

impl CallContext {
    /// The request's metadata as the ledger records it.
    pub fn meta(&self, params: &Params) -> RequestMeta {
        self.meta_with_summary(sanitized(params))
    }

    /// [`CallContext::meta`] with the summary already built ([`sanitized_verify`]).
    pub fn meta_with_summary(&self, summary: serde_json::Value) -> RequestMeta {
        RequestMeta {
            request_id: self.request_id.clone(),
            received_at: self.received_at,
            client_ip: self.client_ip.clone(),
            summary,
        }
    }
}

/// The answer to an accepted call: `is_success` true, replays included (R30).
pub fn is_success<T>(
    result: Result<T, ticket_ledger::LedgerError>,
) -> Result<Vec<(&'static str, bool)>, TopError> {
    result
        .map(|_| vec![("is_success", true)])
        .map_err(|e| errors::ledger_to_top(&e))
}

/// Parses a platform order id from a validated wire integer.
pub fn order_id(id: i64) -> Result<OrderId, TopError> {
    OrderId::new(id).ok_or_else(|| TopError::invalid_argument("order_id", "必须为正整数"))
}

/// Parses a confirm code named by parameter `name`.
pub fn confirm_code(code: &str, name: &str) -> Result<ConfirmCode, TopError> {
    ConfirmCode::parse(code)
        .ok_or_else(|| TopError::invalid_argument(name, "核销码必须为1-128个可见ASCII字符"))
}

/// Parses a vendor order id.
pub fn out_order_id(id: &str) -> Result<OutOrderId, TopError> {
    OutOrderId::parse(id)
        .ok_or_else(|| TopError::invalid_argument("out_order_id", "必须为1-128个可见ASCII字符"))
}

/// A finished TOP answer: the envelope format and either the success fields or the refusal.
struct Answer {
    format: Format,
    method: String,
    result: Result<Vec<(&'static str, bool)>, TopError>,
}

async fn router_rest(State(state): State<AppState>, request: Request) -> Response {
    let ctx = CallContext {
        request_id: new_request_id(),
        received_at: state.clock.now(),
        client_ip: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
    };
    // Every line logged while the call runs, down to the store, carries its request_id (the
    // JSON log format writes span fields into each line: telemetry.rs).
    let span = tracing::info_span!("top_call", request_id = %ctx.request_id);
    tracing::Instrument::instrument(answer_call(state, request, ctx), span).await
}

async fn answer_call(state: AppState, request: Request, ctx: CallContext) -> Response {
    let started = std::time::Instant::now();
    // A body still incomplete after --body-timeout is refused here (server.rs).
    let answer = match crate::server::read_body_in_time(request, &state).await {
        Ok(request) => process(&state, request, &ctx).await,
        Err(timed_out) => {
            let query = timed_out.parts.uri.query().unwrap_or_default();
            let answer = Answer {
                format: requested_format(parse_urlencoded(query.as_bytes()).ok().as_deref(), None),
                method: String::new(),
                result: Err(timed_out.to_top_error()),
            };
            tracing::info!("request body not received in time");
            audit_rejection(&state, &ctx, &Params::new(), &answer).await;
            answer
        }
    };
    let (code, sub_code) = match &answer.result {
        Ok(_) => (0, ""),
        Err(e) => (e.code, e.sub_code.as_deref().unwrap_or_default()),
    };
    if sub_code.starts_with("isp.") {
        state.metrics.store_error();
    }
    // Unknown method names are not echoed into label values: a caller could otherwise grow
    // the metrics without bound.
    let method = Method::parse(&answer.method).map_or("unknown", Method::name);
    state
        .metrics
        .observe_call(method, code, sub_code, started.elapsed());
    let body = match &answer.result {
        Ok(fields) => {
            let fields: Vec<(&str, Field<'_>)> =
                fields.iter().map(|(k, v)| (*k, Field::Bool(*v))).collect();
            render_success(answer.format, &answer.method, &fields, &ctx.request_id)
        }
        Err(e) => render_error(answer.format, e, &ctx.request_id),
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.format.content_type()),
    );
    response
}

/// Runs the pipeline; never fails — every outcome is an [`Answer`].
async fn process(state: &AppState, request: Request, ctx: &CallContext) -> Answer {
    let (parts, body) = request.into_parts();
    let query = parse_urlencoded(parts.uri.query().unwrap_or_default().as_bytes())
        .map_err(|e| e.to_top_error());
    let body = read_body_pairs(state, &parts, body).await;
    // Until the parameters are known to be sound, errors render in the format the request
    // asks for wherever it says so (XML when it cannot be told), so that an SDK that asked for
    // JSON can still read why it was refused.
    let fallback_format = requested_format(query.as_deref().ok(), body.as_deref().ok());
    let params = match (query, body) {
        (Ok(query), Ok(body)) => merge(query, body).map_err(|e| e.to_top_error()),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let params = match params {
        Ok(p) => p,
        Err(error) => {
            let answer = Answer {
                format: fallback_format,
                method: String::new(),
                result: Err(error),
            };
            audit_rejection(state, ctx, &Params::new(), &answer).await;
            return answer;
        }
    };

    let envelope = match check_envelope(parts.method.as_str(), &params, |m| {
        Method::parse(m).is_some()
    }) {
        Ok(env) => env,
        Err(rejection) => {
            let answer = Answer {
                format: rejection.format,
                method: params.get("method").unwrap_or_default().to_owned(),
                result: Err(rejection.error),
            };
            audit_rejection(state, ctx, &params, &answer).await;
            return answer;
        }
    };

    let result = dispatch(state, &params, &envelope.app_key, &envelope.method, ctx).await;
    let answer = Answer {
        format: envelope.format,
        method: envelope.method,
        result,
    };
    if answer.result.is_err() {
        audit_rejection(state, ctx, &params, &answer).await;
    }
    log_answer(ctx, &params, &answer);
    answer
}

/// App lookup (29), authentication (24/25/30/31/32/34), permissions and rate (11/7), then the
/// method's handler.
async fn dispatch(
    state: &AppState,
    params: &Params,
    app_key: &str,
    method: &str,
    ctx: &CallContext,
) -> Result<Vec<(&'static str, bool)>, TopError> {
    let invalid_app = || TopError::platform(PlatformCode::InvalidAppKey);
    let key = AppKey::parse(app_key).ok_or_else(invalid_app)?;
    let app = state
        .store
        .app(&key)
        .await
        .map_err(|e| errors::ledger_to_top(&e))?
        .ok_or_else(invalid_app)?;
    // The current secret, and the one a rotation replaced while its overlap lasts.
    let secrets: Vec<&[u8]> = app
        .secrets_at(ctx.received_at)
        .into_iter()
        .map(str::as_bytes)
        .collect();
    authenticate(params, &secrets, ctx.received_at, state.timestamp_window)?;
    access::check(&state.rate_limiter, &app, ctx)?;
    match Method::parse(method) {
        Some(Method::Verify) => verify::handle(state, params, &app, ctx).await,
        Some(Method::Refund) => refund::handle(state, params, &app, ctx).await,
        Some(Method::Issue) => issue::handle(state, params, &app, ctx).await,
        // check_envelope already refused unknown names; answering 22 keeps this total.
        None => Err(TopError::platform(PlatformCode::InvalidMethod)),
    }
}

/// The envelope format named by `format`/`simplify` in whichever part carries them (first
/// occurrence), tolerating parts that are otherwise unsound; XML when none is valid.
fn requested_format(
    query: Option<&[(String, String)]>,
    body: Option<&[(String, String)]>,
) -> Format {
    let mut wanted = Params::new();
    for (k, v) in query.into_iter().chain(body).flatten() {
        if (k == "format" || k == "simplify") && wanted.get(k).is_none() {
            wanted.insert(k.clone(), v.clone());
        }
    }
    Format::from_params(&wanted).unwrap_or(Format::Xml)
}

/// Reads the body (refusing oversized ones before reading them whole) and parses it by its
/// content type.
async fn read_body_pairs(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Vec<(String, String)>, TopError> {
    let too_large = || {
        TopError::platform(PlatformCode::ParameterError).with_sub(
            "isv.request-too-large",
            format!("请求体超过{}字节上限", state.max_body_bytes),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| too_large())?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    parse_body(content_type, &bytes).map_err(|e| e.to_top_error())
}

/// Records a refused attempt. A failure to record is logged, not answered: the caller's answer
/// does not depend on it and nothing was applied.
async fn audit_rejection(state: &AppState, ctx: &CallContext, params: &Params, answer: &Answer) {
    let Err(error) = &answer.result else { return };
    let reason = match &error.sub_code {
        Some(sub) => sub.clone(),
        None => format!("{} {}", error.code, error.msg),
    };
    let entry = AuditEntry {
        seq: 0,
        request_id: ctx.request_id.clone(),
        at: ctx.received_at,
        action: if answer.method.is_empty() {
            "top.unknown".to_owned()
        } else {
            clip(&answer.method, 128)
        },
        app_key: params.get("app_key").map(|k| clip(k, 64)),
        order_id: params.get("order_id").and_then(|v| v.parse::<i64>().ok()),
        outcome: AuditOutcome::Rejected,
        reason,
        detail: json!({
            "code": error.code,
            "msg": error.msg,
            "sub_code": error.sub_code,
            "sub_msg": error.sub_msg,
            "request": sanitized(params),
        }),
        client_ip: ctx.client_ip.clone(),
    };
    if let Err(e) = state.store.record(entry).await {
        tracing::error!(request_id = %ctx.request_id, error = %e, "could not record a rejected attempt");
    }
}

/// Cuts untrusted text to a length that is safe to store and show.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The request's parameters for the audit trail: no `sign`, confirm codes masked, values
/// clipped so a hostile request cannot bloat the trail.
pub fn sanitized(params: &Params) -> serde_json::Value {
    sanitized_with(params, mask_voucher_infos)
}

/// [`sanitized`] for a verify whose `voucher_infos` were already parsed and checked: the
/// list is written from those entries (codes masked) rather than parsed a second time.
pub fn sanitized_verify(
    params: &Params,
    entries: &[ticket_api::verify::VoucherInfo],
) -> serde_json::Value {
    sanitized_with(params, |_| {
        serde_json::Value::Array(
            entries
                .iter()
                .map(|e| {
                    let mut item = serde_json::Map::new();
                    item.insert(
                        "confirm_code".into(),
                        ticket_ledger::mask_code(&e.confirm_code).into(),
                    );
                    item.insert("used_quantity".into(), e.used_quantity.into());
                    if let Some(date) = &e.used_date {
                        item.insert("used_date".into(), date.as_str().into());
                    }
                    serde_json::Value::Object(item)
                })
                .collect(),
        )
    })
}

fn sanitized_with(
    params: &Params,
    voucher_infos: impl Fn(&str) -> serde_json::Value,
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in params.iter() {
        let value = match k {
            "sign" => continue,
            "confirm_code" | "assist_code" => serde_json::Value::from(ticket_ledger::mask_code(v)),
            "voucher_infos" => voucher_infos(v),
            _ => serde_json::Value::from(clip(v, 256)),
        };
        map.insert(clip(k, 64), value);
    }
    serde_json::Value::Object(map)
}

/// Masks the codes inside `voucher_infos`, keeping quantities and dates for the record.
fn mask_voucher_infos(text: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => serde_json::Value::Array(
            items
                .into_iter()
                .take(999)
                .map(|mut item| {
                    // Numbers too (`"confirm_code":12345678` is accepted as a code), and the
                    // issuance's `assist_code`, a second code the buyer may show.
                    for key in ["confirm_code", "assist_code"] {
                        if let Some(code) = item.get_mut(key) {
                            *code = ticket_ledger::mask_json_code(code);
                        }
                    }
                    item
                })
                .collect(),
        ),
        _ => serde_json::Value::from(format!("<{} bytes, not a JSON list>", text.len())),
    }
}

fn log_answer(ctx: &CallContext, params: &Params, answer: &Answer) {
    match &answer.result {
        Ok(_) => tracing::info!(
            request_id = %ctx.request_id,
            method = %answer.method,
            app_key = params.get("app_key").unwrap_or_default(),
            order_id = params.get("order_id").unwrap_or_default(),
            "top call answered is_success"
        ),
        Err(e) => tracing::info!(
            request_id = %ctx.request_id,
            method = %answer.method,
            app_key = params.get("app_key").unwrap_or_default(),
            order_id = params.get("order_id").unwrap_or_default(),
            code = e.code,
            sub_code = e.sub_code.as_deref().unwrap_or_default(),
            "top call refused"
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_verify_summary_from_parsed_entries_matches_the_summary_parsed_again() {
        let mut params = Params::new();
        params.insert("method", "taobao.travel.ticket.order.verify");
        params.insert("order_id", "2983749123412345");
        params.insert("sign", "0123456789ABCDEF");
        params.insert(
            "voucher_infos",
            r#"[{"used_date":"2026-11-26 10:00:00","confirm_code":"A1B2C3D4","used_quantity":2},
                {"confirm_code":"GROUP-01","used_quantity":1}]"#,
        );
        let wire = ticket_api::verify::VerifyParams::from_params(&params).unwrap();
        let from_entries = sanitized_verify(&params, &wire.voucher_infos);
        assert_eq!(from_entries, sanitized(&params));
        assert_eq!(
            from_entries["voucher_infos"][0]["confirm_code"], "****C3D4",
            "{from_entries}"
        );
        assert!(from_entries.get("sign").is_none());
    }
}
