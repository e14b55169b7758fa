//! Reconciliation: the vendor's own counts applied as cumulative reports.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ticket_ledger::ReconcileLine;

use crate::server::AppState;

use super::actions::{self, Origin};
use super::{parse_json, path_order, AdminError};

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/admin/orders/{order_id}/reconcile", post(reconcile))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reconcile {
    vouchers: Vec<VendorCount>,
    #[serde(default)]
    apply: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VendorCount {
    confirm_code: String,
    used: i64,
}

/// Compares the vendor's per-code counts with the ledger and, with `apply`, records the
/// missing uses ([`actions::reconcile`]).
async fn reconcile(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: Reconcile = parse_json(&body)?;
    let order_id = path_order(&order_id)?;
    let vendor: Vec<(String, i64)> = req
        .vouchers
        .into_iter()
        .map(|v| (v.confirm_code, v.used))
        .collect();
    let outcome =
        actions::reconcile(&state, Origin::AdminApi, order_id, &vendor, req.apply).await?;
    Ok(Json(ReconcileAnswer {
        applied_uses: outcome.applied_uses(),
        apply: req.apply,
        lines: outcome
            .lines
            .iter()
            .map(ReconcileLineAnswer::from)
            .collect(),
        order_id: order_id.get(),
    })
    .into_response())
}

/// The answer of `POST /admin/orders/{id}/reconcile`. Fields in alphabetical order, as the
/// answer has always had them on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileAnswer {
    /// Uses recorded by this call: `0` unless `apply`.
    pub applied_uses: i64,
    /// Whether the missing uses were recorded (`true`) or only compared (`false`).
    pub apply: bool,
    /// One line per code of the order, in issuance order; a code the vendor did not list
    /// counts as 0 uses on its side.
    pub lines: Vec<ReconcileLineAnswer>,
    /// The order.
    pub order_id: i64,
}

/// One code's counts, the ledger's beside the vendor's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileLineAnswer {
    /// The code, whole.
    pub confirm_code: String,
    /// Uses the ledger has and the vendor does not (`ledger_used - vendor_used`, at least 0):
    /// never taken away, look at them.
    pub excess: i64,
    /// Uses the ledger had recorded before this call.
    pub ledger_used: i64,
    /// Uses the vendor has and the ledger did not (`vendor_used - ledger_used`, at least 0):
    /// what `apply` records.
    pub missing: i64,
    /// Uses the vendor reported.
    pub vendor_used: i64,
}

impl From<&ReconcileLine> for ReconcileLineAnswer {
    fn from(l: &ReconcileLine) -> Self {
        Self {
            confirm_code: l.code.as_str().to_owned(),
            excess: l.excess(),
            ledger_used: l.ledger_used,
            missing: l.missing(),
            vendor_used: l.vendor_used,
        }
    }
}
