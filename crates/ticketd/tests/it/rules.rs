//! docs/DOMAIN.md §2.3 (R1–R30) through the HTTP server: one table, one row per situation. Each row
//! creates its own order, sends what it needs first (those must succeed), then the request
//! under test, and checks the exact answer, the counters afterwards, the audit entry the
//! request left (outcome and reason, flags), and — for every refusal — that nothing changed.
//!
//! Rules not walked here:
//! * R8 (closed / refunded orders) and R9 (refund in progress): they need refunds, so they are
//!   walked in `lifecycle.rs` with the refund calls.
//! * R28 (concurrent notifications for one order): `race.rs`.
//! * R29 (app not authorized / bad credentials): platform codes 29 and 25, `protocol.rs`.
//! * R14/R15 (partial use, multi-use codes) are rows below; R30 (duplicates and no-ops answer
//!   success, refusals are code 50 with stable sub_codes) is checked by every row.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use top_protocol::timestamp::format_beijing;

use crate::helpers::{
    assert_top_envelope, audit_entries, create_order_with, error_json, ledger_snapshot,
    request_id_of, spawn_app, success_json, TestApp, TopCall,
};

const KEY: &str = "rules-vendor";
const SECRET: &str = "rules-secret-0123456789";
const OTHER: &str = "rules-other-vendor";

/// Business parameters of one request.
type Biz = Vec<(&'static str, String)>;

/// The instant the table's dates are relative to (fixed once, so a retried report carries
/// the very same `used_date`).
fn base() -> DateTime<Utc> {
    static BASE: OnceLock<DateTime<Utc>> = OnceLock::new();
    *BASE.get_or_init(Utc::now)
}

/// `base() + minutes`, as TOP writes dates.
fn at(minutes: i64) -> String {
    format_beijing(base() + Duration::minutes(minutes))
}

fn codes(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect()
}

/// A `voucher_infos` request for order `o`.
fn vreq(o: i64, list: Value) -> Biz {
    vec![
        ("order_id", o.to_string()),
        ("voucher_infos", list.to_string()),
    ]
}

/// One `voucher_infos` entry used `minutes` from the base instant.
fn use_of(code: &str, quantity: i64, minutes: i64) -> Value {
    json!({"confirm_code": code, "used_quantity": quantity, "used_date": at(minutes)})
}

/// The `used_date` of the first `voucher_infos` entry of a request.
fn used_date(b: &Biz) -> String {
    let list = &b.iter().find(|(k, _)| *k == "voucher_infos").unwrap().1;
    let v: Value = serde_json::from_str(list).unwrap();
    v[0]["used_date"].as_str().unwrap().to_owned()
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// `is_success` true; the request's audit entry has this outcome and reason.
    Ok {
        outcome: &'static str,
        reason: &'static str,
    },
    /// An exact `error_response`.
    Refused {
        code: i64,
        msg: String,
        sub_code: String,
        sub_msg: String,
    },
}

fn applied() -> Expect {
    Expect::Ok {
        outcome: "accepted",
        reason: "applied",
    }
}

fn replayed() -> Expect {
    Expect::Ok {
        outcome: "replayed",
        reason: "replayed",
    }
}

fn no_change() -> Expect {
    Expect::Ok {
        outcome: "replayed",
        reason: "no_change",
    }
}

fn business(sub_code: &str, sub_msg: impl Into<String>) -> Expect {
    Expect::Refused {
        code: 50,
        msg: "Remote service error".into(),
        sub_code: sub_code.into(),
        sub_msg: sub_msg.into(),
    }
}

fn exceed(detail: impl std::fmt::Display) -> Expect {
    business(
        "isv.verify-num-exceed",
        format!("核销数量超过可用数量: {detail}"),
    )
}

fn missing(name: &str) -> Expect {
    Expect::Refused {
        code: 40,
        msg: format!("Missing required arguments:{name}"),
        sub_code: format!("isv.missing-parameter:{name}"),
        sub_msg: format!("缺少必选参数:{name}"),
    }
}

fn invalid(name: &str, detail: &str) -> Expect {
    Expect::Refused {
        code: 41,
        msg: format!("Invalid arguments:{name}"),
        sub_code: format!("isv.invalid-parameter:{name}"),
        sub_msg: format!("非法参数:{name} ({detail})"),
    }
}

fn not_exist() -> Expect {
    business("isv.order-not-exist", "订单不存在")
}

/// One situation of the rule table.
struct Row {
    name: &'static str,
    /// Codes issued with the row's order, in issuance order.
    vouchers: fn() -> Vec<(String, i64)>,
    /// Extra admin fields of the order (`out_order_id`, `valid_from`, …).
    order: fn() -> Value,
    /// The order belongs to another vendor app.
    foreign: bool,
    /// Requests sent first; each must be answered `is_success`.
    before: fn(i64) -> Vec<Biz>,
    /// The request under test (business params; `o` is the row's order id).
    request: fn(i64) -> Biz,
    expect: fn(&Biz) -> Expect,
    /// `used` of every code afterwards.
    used: fn() -> Vec<(String, i64)>,
    /// A flag the request's audit entry must carry.
    flag: Option<&'static str>,
    /// The answer must equal this earlier row's, apart from `request_id`.
    same_body_as: Option<&'static str>,
}

fn row() -> Row {
    Row {
        name: "",
        vouchers: || codes(&[("CODE-A1", 5)]),
        order: || json!({}),
        foreign: false,
        before: |_| Vec::new(),
        request: |o| vreq(o, json!([use_of("CODE-A1", 1, -5)])),
        expect: |_| applied(),
        used: || codes(&[("CODE-A1", 1)]),
        flag: None,
        same_body_as: None,
    }
}

fn rows() -> Vec<Row> {
    vec![
        // ---- R1: voucher_infos wins; a legacy confirm_code beside it must be in the list.
        Row {
            name: "R1 voucher_infos wins over confirm_code/check_num",
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 1, -5)]));
                b.push(("confirm_code", "CODE-A1".into()));
                b.push(("check_num", "4".into()));
                b
            },
            ..row()
        },
        Row {
            name: "R1 legacy confirm_code not in voucher_infos",
            vouchers: || codes(&[("CODE-A1", 5), ("CODE-B2", 5)]),
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 1, -5)]));
                b.push(("confirm_code", "CODE-B2".into()));
                b
            },
            expect: |_| invalid("confirm_code", "confirm_code不在voucher_infos中"),
            used: || codes(&[("CODE-A1", 0), ("CODE-B2", 0)]),
            ..row()
        },
        // ---- R2: order-level legacy check_num draws codes down in issuance order.
        Row {
            name: "R2 order-level check_num draws codes in issuance order",
            vouchers: || codes(&[("Z-FIRST", 2), ("A-SECOND", 3)]),
            request: |o| vec![("order_id", o.to_string()), ("check_num", "3".into())],
            used: || codes(&[("Z-FIRST", 2), ("A-SECOND", 1)]),
            ..row()
        },
        Row {
            name: "R2 order-level check_num beyond the order's remaining uses",
            vouchers: || codes(&[("Z-FIRST", 2), ("A-SECOND", 3)]),
            before: |o| vec![vec![("order_id", o.to_string()), ("check_num", "1".into())]],
            request: |o| vec![("order_id", o.to_string()), ("check_num", "5".into())],
            expect: |_| exceed("订单本次核销5次, 剩余可核销4次"),
            used: || codes(&[("Z-FIRST", 1), ("A-SECOND", 0)]),
            ..row()
        },
        Row {
            name: "R2 neither voucher_infos nor confirm_code nor check_num",
            request: |o| vec![("order_id", o.to_string())],
            expect: |_| missing("voucher_infos"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R2 order-level check_num 0",
            request: |o| vec![("order_id", o.to_string()), ("check_num", "0".into())],
            expect: |_| invalid("check_num", "本次核销数量必须大于0"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        // ---- R3: an order key is required.
        Row {
            name: "R3 neither order_id nor out_order_id",
            request: |_| {
                vec![(
                    "voucher_infos",
                    json!([use_of("CODE-A1", 1, -5)]).to_string(),
                )]
            },
            expect: |_| missing("order_id"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        // ---- R4 / R6: unknown and foreign orders are answered identically.
        Row {
            name: "R4 unknown order_id",
            request: |o| vreq(o + 900_000, json!([use_of("CODE-A1", 1, -5)])),
            expect: |_| not_exist(),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R6 order of another vendor app",
            foreign: true,
            expect: |_| not_exist(),
            used: || codes(&[("CODE-A1", 0)]),
            same_body_as: Some("R4 unknown order_id"),
            ..row()
        },
        Row {
            name: "R6 out_order_id of another vendor app",
            foreign: true,
            order: || json!({"out_order_id": "OUT-FOREIGN-1"}),
            request: |_| {
                vec![
                    ("out_order_id", "OUT-FOREIGN-1".into()),
                    (
                        "voucher_infos",
                        json!([use_of("CODE-A1", 1, -5)]).to_string(),
                    ),
                ]
            },
            expect: |_| not_exist(),
            used: || codes(&[("CODE-A1", 0)]),
            same_body_as: Some("R4 unknown order_id"),
            ..row()
        },
        // ---- R5: out_order_id.
        Row {
            name: "R5 out_order_id differs from the order's",
            order: || json!({"out_order_id": "OUT-R5-A"}),
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 1, -5)]));
                b.push(("out_order_id", "OUT-R5-B".into()));
                b
            },
            expect: |_| business("isv.out-order-id-mismatch", "外部订单号与订单不匹配"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R5 out_order_id alone resolves the order",
            order: || json!({"out_order_id": "OUT-R5-C"}),
            request: |_| {
                vec![
                    ("out_order_id", "OUT-R5-C".into()),
                    (
                        "voucher_infos",
                        json!([use_of("CODE-A1", 2, -5)]).to_string(),
                    ),
                ]
            },
            used: || codes(&[("CODE-A1", 2)]),
            ..row()
        },
        Row {
            name: "R5 both keys naming the same order",
            order: || json!({"out_order_id": "OUT-R5-D"}),
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 1, -5)]));
                b.push(("out_order_id", "OUT-R5-D".into()));
                b
            },
            ..row()
        },
        // ---- R7: no codes issued yet.
        Row {
            name: "R7 order created without vouchers",
            vouchers: Vec::new,
            expect: |_| {
                business(
                    "isv.order-status-invalid",
                    "订单状态不允许核销: 订单尚未发码",
                )
            },
            used: Vec::new,
            ..row()
        },
        // ---- R10: an unknown code refuses the whole request.
        Row {
            name: "R10 one code not issued for the order",
            request: |o| {
                vreq(
                    o,
                    json!([use_of("CODE-A1", 1, -5), use_of("NOPE-9999", 1, -5)]),
                )
            },
            expect: |_| business("isv.voucher-not-exist", "核销码不存在: 核销码****9999"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R10 legacy confirm_code not issued for the order",
            request: |o| {
                vec![
                    ("order_id", o.to_string()),
                    ("confirm_code", "NOPE-8888".into()),
                    ("check_num", "1".into()),
                ]
            },
            expect: |_| business("isv.voucher-not-exist", "核销码不存在: 核销码****8888"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        // ---- R11: the same code twice in one list.
        Row {
            name: "R11 same confirm_code twice",
            request: |o| {
                vreq(
                    o,
                    json!([use_of("CODE-A1", 1, -5), use_of("CODE-A1", 1, -4)]),
                )
            },
            expect: |_| invalid("voucher_infos", "voucher_infos[1].confirm_code重复"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        // A key twice in one entry has two readings (serde_json's derive would take the last:
        // 3 uses here); the list is refused like any malformed one, and nothing is counted.
        Row {
            name: "R11 a key twice in one voucher_infos entry is refused, not read last-wins",
            request: |o| {
                vec![
                    ("order_id", o.to_string()),
                    (
                        "voucher_infos",
                        format!(
                            r#"[{{"confirm_code":"CODE-A1","used_quantity":1,"used_quantity":3,"used_date":"{}"}}]"#,
                            at(-5)
                        ),
                    ),
                ]
            },
            expect: |_| {
                invalid(
                    "voucher_infos",
                    "键\"used_quantity\"重复 at line 1 column 60",
                )
            },
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        // ---- R12: quantities and list size.
        Row {
            name: "R12 used_quantity 0 in delta mode",
            request: |o| vreq(o, json!([use_of("CODE-A1", 0, -5)])),
            expect: |_| {
                invalid(
                    "voucher_infos",
                    "voucher_infos[0].used_quantity必须为不小于1的整数",
                )
            },
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R12 used_quantity negative in cumulative mode",
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", -1, -5)]));
                b.push(("write_off_type", "1".into()));
                b
            },
            expect: |_| {
                invalid(
                    "voucher_infos",
                    "voucher_infos[0].used_quantity必须为不小于0的整数",
                )
            },
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R12 used_quantity not an integer",
            request: |o| {
                vreq(
                    o,
                    json!([{"confirm_code": "CODE-A1", "used_quantity": 1.5, "used_date": at(-5)}]),
                )
            },
            expect: |_| {
                invalid(
                    "voucher_infos",
                    "voucher_infos[0].used_quantity必须为不小于1的整数",
                )
            },
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R12 used_quantity as a numeric string is read",
            request: |o| {
                vreq(
                    o,
                    json!([{"confirm_code": "CODE-A1", "used_quantity": "2", "used_date": at(-5)}]),
                )
            },
            used: || codes(&[("CODE-A1", 2)]),
            ..row()
        },
        Row {
            name: "R12 cumulative 0 is a legal no-op",
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 0, -5)]));
                b.push(("write_off_type", "1".into()));
                b
            },
            expect: |_| no_change(),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R12 999 voucher_infos entries",
            vouchers: || (0..999).map(|i| (format!("C{i:04}"), 1)).collect(),
            request: |o| {
                vreq(
                    o,
                    Value::Array(
                        (0..999)
                            .map(|i| use_of(&format!("C{i:04}"), 1, -5))
                            .collect(),
                    ),
                )
            },
            used: || (0..999).map(|i| (format!("C{i:04}"), 1)).collect(),
            ..row()
        },
        Row {
            name: "R12 1000 voucher_infos entries",
            request: |o| {
                vreq(
                    o,
                    Value::Array(
                        (0..1000)
                            .map(|i| use_of(&format!("C{i:04}"), 1, -5))
                            .collect(),
                    ),
                )
            },
            expect: |_| invalid("voucher_infos", "最多999项, 实际1000项"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        // ---- R13: over-redemption refuses everything, naming what remains.
        Row {
            name: "R13 delta beyond the code's remaining uses",
            vouchers: || codes(&[("CODE-A1", 2)]),
            before: |o| vec![vreq(o, json!([use_of("CODE-A1", 1, -10)]))],
            request: |o| vreq(o, json!([use_of("CODE-A1", 2, -5)])),
            expect: |_| exceed("核销码****-A1本次核销2次, 剩余可核销1次"),
            used: || codes(&[("CODE-A1", 1)]),
            ..row()
        },
        Row {
            name: "R13 one entry fits, another overflows: nothing applied",
            vouchers: || codes(&[("CODE-A1", 5), ("CODE-B2", 1)]),
            request: |o| {
                vreq(
                    o,
                    json!([use_of("CODE-A1", 2, -5), use_of("CODE-B2", 2, -5)]),
                )
            },
            expect: |_| exceed("核销码****-B2本次核销2次, 剩余可核销1次"),
            used: || codes(&[("CODE-A1", 0), ("CODE-B2", 0)]),
            ..row()
        },
        Row {
            name: "R13 legacy check_num beyond the code",
            vouchers: || codes(&[("CODE-A1", 2)]),
            request: |o| {
                vec![
                    ("order_id", o.to_string()),
                    ("confirm_code", "CODE-A1".into()),
                    ("check_num", "3".into()),
                ]
            },
            expect: |_| exceed("核销码****-A1本次核销3次, 剩余可核销2次"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        // ---- R14 / R15: partial and multi-use.
        Row {
            name: "R14 partial use of a multi-use code",
            vouchers: || codes(&[("CODE-A1", 3)]),
            request: |o| vreq(o, json!([use_of("CODE-A1", 2, -5)])),
            used: || codes(&[("CODE-A1", 2)]),
            ..row()
        },
        Row {
            name: "R15 multi-use code used up over several reports",
            vouchers: || codes(&[("CODE-A1", 3)]),
            before: |o| {
                vec![
                    vreq(o, json!([use_of("CODE-A1", 1, -30)])),
                    vreq(o, json!([use_of("CODE-A1", 1, -20)])),
                ]
            },
            request: |o| vreq(o, json!([use_of("CODE-A1", 1, -10)])),
            used: || codes(&[("CODE-A1", 3)]),
            ..row()
        },
        // ---- R16: a retried delta report is success and changes nothing.
        Row {
            name: "R16 delta report replayed",
            before: |o| vec![vreq(o, json!([use_of("CODE-A1", 2, -5)]))],
            request: |o| vreq(o, json!([use_of("CODE-A1", 2, -5)])),
            expect: |_| replayed(),
            used: || codes(&[("CODE-A1", 2)]),
            ..row()
        },
        Row {
            name: "R16 same code, same time, other quantity is a new report",
            before: |o| vec![vreq(o, json!([use_of("CODE-A1", 2, -5)]))],
            request: |o| vreq(o, json!([use_of("CODE-A1", 1, -5)])),
            used: || codes(&[("CODE-A1", 3)]),
            ..row()
        },
        Row {
            name: "R16/R30 retry of a list with one new entry applies only the new one",
            vouchers: || codes(&[("CODE-A1", 5), ("CODE-B2", 5)]),
            before: |o| vec![vreq(o, json!([use_of("CODE-A1", 1, -5)]))],
            request: |o| {
                vreq(
                    o,
                    json!([use_of("CODE-A1", 1, -5), use_of("CODE-B2", 1, -5)]),
                )
            },
            used: || codes(&[("CODE-A1", 1), ("CODE-B2", 1)]),
            ..row()
        },
        Row {
            name: "R16 legacy reports carry no gate time: a repeat counts again (documented)",
            before: |o| {
                vec![vec![
                    ("order_id", o.to_string()),
                    ("confirm_code", "CODE-A1".into()),
                    ("check_num", "1".into()),
                ]]
            },
            request: |o| {
                vec![
                    ("order_id", o.to_string()),
                    ("confirm_code", "CODE-A1".into()),
                    ("check_num", "1".into()),
                ]
            },
            used: || codes(&[("CODE-A1", 2)]),
            ..row()
        },
        // ---- R17 / R18 / R19: cumulative counts.
        Row {
            name: "R17 cumulative equal to the count",
            before: |o| {
                vec![{
                    let mut b = vreq(o, json!([use_of("CODE-A1", 3, -10)]));
                    b.push(("write_off_type", "1".into()));
                    b
                }]
            },
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 3, -5)]));
                b.push(("write_off_type", "1".into()));
                b
            },
            expect: |_| no_change(),
            used: || codes(&[("CODE-A1", 3)]),
            ..row()
        },
        Row {
            name: "R18 cumulative going backwards never decreases",
            before: |o| {
                vec![{
                    let mut b = vreq(o, json!([use_of("CODE-A1", 3, -10)]));
                    b.push(("write_off_type", "1".into()));
                    b
                }]
            },
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 1, -5)]));
                b.push(("write_off_type", "1".into()));
                b
            },
            expect: |_| no_change(),
            used: || codes(&[("CODE-A1", 3)]),
            flag: Some("count_regressed"),
            ..row()
        },
        Row {
            name: "R18 legacy order-level cumulative going backwards",
            before: |o| {
                vec![vec![
                    ("order_id", o.to_string()),
                    ("check_num", "3".into()),
                    ("write_off_type", "1".into()),
                ]]
            },
            request: |o| {
                vec![
                    ("order_id", o.to_string()),
                    ("check_num", "2".into()),
                    ("write_off_type", "1".into()),
                ]
            },
            expect: |_| no_change(),
            used: || codes(&[("CODE-A1", 3)]),
            flag: Some("count_regressed"),
            ..row()
        },
        Row {
            name: "R17 cumulative raise applies the difference",
            before: |o| {
                vec![{
                    let mut b = vreq(o, json!([use_of("CODE-A1", 2, -10)]));
                    b.push(("write_off_type", "1".into()));
                    b
                }]
            },
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 4, -5)]));
                b.push(("write_off_type", "1".into()));
                b
            },
            used: || codes(&[("CODE-A1", 4)]),
            ..row()
        },
        Row {
            name: "R19 cumulative beyond capacity",
            before: |o| {
                vec![{
                    let mut b = vreq(o, json!([use_of("CODE-A1", 3, -10)]));
                    b.push(("write_off_type", "1".into()));
                    b
                }]
            },
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 6, -5)]));
                b.push(("write_off_type", "1".into()));
                b
            },
            expect: |_| exceed("核销码****-A1本次核销3次, 剩余可核销2次"),
            used: || codes(&[("CODE-A1", 3)]),
            ..row()
        },
        // ---- R20 / R21: shapes.
        Row {
            name: "R20 write_off_type 2",
            request: |o| {
                let mut b = vreq(o, json!([use_of("CODE-A1", 1, -5)]));
                b.push(("write_off_type", "2".into()));
                b
            },
            expect: |_| invalid("write_off_type", "只能为0(本次核销数量)或1(累计核销数量)"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R21 used_date malformed",
            request: |o| {
                vreq(
                    o,
                    json!([{"confirm_code": "CODE-A1", "used_quantity": 1, "used_date": "2024-05-01T10:00:00"}]),
                )
            },
            expect: |_| {
                invalid(
                    "voucher_infos",
                    "voucher_infos[0].used_date格式必须为yyyy-MM-dd HH:mm:ss",
                )
            },
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        // ---- R22–R26: dates.
        Row {
            name: "R22 no used_date: applied with the server's time, flagged",
            request: |o| vreq(o, json!([{"confirm_code": "CODE-A1", "used_quantity": 1}])),
            flag: Some("time_source_server"),
            ..row()
        },
        Row {
            name: "R23 used_date beyond the 600 s tolerance",
            request: |o| vreq(o, json!([use_of("CODE-A1", 1, 20)])),
            expect: |b| {
                business(
                    "isv.used-date-invalid",
                    format!("核销时间无效: {} 晚于当前时间", used_date(b)),
                )
            },
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R23 used_date ahead but within the tolerance",
            request: |o| vreq(o, json!([use_of("CODE-A1", 1, 5)])),
            ..row()
        },
        Row {
            name: "R24 used_date before the order was created",
            request: |o| vreq(o, json!([use_of("CODE-A1", 1, -2 * 24 * 60)])),
            expect: |b| {
                business(
                    "isv.used-date-invalid",
                    format!("核销时间无效: {} 早于下单时间", used_date(b)),
                )
            },
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R25 used_date before valid_from",
            order: || json!({"valid_from": at(-60)}),
            request: |o| vreq(o, json!([use_of("CODE-A1", 1, -120)])),
            expect: |b| {
                business(
                    "isv.used-date-invalid",
                    format!("核销时间无效: {} 早于门票生效时间", used_date(b)),
                )
            },
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R25 used_date after valid_from",
            order: || json!({"valid_from": at(-60)}),
            request: |o| vreq(o, json!([use_of("CODE-A1", 1, -30)])),
            ..row()
        },
        Row {
            name: "R26 used_date after valid_until: accepted, flagged",
            order: || json!({"valid_until": at(-120)}),
            request: |o| vreq(o, json!([use_of("CODE-A1", 1, -60)])),
            flag: Some("late_redemption"),
            ..row()
        },
        // ---- R27: legacy total_num / return_num.
        Row {
            name: "R27 total_num above the uses sold",
            vouchers: || codes(&[("CODE-A1", 3)]),
            request: |o| {
                vec![
                    ("order_id", o.to_string()),
                    ("confirm_code", "CODE-A1".into()),
                    ("check_num", "1".into()),
                    ("total_num", "5".into()),
                ]
            },
            expect: |_| exceed("total_num 5 超过订单可核销总数 3"),
            used: || codes(&[("CODE-A1", 0)]),
            ..row()
        },
        Row {
            name: "R27 total_num below the uses sold: accepted, flagged",
            vouchers: || codes(&[("CODE-A1", 3)]),
            request: |o| {
                vec![
                    ("order_id", o.to_string()),
                    ("confirm_code", "CODE-A1".into()),
                    ("check_num", "1".into()),
                    ("total_num", "2".into()),
                ]
            },
            flag: Some("total_num_mismatch"),
            ..row()
        },
        Row {
            name: "R27 return_num the ledger does not know: accepted, flagged",
            vouchers: || codes(&[("CODE-A1", 3)]),
            request: |o| {
                vec![
                    ("order_id", o.to_string()),
                    ("confirm_code", "CODE-A1".into()),
                    ("check_num", "1".into()),
                    ("return_num", "1".into()),
                ]
            },
            flag: Some("return_num_mismatch"),
            ..row()
        },
    ]
}

/// The order's status as derived from its counters.
fn status_of(vouchers: &[(String, i64)], used: &[(String, i64)]) -> &'static str {
    let capacity: i64 = vouchers.iter().map(|(_, n)| n).sum();
    let total: i64 = used.iter().map(|(_, n)| n).sum();
    match (vouchers.is_empty(), total) {
        (true, _) => "awaiting_issuance",
        (false, 0) => "issued",
        (false, u) if u >= capacity => "used",
        _ => "partly_used",
    }
}

fn used_now(order: &Value) -> Vec<(String, i64)> {
    order["vouchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["confirm_code"].as_str().unwrap().to_owned(),
                v["used"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn send(app: &TestApp, biz: &Biz) -> crate::helpers::TopReply {
    let mut call = TopCall::verify(KEY, SECRET);
    for (k, v) in biz {
        call = call.set(k, v);
    }
    app.call(&call).await
}

/// Runs one row; returns what went wrong (empty when it passed).
async fn run_row(
    app: &TestApp,
    order_id: i64,
    row: &Row,
    bodies: &mut HashMap<&'static str, String>,
) -> Vec<String> {
    let mut errs = Vec::new();
    macro_rules! check {
        ($cond:expr, $($arg:tt)+) => {
            if !$cond {
                errs.push(format!($($arg)+));
            }
        };
    }
    let vouchers = (row.vouchers)();
    let refs: Vec<(&str, i64)> = vouchers.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    create_order_with(
        app,
        order_id,
        if row.foreign { OTHER } else { KEY },
        &refs,
        (row.order)(),
    )
    .await;
    for biz in (row.before)(order_id) {
        let reply = send(app, &biz).await;
        check!(
            reply.text().contains("\"is_success\":true"),
            "setup request {biz:?} failed: {}",
            reply.text()
        );
    }
    let before = ledger_snapshot(app, order_id).await;
    let biz = (row.request)(order_id);
    let reply = send(app, &biz).await;
    let id = assert_top_envelope(&reply);
    let order = app.order(order_id).await;
    let used = used_now(&order);
    let want_used = (row.used)();
    if used != want_used {
        let diff: Vec<_> = used
            .iter()
            .zip(&want_used)
            .filter(|(a, b)| a != b)
            .take(5)
            .collect();
        errs.push(format!(
            "used {} codes, expected {}; first differences (got, want): {diff:?}",
            used.len(),
            want_used.len()
        ));
    }
    check!(
        order["status"] == status_of(&vouchers, &used),
        "status {} for {used:?}",
        order["status"]
    );

    match (row.expect)(&biz) {
        Expect::Ok { outcome, reason } => {
            check!(
                reply.text() == success_json(&id),
                "expected success, got {}",
                reply.text()
            );
            let events = order["events"].as_array().unwrap();
            let (transitions, mine): (Vec<&Value>, Vec<&Value>) = events
                .iter()
                .filter(|e| e["request_id"] == id.as_str())
                .partition(|e| e["action"] == "order.status");
            check!(
                mine.len() == 1,
                "expected one verify audit entry for {id}, got {mine:?}"
            );
            // A request that moves the order's status leaves exactly one `order.status` entry
            // with the same request_id, naming both statuses; one that does not, none.
            let (from, to) = (&before["status"], &order["status"]);
            if from == to {
                check!(
                    transitions.is_empty(),
                    "status stayed {to} but got transitions {transitions:?}"
                );
            } else {
                let want = json!({
                    "outcome": "accepted", "reason": to, "order_id": order_id, "app_key": KEY,
                    "detail": {"from": from, "to": to, "cause": "taobao.travel.ticket.order.verify"},
                });
                let got: Vec<Value> = transitions
                    .iter()
                    .map(|e| {
                        json!({"outcome": e["outcome"], "reason": e["reason"],
                               "order_id": e["order_id"], "app_key": e["app_key"],
                               "detail": e["detail"]})
                    })
                    .collect();
                check!(
                    got == vec![want.clone()],
                    "status {from} -> {to}: expected one transition entry {want}, got {got:?}"
                );
            }
            if let Some(e) = mine.first() {
                check!(
                    e["outcome"] == outcome && e["reason"] == reason,
                    "audit entry {} / {}, expected {outcome} / {reason}",
                    e["outcome"],
                    e["reason"]
                );
                check!(
                    e["action"] == "taobao.travel.ticket.order.verify",
                    "audit action {}",
                    e["action"]
                );
                let flags: Vec<&str> = e["detail"]["flags"]
                    .as_array()
                    .map(|f| f.iter().filter_map(|x| x["kind"].as_str()).collect())
                    .unwrap_or_default();
                match row.flag {
                    Some(flag) => check!(
                        flags.contains(&flag),
                        "flag {flag} missing in {}",
                        e["detail"]
                    ),
                    None => check!(flags.is_empty(), "unexpected flags {flags:?}"),
                }
            }
        }
        Expect::Refused {
            code,
            msg,
            sub_code,
            sub_msg,
        } => {
            let want = error_json(code, &msg, Some((&sub_code, &sub_msg)), &id);
            check!(
                reply.text() == want,
                "answer\n  got  {}\n  want {want}",
                reply.text()
            );
            check!(
                ledger_snapshot(app, order_id).await == before,
                "a refused request changed the order"
            );
            let rejected =
                audit_entries(app, &format!("app_key={KEY}&outcome=rejected&limit=1000")).await;
            let mine: Vec<&Value> = rejected
                .iter()
                .filter(|e| e["request_id"] == id.as_str())
                .collect();
            check!(
                mine.len() == 1,
                "expected one rejected audit entry for {id}, got {mine:?}"
            );
            if let Some(e) = mine.first() {
                check!(
                    e["reason"] == sub_code.as_str(),
                    "audit reason {}, expected {sub_code}",
                    e["reason"]
                );
                check!(
                    e["detail"]["sub_msg"] == sub_msg.as_str(),
                    "audit sub_msg {}",
                    e["detail"]["sub_msg"]
                );
            }
        }
    }
    let normalised = reply.text().replace(&request_id_of(&reply), "<id>");
    if let Some(other) = row.same_body_as {
        check!(
            bodies.get(other) == Some(&normalised),
            "body differs from {other}: {normalised} vs {:?}",
            bodies.get(other)
        );
    }
    bodies.insert(row.name, normalised);
    errs
}

/// docs/DOMAIN.md R1–R30, every rule that applies to verify, one row each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verify_rule_through_the_gateway() {
    let _ = base();
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_app(OTHER, "other-secret-0123456789").await;
    let mut bodies = HashMap::new();
    let mut report = Vec::new();
    let rows = rows();
    for (i, row) in rows.iter().enumerate() {
        let order_id = 30_000 + i as i64;
        for e in run_row(&app, order_id, row, &mut bodies).await {
            report.push(format!("[{}] {e}", row.name));
        }
    }
    assert!(rows.len() >= 45, "table shrank");
    assert!(
        report.is_empty(),
        "{} rule violations:\n{}",
        report.len(),
        report.join("\n")
    );
}
