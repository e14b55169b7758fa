//! The TOP gateway at `/router/rest`: parse → authenticate → dispatch → render.
//!
//! Every answer is HTTP 200 with a TOP envelope (docs/PROTOCOL.md §5.3: SDKs break on any other
//! status), including refusals and internal faults. Checks run in the order docs/PROTOCOL.md §5.1
//! fixes, so a request with several faults always gets the same code. Every attempt leaves a
//! record: accepted and replayed ones an audit entry the store writes in the transaction that
//! applies them; refusals of an authenticated caller an audit entry written by
//! `record_refusal` here; refusals met before the caller was authenticated (a bad signature,
//! an unknown app key, a malformed request) a clipped row in the pruned record of rejected
//! calls, never the permanent trail, which anyone could otherwise fill in anyone's name.

pub mod access;
pub mod errors;
pub mod issue;
pub mod refund;
pub mod summary;
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
use ticket_ledger::text::clip_bytes;
use ticket_ledger::{
    App, AppKey, AuditEntry, AuditOutcome, ConfirmCode, OrderId, OutOrderId, OutcomeKind,
    RejectedCall, RequestMeta,
};
use top_protocol::check::{check_envelope, check_freshness, check_signature};
use top_protocol::envelope::{new_request_id, render_error, render_success};
use top_protocol::params::{merge, parse_body, parse_urlencoded};
use top_protocol::{Field, Format, Params, PlatformCode, TopError};

use crate::server::AppState;
use crate::traffic::CallOutcome;

/// Routes of the gateway. A trailing `/` is tolerated (docs/PROTOCOL.md §1.1).
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
        self.meta_with_summary(summary::of_params(params, summary::Entries::All))
    }

    /// [`CallContext::meta`] with the summary already built ([`summary::of_verify`]).
    pub fn meta_with_summary(&self, summary: serde_json::Value) -> RequestMeta {
        RequestMeta {
            request_id: self.request_id.clone(),
            received_at: self.received_at,
            client_ip: self.client_ip.clone(),
            summary: summary.into(),
        }
    }
}

/// An accepted call's answer fields, and whether the ledger knew it already (a retry), which
/// the answer does not say (R30) but the console's chart does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The fields of the success envelope.
    pub fields: Vec<(&'static str, bool)>,
    /// Whether every entry had been recorded before.
    pub replayed: bool,
}

/// What the ledger answered an accepted call with says whether it was a replay.
pub trait Replay {
    /// Whether the call changed nothing because it had been recorded before.
    fn replayed(&self) -> bool;
}

impl Replay for OutcomeKind {
    fn replayed(&self) -> bool {
        *self == OutcomeKind::Replayed
    }
}

impl Replay for ticket_ledger::VerifyOutcome {
    fn replayed(&self) -> bool {
        self.kind.replayed()
    }
}

impl<T> Replay for (T, OutcomeKind) {
    fn replayed(&self) -> bool {
        self.1.replayed()
    }
}

/// The answer to an accepted call: `is_success` true, replays included (R30).
pub fn is_success<T: Replay>(
    result: Result<T, ticket_ledger::LedgerError>,
) -> Result<Accepted, TopError> {
    result
        .map(|outcome| Accepted {
            fields: vec![("is_success", true)],
            replayed: outcome.replayed(),
        })
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
    result: Result<Accepted, TopError>,
    /// Whether the caller had shown the app's secret when the answer was decided: where a
    /// refusal is kept depends on it (module doc).
    authenticated: bool,
}

impl Answer {
    /// A refusal decided before the caller was authenticated.
    fn anonymous(format: Format, method: String, error: TopError) -> Self {
        Self {
            format,
            method,
            result: Err(error),
            authenticated: false,
        }
    }
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
            let answer = Answer::anonymous(
                requested_format(parse_urlencoded(query.as_bytes()).ok().as_deref(), None),
                String::new(),
                timed_out.to_top_error(),
            );
            tracing::info!("request body not received in time");
            record_refusal(&state, &ctx, &Params::new(), &answer).await;
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
    state.metrics.observe_call(
        Method::parse(&answer.method),
        code,
        sub_code,
        started.elapsed(),
    );
    let outcome = match &answer.result {
        Ok(accepted) if accepted.replayed => CallOutcome::Replayed,
        Ok(_) => CallOutcome::Accepted,
        Err(_) => CallOutcome::Refused,
    };
    state
        .metrics
        .traffic()
        .observe(ctx.received_at, outcome, code);
    let body = match &answer.result {
        Ok(accepted) => {
            let fields: Vec<(&str, Field<'_>)> = accepted
                .fields
                .iter()
                .map(|(k, v)| (*k, Field::Bool(*v)))
                .collect();
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
            let answer = Answer::anonymous(fallback_format, String::new(), error);
            record_refusal(state, ctx, &Params::new(), &answer).await;
            return answer;
        }
    };

    let envelope = match check_envelope(parts.method.as_str(), &params, |m| {
        Method::parse(m).is_some()
    }) {
        Ok(env) => env,
        Err(rejection) => {
            // Not a method of ours (or none): only what the rejected-call record keeps of it.
            let method = params.get("method").unwrap_or_default();
            let method = clip_bytes(method, RejectedCall::MAX_METHOD).to_owned();
            let answer = Answer::anonymous(rejection.format, method, rejection.error);
            record_refusal(state, ctx, &params, &answer).await;
            return answer;
        }
    };

    let answer = match identify(state, &params, &envelope.app_key, ctx).await {
        Ok(app) => Answer {
            result: dispatch(state, &params, &app, &envelope.method, ctx).await,
            format: envelope.format,
            method: envelope.method,
            authenticated: true,
        },
        Err(error) => Answer::anonymous(envelope.format, envelope.method, error),
    };
    if answer.result.is_err() {
        record_refusal(state, ctx, &params, &answer).await;
    }
    log_answer(ctx, &params, &answer);
    answer
}

/// App lookup (29) and the signature (24/25): until both pass, the caller is anyone.
async fn identify(
    state: &AppState,
    params: &Params,
    app_key: &str,
    ctx: &CallContext,
) -> Result<App, TopError> {
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
    check_signature(params, &secrets)?;
    Ok(app)
}

/// For a caller who showed the app's secret: freshness (30/31/32/34), permissions and rate
/// (11/7), then the method's handler.
async fn dispatch(
    state: &AppState,
    params: &Params,
    app: &App,
    method: &str,
    ctx: &CallContext,
) -> Result<Accepted, TopError> {
    check_freshness(params, ctx.received_at, state.timestamp_window)?;
    access::check(&state.rate_limiter, app, ctx)?;
    match Method::parse(method) {
        Some(Method::Verify) => verify::handle(state, params, app, ctx).await,
        Some(Method::Refund) => refund::handle(state, params, app, ctx).await,
        Some(Method::Issue) => issue::handle(state, params, app, ctx).await,
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
            top_protocol::error::sub_code::REQUEST_TOO_LARGE,
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

/// Keeps a refusal where it belongs (module doc). A failure to keep it is logged, not
/// answered: the caller's answer does not depend on it and nothing was applied.
async fn record_refusal(state: &AppState, ctx: &CallContext, params: &Params, answer: &Answer) {
    let Err(error) = &answer.result else { return };
    let kept = if answer.authenticated {
        state
            .store
            .record(refusal_entry(ctx, params, answer, error))
            .await
    } else {
        let call = RejectedCall::new(
            &ctx.request_id,
            ctx.received_at,
            ctx.client_ip.as_deref(),
            params.get("app_key"),
            Some(answer.method.as_str())
                .filter(|m| !m.is_empty())
                .or(params.get("method")),
            i64::from(error.code),
            error.sub_code.as_deref(),
        );
        state
            .store
            .record_rejected_call(call, state.rejected_calls_keep)
            .await
    };
    if let Err(e) = kept {
        tracing::error!(request_id = %ctx.request_id, error = %e, "could not record a refused call");
    }
}

/// The audit entry of an authenticated caller's refused call: known fields only, every text
/// clipped ([`summary`]), at most [`summary::REFUSED_ENTRIES`] of its vouchers.
fn refusal_entry(
    ctx: &CallContext,
    params: &Params,
    answer: &Answer,
    error: &TopError,
) -> AuditEntry {
    let clip = |s: &str| ticket_ledger::text::clip_chars(s, summary::MAX_TEXT);
    let reason = match &error.sub_code {
        Some(sub) => clip(sub),
        None => format!("{} {}", error.code, clip(&error.msg)),
    };
    AuditEntry {
        seq: 0,
        request_id: ctx.request_id.clone(),
        at: ctx.received_at,
        // check_envelope accepted the name, so it is one of ours.
        action: clip(&answer.method),
        app_key: params.get("app_key").map(clip),
        order_id: params.get("order_id").and_then(|v| v.parse::<i64>().ok()),
        outcome: AuditOutcome::Rejected,
        reason,
        detail: json!({
            "code": error.code,
            "msg": clip(&error.msg),
            "sub_code": error.sub_code.as_deref().map(clip),
            "sub_msg": error.sub_msg.as_deref().map(clip),
            "request": summary::of_params(params, summary::Entries::Refused),
        }),
        client_ip: ctx.client_ip.clone(),
    }
}

/// Logs the answer. The caller's `app_key` and `order_id` may be anything (this runs for
/// anonymous refusals too), so they are cut to what a real one can be: log lines are kept and
/// shipped like any other record.
fn log_answer(ctx: &CallContext, params: &Params, answer: &Answer) {
    let field = |name: &str| clip_bytes(params.get(name).unwrap_or_default(), 64);
    match &answer.result {
        Ok(_) => tracing::info!(
            request_id = %ctx.request_id,
            method = %answer.method,
            app_key = field("app_key"),
            order_id = field("order_id"),
            "top call answered is_success"
        ),
        Err(e) => tracing::info!(
            request_id = %ctx.request_id,
            method = %answer.method,
            app_key = field("app_key"),
            order_id = field("order_id"),
            code = e.code,
            sub_code = e.sub_code.as_deref().unwrap_or_default(),
            "top call refused"
        ),
    }
}
