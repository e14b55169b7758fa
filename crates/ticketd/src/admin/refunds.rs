//! Refund requests and reversals of uses (撤销核销): an operator's changes to an order's counts.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::server::AppState;

use super::actions::{self, Origin, Reversal};
use super::{parse_json, path_order, AdminError, RefundAnswer};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/orders/{order_id}/refunds", post(request_refund))
        .route("/admin/orders/{order_id}/reversals", post(reverse))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRefund {
    quantity: i64,
}

async fn request_refund(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: CreateRefund = parse_json(&body)?;
    let order_id = path_order(&order_id)?;
    let refund = actions::request_refund(&state, Origin::AdminApi, order_id, req.quantity).await?;
    Ok((StatusCode::CREATED, Json(RefundAnswer::from(&refund))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReversal {
    confirm_code: String,
    quantity: i64,
    reason: String,
}

async fn reverse(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: CreateReversal = parse_json(&body)?;
    let order_id = path_order(&order_id)?;
    let reversal = Reversal::parse(&req.confirm_code, req.quantity, &req.reason)?;
    let used = actions::reverse(&state, Origin::AdminApi, order_id, &reversal).await?;
    Ok((
        StatusCode::CREATED,
        Json(ReversalAnswer {
            confirm_code: reversal.code.as_str().to_owned(),
            order_id: order_id.get(),
            reason: reversal.reason,
            reversed: reversal.quantity,
            used,
        }),
    )
        .into_response())
}

/// The 201 of `POST /admin/orders/{id}/reversals`. Fields in alphabetical order, as the
/// answer has always had them on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReversalAnswer {
    /// The code the uses were given back to, whole.
    pub confirm_code: String,
    /// The order.
    pub order_id: i64,
    /// The operator's reason, as given.
    pub reason: String,
    /// Uses given back.
    pub reversed: i64,
    /// Uses the code has recorded after the reversal.
    pub used: i64,
}
