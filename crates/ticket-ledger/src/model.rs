//! Orders, vouchers, apps and audit records: the facts the ledger keeps.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;

use crate::ids::{AppKey, ConfirmCode, OrderId, OutOrderId};
use crate::limits::{self, MAX_CODE_USES, MAX_TICKETS, MAX_VOUCHERS};
use crate::LedgerError;

/// A vendor application allowed to call the gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct App {
    /// The key the vendor sends as `app_key`.
    pub app_key: AppKey,
    /// A human name for the operator's screens.
    pub name: String,
    /// The shared signing secret. Never printed by `Debug`.
    pub secret: String,
    /// When the operator registered it.
    pub created_at: DateTime<Utc>,
    /// Its rate limit and IP allow-list.
    pub access: AppAccess,
    /// The secret the last rotation replaced, still accepted until it expires.
    pub previous_secret: Option<PreviousSecret>,
}

impl App {
    /// An app with default access (the server's rate limit, any address) and no previous
    /// secret.
    pub fn new(app_key: AppKey, name: String, secret: String, created_at: DateTime<Utc>) -> Self {
        Self {
            app_key,
            name,
            secret,
            created_at,
            access: AppAccess::default(),
            previous_secret: None,
        }
    }

    /// The secrets a request received at `now` may be signed with: the current one, and the
    /// previous one while its overlap lasts (strictly before `expires_at`).
    pub fn secrets_at(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some(previous) = &self.previous_secret {
            if now < previous.expires_at {
                secrets.push(previous.secret.as_str());
            }
        }
        secrets
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("app_key", &self.app_key)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("access", &self.access)
            .field("previous_secret", &self.previous_secret)
            .finish()
    }
}

/// An app to register.
pub type NewApp = App;

/// A secret replaced by a rotation, accepted until `expires_at` so that vendors can switch
/// without a window in which their calls fail.
#[derive(Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    /// The old secret. Never printed by `Debug`.
    pub secret: String,
    /// The first instant it is no longer accepted.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for PreviousSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviousSecret")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A secret rotation: `new_secret` becomes the secret, the current one becomes the previous
/// secret until `previous_expires_at` (any earlier previous secret is forgotten).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRotation {
    /// The secret from now on. Never printed by `Debug`.
    pub new_secret: String,
    /// Until when the replaced secret is still accepted (now or earlier: not at all).
    pub previous_expires_at: DateTime<Utc>,
}

impl fmt::Debug for SecretRotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRotation")
            .field("new_secret", &"<redacted>")
            .field("previous_expires_at", &self.previous_expires_at)
            .finish()
    }
}

/// Who may call as an app and how often: checked by the gateway after authentication
/// (PROTOCOL.md §5.1, "permissions and rate").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppAccess {
    /// The app's own rate limit; `None` follows the server's default.
    pub rate_limit: Option<RateLimit>,
    /// Addresses allowed to call as the app; empty allows any.
    pub ip_allowlist: Vec<IpRange>,
}

impl AppAccess {
    /// Most entries an allow-list may hold.
    pub const MAX_ALLOWLIST: usize = 256;

    /// Whether `ip` may call as the app. An IPv4 peer matches IPv4 ranges and IPv6 ranges that
    /// hold its IPv4-mapped form (`::ffff:10.0.0.0/104`); a peer a dual-stack socket reports as
    /// `::ffff:10.0.0.1` matches the same ranges ([`IpRange`]).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.ip_allowlist.is_empty() || self.ip_allowlist.iter().any(|r| r.contains(ip))
    }

    /// The allow-list as stored: its entries joined by commas, `None` when empty.
    pub fn allowlist_text(&self) -> Option<String> {
        if self.ip_allowlist.is_empty() {
            return None;
        }
        let entries: Vec<String> = self.ip_allowlist.iter().map(IpRange::to_string).collect();
        Some(entries.join(","))
    }

    /// Parses a stored allow-list ([`AppAccess::allowlist_text`]).
    pub fn parse_allowlist(text: &str) -> Result<Vec<IpRange>, String> {
        text.split(',')
            .filter(|e| !e.trim().is_empty())
            .map(IpRange::parse)
            .collect()
    }
}

/// The unit of a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    /// Requests per second (`/s`).
    Second,
    /// Requests per minute (`/m`).
    Minute,
    /// Requests per hour (`/h`).
    Hour,
}

impl RatePeriod {
    /// Its length in seconds.
    pub fn seconds(self) -> u32 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }

    /// The suffix after `/`.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "m",
            Self::Hour => "h",
        }
    }
}

/// How often an app may call the gateway: a token bucket that holds at most `burst` calls and
/// refills at `requests` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimit {
    /// No limit (written `0` or `unlimited`).
    Unlimited,
    /// At most `requests` per `period` on average, `burst` at once.
    Limited {
        /// Calls per period (1..=[`RateLimit::MAX`]).
        requests: u32,
        /// The period.
        period: RatePeriod,
        /// Calls allowed at once after a quiet spell (1..=[`RateLimit::MAX`]).
        burst: u32,
    },
}

impl RateLimit {
    /// The largest `requests` or `burst` accepted.
    pub const MAX: u32 = 1_000_000;

    /// Parses `20/s`, `600/m`, `10000/h` (a burst of one period's calls unless `burst` says
    /// otherwise), or `0` / `unlimited`. The error says what is expected.
    pub fn parse(rate: &str, burst: Option<u32>) -> Result<Self, String> {
        let rate = rate.trim();
        if rate == "0" || rate.eq_ignore_ascii_case("unlimited") {
            return match burst {
                None => Ok(Self::Unlimited),
                Some(_) => Err("a burst needs a limited rate".to_owned()),
            };
        }
        let expected = || {
            format!(
                "{rate:?}: expected <n>/s, <n>/m or <n>/h with n in 1..={}, or 0 for no limit",
                Self::MAX
            )
        };
        let (n, unit) = rate.split_once('/').ok_or_else(expected)?;
        let period = match unit {
            "s" => RatePeriod::Second,
            "m" => RatePeriod::Minute,
            "h" => RatePeriod::Hour,
            _ => return Err(expected()),
        };
        let requests: u32 = digits(n)
            .filter(|n| !n.starts_with('0'))
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=Self::MAX).contains(n))
            .ok_or_else(expected)?;
        let burst = burst.unwrap_or(requests);
        if !(1..=Self::MAX).contains(&burst) {
            return Err(format!("burst {burst}: expected 1..={}", Self::MAX));
        }
        Ok(Self::Limited {
            requests,
            period,
            burst,
        })
    }

    /// The rate as written: `20/s`, or `unlimited`.
    pub fn rate_text(&self) -> String {
        match self {
            Self::Unlimited => "unlimited".to_owned(),
            Self::Limited {
                requests, period, ..
            } => format!("{requests}/{}", period.suffix()),
        }
    }

    /// The burst, when limited.
    pub fn burst(&self) -> Option<u32> {
        match self {
            Self::Unlimited => None,
            Self::Limited { burst, .. } => Some(*burst),
        }
    }

    /// Calls per second on average, when limited.
    pub fn per_second(&self) -> Option<f64> {
        match self {
            Self::Unlimited => None,
            Self::Limited {
                requests, period, ..
            } => Some(f64::from(*requests) / f64::from(period.seconds())),
        }
    }
}

/// `text` when it is 1 to 9 ASCII digits (no sign, no spaces), so `+5/s` is refused rather
/// than read.
fn digits(text: &str) -> Option<&str> {
    (!text.is_empty() && text.len() <= 9 && text.bytes().all(|b| b.is_ascii_digit()))
        .then_some(text)
}

/// One entry of an IP allow-list: an address (`203.0.113.7`, `::1`) or a CIDR range
/// (`203.0.113.0/24`, `2001:db8::/32`, `::ffff:10.0.0.0/104`), held as an [`IpNet`].
///
/// IPv4 and IPv6 are one address space here, as on a dual-stack socket: the IPv4 address
/// `a.b.c.d` is the IPv4-mapped IPv6 address `::ffff:a.b.c.d`. So `10.0.0.0/8` admits a peer
/// reported as `::ffff:10.1.2.3`, and `::ffff:10.0.0.0/104` (the same range written in IPv6)
/// admits the IPv4 peer `10.1.2.3` — an operator copying ranges from a dual-stack system's
/// logs gets what they wrote. (`::/0` therefore admits every address, IPv4 too.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange(IpNet);

impl IpRange {
    /// Parses an address or a CIDR range. A range with host bits set (`10.0.0.1/8`) is
    /// refused: it is almost always a typo, and the error names the range it probably meant.
    /// The text is read here rather than by `IpNet`'s parser, so that a bare address is a
    /// one-address range and a prefix must be plain digits (`/+8` is refused).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?}: expected an IPv4 or IPv6 address or CIDR range"))?;
        let max = max_prefix(address);
        let bad_prefix = || format!("{text:?}: the prefix length must be 0..={max}");
        let prefix = match prefix {
            None => max,
            Some(p) => digits(p)
                .and_then(|p| p.parse::<u8>().ok())
                .ok_or_else(bad_prefix)?,
        };
        let net = IpNet::new(address, prefix).map_err(|_| bad_prefix())?;
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}?",
                Self(net.trunc())
            ));
        }
        Ok(Self(net))
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length (32 or 128 for a single address).
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` lies in the range, an IPv4 address and its IPv4-mapped IPv6 form being the
    /// same address (see the type's doc).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.0, ip.to_canonical()) {
            (IpNet::V4(net), IpAddr::V4(v4)) => net.contains(&v4),
            (IpNet::V6(net), IpAddr::V4(v4)) => net.contains(&v4.to_ipv6_mapped()),
            (IpNet::V6(net), IpAddr::V6(v6)) => net.contains(&v6),
            // Not IPv4-mapped (canonical above), so outside every IPv4 range.
            (IpNet::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// A single address prints bare (`::1`), a range with its prefix (`10.0.0.0/8`).
impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// A voucher to create with an order: the code and how many uses it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVoucher {
    /// The code the buyer shows.
    pub code: ConfirmCode,
    /// Uses allowed (the issuance `quantity`).
    pub capacity: i64,
}

/// An order as the operator (or, later, the platform's order flow) creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The platform's id.
    pub order_id: OrderId,
    /// The vendor app that fulfils it; only that app may verify it.
    pub app_key: AppKey,
    /// Tickets bought.
    pub quantity: i64,
    /// The vendor's id, when already known.
    pub out_order_id: Option<OutOrderId>,
    /// First instant the tickets may be used (play date), if restricted.
    pub valid_from: Option<DateTime<Utc>>,
    /// Last instant the tickets may be used, if restricted.
    pub valid_until: Option<DateTime<Utc>>,
    /// Codes already issued; empty means the order awaits issuance.
    pub vouchers: Vec<NewVoucher>,
    /// When the order was paid (created); uses before this instant are impossible (R24).
    pub created_at: DateTime<Utc>,
}

impl NewOrder {
    /// Checks what no store can check by constraint alone: quantities positive and within the
    /// ledger's bounds ([`crate::limits`]), distinct codes, a validity window that is not
    /// inside out. A count above its bound is [`LedgerError::CountTooLarge`] naming the field as
    /// `POST /admin/orders` names it (`quantity`, `vouchers[i].quantity`).
    pub fn validate(&self) -> Result<(), LedgerError> {
        if self.quantity < 1 {
            return Err(LedgerError::InvalidOrder(
                "quantity must be at least 1".into(),
            ));
        }
        limits::at_most(|| "quantity".into(), self.quantity, MAX_TICKETS)?;
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until) {
            if from > until {
                return Err(LedgerError::InvalidOrder(
                    "valid_from must not be after valid_until".into(),
                ));
            }
        }
        if self.vouchers.len() > MAX_VOUCHERS {
            return Err(LedgerError::InvalidOrder(format!(
                "an order has at most {MAX_VOUCHERS} vouchers"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, v) in self.vouchers.iter().enumerate() {
            if v.capacity < 1 {
                return Err(LedgerError::InvalidOrder(format!(
                    "voucher {} must allow at least 1 use",
                    v.code.masked()
                )));
            }
            limits::at_most(
                || format!("vouchers[{i}].quantity"),
                v.capacity,
                MAX_CODE_USES,
            )?;
            if !seen.insert(v.code.as_str()) {
                return Err(LedgerError::InvalidOrder(format!(
                    "voucher {} is listed twice",
                    v.code.masked()
                )));
            }
        }
        Ok(())
    }
}

/// Where the vendor's issuance (发码) of an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueState {
    /// No report yet: the order waits for codes.
    Awaiting,
    /// Codes were issued; verify may draw them down.
    Issued,
    /// The vendor reported that issuing failed; a later success may still follow.
    Failed,
}

impl IssueState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Awaiting => "awaiting",
            Self::Issued => "issued",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "awaiting" => Some(Self::Awaiting),
            "issued" => Some(Self::Issued),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The order's own row, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    /// The platform's id.
    pub order_id: OrderId,
    /// The owning vendor app.
    pub app_key: AppKey,
    /// The vendor's id, if known.
    pub out_order_id: Option<OutOrderId>,
    /// Tickets bought.
    pub quantity: i64,
    /// Play window start, if any.
    pub valid_from: Option<DateTime<Utc>>,
    /// Play window end, if any.
    pub valid_until: Option<DateTime<Utc>>,
    /// When it was paid (created).
    pub created_at: DateTime<Utc>,
    /// Where issuance stands.
    pub issue_state: IssueState,
    /// The vendor's `describe` of a failed issuance.
    pub issue_describe: Option<String>,
    /// Tickets refunded (settled refunds only).
    pub refunded_tickets: i64,
}

impl OrderRecord {
    /// Uses that `tickets` refunded tickets take out of the order: each ticket carries
    /// `capacity ÷ quantity` uses. Rounded down, so refunding every ticket takes exactly the
    /// whole capacity and never more. Computed exactly (see [`crate::limits`]); a result that
    /// does not fit an `i64` is [`LedgerError::CountOverflow`].
    pub fn uses_of_tickets(&self, tickets: i64, capacity: i64) -> Result<i64, LedgerError> {
        if self.quantity <= 0 {
            return Ok(0);
        }
        limits::mul_div_floor(tickets, capacity, self.quantity, "uses of refunded tickets")
    }

    /// Tickets that have at least one use recorded (rounded up: a ticket partly used can no
    /// longer be refunded). Computed exactly: in `i64`, `used × quantity + capacity - 1`
    /// wrapped for a code of capacity near `i64::MAX` and made a 2-ticket order show 3
    /// refundable tickets.
    pub fn tickets_touched(&self, used: i64, capacity: i64) -> Result<i64, LedgerError> {
        if capacity <= 0 {
            return Ok(0);
        }
        limits::mul_div_ceil(used, self.quantity, capacity, "tickets touched by uses")
    }
}

/// A voucher's counters, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherRecord {
    /// The code.
    pub code: ConfirmCode,
    /// Uses allowed.
    pub capacity: i64,
    /// Uses recorded so far.
    pub used: i64,
}

/// Where an order is in its life, derived from its counters so it can never disagree with them.
///
/// When several apply, the first in this list wins: `awaiting_issuance`, `issue_failed`,
/// `refunding` (a refund is pending: someone must act), `refunded` (every ticket refunded),
/// `closed` (nothing left, some used and some refunded), `used` (every use recorded),
/// `partly_refunded`, `partly_used`, `issued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Paid; the vendor has not issued codes yet.
    AwaitingIssuance,
    /// The vendor reported that issuing failed.
    IssueFailed,
    /// Codes issued, nothing used or refunded.
    Issued,
    /// Some uses recorded, some remain.
    PartlyUsed,
    /// Every use is recorded.
    Used,
    /// A refund request is pending.
    Refunding,
    /// Some tickets refunded, some uses remain.
    PartlyRefunded,
    /// Every ticket refunded.
    Refunded,
    /// Nothing remains: every ticket is either used or refunded, and both happened.
    Closed,
}

impl OrderStatus {
    /// Derives the status. `pending_refund` says whether a refund request is pending.
    ///
    /// Every order has a status, also one whose stored counts are beyond the ledger's bounds
    /// (older than them), so this cannot refuse: the arithmetic is exact in `i128`, where a sum
    /// of `i64`s (fewer than 2⁶⁴ of them) and the quotient of a product of two cannot overflow.
    pub fn derive(order: &OrderRecord, vouchers: &[VoucherRecord], pending_refund: bool) -> Self {
        let capacity: i128 = vouchers.iter().map(|v| i128::from(v.capacity)).sum();
        let used: i128 = vouchers.iter().map(|v| i128::from(v.used)).sum();
        let refunded = if order.quantity > 0 {
            i128::from(order.refunded_tickets) * capacity / i128::from(order.quantity)
        } else {
            0
        };
        let remaining = capacity - used - refunded;
        match order.issue_state {
            IssueState::Awaiting => return Self::AwaitingIssuance,
            IssueState::Failed => return Self::IssueFailed,
            IssueState::Issued => {}
        }
        if pending_refund {
            Self::Refunding
        } else if order.refunded_tickets >= order.quantity && used == 0 {
            Self::Refunded
        } else if remaining <= 0 && order.refunded_tickets > 0 && used > 0 {
            Self::Closed
        } else if remaining <= 0 && order.refunded_tickets == 0 {
            Self::Used
        } else if order.refunded_tickets > 0 {
            Self::PartlyRefunded
        } else if used > 0 {
            Self::PartlyUsed
        } else {
            Self::Issued
        }
    }

    /// The wire name (`partly_used`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingIssuance => "awaiting_issuance",
            Self::IssueFailed => "issue_failed",
            Self::Issued => "issued",
            Self::PartlyUsed => "partly_used",
            Self::Used => "used",
            Self::Refunding => "refunding",
            Self::PartlyRefunded => "partly_refunded",
            Self::Refunded => "refunded",
            Self::Closed => "closed",
        }
    }

    /// Every status, in precedence order.
    pub const ALL: &'static [OrderStatus] = &[
        Self::AwaitingIssuance,
        Self::IssueFailed,
        Self::Refunding,
        Self::Refunded,
        Self::Closed,
        Self::Used,
        Self::PartlyRefunded,
        Self::PartlyUsed,
        Self::Issued,
    ];
}

/// Everything the operator sees about one order.
///
/// The history is shown in part: an order's audit trail has no upper bound (every retried or
/// refused call of a busy gate adds to it), and a view that carried all of it would cost
/// memory and time in proportion to the order's age. `events` holds the latest
/// [`OrderView::EVENTS_SHOWN`] entries and `events_total` says how many there are; the whole
/// history is read page by page with [`crate::LedgerStore::order_events`].
#[derive(Debug, Clone, PartialEq)]
pub struct OrderView {
    /// The order's row.
    pub order: OrderRecord,
    /// Its vouchers in issuance order.
    pub vouchers: Vec<VoucherRecord>,
    /// Its latest [`OrderView::EVENTS_SHOWN`] audit entries (all of them when it has fewer),
    /// oldest first.
    pub events: Vec<AuditEntry>,
    /// How many audit entries name the order in all, `events` included.
    pub events_total: i64,
    /// Its refund requests, oldest first.
    pub refunds: Vec<crate::lifecycle::RefundRequest>,
}

impl OrderView {
    /// How many of an order's latest events a view carries.
    pub const EVENTS_SHOWN: u32 = 100;

    /// Whether `events` is the order's whole history.
    pub fn events_complete(&self) -> bool {
        i64::try_from(self.events.len()).is_ok_and(|shown| shown >= self.events_total)
    }

    /// The derived status.
    pub fn status(&self) -> OrderStatus {
        let pending = self
            .refunds
            .iter()
            .any(|r| r.state == crate::lifecycle::RefundState::Pending);
        OrderStatus::derive(&self.order, &self.vouchers, pending)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It changed the ledger.
    Accepted,
    /// It repeated something already recorded, or changed nothing by design; answered success.
    Replayed,
    /// It was refused; `reason` says why.
    Rejected,
}

impl AuditOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Replayed => "replayed",
            Self::Rejected => "rejected",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accepted),
            "replayed" => Some(Self::Replayed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// One line of the append-only audit trail: every attempt — accepted, replayed, rejected — and
/// every operator action leaves one.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Position in the trail, assigned by the store (0 before it is stored).
    pub seq: i64,
    /// The request that caused it (TOP `request_id`, or the admin request's id).
    pub request_id: String,
    /// When it was received.
    pub at: DateTime<Utc>,
    /// What was attempted: the TOP method name, or `admin.<action>`.
    pub action: String,
    /// The calling app, when the request named one.
    pub app_key: Option<String>,
    /// The order it named, when it named one (even an unknown or foreign one).
    pub order_id: Option<i64>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Why: `applied`, `replayed`, a TOP sub_code such as `isv.verify-num-exceed`, or a platform
    /// code such as `25 Invalid signature`.
    pub reason: String,
    /// Details as JSON: the uses applied, flags raised, the sanitized request.
    pub detail: serde_json::Value,
    /// The caller's address, when known.
    pub client_ip: Option<String>,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this order's.
    pub order_id: Option<i64>,
    /// Only this app's.
    pub app_key: Option<String>,
    /// Only with this outcome.
    pub outcome: Option<AuditOutcome>,
    /// Only entries with `seq` greater than this (paging).
    pub after_seq: Option<i64>,
    /// At most this many (the store caps it at 1000).
    pub limit: Option<u32>,
}

impl AuditFilter {
    /// One page of an order's events, oldest first after `after_seq`: what
    /// [`crate::LedgerStore::order_events`] reads once the order is known to exist.
    pub fn order_events(id: crate::OrderId, after_seq: Option<i64>, limit: u32) -> Self {
        Self {
            order_id: Some(id.get()),
            after_seq,
            limit: Some(limit),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn rate_limits_read_as_operators_write_them() {
        assert_eq!(
            RateLimit::parse("20/s", None),
            Ok(RateLimit::Limited {
                requests: 20,
                period: RatePeriod::Second,
                burst: 20
            })
        );
        let per_minute = RateLimit::parse("600/m", Some(5)).expect("600/m");
        assert_eq!(per_minute.rate_text(), "600/m");
        assert_eq!(per_minute.burst(), Some(5));
        assert_eq!(per_minute.per_second(), Some(10.0));
        assert_eq!(RateLimit::parse("0", None), Ok(RateLimit::Unlimited));
        assert_eq!(
            RateLimit::parse("unlimited", None),
            Ok(RateLimit::Unlimited)
        );
        for bad in [
            "",
            "20",
            "0/s",
            "05/s",
            "+5/s",
            "-1/s",
            "20/d",
            "20/ s",
            "2000000/s",
        ] {
            assert!(RateLimit::parse(bad, None).is_err(), "{bad:?}");
        }
        assert!(
            RateLimit::parse("0", Some(3)).is_err(),
            "a burst without a rate"
        );
        assert!(RateLimit::parse("5/s", Some(0)).is_err(), "a zero burst");
    }

    #[test]
    fn ip_ranges_match_their_addresses_only() {
        let net = IpRange::parse("10.0.0.0/8").expect("range");
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        assert!(
            net.contains(ip("::ffff:10.1.2.3")),
            "an IPv4-mapped peer is IPv4"
        );
        let host = IpRange::parse("::1").expect("address");
        assert_eq!(host.to_string(), "::1");
        assert!(host.contains(ip("::1")) && !host.contains(ip("::2")));
        let v6 = IpRange::parse("2001:db8::/32").expect("range");
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let any = IpRange::parse("0.0.0.0/0").expect("everything");
        assert!(any.contains(ip("203.0.113.9")));
        assert_eq!(
            IpRange::parse("10.0.0.1/8"),
            Err("\"10.0.0.1/8\" has host bits set; did you mean 10.0.0.0/8?".to_owned())
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/",
            "1.2.3.4/-1",
        ] {
            assert!(IpRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ipv4_and_its_ipv4_mapped_ipv6_form_match_the_same_ranges() {
        let mapped = IpRange::parse("::ffff:10.0.0.0/104").expect("range");
        assert!(mapped.contains(ip("10.1.2.3")), "an IPv4 peer");
        assert!(mapped.contains(ip("::ffff:10.1.2.3")), "a dual-stack peer");
        assert!(!mapped.contains(ip("11.0.0.1")));
        assert!(
            !mapped.contains(ip("::10.1.2.3")),
            "IPv4-compatible is not mapped"
        );
        assert!(!mapped.contains(ip("2001:db8::1")));
        assert_eq!(mapped.to_string(), "::ffff:10.0.0.0/104");
        let host = IpRange::parse("::ffff:192.0.2.7").expect("one address");
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let all_v4 = IpRange::parse("::ffff:0:0/96").expect("every IPv4 address");
        assert!(all_v4.contains(ip("203.0.113.9")) && !all_v4.contains(ip("::1")));
        let v6_only = IpRange::parse("2001:db8::/32").expect("range");
        assert!(!v6_only.contains(ip("10.1.2.3")));
        assert!(IpRange::parse("::/0")
            .expect("all")
            .contains(ip("10.1.2.3")));
        assert!(!IpRange::parse("0.0.0.0/0")
            .expect("all v4")
            .contains(ip("::1")));
        assert_eq!(
            IpRange::parse("::ffff:10.0.0.1/104"),
            Err(
                "\"::ffff:10.0.0.1/104\" has host bits set; did you mean ::ffff:10.0.0.0/104?"
                    .to_owned()
            )
        );
    }

    #[test]
    fn allow_lists_round_trip_through_their_stored_text() {
        let access = AppAccess {
            rate_limit: None,
            ip_allowlist: vec![
                IpRange::parse("203.0.113.0/24").expect("range"),
                IpRange::parse("::1").expect("address"),
                IpRange::parse("::ffff:10.0.0.0/104").expect("mapped range"),
            ],
        };
        let text = access.allowlist_text().expect("a non-empty list");
        assert_eq!(text, "203.0.113.0/24,::1,::ffff:10.0.0.0/104");
        assert_eq!(AppAccess::parse_allowlist(&text), Ok(access.ip_allowlist));
        assert_eq!(AppAccess::default().allowlist_text(), None);
        assert!(
            AppAccess::default().allows(ip("198.51.100.1")),
            "empty allows any"
        );
    }
}

/// What the ledger holds in total, and how the store is batching, for `/metrics`.
///
/// The sums are floating point (Prometheus gauges are anyway): reading them must not fail on
/// any state the ledger holds. Within the bounds ([`crate::limits`]) an `i64` sum would need
/// more than nine billion orders of the largest size to overflow, but a ledger written before
/// the bounds can hold a code of capacity `i64::MAX`, and two of them made an integer `SUM`
/// fail and `/metrics` report `ticketd_ledger_up 0`. A float sum of `i64` values cannot
/// overflow (`f64` reaches 10³⁰⁸); it is exact up to 2⁵³ ≈ 9 × 10¹⁵ and rounds beyond.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreMetrics {
    /// Orders in the ledger.
    pub orders: i64,
    /// Uses issued over all vouchers.
    pub capacity: f64,
    /// Uses recorded over all vouchers.
    pub used: f64,
    /// Tickets refunded over all orders.
    pub refunded_tickets: f64,
    /// Anomalies waiting for an operator.
    pub open_anomalies: i64,
    /// Group commit: transactions committed, jobs run, and the largest batch (stores that
    /// batch writes; `None` elsewhere).
    pub batches: Option<BatchStats>,
}

/// Group-commit counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions that failed as a whole (their jobs were answered with an error, or run
    /// again one by one).
    pub failed_batches: u64,
    /// Jobs run.
    pub jobs: u64,
    /// The most jobs one transaction carried.
    pub largest_batch: u64,
    /// fsyncs that made committed transactions durable (several transactions may share one).
    pub syncs: u64,
    /// Writes waiting for a batch right now.
    pub queued: u64,
}
