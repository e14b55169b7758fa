//! Reversal (撤销核销): the operator gives back uses recorded by mistake, within a window.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::{AuditAction, AuditEntry, AuditOutcome, RequestMeta};
use crate::ids::{ConfirmCode, OrderId};
use crate::limits::{self, sub, sum, MAX_CODE_USES};
use crate::snapshot::OrderSnapshot;
use crate::status::{status_after, StatusChange};
use crate::LedgerError;

/// One applied use, as recorded by a verify: what a reversal can take back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseRecord {
    /// Store id.
    pub id: i64,
    /// The code.
    pub code: ConfirmCode,
    /// Uses recorded.
    pub quantity: i64,
    /// Uses already reversed.
    pub reversed: i64,
    /// When the ledger recorded it (the reversal window counts from here).
    pub recorded_at: DateTime<Utc>,
}

/// The operator gives uses back (撤销核销).
#[derive(Debug, Clone, PartialEq)]
pub struct ReversalCommand {
    /// The order.
    pub order_id: OrderId,
    /// The code.
    pub code: ConfirmCode,
    /// Uses to give back.
    pub quantity: i64,
    /// Why (kept in the event).
    pub reason: String,
    /// How long after a use it may be reversed.
    pub window: chrono::Duration,
    /// Request metadata.
    pub meta: RequestMeta,
}

/// What an accepted reversal changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReversalPlan {
    /// The code.
    pub code: ConfirmCode,
    /// Uses given back.
    pub quantity: i64,
    /// Per use record: (id, how many of its uses are reversed now), newest first.
    pub takes: Vec<(i64, i64)>,
    /// The code's count after.
    pub used_after: i64,
    /// Status transition.
    pub status: StatusChange,
}

/// Decides a reversal: only uses recorded within the window can be given back, newest first,
/// a count never goes below zero, and never more than [`MAX_CODE_USES`] at once
/// ([`LedgerError::CountTooLarge`]).
pub fn plan_reversal(
    snapshot: &OrderSnapshot,
    uses: &[UseRecord],
    cmd: &ReversalCommand,
) -> Result<ReversalPlan, LedgerError> {
    const WHAT: &str = "reversible uses";
    limits::at_most(|| "quantity".into(), cmd.quantity, MAX_CODE_USES)?;
    let index = snapshot
        .vouchers
        .iter()
        .position(|v| v.code == cmd.code)
        .ok_or_else(|| LedgerError::VoucherNotFound {
            code: cmd.code.clone(),
        })?;
    let since = cmd.meta.received_at - cmd.window;
    let mut candidates: Vec<&UseRecord> = uses
        .iter()
        .filter(|u| u.code == cmd.code && u.recorded_at >= since && u.quantity > u.reversed)
        .collect();
    candidates.sort_by(|a, b| b.recorded_at.cmp(&a.recorded_at).then(b.id.cmp(&a.id)));
    let reversible = sum(
        candidates
            .iter()
            .map(|u| sub(u.quantity, u.reversed, WHAT))
            .collect::<Result<Vec<_>, _>>()?,
        WHAT,
    )?
    .min(snapshot.vouchers[index].used);
    if cmd.quantity < 1 || cmd.quantity > reversible {
        return Err(LedgerError::ReversalNotAllowed {
            requested: cmd.quantity,
            reversible,
        });
    }
    let mut left = cmd.quantity;
    let mut takes = Vec::new();
    for u in candidates {
        if left == 0 {
            break;
        }
        // Both were subtracted without overflow when `reversible` was summed.
        let take = left.min(u.quantity - u.reversed);
        takes.push((u.id, take));
        left -= take;
    }
    let used_after = sub(snapshot.vouchers[index].used, cmd.quantity, WHAT)?;
    let status = status_after(snapshot, |_, v, _| {
        v[index].used = used_after;
        Ok(())
    })?;
    Ok(ReversalPlan {
        code: cmd.code.clone(),
        quantity: cmd.quantity,
        takes,
        used_after,
        status,
    })
}

impl ReversalPlan {
    /// The audit entries recording this plan (the original verifies stay in the history).
    pub fn audit_entries(
        &self,
        snapshot: &OrderSnapshot,
        cmd: &ReversalCommand,
    ) -> Vec<AuditEntry> {
        let detail = json!({"confirm_code": self.code.masked(), "quantity": self.quantity,
                            "used": self.used_after, "reason": cmd.reason});
        let entry = cmd.meta.audit_entry(
            AuditAction::Reverse,
            &snapshot.order,
            AuditOutcome::Accepted,
            "reversed",
            detail,
        );
        cmd.meta.with_status(entry, &self.status, &snapshot.order)
    }
}
