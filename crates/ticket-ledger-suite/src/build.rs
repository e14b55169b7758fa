//! Test-data builders, public so store crates and the server's tests can reuse them.
//!
//! Every instant is fixed (see [`order_created_at`], [`gate_time`], [`received_at`]) so the date
//! rules answer the same on every run; every name that a shared database could already hold
//! (app keys, order ids, out_order_ids, request ids) comes from a [`Fresh`] scope, so cases can
//! run concurrently against one PostgreSQL or MySQL database without seeing each other.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

use ticket_ledger::{AppKey, ConfirmCode, OrderId, OutOrderId};
use ticket_ledger::{
    AuditEntry, AuditOutcome, IssueState, NewApp, NewOrder, NewVoucher, OrderRecord,
};
use ticket_ledger::{
    IssueCommand, IssueResult, IssuedVoucher, RefundCommand, RefundOutcomeStatus,
    RefundRequestCommand, Resolution, ResolveAnomaly, ReversalCommand,
};
use ticket_ledger::{
    OrderRef, RequestMeta, VerifyCommand, VerifyOrigin, VerifyPolicy, VerifyUses, VoucherUse,
    WriteOffType,
};

/// A fixed UTC instant; panics only on a calendar mistake in this file.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("suite instants are valid calendar dates")
}

/// When the suite's apps are registered: 2025-01-01 00:00:00 UTC.
pub fn app_created_at() -> DateTime<Utc> {
    utc(2025, 1, 1, 0, 0, 0)
}

/// When the suite's orders are paid (created): 2025-03-01 02:00:00 UTC (10:00 in Beijing).
pub fn order_created_at() -> DateTime<Utc> {
    utc(2025, 3, 1, 2, 0, 0)
}

/// When a verify request arrives by default: 2025-03-15 06:00:00 UTC (14:00 in Beijing), two
/// weeks after [`order_created_at`].
pub fn received_at() -> DateTime<Utc> {
    utc(2025, 3, 15, 6, 0, 0)
}

/// The default gate time of a `voucher_infos` entry: one hour before [`received_at`], so
/// `gate_time() + n seconds` stays a plausible past instant for any n below 3600.
pub fn gate_time() -> DateTime<Utc> {
    received_at() - Duration::hours(1)
}

/// [`gate_time`] plus `n` seconds: distinct gate times give distinct delta fingerprints (R16).
pub fn gate_time_plus(n: i64) -> DateTime<Utc> {
    gate_time() + Duration::seconds(n)
}

/// A process-wide random number, so names made by different test processes (nextest runs each
/// test in its own) do not collide in a shared database.
fn process_nonce() -> u64 {
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // RandomState is seeded from the OS per process: a random hash without a rand dependency.
        RandomState::new().hash_one((nanos, std::process::id()))
    })
}

fn next_counter() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A fresh namespace for one case: app keys and order ids no other case (in this process or
/// another sharing the database) will use.
#[derive(Debug, Clone)]
pub struct Fresh {
    /// Below 10^15, so `nonce * 1000 + n` is a positive `i64` for every `n < 1000`.
    nonce: u64,
}

impl Default for Fresh {
    fn default() -> Self {
        Self::new()
    }
}

impl Fresh {
    /// A new namespace.
    pub fn new() -> Self {
        let h = RandomState::new().hash_one((process_nonce(), next_counter()));
        Self {
            nonce: h % 1_000_000_000_000_000,
        }
    }

    /// A key unique to this namespace: `"{name}-{nonce}"` (names up to 40 characters keep it a
    /// valid [`AppKey`] and [`OutOrderId`]).
    pub fn key(&self, name: &str) -> String {
        format!("{name}-{:x}", self.nonce)
    }

    /// The `n`th order id of this namespace, `n` in `1..1000`.
    pub fn id(&self, n: i64) -> i64 {
        assert!((1..1000).contains(&n), "Fresh::id takes 1..1000, got {n}");
        let base = i64::try_from(self.nonce).expect("the nonce is below 10^15");
        base * 1000 + n
    }
}

/// A request id never used before in this process (nor, almost surely, in any other).
pub fn request_id() -> String {
    format!("suite-{:x}-{}", process_nonce(), next_counter())
}

/// An [`AppKey`]; panics if `key` is not a valid one.
pub fn app_key(key: &str) -> AppKey {
    AppKey::parse(key).unwrap_or_else(|| panic!("{key:?} should be a valid app key"))
}

/// A [`ConfirmCode`]; panics if `code` is not a valid one.
pub fn code(code: &str) -> ConfirmCode {
    ConfirmCode::parse(code).unwrap_or_else(|| panic!("{code:?} should be a valid confirm code"))
}

/// An [`OutOrderId`]; panics if `id` is not a valid one.
pub fn out(id: &str) -> OutOrderId {
    OutOrderId::parse(id).unwrap_or_else(|| panic!("{id:?} should be a valid out_order_id"))
}

/// An [`OrderId`]; panics unless `id` is positive.
pub fn order_id(id: i64) -> OrderId {
    OrderId::new(id).unwrap_or_else(|| panic!("{id} should be a valid (positive) order id"))
}

/// An app to register: the key, a name and secret derived from it, created at
/// [`app_created_at`].
pub fn app(key: &str) -> NewApp {
    NewApp::new(
        app_key(key),
        format!("suite app {key}"),
        format!("secret-of-{key}"),
        app_created_at(),
    )
}

/// An order of `app` with the given `(code, capacity)` vouchers in issuance order (none: the
/// order awaits issuance). Quantity is the total capacity (at least 1), no `out_order_id`, no
/// validity window, created at [`order_created_at`]. Adjust the public fields for more.
pub fn order(id: i64, app: &str, vouchers: &[(&str, i64)]) -> NewOrder {
    let total: i64 = vouchers.iter().map(|&(_, capacity)| capacity).sum();
    NewOrder {
        order_id: order_id(id),
        app_key: app_key(app),
        quantity: total.max(1),
        out_order_id: None,
        valid_from: None,
        valid_until: None,
        vouchers: vouchers
            .iter()
            .map(|&(c, capacity)| NewVoucher {
                code: code(c),
                capacity,
            })
            .collect(),
        created_at: order_created_at(),
    }
}

/// The [`OrderRecord`] a store should hold for `order`.
pub fn record_of(order: &NewOrder) -> OrderRecord {
    OrderRecord {
        order_id: order.order_id,
        app_key: order.app_key.clone(),
        out_order_id: order.out_order_id.clone(),
        quantity: order.quantity,
        valid_from: order.valid_from,
        valid_until: order.valid_until,
        created_at: order.created_at,
        issue_state: if order.vouchers.is_empty() {
            IssueState::Awaiting
        } else {
            IssueState::Issued
        },
        issue_describe: None,
        refunded_tickets: 0,
    }
}

/// The audit entry an operator's `create_order` writes with the order (what the admin API
/// would pass): action `admin.create_order`, accepted, reason `created`.
pub fn order_created_audit(order: &NewOrder) -> AuditEntry {
    AuditEntry {
        seq: 0,
        request_id: request_id(),
        at: order.created_at,
        action: "admin.create_order".to_owned(),
        app_key: Some(order.app_key.as_str().to_owned()),
        order_id: Some(order.order_id.get()),
        outcome: AuditOutcome::Accepted,
        reason: "created".to_owned(),
        detail: json!({
            "quantity": order.quantity,
            "vouchers": order.vouchers.len(),
        }),
        client_ip: Some("127.0.0.1".to_owned()),
    }
}

/// A stand-alone audit entry as the gateway would [`record`](ticket_ledger::LedgerStore::record) it
/// for a refused verify: action `taobao.travel.ticket.order.verify`, at [`received_at`].
pub fn audit_entry(
    app: Option<&str>,
    order_id: Option<i64>,
    outcome: AuditOutcome,
    reason: &str,
) -> AuditEntry {
    AuditEntry {
        seq: 0,
        request_id: request_id(),
        at: received_at(),
        action: "taobao.travel.ticket.order.verify".to_owned(),
        app_key: app.map(str::to_owned),
        order_id,
        outcome,
        reason: reason.to_owned(),
        detail: json!({"sub_msg": reason, "attempt": next_counter()}),
        client_ip: Some("192.0.2.7".to_owned()),
    }
}

/// Starts a [`VerifyCommand`] by `app` for the order `order_id`; see [`VerifyCommandBuilder`].
pub fn verify_cmd(app: &str, order_id: i64) -> VerifyCommandBuilder {
    VerifyCommandBuilder::new(app, OrderRef::Id(self::order_id(order_id)))
}

/// Builds a [`VerifyCommand`] with sensible defaults: delta mode, an empty `voucher_infos`
/// list (add entries), no legacy `total_num`/`return_num`, the default [`VerifyPolicy`],
/// received at [`received_at`] from `192.0.2.7`, with a fresh [`request_id`].
#[derive(Debug, Clone)]
pub struct VerifyCommandBuilder {
    cmd: VerifyCommand,
}

impl VerifyCommandBuilder {
    /// A command by `app` naming its order by `order`.
    pub fn new(app: &str, order: OrderRef) -> Self {
        Self {
            cmd: VerifyCommand {
                origin: VerifyOrigin::Vendor,
                app_key: app_key(app),
                order,
                mode: WriteOffType::Delta,
                uses: VerifyUses::Vouchers {
                    entries: Vec::new(),
                    legacy_code: None,
                },
                total_num: None,
                return_num: None,
                policy: VerifyPolicy::default(),
                meta: RequestMeta {
                    request_id: request_id(),
                    received_at: received_at(),
                    client_ip: Some("192.0.2.7".to_owned()),
                    summary: json!({}).into(),
                },
            },
        }
    }

    /// Names the order by `out_order_id` alone (resolved within the calling app).
    pub fn by_out(mut self, out_order_id: &str) -> Self {
        self.cmd.order = OrderRef::Out(out(out_order_id));
        self
    }

    /// Names the order by both keys.
    pub fn by_both(mut self, order_id: i64, out_order_id: &str) -> Self {
        self.cmd.order = OrderRef::Both(self::order_id(order_id), out(out_order_id));
        self
    }

    /// `write_off_type` = 1: quantities are totals so far.
    pub fn cumulative(mut self) -> Self {
        self.cmd.mode = WriteOffType::Cumulative;
        self
    }

    /// A `voucher_infos` entry used at [`gate_time`].
    pub fn entry(self, code: &str, quantity: i64) -> Self {
        self.entry_at(code, quantity, Some(gate_time()))
    }

    /// A `voucher_infos` entry with an explicit gate time (`None`: the vendor sent no
    /// `used_date`, R22).
    pub fn entry_at(mut self, code: &str, quantity: i64, used_at: Option<DateTime<Utc>>) -> Self {
        let entry = VoucherUse {
            code: self::code(code),
            quantity,
            used_at,
        };
        match &mut self.cmd.uses {
            VerifyUses::Vouchers { entries, .. } => entries.push(entry),
            other => {
                *other = VerifyUses::Vouchers {
                    entries: vec![entry],
                    legacy_code: None,
                }
            }
        }
        self
    }

    /// A legacy `confirm_code` sent beside the `voucher_infos` list (R1).
    pub fn legacy_code_beside(mut self, code: &str) -> Self {
        let legacy = self::code(code);
        match &mut self.cmd.uses {
            VerifyUses::Vouchers { legacy_code, .. } => *legacy_code = Some(legacy),
            other => {
                *other = VerifyUses::Vouchers {
                    entries: Vec::new(),
                    legacy_code: Some(legacy),
                }
            }
        }
        self
    }

    /// The legacy single-code form: `confirm_code` + `check_num` (replaces any entries).
    pub fn legacy_code(mut self, code: &str, check_num: i64) -> Self {
        self.cmd.uses = VerifyUses::Code {
            code: self::code(code),
            check_num,
        };
        self
    }

    /// The legacy order-level form: `check_num` alone (R2; replaces any entries).
    pub fn order_level(mut self, check_num: i64) -> Self {
        self.cmd.uses = VerifyUses::Order { check_num };
        self
    }

    /// Legacy `total_num` (R27).
    pub fn total_num(mut self, n: i64) -> Self {
        self.cmd.total_num = Some(n);
        self
    }

    /// Legacy `return_num` (R27).
    pub fn return_num(mut self, n: i64) -> Self {
        self.cmd.return_num = Some(n);
        self
    }

    /// Replaces the date-rule policy.
    pub fn policy(mut self, policy: VerifyPolicy) -> Self {
        self.cmd.policy = policy;
        self
    }

    /// Accepts uses before the order's `valid_from` (R25's switch).
    pub fn allow_before_valid_from(mut self) -> Self {
        self.cmd.policy.allow_before_valid_from = true;
        self
    }

    /// When the request arrived.
    pub fn received_at(mut self, at: DateTime<Utc>) -> Self {
        self.cmd.meta.received_at = at;
        self
    }

    /// Replaces the generated request id.
    pub fn request_id(mut self, id: &str) -> Self {
        id.clone_into(&mut self.cmd.meta.request_id);
        self
    }

    /// The command, with a masked summary of its parameters for the audit trail.
    pub fn build(mut self) -> VerifyCommand {
        self.cmd.meta.summary = summary(&self.cmd).into();
        self.cmd
    }
}

/// What the gateway would store as the request's summary: its business parameters with codes
/// masked.
fn summary(cmd: &VerifyCommand) -> serde_json::Value {
    let uses = match &cmd.uses {
        VerifyUses::Vouchers {
            entries,
            legacy_code,
        } => json!({
            "voucher_infos": entries.iter().map(|e| json!({
                "confirm_code": e.code.masked(),
                "used_quantity": e.quantity,
                "used_date": e.used_at.map(|t| t.to_rfc3339()),
            })).collect::<Vec<_>>(),
            "confirm_code": legacy_code.as_ref().map(ConfirmCode::masked),
        }),
        VerifyUses::Code { code, check_num } => {
            json!({"confirm_code": code.masked(), "check_num": check_num})
        }
        VerifyUses::Order { check_num } => json!({ "check_num": check_num }),
    };
    json!({
        "order_id": cmd.order.order_id().map(OrderId::get),
        "out_order_id": match &cmd.order {
            OrderRef::Out(o) | OrderRef::Both(_, o) => Some(o.as_str()),
            OrderRef::Id(_) => None,
        },
        "write_off_type": cmd.mode.as_i64(),
        "uses": uses,
        "total_num": cmd.total_num,
        "return_num": cmd.return_num,
    })
}

/// A new copy of `cmd` as a retry would arrive: same parameters, a new request id, received
/// `later_secs` seconds later.
pub fn retry_of(cmd: &VerifyCommand, later_secs: i64) -> VerifyCommand {
    let mut retry = cmd.clone();
    retry.meta.request_id = request_id();
    retry.meta.received_at = cmd.meta.received_at + Duration::seconds(later_secs);
    retry
}

// ---------------------------------------------------------------------------------------------
// The rest of the order's life: issuance, refunds, reversal, anomalies

/// Request metadata as the gateway (or the admin API) would pass it: a fresh [`request_id`],
/// received at `at` from `192.0.2.7`, with `summary` as the sanitized request.
pub fn meta_at(at: DateTime<Utc>, summary: serde_json::Value) -> RequestMeta {
    RequestMeta {
        request_id: request_id(),
        received_at: at,
        client_ip: Some("192.0.2.7".to_owned()),
        summary: summary.into(),
    }
}

/// Starts an issuance report (`alitrip.travel.ticket.order.create`) by `app` for `order_id`
/// with the vendor's `out_order_id`; see [`IssueCommandBuilder`].
pub fn issue_cmd(app: &str, order_id: i64, out_order_id: &str) -> IssueCommandBuilder {
    IssueCommandBuilder {
        cmd: IssueCommand {
            app_key: app_key(app),
            order_id: self::order_id(order_id),
            out_order_id: out(out_order_id),
            result: IssueResult::Issued(Vec::new()),
            attributes: None,
            meta: meta_at(order_created_at() + Duration::minutes(5), json!({})),
        },
    }
}

/// Builds an [`IssueCommand`]: by default a success with no codes yet (add them with
/// [`IssueCommandBuilder::codes`]), received five minutes after [`order_created_at`].
#[derive(Debug, Clone)]
pub struct IssueCommandBuilder {
    cmd: IssueCommand,
}

impl IssueCommandBuilder {
    /// `issue_type` 1 with these `(code, quantity)` vouchers (`type` 2, no extras).
    pub fn codes(mut self, codes: &[(&str, i64)]) -> Self {
        self.cmd.result = IssueResult::Issued(
            codes
                .iter()
                .map(|&(c, capacity)| IssuedVoucher {
                    code: code(c),
                    capacity,
                    voucher_type: Some(2),
                    extras: None,
                })
                .collect(),
        );
        self
    }

    /// `issue_type` 2 with the vendor's `describe`.
    pub fn failed(mut self, describe: &str) -> Self {
        self.cmd.result = IssueResult::Failed {
            describe: describe.to_owned(),
        };
        self
    }

    /// When the report arrived.
    pub fn received_at(mut self, at: DateTime<Utc>) -> Self {
        self.cmd.meta.received_at = at;
        self
    }

    /// The command, with a masked summary of its parameters.
    pub fn build(mut self) -> IssueCommand {
        let (issue_type, vouchers, describe) = match &self.cmd.result {
            IssueResult::Issued(codes) => (
                1,
                codes
                    .iter()
                    .map(|v| json!({"confirm_code": v.code.masked(), "quantity": v.capacity}))
                    .collect::<Vec<_>>(),
                None,
            ),
            IssueResult::Failed { describe } => (2, Vec::new(), Some(describe.clone())),
        };
        self.cmd.meta.summary = json!({
            "order_id": self.cmd.order_id.get(),
            "out_order_id": self.cmd.out_order_id.as_str(),
            "issue_type": issue_type,
            "voucher_infos": vouchers,
            "describe": describe,
        })
        .into();
        self.cmd
    }
}

/// A refund request for `quantity` tickets of `order_id`, asked at `at` (as the admin API's
/// `POST /admin/orders/{id}/refunds` would pass it).
pub fn refund_request(order_id: i64, quantity: i64, at: DateTime<Utc>) -> RefundRequestCommand {
    RefundRequestCommand {
        order_id: self::order_id(order_id),
        quantity,
        meta: meta_at(at, json!({"order_id": order_id, "quantity": quantity})),
    }
}

/// Starts a refund notification (`taobao.travel.ticket.order.refund`) by `app` for
/// `order_id`; see [`RefundCommandBuilder`].
pub fn refund_cmd(app: &str, order_id: i64) -> RefundCommandBuilder {
    RefundCommandBuilder {
        cmd: RefundCommand {
            app_key: app_key(app),
            order_id: self::order_id(order_id),
            status: RefundOutcomeStatus::Succeeded,
            refund_num: None,
            batch_no: None,
            failure_reason: None,
            partial: false,
            flow_id: None,
            meta: meta_at(received_at(), json!({})),
        },
    }
}

/// Builds a [`RefundCommand`]: by default `refund_status` 1 (refunded) for the whole request,
/// without `refund_num`, `refund_batch_no` or `fliggy_refund_flow_id`, received at
/// [`received_at`].
#[derive(Debug, Clone)]
pub struct RefundCommandBuilder {
    cmd: RefundCommand,
}

impl RefundCommandBuilder {
    /// `refund_status` 2 with the vendor's `refund_failure_reason`.
    pub fn failed(mut self, reason: &str) -> Self {
        self.cmd.status = RefundOutcomeStatus::Failed;
        self.cmd.failure_reason = Some(reason.to_owned());
        self
    }

    /// `refund_num`.
    pub fn refund_num(mut self, n: i64) -> Self {
        self.cmd.refund_num = Some(n);
        self
    }

    /// `refund_batch_no`.
    pub fn batch(mut self, batch_no: &str) -> Self {
        self.cmd.batch_no = Some(batch_no.to_owned());
        self
    }

    /// `fliggy_refund_flow_id`.
    pub fn flow(mut self, flow_id: &str) -> Self {
        self.cmd.flow_id = Some(flow_id.to_owned());
        self
    }

    /// `refund_type` 3 (partial).
    pub fn partial(mut self) -> Self {
        self.cmd.partial = true;
        self
    }

    /// When the notification arrived.
    pub fn received_at(mut self, at: DateTime<Utc>) -> Self {
        self.cmd.meta.received_at = at;
        self
    }

    /// The command, with a summary of its parameters (which names `refund_status`, as the
    /// gateway's does).
    pub fn build(mut self) -> RefundCommand {
        let c = &self.cmd;
        self.cmd.meta.summary = json!({
            "order_id": c.order_id.get(),
            "refund_status": match c.status {
                RefundOutcomeStatus::Succeeded => 1,
                RefundOutcomeStatus::Failed => 2,
            },
            "refund_num": c.refund_num,
            "refund_batch_no": c.batch_no,
            "refund_failure_reason": c.failure_reason,
            "refund_type": if c.partial { 3 } else { 1 },
            "fliggy_refund_flow_id": c.flow_id,
        })
        .into();
        self.cmd
    }
}

/// An operator's reversal of `quantity` uses of `code` on `order_id`, at `at`, allowed for uses
/// recorded within `window` before it.
pub fn reversal(
    order_id: i64,
    code: &str,
    quantity: i64,
    window: Duration,
    at: DateTime<Utc>,
) -> ReversalCommand {
    let reason = format!("suite reversal of {quantity}");
    ReversalCommand {
        order_id: self::order_id(order_id),
        code: self::code(code),
        quantity,
        meta: meta_at(
            at,
            json!({"confirm_code": self::code(code).masked(), "quantity": quantity,
                   "reason": reason}),
        ),
        reason,
        window,
    }
}

/// An operator's resolution of anomaly `id`, at [`received_at`] plus one day.
pub fn resolve_cmd(id: i64, resolution: Resolution, note: &str) -> ResolveAnomaly {
    ResolveAnomaly {
        id,
        resolution,
        note: note.to_owned(),
        meta: meta_at(
            received_at() + Duration::days(1),
            json!({"resolution": resolution.as_str(), "note": note}),
        ),
    }
}

/// A verify [`VerifyOrigin::Reconciliation`] would record for one code the vendor counts
/// `vendor_used` uses of: a cumulative report without a gate time, as `POST
/// /admin/orders/{id}/reconcile` with `"apply": true` sends it.
pub fn reconcile_cmd(
    app: &str,
    order_id: i64,
    code: &str,
    vendor_used: i64,
    at: DateTime<Utc>,
) -> VerifyCommand {
    let mut cmd = verify_cmd(app, order_id)
        .cumulative()
        .entry_at(code, vendor_used, None)
        .received_at(at)
        .allow_before_valid_from()
        .build();
    cmd.origin = VerifyOrigin::Reconciliation;
    cmd.meta.summary =
        json!({"confirm_code": self::code(code).masked(), "used": vendor_used}).into();
    cmd
}
