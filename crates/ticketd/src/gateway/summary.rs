//! What the audit trail keeps of an authenticated TOP call's parameters.
//!
//! The trail is permanent and served back to operators, so what a caller sends must not reach
//! it at the caller's size. A summary therefore keeps only the names the platform or the
//! method reads ([`top_protocol::check::SYSTEM_PARAMS`], [`Method::param_names`]), never `sign`
//! or `session` (credentials), every text value clipped to [`MAX_TEXT`] characters, confirm
//! codes masked, and of each `voucher_infos` entry only its known fields. A refused call keeps
//! at most [`REFUSED_ENTRIES`] entries and their total; an accepted one keeps every entry it
//! applied, because that list is the evidence of what was paid for.

use serde_json::{Map, Value};
use ticket_api::verify::VoucherInfo;
use ticket_api::Method;
use ticket_ledger::{mask_code, mask_json_code};
use top_protocol::check::SYSTEM_PARAMS;
use top_protocol::Params;

/// The longest text value kept, in characters.
pub const MAX_TEXT: usize = ticket_ledger::text::MAX_KEPT_TEXT;

/// The most `voucher_infos` entries a refused call's summary lists.
pub const REFUSED_ENTRIES: usize = 20;

/// Parameters never kept: the signature, and the user session token (a credential).
const NEVER_KEPT: &[&str] = &["sign", "session"];

/// Fields kept of one `voucher_infos` entry (verify's and issuance's), besides the masked
/// `confirm_code`: quantities, the verify gate time and the issuance code type. Extras such as
/// `assist_code` or URLs are not evidence of a use and are left out.
const ENTRY_FIELDS: &[&str] = &["used_quantity", "used_date", "quantity", "type"];

/// How many `voucher_infos` entries a summary lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entries {
    /// Every entry (an accepted call: they are what it applied).
    All,
    /// The first [`REFUSED_ENTRIES`] and the total (a refused call).
    Refused,
}

impl Entries {
    fn limit(self) -> usize {
        match self {
            Self::All => usize::MAX,
            Self::Refused => REFUSED_ENTRIES,
        }
    }
}

/// The summary of a call's parameters, `voucher_infos` read leniently from its text (the call
/// may have been refused for that very text).
pub fn of_params(params: &Params, entries: Entries) -> Value {
    summarize(params, |text, map| lenient_entries(text, entries, map))
}

/// [`of_params`] for a verify whose `voucher_infos` were already parsed and checked: the list
/// is written from those entries rather than parsed a second time (the verify hot path).
pub fn of_verify(params: &Params, parsed: &[VoucherInfo], entries: Entries) -> Value {
    summarize(params, |_, map| {
        let kept = parsed
            .iter()
            .take(entries.limit())
            .map(|e| {
                let mut item = Map::new();
                item.insert("confirm_code".into(), mask_code(&e.confirm_code).into());
                item.insert("used_quantity".into(), e.used_quantity.into());
                if let Some(date) = &e.used_date {
                    item.insert("used_date".into(), clip(date).into());
                }
                Value::Object(item)
            })
            .collect();
        map.insert("voucher_infos".into(), Value::Array(kept));
        if parsed.len() > entries.limit() {
            map.insert("voucher_infos_total".into(), parsed.len().into());
        }
    })
}

fn summarize(params: &Params, voucher_infos: impl FnOnce(&str, &mut Map<String, Value>)) -> Value {
    let method = params.get("method").and_then(Method::parse);
    let known = |name: &str| {
        !NEVER_KEPT.contains(&name)
            && (SYSTEM_PARAMS.contains(&name)
                || method.is_some_and(|m| m.param_names().contains(&name)))
    };
    let mut map = Map::new();
    let mut dropped = 0_usize;
    let mut infos = None;
    for (name, value) in params.iter() {
        if !known(name) {
            dropped += usize::from(!NEVER_KEPT.contains(&name));
            continue;
        }
        match name {
            "confirm_code" => {
                map.insert(name.to_owned(), mask_code(value).into());
            }
            "voucher_infos" => infos = Some(value),
            _ => {
                map.insert(name.to_owned(), clip(value).into());
            }
        }
    }
    if let Some(text) = infos {
        voucher_infos(text, &mut map);
    }
    if dropped > 0 {
        map.insert("unknown_params".into(), dropped.into());
    }
    Value::Object(map)
}

/// Keeps the known fields of each entry of a `voucher_infos` text that may be malformed.
fn lenient_entries(text: &str, entries: Entries, map: &mut Map<String, Value>) {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        map.insert(
            "voucher_infos".into(),
            format!("<{} bytes, not a JSON list>", text.len()).into(),
        );
        return;
    };
    let total = items.len();
    let kept = items
        .into_iter()
        .take(entries.limit())
        .map(|item| match item {
            Value::Object(obj) => Value::Object(known_entry_fields(obj)),
            _ => Value::from("<not an object>"),
        })
        .collect();
    map.insert("voucher_infos".into(), Value::Array(kept));
    if total > entries.limit() {
        map.insert("voucher_infos_total".into(), total.into());
    }
}

fn known_entry_fields(mut obj: Map<String, Value>) -> Map<String, Value> {
    let mut kept = Map::new();
    if let Some(code) = obj.remove("confirm_code") {
        kept.insert("confirm_code".into(), mask_json_code(&code));
    }
    for field in ENTRY_FIELDS {
        if let Some(value) = obj.remove(*field) {
            kept.insert((*field).into(), scalar(value));
        }
    }
    kept
}

/// Numbers, booleans and null as sent; text clipped; nested values replaced by a marker.
fn scalar(value: Value) -> Value {
    match value {
        Value::String(s) => clip(&s).into(),
        Value::Array(_) | Value::Object(_) => Value::from("<nested value>"),
        other => other,
    }
}

/// Text cut to [`MAX_TEXT`] characters.
fn clip(text: &str) -> String {
    ticket_ledger::text::clip_chars(text, MAX_TEXT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::new();
        for (k, v) in pairs {
            p.insert(*k, *v);
        }
        p
    }

    #[test]
    fn a_verify_summary_from_parsed_entries_matches_the_lenient_one() {
        let p = params(&[
            ("method", "taobao.travel.ticket.order.verify"),
            ("order_id", "2983749123412345"),
            ("sign", "0123456789ABCDEF"),
            (
                "voucher_infos",
                r#"[{"used_date":"2026-11-26 10:00:00","confirm_code":"A1B2C3D4","used_quantity":2},
                    {"confirm_code":"GROUP-01","used_quantity":1}]"#,
            ),
        ]);
        let wire = ticket_api::verify::VerifyParams::from_params(&p).unwrap();
        let parsed = of_verify(&p, &wire.voucher_infos, Entries::All);
        assert_eq!(parsed, of_params(&p, Entries::All));
        assert_eq!(parsed["voucher_infos"][0]["confirm_code"], "****C3D4");
        assert!(parsed.get("sign").is_none());
    }

    #[test]
    fn unknown_parameters_fields_and_credentials_are_not_kept() {
        let huge = "x".repeat(900_000);
        let infos = format!(
            r#"[{{"confirm_code":12345678,"used_quantity":1,"junk":"{huge}","assist_code":"SECRET99"}}]"#
        );
        let p = params(&[
            ("method", "taobao.travel.ticket.order.verify"),
            ("session", "user-token"),
            ("K", &huge),
            ("out_order_id", &huge),
            ("voucher_infos", &infos),
        ]);
        let summary = of_params(&p, Entries::Refused);
        let text = summary.to_string();
        assert!(text.len() < 2_000, "{} bytes", text.len());
        assert!(
            !text.contains("user-token") && !text.contains("SECRET99"),
            "{text}"
        );
        assert_eq!(summary["unknown_params"], 1);
        assert_eq!(summary["voucher_infos"][0]["confirm_code"], "****5678");
        assert_eq!(summary["out_order_id"].as_str().unwrap().len(), MAX_TEXT);
    }

    #[test]
    fn a_refused_call_keeps_its_first_twenty_entries_and_the_total() {
        let entries: Vec<String> = (0..999)
            .map(|i| format!(r#"{{"confirm_code":"CODE{i:04}","used_quantity":1}}"#))
            .collect();
        let p = params(&[
            ("method", "taobao.travel.ticket.order.verify"),
            ("voucher_infos", &format!("[{}]", entries.join(","))),
        ]);
        let refused = of_params(&p, Entries::Refused);
        assert_eq!(refused["voucher_infos"].as_array().unwrap().len(), 20);
        assert_eq!(refused["voucher_infos_total"], 999);
        let accepted = of_params(&p, Entries::All);
        assert_eq!(accepted["voucher_infos"].as_array().unwrap().len(), 999);
        assert!(accepted.get("voucher_infos_total").is_none());
    }
}
