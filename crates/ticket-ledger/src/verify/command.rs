//! The verify command: what a vendor's redemption report (or a reconciliation line) becomes
//! once its wire parameters are checked in shape.

use chrono::{DateTime, Utc};

use crate::audit::{AuditAction, RequestMeta};
use crate::ids::{AppKey, ConfirmCode, OrderId, OutOrderId};

/// How the vendor counts (`write_off_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteOffType {
    /// 0: the quantity is this redemption only (the default).
    #[default]
    Delta,
    /// 1: the quantity is the total used so far, this time included.
    Cumulative,
}

impl WriteOffType {
    /// The wire number.
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Delta => 0,
            Self::Cumulative => 1,
        }
    }

    /// The type a wire number names; `None` for any other number.
    pub fn from_wire(n: i64) -> Option<Self> {
        [Self::Delta, Self::Cumulative]
            .into_iter()
            .find(|t| t.as_i64() == n)
    }
}

/// How the request names its order (R3 guarantees at least one key at the wire layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    /// By the platform's `order_id`.
    Id(OrderId),
    /// By the vendor's `out_order_id` alone, resolved within the calling app (R5).
    Out(OutOrderId),
    /// By both; they must name the same order (R5).
    Both(OrderId, OutOrderId),
}

impl OrderRef {
    /// The platform id, when the request gave one.
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            Self::Id(id) | Self::Both(id, _) => Some(*id),
            Self::Out(_) => None,
        }
    }
}

/// One `voucher_infos` entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherUse {
    /// The code used.
    pub code: ConfirmCode,
    /// `used_quantity`: uses this time (delta) or so far (cumulative).
    pub quantity: i64,
    /// `used_date` as an instant; `None` when the vendor sent none (R22: server time is used).
    pub used_at: Option<DateTime<Utc>>,
}

/// What the request reports as used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyUses {
    /// The `voucher_infos` form (R1: it wins over legacy fields).
    Vouchers {
        /// Entries with distinct codes (R11 is checked at the wire layer).
        entries: Vec<VoucherUse>,
        /// A legacy `confirm_code` sent beside the list, which must be in it (R1).
        legacy_code: Option<ConfirmCode>,
    },
    /// The legacy form for one code: `confirm_code` + `check_num`.
    Code {
        /// The code.
        code: ConfirmCode,
        /// `check_num`.
        check_num: i64,
    },
    /// R2: the legacy form with no code: `check_num` uses drawn from the order's codes in
    /// issuance order.
    Order {
        /// `check_num`.
        check_num: i64,
    },
}

/// Settings that shape the date rules; copied from the server's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// R23: how far in the future a `used_date` may lie (clock skew between gate and server).
    pub future_tolerance: chrono::Duration,
    /// R25: whether uses before the order's `valid_from` are accepted.
    pub allow_before_valid_from: bool,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            future_tolerance: chrono::Duration::seconds(600),
            allow_before_valid_from: false,
        }
    }
}

/// Who reports the uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyOrigin {
    /// The vendor, through `taobao.travel.ticket.order.verify`.
    #[default]
    Vendor,
    /// The operator, applying a reconciliation with the vendor's own counts.
    Reconciliation,
}

impl VerifyOrigin {
    /// The audit action.
    pub fn action(self) -> &'static str {
        self.audit_action().as_str()
    }

    /// The audit action, as the enum.
    pub fn audit_action(self) -> AuditAction {
        match self {
            Self::Vendor => AuditAction::Verify,
            Self::Reconciliation => AuditAction::Reconcile,
        }
    }
}

/// A vendor's redemption report, validated in shape.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyCommand {
    /// Who reports it.
    pub origin: VerifyOrigin,
    /// The calling app (authenticated by signature).
    pub app_key: AppKey,
    /// Which order.
    pub order: OrderRef,
    /// How quantities count.
    pub mode: WriteOffType,
    /// What was used.
    pub uses: VerifyUses,
    /// Legacy `total_num`: the vendor's view of total uses allowed (R27).
    pub total_num: Option<i64>,
    /// Legacy `return_num`: the vendor's view of tickets cancelled (R27).
    pub return_num: Option<i64>,
    /// Date rule settings.
    pub policy: VerifyPolicy,
    /// Request metadata.
    pub meta: RequestMeta,
}

/// What identifies a delta report of one code so that its retry is recognised (R16): the
/// code, the gate time and the quantity, within one order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The code.
    pub code: ConfirmCode,
    /// `used_date` as UTC milliseconds.
    pub used_at_ms: i64,
    /// `used_quantity`.
    pub quantity: i64,
}

impl VerifyCommand {
    /// The fingerprints this request could replay: delta entries that carry their own gate
    /// time. The store looks these up (and only these) to fill [`crate::OrderSnapshot::seen`].
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        match (&self.uses, self.mode) {
            (VerifyUses::Vouchers { entries, .. }, WriteOffType::Delta) => entries
                .iter()
                .filter_map(|e| {
                    e.used_at.map(|t| Fingerprint {
                        code: e.code.clone(),
                        used_at_ms: t.timestamp_millis(),
                        quantity: e.quantity,
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}
