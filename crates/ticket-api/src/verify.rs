//! `taobao.travel.ticket.order.verify` (门票核销通知): parameters and response.
//!
//! Both request generations are accepted (docs/PROTOCOL.md §4.1, docs/DOMAIN.md §2.1): the legacy
//! form (`confirm_code`, `check_num`, `total_num`, `return_num`) and `voucher_infos`, a JSON list
//! sent as one form parameter. [`VerifyParams::from_params`] applies every rule that needs no
//! ledger, so a malformed request is refused with a precise 40/41 before the ledger is touched:
//!
//! | Rule | Refusal |
//! |---|---|
//! | R3 neither `order_id` nor `out_order_id` | 40 `order_id` |
//! | no `voucher_infos`, no `confirm_code`, no `check_num` | 40 `voucher_infos` |
//! | legacy `confirm_code` without `check_num` | 40 `check_num` |
//! | R11 a code twice in `voucher_infos` | 41 `voucher_infos` |
//! | a key twice in one JSON object of `voucher_infos` (not last-wins) | 41 `voucher_infos` |
//! | R12 `used_quantity` ≤ 0 (delta), < 0 (cumulative), not an integer; > 999 entries | 41 `voucher_infos` |
//! | a count above the ledger's bound (`ticket_ledger::limits`): `used_quantity` or a code's `check_num` > 1,000,000, an order-level `check_num` or `total_num` > 999,000,000, `return_num` > 100,000 | 41 naming it |
//! | R20 `write_off_type` ∉ {0, 1} | 41 `write_off_type` |
//! | R21 malformed `used_date` | 41 `voucher_infos` |
//! | R1 legacy `confirm_code` not in `voucher_infos` | 41 `confirm_code` |
//!
//! Empty values count as absent: some SDKs send every declared parameter, empty or not.

use serde_json::Value;
use ticket_ledger::limits::{MAX_CODE_USES, MAX_ORDER_USES, MAX_TICKETS, MAX_VOUCHERS};
/// `write_off_type`: how quantities count, shared with the ledger that applies them.
pub use ticket_ledger::WriteOffType;
use top_protocol::timestamp::parse_beijing;
use top_protocol::{Params, TopError};

use crate::wire::{
    json_above, opt, opt_count, opt_int, parse_int, parse_json_unique_keys, too_large,
};

/// The TOP method name.
pub const METHOD: &str = "taobao.travel.ticket.order.verify";

/// The most entries one `voucher_infos` may carry (the API's maxListSize, which is also the
/// most codes an order may have).
pub const MAX_VOUCHER_INFOS: usize = MAX_VOUCHERS;

/// One `voucher_infos` entry (`VoucherInfoDto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherInfo {
    /// The code used.
    pub confirm_code: String,
    /// Uses this time (`write_off_type` 0) or so far (1). A missing value reads as 0, because
    /// one Go SDK omits zero numbers (`omitempty`).
    pub used_quantity: i64,
    /// Gate time, `yyyy-MM-dd HH:mm:ss` at UTC+8; `None` when the vendor sent none.
    pub used_date: Option<String>,
}

/// Validated parameters of a verify request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyParams {
    /// Platform order id.
    pub order_id: Option<i64>,
    /// Vendor order id.
    pub out_order_id: Option<String>,
    /// Legacy single code (or, beside `voucher_infos`, a code that must be in the list).
    pub confirm_code: Option<String>,
    /// Legacy uses this time (or so far, with `write_off_type` 1).
    pub check_num: Option<i64>,
    /// Legacy: the vendor's total uses allowed.
    pub total_num: Option<i64>,
    /// Legacy: the vendor's cancelled tickets.
    pub return_num: Option<i64>,
    /// The new form; empty when absent.
    pub voucher_infos: Vec<VoucherInfo>,
    /// 0 (delta, the default) or 1 (cumulative): [`VerifyParams::mode`] reads it as a
    /// [`WriteOffType`]. A number, because a client may send what the server refuses.
    pub write_off_type: i64,
}

impl VerifyParams {
    /// Parses and shape-checks the merged request parameters.
    pub fn from_params(params: &Params) -> Result<Self, TopError> {
        let order_id = opt_int(params, "order_id", 1)?;
        let out_order_id = opt(params, "out_order_id").map(str::to_owned);
        if order_id.is_none() && out_order_id.is_none() {
            return Err(TopError::missing_argument("order_id"));
        }
        let mode = match opt(params, "write_off_type") {
            None | Some("0") => WriteOffType::Delta,
            Some("1") => WriteOffType::Cumulative,
            Some(_) => return Err(bad_write_off_type()),
        };
        let cumulative = mode == WriteOffType::Cumulative;
        let voucher_infos = match opt(params, "voucher_infos") {
            Some(text) => parse_voucher_infos(text, cumulative)?,
            None => Vec::new(),
        };
        let confirm_code = opt(params, "confirm_code").map(str::to_owned);
        // With a code (and no list), `check_num` counts that code's uses; otherwise the
        // order's (R2), or it is ignored beside `voucher_infos` (R1).
        let check_max = if voucher_infos.is_empty() && confirm_code.is_some() {
            MAX_CODE_USES
        } else {
            MAX_ORDER_USES
        };
        let check_num = opt_count(params, "check_num", 0, check_max)?;
        if check_num == Some(0) && !cumulative && voucher_infos.is_empty() {
            return Err(TopError::invalid_argument(
                "check_num",
                "本次核销数量必须大于0",
            ));
        }
        let total_num = opt_count(params, "total_num", 0, MAX_ORDER_USES)?;
        let return_num = opt_count(params, "return_num", 0, MAX_TICKETS)?;

        if voucher_infos.is_empty() {
            if confirm_code.is_some() && check_num.is_none() {
                return Err(TopError::missing_argument("check_num"));
            }
            if confirm_code.is_none() && check_num.is_none() {
                return Err(TopError::missing_argument("voucher_infos"));
            }
        } else if let Some(code) = &confirm_code {
            // R1: the list wins; a legacy code beside it must be one of its codes.
            if !voucher_infos.iter().any(|v| &v.confirm_code == code) {
                return Err(TopError::invalid_argument(
                    "confirm_code",
                    "confirm_code不在voucher_infos中",
                ));
            }
        }
        Ok(Self {
            order_id,
            out_order_id,
            confirm_code,
            check_num,
            total_num,
            return_num,
            voucher_infos,
            write_off_type: mode.as_i64(),
        })
    }

    /// `write_off_type` as the type it names; refused as the parser refuses it when the number
    /// names none (a client may build parameters the server refuses).
    pub fn mode(&self) -> Result<WriteOffType, TopError> {
        WriteOffType::from_wire(self.write_off_type).ok_or_else(bad_write_off_type)
    }

    /// The parameters as a client sends them: only those set, `voucher_infos` as compact JSON
    /// with the key order real SDKs use (`confirm_code`, `used_quantity`, `used_date`).
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(v) = self.order_id {
            out.push(("order_id", v.to_string()));
        }
        if let Some(v) = &self.out_order_id {
            out.push(("out_order_id", v.clone()));
        }
        if let Some(v) = &self.confirm_code {
            out.push(("confirm_code", v.clone()));
        }
        for (name, v) in [
            ("check_num", self.check_num),
            ("total_num", self.total_num),
            ("return_num", self.return_num),
        ] {
            if let Some(v) = v {
                out.push((name, v.to_string()));
            }
        }
        if !self.voucher_infos.is_empty() {
            out.push(("voucher_infos", voucher_infos_json(&self.voucher_infos)));
        }
        out.push(("write_off_type", self.write_off_type.to_string()));
        out
    }
}

/// R20: the refusal of a `write_off_type` that is neither 0 nor 1.
fn bad_write_off_type() -> TopError {
    TopError::invalid_argument("write_off_type", "只能为0(本次核销数量)或1(累计核销数量)")
}

/// Renders entries as the compact JSON text SDKs put on the wire.
pub fn voucher_infos_json(entries: &[VoucherInfo]) -> String {
    // Written by hand: serde_json's map sorts keys, and the SDKs' order is part of what gets
    // signed and captured.
    let mut out = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"confirm_code\":");
        out.push_str(&Value::from(e.confirm_code.as_str()).to_string());
        out.push_str(",\"used_quantity\":");
        out.push_str(&e.used_quantity.to_string());
        if let Some(d) = &e.used_date {
            out.push_str(",\"used_date\":");
            out.push_str(&Value::from(d.as_str()).to_string());
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// Parses `voucher_infos` with the tolerance docs/PROTOCOL.md §4.3 requires: any key order,
/// `null` or missing fields as absent, `used_quantity` as a number or numeric string, unknown
/// keys ignored — but not a key repeated in one object, which has no single meaning
/// ([`parse_json_unique_keys`]).
fn parse_voucher_infos(text: &str, cumulative: bool) -> Result<Vec<VoucherInfo>, TopError> {
    let invalid = |detail: String| TopError::invalid_argument("voucher_infos", &detail);
    let value = parse_json_unique_keys(text).map_err(invalid)?;
    let Value::Array(items) = value else {
        return Err(invalid("必须为JSON数组".into()));
    };
    if items.len() > MAX_VOUCHER_INFOS {
        return Err(invalid(format!(
            "最多{MAX_VOUCHER_INFOS}项, 实际{}项",
            items.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(invalid(format!("voucher_infos[{i}]必须为对象")));
        };
        let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
        let confirm_code = match field("confirm_code") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(invalid(format!("voucher_infos[{i}].confirm_code缺失"))),
        };
        let raw = field("used_quantity");
        let used_quantity = match raw {
            None => Some(0),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => parse_int(s),
            Some(_) => None,
        };
        if json_above(raw, MAX_CODE_USES) {
            return Err(too_large(
                "voucher_infos",
                &format!("voucher_infos[{i}].used_quantity"),
                MAX_CODE_USES,
            ));
        }
        let min = if cumulative { 0 } else { 1 };
        let used_quantity = used_quantity.filter(|q| *q >= min).ok_or_else(|| {
            invalid(format!(
                "voucher_infos[{i}].used_quantity必须为不小于{min}的整数"
            ))
        })?;
        let used_date = match field("used_date") {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) if parse_beijing(s).is_some() => Some(s.clone()),
            Some(_) => {
                return Err(invalid(format!(
                    "voucher_infos[{i}].used_date格式必须为yyyy-MM-dd HH:mm:ss"
                )))
            }
        };
        // R11: the same code twice is ambiguous; refuse rather than guess a sum.
        if !seen.insert(confirm_code.clone()) {
            return Err(invalid(format!("voucher_infos[{i}].confirm_code重复")));
        }
        out.push(VoucherInfo {
            confirm_code,
            used_quantity,
            used_date,
        });
    }
    Ok(out)
}

/// The response of a verify: `is_success` (always true on success; refusals are
/// `error_response`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyResponse {
    /// Whether the report was recorded (or recognised as already recorded).
    pub is_success: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::wire::test_support::{params, refusal};

    fn err(pairs: &[(&str, &str)]) -> (u32, String) {
        refusal(VerifyParams::from_params, pairs)
    }

    #[test]
    fn legacy_form_parses() {
        let p = VerifyParams::from_params(&params(&[
            ("order_id", "2983749123412345"),
            ("confirm_code", "A1B2C3D4"),
            ("check_num", "1"),
            ("total_num", "3"),
            ("return_num", "0"),
        ]))
        .unwrap();
        assert_eq!(p.order_id, Some(2983749123412345));
        assert_eq!(p.check_num, Some(1));
        assert_eq!(p.write_off_type, 0);
    }

    #[test]
    fn voucher_infos_tolerates_sdk_variations() {
        let text = r#"[ {"used_date":"2024-05-01 10:00:00","confirm_code":"C\/1","used_quantity":"2","extra":1},
                       {"confirm_code":"\u0043\u0032","used_quantity":null,"used_date":null} ]"#;
        let p = VerifyParams::from_params(&params(&[
            ("order_id", "1"),
            ("write_off_type", "1"),
            ("voucher_infos", text),
        ]))
        .unwrap();
        assert_eq!(p.voucher_infos[0].confirm_code, "C/1");
        assert_eq!(p.voucher_infos[0].used_quantity, 2);
        assert_eq!(p.voucher_infos[1].confirm_code, "C2");
        assert_eq!(p.voucher_infos[1].used_quantity, 0);
        assert_eq!(p.voucher_infos[1].used_date, None);
    }

    #[test]
    fn shape_rules_refuse_precisely() {
        let one = r#"[{"confirm_code":"A","used_quantity":1}]"#;
        assert_eq!(
            err(&[("confirm_code", "A"), ("check_num", "1")]),
            (40, "isv.missing-parameter:order_id".into())
        );
        assert_eq!(
            err(&[("order_id", "1"), ("confirm_code", "A")]),
            (40, "isv.missing-parameter:check_num".into())
        );
        assert_eq!(
            err(&[("order_id", "1")]),
            (40, "isv.missing-parameter:voucher_infos".into())
        );
        assert_eq!(
            err(&[("order_id", "x"), ("voucher_infos", one)]),
            (41, "isv.invalid-parameter:order_id".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("write_off_type", "2"),
                ("voucher_infos", one)
            ]),
            (41, "isv.invalid-parameter:write_off_type".into())
        );
        assert_eq!(
            err(&[("order_id", "1"), ("voucher_infos", "{}")]),
            (41, "isv.invalid-parameter:voucher_infos".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("voucher_infos", "[{'confirm_code': 'A'}]")
            ]),
            (41, "isv.invalid-parameter:voucher_infos".into())
        );
        let dup =
            r#"[{"confirm_code":"A","used_quantity":1},{"confirm_code":"A","used_quantity":1}]"#;
        assert_eq!(
            err(&[("order_id", "1"), ("voucher_infos", dup)]),
            (41, "isv.invalid-parameter:voucher_infos".into())
        );
        let zero = r#"[{"confirm_code":"A","used_quantity":0}]"#;
        assert_eq!(
            err(&[("order_id", "1"), ("voucher_infos", zero)]),
            (41, "isv.invalid-parameter:voucher_infos".into())
        );
        let frac = r#"[{"confirm_code":"A","used_quantity":1.5}]"#;
        assert_eq!(
            err(&[("order_id", "1"), ("voucher_infos", frac)]),
            (41, "isv.invalid-parameter:voucher_infos".into())
        );
        let date = r#"[{"confirm_code":"A","used_quantity":1,"used_date":"2024-05-01T10:00:00"}]"#;
        assert_eq!(
            err(&[("order_id", "1"), ("voucher_infos", date)]),
            (41, "isv.invalid-parameter:voucher_infos".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("confirm_code", "B"),
                ("voucher_infos", one)
            ]),
            (41, "isv.invalid-parameter:confirm_code".into())
        );
        assert_eq!(
            err(&[("order_id", "1"), ("confirm_code", "A"), ("check_num", "0")]),
            (41, "isv.invalid-parameter:check_num".into())
        );
    }

    #[test]
    fn a_key_twice_in_one_object_is_refused_not_read_last_wins() {
        for (text, key) in [
            (
                r#"[{"confirm_code":"A","used_quantity":1,"used_quantity":5}]"#,
                "used_quantity",
            ),
            (
                r#"[{"confirm_code":"A","used_quantity":1},{"confirm_code":"B","confirm_code":"C","used_quantity":1}]"#,
                "confirm_code",
            ),
            (
                r#"[{"confirm_code":"A","used_quantity":1,"used_date":null,"used_date":"2024-05-01 10:00:00"}]"#,
                "used_date",
            ),
            // Unknown keys are ignored, but not when repeated: nothing in the list may have two
            // readings.
            (
                r#"[{"confirm_code":"A","used_quantity":1,"extra":{"x":1,"x":2}}]"#,
                "x",
            ),
        ] {
            let e =
                VerifyParams::from_params(&params(&[("order_id", "1"), ("voucher_infos", text)]))
                    .unwrap_err();
            assert_eq!(
                (e.code, e.sub_code.as_deref()),
                (41, Some("isv.invalid-parameter:voucher_infos")),
                "{text}"
            );
            let sub_msg = e.sub_msg.unwrap_or_default();
            assert!(sub_msg.contains(&format!("键\"{key}\"重复")), "{sub_msg}");
        }
        // The same keys once each, in any order, still parse.
        let p = VerifyParams::from_params(&params(&[
            ("order_id", "1"),
            (
                "voucher_infos",
                r#"[{"used_quantity":5,"confirm_code":"A","extra":{"x":1,"y":[{"x":2}]}}]"#,
            ),
        ]))
        .unwrap();
        assert_eq!(p.voucher_infos[0].used_quantity, 5);
    }

    #[test]
    fn counts_above_the_ledgers_bounds_are_refused_naming_the_parameter() {
        let entry = |q: &str| format!(r#"[{{"confirm_code":"A","used_quantity":{q}}}]"#);
        for (mode, q) in [
            ("0", "1000001"),
            ("1", "1000001"),
            ("0", "9223372036854775807"),
            ("1", "\"9223372036854775807\""),
        ] {
            let refused = VerifyParams::from_params(&params(&[
                ("order_id", "1"),
                ("write_off_type", mode),
                ("voucher_infos", &entry(q)),
            ]))
            .expect_err("above the bound");
            assert_eq!(
                (refused.code, refused.sub_code.as_deref()),
                (41, Some("isv.invalid-parameter:voucher_infos")),
                "{mode} {q}"
            );
            assert!(
                refused
                    .sub_msg
                    .as_deref()
                    .is_some_and(|m| m.contains("voucher_infos[0].used_quantity")),
                "{refused:?}"
            );
        }
        assert!(VerifyParams::from_params(&params(&[
            ("order_id", "1"),
            ("voucher_infos", &entry("1000000")),
        ]))
        .is_ok());
        let legacy = |pairs: &[(&str, &str)]| {
            let mut all = vec![("order_id", "1")];
            all.extend_from_slice(pairs);
            err(&all)
        };
        assert_eq!(
            legacy(&[("confirm_code", "A"), ("check_num", "1000001")]),
            (41, "isv.invalid-parameter:check_num".into()),
            "a code's check_num"
        );
        assert_eq!(
            legacy(&[("check_num", "999000001")]),
            (41, "isv.invalid-parameter:check_num".into()),
            "an order's check_num"
        );
        assert!(VerifyParams::from_params(&params(&[
            ("order_id", "1"),
            ("check_num", "999000000")
        ]))
        .is_ok());
        assert_eq!(
            legacy(&[("check_num", "1"), ("total_num", "999000001")]),
            (41, "isv.invalid-parameter:total_num".into())
        );
        assert_eq!(
            legacy(&[("check_num", "1"), ("return_num", "100001")]),
            (41, "isv.invalid-parameter:return_num".into())
        );
    }

    #[test]
    fn list_limit_is_999() {
        let list = |n: usize| {
            let e: Vec<_> = (0..n)
                .map(|i| VoucherInfo {
                    confirm_code: format!("C{i}"),
                    used_quantity: 1,
                    used_date: None,
                })
                .collect();
            voucher_infos_json(&e)
        };
        let ok = list(999);
        assert_eq!(
            VerifyParams::from_params(&params(&[("order_id", "1"), ("voucher_infos", &ok)]))
                .unwrap()
                .voucher_infos
                .len(),
            999
        );
        let too_many = list(1000);
        assert_eq!(
            err(&[("order_id", "1"), ("voucher_infos", &too_many)]),
            (41, "isv.invalid-parameter:voucher_infos".into())
        );
    }

    #[test]
    fn to_params_round_trips() {
        let p = VerifyParams {
            order_id: Some(7),
            out_order_id: Some("OUT-1".into()),
            voucher_infos: vec![VoucherInfo {
                confirm_code: "CODE-001".into(),
                used_quantity: 1,
                used_date: Some("2024-05-01 10:00:00".into()),
            }],
            ..Default::default()
        };
        let wire: Params = p
            .to_params()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(
            wire.get("voucher_infos"),
            Some(
                r#"[{"confirm_code":"CODE-001","used_quantity":1,"used_date":"2024-05-01 10:00:00"}]"#
            )
        );
        assert_eq!(VerifyParams::from_params(&wire).unwrap(), p);
    }
}
