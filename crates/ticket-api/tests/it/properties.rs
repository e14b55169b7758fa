//! Properties of `voucher_infos` decoding (docs/PROTOCOL.md §4.3), checked on generated lists
//! rather than a few chosen ones: whatever list a real SDK could put on the wire reads back as the
//! entries it was built from, and through `to_params` → `from_params` unchanged; any other text is
//! never a panic, only a parse or a 41 naming `voucher_infos`.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use ticket_api::issue::{IssueParams, IssueVoucher};
use ticket_api::verify::{voucher_infos_json, VerifyParams, VoucherInfo};
use top_protocol::timestamp::format_beijing;
use top_protocol::Params;

/// A gate time between 2000 and 2099, as TOP writes it (UTC+8).
fn used_date() -> impl Strategy<Value = String> {
    (946_684_800i64..4_102_444_800).prop_map(|s| {
        let t: DateTime<Utc> = Utc.timestamp_opt(s, 0).single().expect("in range");
        format_beijing(t)
    })
}

/// Codes as vendors issue them: any non-empty text, Chinese and escapes included.
fn code() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z0-9]{4,16}",
        "[a-zA-Z0-9_\\-]{1,32}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

/// Up to 20 entries with distinct codes (R11), quantities ≥ `min`.
fn entries(min: i64) -> impl Strategy<Value = Vec<VoucherInfo>> {
    prop::collection::btree_map(
        code(),
        (min..=999_999i64, prop::option::of(used_date())),
        1..20,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(confirm_code, (used_quantity, used_date))| VoucherInfo {
                confirm_code,
                used_quantity,
                used_date,
            })
            .collect()
    })
}

/// How an SDK writes the list: key order, spacing, numbers as strings, absent vs `null` date.
#[derive(Debug, Clone, Copy)]
struct Style {
    reversed_keys: bool,
    pretty: bool,
    quantity_as_string: bool,
    null_date: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(r, p, q, n)| Style {
        reversed_keys: r,
        pretty: p,
        quantity_as_string: q,
        null_date: n,
    })
}

/// The list as one SDK style writes it (serde_json keeps insertion order only through a
/// hand-built text, so the object is written out key by key).
fn render(entries: &[VoucherInfo], style: Style) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            let mut members: Vec<(&str, Value)> = vec![
                ("confirm_code", Value::from(e.confirm_code.as_str())),
                (
                    "used_quantity",
                    if style.quantity_as_string {
                        Value::from(e.used_quantity.to_string())
                    } else {
                        Value::from(e.used_quantity)
                    },
                ),
            ];
            match &e.used_date {
                Some(d) => members.push(("used_date", Value::from(d.as_str()))),
                None if style.null_date => members.push(("used_date", Value::Null)),
                None => {}
            }
            if style.reversed_keys {
                members.reverse();
            }
            let sep = if style.pretty { ", " } else { "," };
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("\"{k}\":{}{v}", if style.pretty { " " } else { "" }))
                .collect();
            format!("{{{}}}", body.join(sep))
        })
        .collect();
    if style.pretty {
        format!("[\n  {}\n]", items.join(",\n  "))
    } else {
        format!("[{}]", items.join(","))
    }
}

/// Text that names no code at all: empty (read as absent) or an empty JSON list.
fn says_nothing(text: &str) -> bool {
    text.is_empty() || serde_json::from_str::<Value>(text).is_ok_and(|v| v == json!([]))
}

fn verify_params(voucher_infos: &str, cumulative: bool) -> Params {
    let mut p = Params::new();
    p.insert("order_id", "2983749123412345");
    p.insert("voucher_infos", voucher_infos);
    p.insert("write_off_type", if cumulative { "1" } else { "0" });
    p
}

fn params_of(pairs: Vec<(&'static str, String)>) -> Params {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

proptest! {
    #[test]
    fn any_list_an_sdk_writes_reads_back_as_its_entries(
        list in entries(1),
        style in style(),
    ) {
        let text = render(&list, style);
        let parsed = VerifyParams::from_params(&verify_params(&text, false)).unwrap();
        prop_assert_eq!(&parsed.voucher_infos, &list);
        // And what our SDK sends for it is the same request again.
        let again = VerifyParams::from_params(&params_of(parsed.to_params())).unwrap();
        prop_assert_eq!(again, parsed);
    }

    #[test]
    fn cumulative_lists_accept_zero_and_round_trip(list in entries(0)) {
        let text = voucher_infos_json(&list);
        let parsed = VerifyParams::from_params(&verify_params(&text, true)).unwrap();
        prop_assert_eq!(&parsed.voucher_infos, &list);
        prop_assert_eq!(parsed.write_off_type, 1);
        let again = VerifyParams::from_params(&params_of(parsed.to_params())).unwrap();
        prop_assert_eq!(again, parsed);
    }

    #[test]
    fn a_repeated_code_is_refused_with_41(list in entries(1), at in any::<prop::sample::Index>()) {
        let mut list = list;
        let copy = list[at.index(list.len())].clone();
        list.push(copy);
        let e = VerifyParams::from_params(&verify_params(&voucher_infos_json(&list), false))
            .unwrap_err();
        prop_assert_eq!(e.code, 41);
        prop_assert_eq!(e.sub_code.as_deref(), Some("isv.invalid-parameter:voucher_infos"));
    }

    #[test]
    fn arbitrary_text_is_parsed_or_refused_with_41(
        text in prop_oneof![
            any::<String>(),
            // Near misses: JSON-looking text built from the list's own pieces.
            prop::collection::vec(
                prop_oneof![
                    Just("["), Just("]"), Just("{"), Just("}"), Just(","), Just(":"),
                    Just("\"confirm_code\""), Just("\"used_quantity\""), Just("\"used_date\""),
                    Just("\"A1\""), Just("1"), Just("-1"), Just("0"), Just("1e3"), Just("null"),
                    Just("\"2024-05-01 12:00:00\""), Just("\"2024-02-30 12:00:00\""), Just("true"),
                ],
                0..24,
            ).prop_map(|parts| parts.concat()),
        ],
        cumulative in any::<bool>(),
    ) {
        match VerifyParams::from_params(&verify_params(&text, cumulative)) {
            Ok(parsed) => {
                // Accepted text was a list; what it holds obeys the rules and round-trips.
                let again = VerifyParams::from_params(&params_of(parsed.to_params())).unwrap();
                prop_assert_eq!(again, parsed);
            }
            Err(e) if says_nothing(&text) => {
                // Empty text or an empty list: nothing says what to verify (40).
                prop_assert_eq!(e.code, 40);
                prop_assert_eq!(e.sub_code.as_deref(), Some("isv.missing-parameter:voucher_infos"));
            }
            Err(e) => {
                prop_assert_eq!(e.code, 41, "{:?}", e);
                prop_assert_eq!(e.sub_code.as_deref(), Some("isv.invalid-parameter:voucher_infos"));
            }
        }
    }

    #[test]
    fn issued_code_lists_round_trip(
        codes in prop::collection::btree_map(
            code(),
            (1..=9999i64, prop::option::of(1..=2i64), prop::option::of("[ -~]{0,20}")),
            1..12,
        ),
    ) {
        let list: Vec<IssueVoucher> = codes
            .into_iter()
            .map(|(confirm_code, (quantity, voucher_type, assist))| IssueVoucher {
                confirm_code,
                voucher_type,
                quantity,
                extras: assist.map(|a| {
                    let mut m = Map::new();
                    m.insert("assist_code".into(), json!(a));
                    Value::Object(m).to_string()
                }),
            })
            .collect();
        let report = IssueParams {
            order_id: 42,
            out_order_id: "OUT-42".into(),
            issue_type: 1,
            describe: None,
            voucher_infos: list,
            attribute_map: None,
        };
        let parsed = IssueParams::from_params(&params_of(report.to_params())).unwrap();
        prop_assert_eq!(parsed, report);
    }

    #[test]
    fn arbitrary_issue_lists_are_parsed_or_refused_with_41(text in any::<String>()) {
        let mut p = Params::new();
        p.insert("order_id", "42");
        p.insert("out_order_id", "OUT-42");
        p.insert("issue_type", "1");
        p.insert("voucher_infos", text.as_str());
        match IssueParams::from_params(&p) {
            Ok(parsed) => {
                let again = IssueParams::from_params(&params_of(parsed.to_params())).unwrap();
                prop_assert_eq!(again, parsed);
            }
            Err(e) if says_nothing(&text) => prop_assert_eq!(e.code, 40),
            Err(e) => prop_assert_eq!(e.code, 41, "{:?}", e),
        }
    }
}
