//! Reconciliation: the vendor's own counts applied as cumulative reports.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use ticket_ledger::{ConfirmCode, LedgerError, ReconcileCommand, ReconcileLine};
use top_protocol::envelope::new_request_id;

use crate::gateway::summary::REFUSED_ENTRIES;
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
/// missing uses as cumulative reports would (never decreasing a count), all of them or none:
/// the ledger plans and applies the whole reconciliation in one store call.
async fn reconcile(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: Reconcile = parse_json(&body)?;
    let order_id = path_order(&order_id)?;
    let counts = req
        .vouchers
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let code = ConfirmCode::parse(&v.confirm_code).ok_or_else(|| {
                AdminError::field(&format!("vouchers[{i}].confirm_code"), "unknown code")
            })?;
            // Each healed code is its own event under its own request id.
            Ok(ticket_ledger::VendorCount {
                code,
                used: v.used,
                request_id: new_request_id(),
            })
        })
        .collect::<Result<Vec<_>, AdminError>>()?;
    let summary = summary(&counts, req.apply);
    let outcome = state
        .store
        .reconcile(ReconcileCommand {
            order_id,
            counts,
            apply: req.apply,
            policy: state.verify_policy,
            meta: admin_meta(&state, summary),
        })
        .await
        .map_err(refusal)?;
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

/// A refused reconciliation as the operator is answered: the codes named whole (the operator
/// owns them), and a missing order as every admin route answers it.
fn refusal(e: LedgerError) -> AdminError {
    match e {
        LedgerError::OrderNotFound => {
            AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order")
        }
        LedgerError::VoucherNotFound { code } => AdminError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_code",
            format!("voucher {} is not a code of this order", code.as_str()),
        ),
        LedgerError::VendorCountExceedsCapacity {
            code,
            capacity,
            reported,
        } => AdminError::new(
            StatusCode::CONFLICT,
            "refused",
            format!(
                "voucher {} allows {capacity} uses; the vendor reports {reported}",
                code.as_str()
            ),
        ),
        other => AdminError::from(other),
    }
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

/// What the operator sent, as a refusal's anomaly keeps it: the first entries and how many
/// there were, as for a refused TOP call, so a list as long as the body allows is not kept
/// whole.
fn summary(counts: &[ticket_ledger::VendorCount], apply: bool) -> serde_json::Value {
    json!({
        "vouchers": counts.iter().take(REFUSED_ENTRIES).map(|c| json!({
            "confirm_code": c.code.masked(), "used": c.used})).collect::<Vec<_>>(),
        "vouchers_total": counts.len(),
        "apply": apply,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_keeps_the_first_entries_and_the_total() {
        let code = ConfirmCode::parse("REC-0123456789").expect("a valid code");
        let counts: Vec<_> = (0..5_000)
            .map(|i| ticket_ledger::VendorCount {
                code: code.clone(),
                used: i,
                request_id: format!("r{i}"),
            })
            .collect();
        let kept = summary(&counts, true);
        assert_eq!(kept["vouchers_total"], 5_000);
        assert_eq!(
            kept["vouchers"].as_array().map(Vec::len),
            Some(REFUSED_ENTRIES)
        );
        assert_eq!(kept["vouchers"][0]["confirm_code"], code.masked());
        assert!(kept.to_string().len() < 2_048, "{kept}");
    }
}
