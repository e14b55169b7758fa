//! Pure tests of [`plan_verify`] on hand-built snapshots: no store, no runtime.
//!
//! The table walks every verify rule `plan_verify` enforces (docs/DOMAIN.md §2.3). Rules not here,
//! and where they are held:
//! - R3 (no order key), R11 (a code twice in `voucher_infos`), R12 (quantity ≤ 0, list > 999),
//!   R20 (`write_off_type` other than 0/1), R21 (malformed `used_date`): wire-shape rules,
//!   checked when `ticket-api` parses the TOP parameters into a `VerifyCommand`.
//! - R4 (unknown order) and R5's "out_order_id alone resolves within the app": resolution is
//!   the store's (there is no snapshot to plan from); the behaviour suite holds them
//!   (`verify_of_unknown_order_is_order_not_found`,
//!   `out_order_id_alone_resolves_within_the_calling_app`). The R4 row below checks the part
//!   the plan owns: a foreign order is refused exactly as an unknown one.
//! - R28: the store's transaction (the suite's race cases). R29: gateway authentication. R30:
//!   the wire mapping of outcomes and errors. R8/R9 are here as far as the plan decides them;
//!   refund requests and notifications themselves are the behaviour suite's (`refunds`).
//!
//! One file per topic: `table` (the rule table and its walker), `plans` (what a single plan
//! records), `properties` (proptest properties over random report sequences). The builders
//! below are what they share.

mod plans;
mod properties;
mod table;

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use ticket_ledger::{
    plan_verify, AppKey, AuditEntry, ConfirmCode, Fingerprint, Flag, IssueState, LedgerError,
    OrderId, OrderRecord, OrderRef, OrderSnapshot, OutOrderId, OutcomeKind, RefundRequest,
    RefundState, RequestMeta, UsedDateProblem, VerifyCommand, VerifyOrigin, VerifyPlan,
    VerifyPolicy, VerifyUses, VoucherRecord, VoucherUse, WriteOffType,
};

const APP: &str = "app-own";
const OTHER_APP: &str = "app-other";
const OUT: &str = "OUT-1";
const ORDER: i64 = 1001;

fn created() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 2, 0, 0)
        .single()
        .expect("valid date")
}

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 15, 6, 0, 0)
        .single()
        .expect("valid date")
}

/// Gate time `n` seconds after one hour before [`received`].
fn gate(n: i64) -> DateTime<Utc> {
    received() - Duration::hours(1) + Duration::seconds(n)
}

fn code(s: &str) -> ConfirmCode {
    ConfirmCode::parse(s).expect("valid code")
}

/// A snapshot of order [`ORDER`] owned by `APP` with `out_order_id` [`OUT`] and the given
/// `(code, capacity, used)` vouchers.
fn snap(vouchers: &[(&str, i64, i64)]) -> OrderSnapshot {
    OrderSnapshot {
        order: OrderRecord {
            order_id: OrderId::new(ORDER).expect("positive"),
            app_key: AppKey::parse(APP).expect("valid key"),
            out_order_id: OutOrderId::parse(OUT),
            quantity: vouchers.iter().map(|v| v.1).sum::<i64>().max(1),
            valid_from: None,
            valid_until: None,
            created_at: created(),
            issue_state: IssueState::Issued,
            issue_describe: None,
            refunded_tickets: 0,
        },
        vouchers: vouchers
            .iter()
            .map(|&(c, capacity, used)| VoucherRecord {
                code: code(c),
                capacity,
                used,
            })
            .collect(),
        seen: HashSet::new(),
        refunds: Vec::new(),
    }
}

/// A pending refund request `flow` for `quantity` tickets, asked at `at`.
fn pending(flow: &str, quantity: i64, at: DateTime<Utc>) -> RefundRequest {
    RefundRequest {
        flow_id: flow.into(),
        quantity,
        requested_at: at,
        state: RefundState::Pending,
        refunded_tickets: 0,
        batch_no: None,
        failure_reason: None,
        settled_at: None,
        needs_review: false,
    }
}

fn with(mut s: OrderSnapshot, edit: impl FnOnce(&mut OrderSnapshot)) -> OrderSnapshot {
    edit(&mut s);
    s
}

fn fp(c: &str, at: DateTime<Utc>, quantity: i64) -> Fingerprint {
    Fingerprint {
        code: code(c),
        used_at_ms: at.timestamp_millis(),
        quantity,
    }
}

fn cmd(mode: WriteOffType, uses: VerifyUses) -> VerifyCommand {
    VerifyCommand {
        origin: VerifyOrigin::Vendor,
        app_key: AppKey::parse(APP).expect("valid key"),
        order: OrderRef::Id(OrderId::new(ORDER).expect("positive")),
        mode,
        uses,
        total_num: None,
        return_num: None,
        policy: VerifyPolicy::default(),
        meta: RequestMeta {
            request_id: "req-1".into(),
            received_at: received(),
            client_ip: None,
            summary: serde_json::json!({}).into(),
        },
    }
}

/// `voucher_infos` entries `(code, quantity, used_at)`.
fn entries(list: &[(&str, i64, Option<DateTime<Utc>>)]) -> VerifyUses {
    VerifyUses::Vouchers {
        entries: list
            .iter()
            .map(|&(c, quantity, used_at)| VoucherUse {
                code: code(c),
                quantity,
                used_at,
            })
            .collect(),
        legacy_code: None,
    }
}

fn delta(list: &[(&str, i64, Option<DateTime<Utc>>)]) -> VerifyCommand {
    cmd(WriteOffType::Delta, entries(list))
}

fn cumul(list: &[(&str, i64, Option<DateTime<Utc>>)]) -> VerifyCommand {
    cmd(WriteOffType::Cumulative, entries(list))
}

fn edit(mut c: VerifyCommand, f: impl FnOnce(&mut VerifyCommand)) -> VerifyCommand {
    f(&mut c);
    c
}

fn top_time(at: DateTime<Utc>) -> String {
    let tz = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    tz.from_utc_datetime(&at.naive_utc())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
