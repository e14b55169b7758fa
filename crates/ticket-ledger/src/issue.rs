//! Issuance (发码): the vendor reports the codes of a paid order (or that issuing failed),
//! `alitrip.travel.ticket.order.create`.

use serde_json::json;

use crate::audit::{AuditAction, AuditEntry, AuditOutcome, RequestMeta};
use crate::ids::{AppKey, ConfirmCode, OrderId, OutOrderId};
use crate::limits::{self, MAX_CODE_USES, MAX_VOUCHERS};
use crate::order::{IssueState, VoucherRecord};
use crate::snapshot::OrderSnapshot;
use crate::status::{status_after, StatusChange};
use crate::text::{clip_chars, MAX_KEPT_TEXT};
use crate::verify::OutcomeKind;
use crate::LedgerError;

/// One issued code of an `alitrip.travel.ticket.order.create` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedVoucher {
    /// The code.
    pub code: ConfirmCode,
    /// Uses it allows (`quantity`).
    pub capacity: i64,
    /// `type`: 1 one code per ticket, 2 one code for many.
    pub voucher_type: Option<i64>,
    /// Optional extras (`assist_code`, `url`, `pdf_url`, `img`) as received, JSON text.
    pub extras: Option<String>,
}

/// What the vendor reports about issuing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueResult {
    /// `issue_type` 1: these codes were issued.
    Issued(Vec<IssuedVoucher>),
    /// `issue_type` 2: issuing failed, with the vendor's `describe`.
    Failed {
        /// Why.
        describe: String,
    },
}

/// An issuance report.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueCommand {
    /// The calling app.
    pub app_key: AppKey,
    /// The order.
    pub order_id: OrderId,
    /// The vendor's order id (required by the method).
    pub out_order_id: OutOrderId,
    /// The result.
    pub result: IssueResult,
    /// `attribute_map` as received (JSON text).
    pub attributes: Option<String>,
    /// Request metadata.
    pub meta: RequestMeta,
}

/// What an accepted issuance report changes.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuePlan {
    /// The order's `out_order_id` to record, when it had none.
    pub set_out_order_id: Option<OutOrderId>,
    /// Codes to insert, in report order.
    pub vouchers: Vec<IssuedVoucher>,
    /// The issuance state after.
    pub state: IssueState,
    /// The failure description to store (`None` keeps what is stored).
    pub describe: Option<String>,
    /// Applied or replayed.
    pub kind: OutcomeKind,
    /// Status transition.
    pub status: StatusChange,
}

/// Decides an issuance report: the first success fills the ledger; the same report again is a
/// replay; a different one is refused; a success may follow a failure; a failure after a
/// success is refused. A code allowing more than [`MAX_CODE_USES`] uses, or more than
/// [`MAX_VOUCHERS`] codes, is refused first ([`LedgerError::CountTooLarge`]).
pub fn plan_issue(snapshot: &OrderSnapshot, cmd: &IssueCommand) -> Result<IssuePlan, LedgerError> {
    if let IssueResult::Issued(codes) = &cmd.result {
        if codes.len() > MAX_VOUCHERS {
            return Err(LedgerError::CountTooLarge {
                field: "voucher_infos".into(),
                value: i64::try_from(codes.len()).unwrap_or(i64::MAX),
                max: MAX_VOUCHERS as i64,
            });
        }
        for (i, c) in codes.iter().enumerate() {
            limits::at_most(
                || format!("voucher_infos[{i}].quantity"),
                c.capacity,
                MAX_CODE_USES,
            )?;
        }
    }
    let order = &snapshot.order;
    if order.app_key != cmd.app_key {
        return Err(LedgerError::OrderNotFound);
    }
    let set_out_order_id = match &order.out_order_id {
        Some(known) if known != &cmd.out_order_id => return Err(LedgerError::OutOrderIdMismatch),
        Some(_) => None,
        None => Some(cmd.out_order_id.clone()),
    };
    match (&cmd.result, order.issue_state) {
        (IssueResult::Issued(codes), IssueState::Issued) => {
            // The same codes with the same uses is a retry; anything else contradicts what the
            // buyer was already shown.
            let same = codes.len() == snapshot.vouchers.len()
                && codes.iter().all(|c| {
                    snapshot
                        .vouchers
                        .iter()
                        .any(|v| v.code == c.code && v.capacity == c.capacity)
                });
            if !same {
                return Err(LedgerError::IssueConflict(
                    "the order was already issued with other codes".into(),
                ));
            }
            Ok(IssuePlan {
                set_out_order_id,
                vouchers: Vec::new(),
                state: IssueState::Issued,
                describe: None,
                kind: OutcomeKind::Replayed,
                status: status_after(snapshot, |_, _, _| Ok(()))?,
            })
        }
        (IssueResult::Issued(codes), IssueState::Awaiting | IssueState::Failed) => {
            let mut seen = std::collections::HashSet::new();
            for c in codes {
                if c.capacity < 1 || !seen.insert(c.code.as_str()) {
                    return Err(LedgerError::IssueConflict(format!(
                        "voucher {} is listed twice or allows no use",
                        c.code.masked()
                    )));
                }
            }
            let status = status_after(snapshot, |o, v, _| {
                o.issue_state = IssueState::Issued;
                v.extend(codes.iter().map(|c| VoucherRecord {
                    code: c.code.clone(),
                    capacity: c.capacity,
                    used: 0,
                }));
                Ok(())
            })?;
            Ok(IssuePlan {
                set_out_order_id,
                vouchers: codes.clone(),
                state: IssueState::Issued,
                describe: None,
                kind: OutcomeKind::Applied,
                status,
            })
        }
        (IssueResult::Failed { .. }, IssueState::Issued) => Err(LedgerError::IssueConflict(
            "the order was already issued; a failure cannot follow".into(),
        )),
        (IssueResult::Failed { describe }, state) => {
            let replay =
                state == IssueState::Failed && order.issue_describe.as_deref() == Some(describe);
            Ok(IssuePlan {
                set_out_order_id,
                vouchers: Vec::new(),
                state: IssueState::Failed,
                describe: Some(describe.clone()),
                kind: if replay {
                    OutcomeKind::Replayed
                } else {
                    OutcomeKind::Applied
                },
                status: status_after(snapshot, |o, _, _| {
                    o.issue_state = IssueState::Failed;
                    Ok(())
                })?,
            })
        }
    }
}

impl IssuePlan {
    /// The audit entries recording this plan.
    pub fn audit_entries(&self, snapshot: &OrderSnapshot, cmd: &IssueCommand) -> Vec<AuditEntry> {
        let (outcome, reason) = match self.kind {
            OutcomeKind::Applied => (
                AuditOutcome::Accepted,
                match self.state {
                    IssueState::Failed => "issue_failed",
                    _ => "issued",
                },
            ),
            OutcomeKind::Replayed | OutcomeKind::NoChange => (AuditOutcome::Replayed, "replayed"),
        };
        let detail = json!({
            "vouchers": self.vouchers.iter().map(|v| json!({
                "confirm_code": v.code.masked(), "capacity": v.capacity,
                "type": v.voucher_type})).collect::<Vec<_>>(),
            "describe": self.describe.as_deref().map(|d| clip_chars(d, MAX_KEPT_TEXT)),
            "request": cmd.meta.summary.value(),
        });
        let entry =
            cmd.meta
                .audit_entry(AuditAction::Issue, &snapshot.order, outcome, reason, detail);
        cmd.meta.with_status(entry, &self.status, &snapshot.order)
    }
}
