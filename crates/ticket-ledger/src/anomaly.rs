//! Anomalies: facts that could not be applied as reported, or were applied but matter to money
//! or trust, kept for an operator to settle ([`plan_resolution`]).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::audit::{AuditAction, AuditEntry, AuditOutcome, RequestMeta};
use crate::ids::{AppKey, OrderId};
use crate::verify::Flag;
use crate::LedgerError;

/// A fact that could not be applied as reported, or was applied but matters to money or trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    /// A verify of a refunded ticket (or one that needed uses held by refunded tickets).
    VerifyAfterRefund,
    /// A verify used tickets a pending refund had reserved (R9).
    VerifyDuringRefund,
    /// A cumulative count went backwards (R18).
    CountRegressed,
    /// A use dated after the tickets expired (R26).
    LateRedemption,
    /// Legacy `total_num` disagrees with the ledger (R27).
    TotalNumMismatch,
    /// Legacy `return_num` disagrees with the ledger (R27).
    ReturnNumMismatch,
    /// A refund notification for which no refund was requested.
    RefundNotRequested,
    /// A refund notification for more tickets than remain unused.
    RefundExceedsUnused,
    /// A write whose `COMMIT` got no answer (the database connection failed) and whose outcome
    /// the store could not find out in time: its caller was told the outcome is unknown. The
    /// detail's `landed` says what the store found once the database answered again.
    CommitOutcomeUnknown,
    /// A write that must change exactly one row changed none
    /// ([`LedgerError::WriteChangedNoRow`]): the database disagreed with what the ledger read,
    /// so the request was refused and nothing applied. Someone or something changed the
    /// database behind the ledger's back; find out what before resolving.
    WriteChangedNoRow,
}

impl AnomalyKind {
    /// Every kind.
    pub const ALL: &'static [AnomalyKind] = &[
        Self::VerifyAfterRefund,
        Self::VerifyDuringRefund,
        Self::CountRegressed,
        Self::LateRedemption,
        Self::TotalNumMismatch,
        Self::ReturnNumMismatch,
        Self::RefundNotRequested,
        Self::RefundExceedsUnused,
        Self::CommitOutcomeUnknown,
        Self::WriteChangedNoRow,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyAfterRefund => "verify_after_refund",
            Self::VerifyDuringRefund => "verify_during_refund",
            Self::CountRegressed => "count_regressed",
            Self::LateRedemption => "late_redemption",
            Self::TotalNumMismatch => "total_num_mismatch",
            Self::ReturnNumMismatch => "return_num_mismatch",
            Self::RefundNotRequested => "refund_not_requested",
            Self::RefundExceedsUnused => "refund_exceeds_unused",
            Self::CommitOutcomeUnknown => "commit_outcome_unknown",
            Self::WriteChangedNoRow => "write_changed_no_row",
        }
    }

    /// Parses the name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// How an operator settled an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The fact stands as recorded (e.g. the late use is charged).
    Accepted,
    /// The use was reversed (with `POST /admin/orders/{id}/reversals`).
    Reversed,
    /// The refund was adjusted.
    RefundAdjusted,
    /// Not an issue.
    Dismissed,
}

impl Resolution {
    /// Every resolution.
    pub const ALL: &'static [Resolution] = &[
        Self::Accepted,
        Self::Reversed,
        Self::RefundAdjusted,
        Self::Dismissed,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Reversed => "reversed",
            Self::RefundAdjusted => "refund_adjusted",
            Self::Dismissed => "dismissed",
        }
    }

    /// Parses the name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// An anomaly to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnomaly {
    /// What kind.
    pub kind: AnomalyKind,
    /// The order it concerns.
    pub order_id: Option<i64>,
    /// The app that reported it.
    pub app_key: Option<String>,
    /// The request that revealed it.
    pub request_id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// What was found (counts, codes masked).
    pub detail: Value,
    /// The raw request (sanitized: no signature, codes masked).
    pub request: Value,
}

/// A stored anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// Store id.
    pub id: i64,
    /// What was stored.
    pub anomaly: NewAnomaly,
    /// `None` while open.
    pub resolution: Option<Resolution>,
    /// The operator's note.
    pub note: Option<String>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Which anomalies to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnomalyFilter {
    /// Only open (`Some(true)`) or only resolved (`Some(false)`).
    pub open: Option<bool>,
    /// Only this order's.
    pub order_id: Option<i64>,
    /// Only this kind.
    pub kind: Option<AnomalyKind>,
    /// Only anomalies with an id below this (paging: the list is newest first, so the next
    /// page starts below the last id seen).
    pub before_id: Option<i64>,
    /// At most this many (capped at 1000; default 100).
    pub limit: Option<u32>,
}

/// The operator settles an anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolveAnomaly {
    /// Which.
    pub id: i64,
    /// How.
    pub resolution: Resolution,
    /// Why.
    pub note: String,
    /// When and by which request.
    pub meta: RequestMeta,
}

/// The anomalies an accepted verify raises from its flags.
pub fn flag_anomalies(
    flags: &[Flag],
    order_id: OrderId,
    app_key: &AppKey,
    meta: &RequestMeta,
) -> Vec<NewAnomaly> {
    flags
        .iter()
        .filter_map(|f| {
            let kind = match f {
                Flag::CountRegressed { .. } | Flag::OrderCountRegressed { .. } => {
                    AnomalyKind::CountRegressed
                }
                Flag::LateRedemption { .. } => AnomalyKind::LateRedemption,
                Flag::TotalNumMismatch { .. } => AnomalyKind::TotalNumMismatch,
                Flag::ReturnNumMismatch { .. } => AnomalyKind::ReturnNumMismatch,
                Flag::VerifyDuringRefund { .. } => AnomalyKind::VerifyDuringRefund,
                Flag::ServerTimeUsed { .. } => return None,
            };
            Some(NewAnomaly {
                kind,
                order_id: Some(order_id.get()),
                app_key: Some(app_key.as_str().to_owned()),
                request_id: meta.request_id.clone(),
                at: meta.received_at,
                detail: f.to_json(),
                request: meta.summary.value().clone(),
            })
        })
        .collect()
}

/// The anomaly a refusal raises, if it is one that matters to money or trust: the refused
/// request changes nothing, but the fact it reports must reach the operator. `app_key` is the
/// calling app's, when a vendor called (operator requests name none).
pub fn refusal_anomaly(
    err: &LedgerError,
    order_id: Option<OrderId>,
    app_key: Option<&AppKey>,
    meta: &RequestMeta,
) -> Option<NewAnomaly> {
    let (kind, detail) = match err {
        LedgerError::WriteChangedNoRow { write } => (
            AnomalyKind::WriteChangedNoRow,
            json!({"write": write,
                   "reason": "a write that must change one row changed none; nothing was applied"}),
        ),
        LedgerError::RefundedUsesExceeded {
            requested,
            remaining,
            refund_pending,
        } => (
            AnomalyKind::VerifyAfterRefund,
            json!({"requested": requested, "remaining": remaining,
                   "refund_pending": refund_pending}),
        ),
        LedgerError::OrderRefunded => (
            AnomalyKind::VerifyAfterRefund,
            json!({"reason": "every ticket of the order is refunded"}),
        ),
        LedgerError::RefundNotRequested => (
            AnomalyKind::RefundNotRequested,
            json!({"reason": "no matching refund request"}),
        ),
        LedgerError::RefundExceedsUnused {
            requested,
            refundable,
        } if meta.summary.get("refund_status").is_some() => (
            AnomalyKind::RefundExceedsUnused,
            json!({"requested": requested, "refundable": refundable}),
        ),
        _ => return None,
    };
    Some(NewAnomaly {
        kind,
        order_id: order_id.map(OrderId::get),
        app_key: app_key.map(|k| k.as_str().to_owned()),
        request_id: meta.request_id.clone(),
        at: meta.received_at,
        detail,
        request: meta.summary.value().clone(),
    })
}

/// What settling an anomaly records.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolutionPlan {
    /// The anomaly as it stands once resolved: `cmd`'s resolution and note, at its time.
    pub resolved: Anomaly,
    /// The entry recording the resolution, under the anomaly's order and app, so the order's
    /// history shows how its anomaly was settled.
    pub audit: AuditEntry,
}

/// Decides an operator's resolution of `current`: an anomaly is settled once, so one already
/// resolved is refused ([`LedgerError::AnomalyResolved`]) and keeps its first resolution.
pub fn plan_resolution(
    current: &Anomaly,
    cmd: &ResolveAnomaly,
) -> Result<ResolutionPlan, LedgerError> {
    if current.resolution.is_some() {
        return Err(LedgerError::AnomalyResolved);
    }
    let audit = AuditEntry {
        seq: 0,
        request_id: cmd.meta.request_id.clone(),
        at: cmd.meta.received_at,
        action: AuditAction::ResolveAnomaly.as_str().to_owned(),
        app_key: current.anomaly.app_key.clone(),
        order_id: current.anomaly.order_id,
        outcome: AuditOutcome::Accepted,
        reason: cmd.resolution.as_str().to_owned(),
        detail: cmd.meta.with_origin(json!({"anomaly_id": cmd.id,
            "kind": current.anomaly.kind.as_str(), "note": cmd.note})),
        client_ip: cmd.meta.client_ip.clone(),
    };
    Ok(ResolutionPlan {
        resolved: Anomaly {
            resolution: Some(cmd.resolution),
            note: Some(cmd.note.clone()),
            resolved_at: Some(cmd.meta.received_at),
            ..current.clone()
        },
        audit,
    })
}
