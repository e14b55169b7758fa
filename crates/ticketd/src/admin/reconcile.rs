//! Reconciliation: the vendor's own counts applied as cumulative reports.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use ticket_ledger::{
    reconcile_diff, ConfirmCode, LedgerError, OrderRef, ReconcileLine, VerifyCommand, VerifyOrigin,
    VerifyUses, VoucherUse, WriteOffType,
};

use crate::server::AppState;

use super::{admin_meta, parse_json, path_order, AdminError};

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
/// missing uses as a cumulative report would (never decreasing a count).
async fn reconcile(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: Reconcile = parse_json(&body)?;
    let order_id = path_order(&order_id)?;
    let vendor = req
        .vouchers
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let code = ConfirmCode::parse(&v.confirm_code).ok_or_else(|| {
                AdminError::field(&format!("vouchers[{i}].confirm_code"), "unknown code")
            })?;
            Ok((code, v.used))
        })
        .collect::<Result<Vec<_>, AdminError>>()?;
    let view = state
        .store
        .order(order_id)
        .await?
        .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order"))?;
    let lines = reconcile_diff(&view.vouchers, &vendor).map_err(|e| match e {
        LedgerError::VoucherNotFound { code } => AdminError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_code",
            format!("voucher {} is not a code of this order", code.as_str()),
        ),
        other => AdminError::from(other),
    })?;
    let missing: Vec<_> = lines.iter().filter(|l| l.missing() > 0).collect();
    let mut applied = 0;
    if req.apply {
        // Refuse the whole reconciliation before recording anything if a count is impossible.
        for line in &missing {
            let capacity = view
                .vouchers
                .iter()
                .find(|v| v.code == line.code)
                .map_or(0, |v| v.capacity);
            if line.vendor_used > capacity {
                return Err(AdminError::new(
                    StatusCode::CONFLICT,
                    "refused",
                    format!(
                        "voucher {} allows {capacity} uses; the vendor reports {}",
                        line.code.as_str(),
                        line.vendor_used
                    ),
                ));
            }
        }
        // One cumulative report per code, so each healed code is its own event.
        for line in missing {
            let outcome = state
                .store
                .verify(VerifyCommand {
                    origin: VerifyOrigin::Reconciliation,
                    app_key: view.order.app_key.clone(),
                    order: OrderRef::Id(order_id),
                    mode: WriteOffType::Cumulative,
                    uses: VerifyUses::Vouchers {
                        entries: vec![VoucherUse {
                            code: line.code.clone(),
                            quantity: line.vendor_used,
                            used_at: None,
                        }],
                        legacy_code: None,
                    },
                    total_num: None,
                    return_num: None,
                    // The vendor's counts are facts already admitted at the gate.
                    policy: ticket_ledger::VerifyPolicy {
                        allow_before_valid_from: true,
                        ..state.verify_policy
                    },
                    meta: admin_meta(
                        &state,
                        json!({"confirm_code": line.code.masked(), "used": line.vendor_used}),
                    ),
                })
                .await?;
            applied += outcome.applied_uses;
        }
    }
    Ok(Json(ReconcileAnswer {
        applied_uses: applied,
        apply: req.apply,
        lines: lines.iter().map(ReconcileLineAnswer::from).collect(),
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
