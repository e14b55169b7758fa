//! `alitrip.travel.ticket.order.create` (成功发码回调): the vendor reports issuing the codes of
//! a paid order (`issue_type` 1) or failing to (`issue_type` 2). docs/PROTOCOL.md §4.4.

use serde_json::Value;
use ticket_ledger::limits::{MAX_CODE_USES, MAX_VOUCHERS};
use top_protocol::{Params, TopError};

use crate::wire::{
    json_above, opt, opt_choice, parse_int, parse_json_unique_keys, req_int, required, too_large,
};

/// The TOP method name.
pub const METHOD: &str = "alitrip.travel.ticket.order.create";

/// The most bytes of extras (`assist_code`, `url`, `pdf_url`, `img`, …) one issued code may
/// carry, as compact JSON. They are kept with the code for as long as the ledger lives, so a
/// vendor may not make them as large as a request body; a real code's extras are a short
/// assist code and a URL or two.
pub const MAX_EXTRAS_BYTES: usize = 1024;

/// `issue_type`: what the vendor reports about issuing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    /// 1: the codes were issued.
    Issued,
    /// 2: issuing failed (`describe` says why).
    Failed,
}

impl IssueType {
    /// Every type, in wire order.
    pub const ALL: [IssueType; 2] = [Self::Issued, Self::Failed];

    /// The wire number.
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Issued => 1,
            Self::Failed => 2,
        }
    }

    /// The type a wire number names; `None` for any other number.
    pub fn from_wire(n: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_i64() == n)
    }

    /// The wire numbers, as the parser accepts them.
    fn wire_numbers() -> [i64; 2] {
        Self::ALL.map(Self::as_i64)
    }
}

/// One issued code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueVoucher {
    /// The code the buyer shows.
    pub confirm_code: String,
    /// `type`: 1 one code per ticket, 2 one code for many.
    pub voucher_type: Option<i64>,
    /// `quantity`: how many uses this code allows, 1 to [`MAX_CODE_USES`].
    pub quantity: i64,
    /// The optional extras (`assist_code`, `url`, `pdf_url`, `img`, and any other key), kept as
    /// received, as a JSON object's text.
    pub extras: Option<String>,
}

/// Validated parameters of an issuance report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueParams {
    /// Platform order id.
    pub order_id: i64,
    /// Vendor order id.
    pub out_order_id: String,
    /// 1 issued, 2 failed: [`IssueParams::kind`] reads it as an [`IssueType`]. A number,
    /// because a client may send what the server refuses.
    pub issue_type: i64,
    /// Why issuing failed (required with `issue_type` 2).
    pub describe: Option<String>,
    /// The codes (required, non-empty, with `issue_type` 1).
    pub voucher_infos: Vec<IssueVoucher>,
    /// `attribute_map` as received (a JSON object's text).
    pub attribute_map: Option<String>,
}

impl IssueParams {
    /// Parses and shape-checks the merged request parameters.
    pub fn from_params(params: &Params) -> Result<Self, TopError> {
        let order_id = req_int(params, "order_id", 1)?;
        let out_order_id = required(params, "out_order_id")?.to_owned();
        let issue_type = opt_choice(params, "issue_type", &IssueType::wire_numbers())?
            .ok_or_else(|| TopError::missing_argument("issue_type"))?;
        let kind = IssueType::from_wire(issue_type).ok_or_else(bad_issue_type)?;
        let describe = opt(params, "describe").map(str::to_owned);
        if kind == IssueType::Failed && describe.is_none() {
            return Err(TopError::missing_argument("describe"));
        }
        let voucher_infos = match opt(params, "voucher_infos") {
            Some(text) => parse_vouchers(text)?,
            None => Vec::new(),
        };
        if kind == IssueType::Issued && voucher_infos.is_empty() {
            return Err(TopError::missing_argument("voucher_infos"));
        }
        let attribute_map = match opt(params, "attribute_map") {
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(_)) => Some(text.to_owned()),
                _ => {
                    return Err(TopError::invalid_argument(
                        "attribute_map",
                        "必须为JSON对象",
                    ))
                }
            },
            None => None,
        };
        Ok(Self {
            order_id,
            out_order_id,
            issue_type,
            describe,
            voucher_infos,
            attribute_map,
        })
    }

    /// `issue_type` as the type it names; refused as the parser refuses it when the number
    /// names none.
    pub fn kind(&self) -> Result<IssueType, TopError> {
        IssueType::from_wire(self.issue_type).ok_or_else(bad_issue_type)
    }

    /// The parameters as a client sends them.
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("order_id", self.order_id.to_string()),
            ("out_order_id", self.out_order_id.clone()),
            ("issue_type", self.issue_type.to_string()),
        ];
        if let Some(d) = &self.describe {
            out.push(("describe", d.clone()));
        }
        if !self.voucher_infos.is_empty() {
            out.push(("voucher_infos", vouchers_json(&self.voucher_infos)));
        }
        if let Some(a) = &self.attribute_map {
            out.push(("attribute_map", a.clone()));
        }
        out
    }
}

/// The refusal of an `issue_type` that names no [`IssueType`], as `opt_choice` words it.
fn bad_issue_type() -> TopError {
    TopError::invalid_argument("issue_type", "只能为1/2之一")
}

/// Renders issued codes as compact JSON (`confirm_code`, `type`, `quantity`, then extras).
pub fn vouchers_json(entries: &[IssueVoucher]) -> String {
    let mut out = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"confirm_code\":");
        out.push_str(&Value::from(e.confirm_code.as_str()).to_string());
        if let Some(t) = e.voucher_type {
            out.push_str(&format!(",\"type\":{t}"));
        }
        out.push_str(&format!(",\"quantity\":{}", e.quantity));
        if let Some(Ok(Value::Object(extra))) =
            e.extras.as_deref().map(serde_json::from_str::<Value>)
        {
            for (k, v) in extra {
                out.push(',');
                out.push_str(&Value::from(k).to_string());
                out.push(':');
                out.push_str(&v.to_string());
            }
        }
        out.push('}');
    }
    out.push(']');
    out
}

fn parse_vouchers(text: &str) -> Result<Vec<IssueVoucher>, TopError> {
    let invalid = |detail: String| TopError::invalid_argument("voucher_infos", &detail);
    // A repeated key (`"quantity":1,"quantity":9`) is refused, not read last-wins.
    let value = parse_json_unique_keys(text).map_err(invalid)?;
    let Value::Array(items) = value else {
        return Err(invalid("必须为JSON数组".into()));
    };
    if items.len() > MAX_VOUCHERS {
        return Err(invalid(format!(
            "最多{MAX_VOUCHERS}项, 实际{}项",
            items.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut obj) = item else {
            return Err(invalid(format!("voucher_infos[{i}]必须为对象")));
        };
        let confirm_code = match obj.remove("confirm_code") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(invalid(format!("voucher_infos[{i}].confirm_code缺失"))),
        };
        let int = |v: Option<Value>| match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
            Some(Value::String(s)) => parse_int(&s).map(Some).ok_or(()),
            Some(_) => Err(()),
        };
        let raw = obj.remove("quantity");
        if json_above(raw.as_ref(), MAX_CODE_USES) {
            return Err(too_large(
                "voucher_infos",
                &format!("voucher_infos[{i}].quantity"),
                MAX_CODE_USES,
            ));
        }
        let quantity = int(raw)
            .ok()
            .flatten()
            .filter(|q| *q >= 1)
            .ok_or_else(|| invalid(format!("voucher_infos[{i}].quantity必须为正整数")))?;
        let voucher_type = int(obj.remove("type"))
            .ok()
            .and_then(|t| match t {
                None => Some(None),
                Some(t @ (1 | 2)) => Some(Some(t)),
                Some(_) => None,
            })
            .ok_or_else(|| invalid(format!("voucher_infos[{i}].type只能为1或2")))?;
        if !seen.insert(confirm_code.clone()) {
            return Err(invalid(format!("voucher_infos[{i}].confirm_code重复")));
        }
        obj.retain(|_, v| !v.is_null());
        let extras = (!obj.is_empty()).then(|| Value::Object(obj).to_string());
        if let Some(text) = extras.as_ref().filter(|t| t.len() > MAX_EXTRAS_BYTES) {
            return Err(invalid(format!(
                "voucher_infos[{i}]的附加字段共{}字节, 最多{MAX_EXTRAS_BYTES}字节",
                text.len()
            )));
        }
        out.push(IssueVoucher {
            confirm_code,
            voucher_type,
            quantity,
            extras,
        });
    }
    Ok(out)
}

/// The response: `is_success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueResponse {
    /// Whether the report was recorded (or recognised as already recorded).
    pub is_success: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::wire::test_support::{params, refusal};

    fn err(pairs: &[(&str, &str)]) -> (u32, String) {
        refusal(IssueParams::from_params, pairs)
    }

    #[test]
    fn extras_past_their_bound_are_refused_naming_the_entry() {
        let with = |n: usize| {
            format!(
                r#"[{{"confirm_code":"C1","quantity":1}},{{"confirm_code":"C2","quantity":1,"url":"{}"}}]"#,
                "u".repeat(n)
            )
        };
        let at = |text: &str| {
            let mut p = Params::new();
            for (k, v) in [
                ("order_id", "1"),
                ("out_order_id", "O1"),
                ("issue_type", "1"),
                ("voucher_infos", text),
            ] {
                p.insert(k, v);
            }
            IssueParams::from_params(&p)
        };
        // `{"url":"…"}` is the text plus 10 bytes.
        assert!(at(&with(MAX_EXTRAS_BYTES - 10)).is_ok());
        let refused = at(&with(900_000)).unwrap_err();
        assert_eq!(
            (refused.code, refused.sub_code.as_deref()),
            (41, Some("isv.invalid-parameter:voucher_infos"))
        );
        assert!(
            refused
                .sub_msg
                .as_deref()
                .is_some_and(|m| m.contains("voucher_infos[1]")),
            "{refused:?}"
        );
    }

    #[test]
    fn success_report_keeps_extras_as_received() {
        let p = IssueParams::from_params(&params(&[
            ("order_id", "7"),
            ("out_order_id", "OUT-7"),
            ("issue_type", "1"),
            (
                "voucher_infos",
                r#"[{"confirm_code":"C1","type":2,"quantity":"3","assist_code":"A9","url":null}]"#,
            ),
            ("attribute_map", r#"{"k":"v"}"#),
        ]))
        .unwrap();
        assert_eq!(p.voucher_infos[0].quantity, 3);
        assert_eq!(p.voucher_infos[0].voucher_type, Some(2));
        assert_eq!(
            p.voucher_infos[0].extras.as_deref(),
            Some(r#"{"assist_code":"A9"}"#)
        );
        let back: Params = p
            .to_params()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(IssueParams::from_params(&back).unwrap(), p);
    }

    #[test]
    fn wire_numbers_name_their_issue_type() {
        for kind in IssueType::ALL {
            assert_eq!(IssueType::from_wire(kind.as_i64()), Some(kind));
        }
        assert_eq!(IssueType::from_wire(3), None);
        let mut p = IssueParams::from_params(&params(&[
            ("order_id", "1"),
            ("out_order_id", "O"),
            ("issue_type", "2"),
            ("describe", "sold out"),
        ]))
        .unwrap();
        assert_eq!(p.kind().unwrap(), IssueType::Failed);
        p.issue_type = 0;
        assert_eq!(
            p.kind().unwrap_err().sub_code.as_deref(),
            Some("isv.invalid-parameter:issue_type")
        );
    }

    #[test]
    fn shape_rules_refuse_precisely() {
        let one = r#"[{"confirm_code":"C1","quantity":1}]"#;
        assert_eq!(
            err(&[
                ("out_order_id", "O"),
                ("issue_type", "1"),
                ("voucher_infos", one)
            ]),
            (40, "isv.missing-parameter:order_id".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("issue_type", "1"),
                ("voucher_infos", one)
            ]),
            (40, "isv.missing-parameter:out_order_id".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("out_order_id", "O"),
                ("voucher_infos", one)
            ]),
            (40, "isv.missing-parameter:issue_type".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("out_order_id", "O"),
                ("issue_type", "3")
            ]),
            (41, "isv.invalid-parameter:issue_type".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("out_order_id", "O"),
                ("issue_type", "2")
            ]),
            (40, "isv.missing-parameter:describe".into())
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("out_order_id", "O"),
                ("issue_type", "1")
            ]),
            (40, "isv.missing-parameter:voucher_infos".into())
        );
        let zero = r#"[{"confirm_code":"C1","quantity":0}]"#;
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("out_order_id", "O"),
                ("issue_type", "1"),
                ("voucher_infos", zero)
            ]),
            (41, "isv.invalid-parameter:voucher_infos".into())
        );
        for too_many in ["1000001", "9223372036854775807", "\"9223372036854775807\""] {
            let huge = format!(r#"[{{"confirm_code":"C1","quantity":{too_many}}}]"#);
            let refused = IssueParams::from_params(&params(&[
                ("order_id", "1"),
                ("out_order_id", "O"),
                ("issue_type", "1"),
                ("voucher_infos", &huge),
            ]))
            .expect_err("a code above the bound");
            assert_eq!(
                (refused.code, refused.sub_code.as_deref()),
                (41, Some("isv.invalid-parameter:voucher_infos")),
                "{too_many}"
            );
            assert!(
                refused.sub_msg.as_deref().is_some_and(
                    |m| m.contains("voucher_infos[0].quantity") && m.contains("1000000")
                ),
                "sub_msg names the field and the bound: {refused:?}"
            );
        }
        let dup = r#"[{"confirm_code":"C1","quantity":1},{"confirm_code":"C1","quantity":1}]"#;
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("out_order_id", "O"),
                ("issue_type", "1"),
                ("voucher_infos", dup)
            ]),
            (41, "isv.invalid-parameter:voucher_infos".into())
        );
        let twice = r#"[{"confirm_code":"C1","quantity":1,"quantity":9}]"#;
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("out_order_id", "O"),
                ("issue_type", "1"),
                ("voucher_infos", twice)
            ]),
            (41, "isv.invalid-parameter:voucher_infos".into()),
            "a repeated key is refused, not read last-wins"
        );
        assert_eq!(
            err(&[
                ("order_id", "1"),
                ("out_order_id", "O"),
                ("issue_type", "1"),
                ("voucher_infos", one),
                ("attribute_map", "[1]")
            ]),
            (41, "isv.invalid-parameter:attribute_map".into())
        );
    }
}
