//! `voucher_infos` decoding: `VerifyParams::from_params` and `IssueParams::from_params` on
//! arbitrary `voucher_infos` text (docs/PROTOCOL.md §4.1, §4.3, §4.4).
//!
//! Input: one flag byte, then the `voucher_infos` text. Flag bit 0 sets `write_off_type=1`
//! (cumulative), bit 1 adds a legacy `confirm_code` (the first code of the text, or `X`), bit 2
//! makes the issuance report a failure (`issue_type=2`). Checks, besides "never panics":
//! - a refusal is 40 (missing) or 41 (invalid) with an `isv.` sub-code;
//! - an accepted list obeys the rules (≤ 999 entries, codes unique and non-empty, quantities in
//!   range, dates well-formed) and round-trips: `to_params` → `from_params` gives it back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ticket_api::issue::IssueParams;
use ticket_api::verify::{VerifyParams, MAX_VOUCHER_INFOS};
use top_protocol::timestamp::parse_beijing;
use top_protocol::{Params, TopError};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    verify(flags, text);
    issue(flags, text);
});

fn verify(flags: u8, text: &str) {
    let cumulative = flags & 1 == 1;
    let mut params = Params::new();
    params.insert("order_id", "1001");
    params.insert("voucher_infos", text);
    params.insert("write_off_type", if cumulative { "1" } else { "0" });
    if flags & 2 == 2 {
        params.insert("confirm_code", first_code(text));
    }
    let parsed = match VerifyParams::from_params(&params) {
        Ok(p) => p,
        Err(e) => return assert_shape_refusal(&e),
    };
    assert!(parsed.voucher_infos.len() <= MAX_VOUCHER_INFOS);
    let min = if cumulative { 0 } else { 1 };
    let mut codes = std::collections::HashSet::new();
    for v in &parsed.voucher_infos {
        assert!(!v.confirm_code.is_empty());
        assert!(
            codes.insert(v.confirm_code.clone()),
            "duplicate code accepted"
        );
        assert!(
            v.used_quantity >= min,
            "quantity {} accepted",
            v.used_quantity
        );
        if let Some(d) = &v.used_date {
            assert!(parse_beijing(d).is_some(), "bad used_date {d:?} accepted");
        }
    }
    let again: Params = parsed
        .to_params()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(
        VerifyParams::from_params(&again).as_ref(),
        Ok(&parsed),
        "to_params → from_params changed the request"
    );
}

fn issue(flags: u8, text: &str) {
    let mut params = Params::new();
    params.insert("order_id", "1001");
    params.insert("out_order_id", "OUT-1");
    if flags & 4 == 4 {
        params.insert("issue_type", "2");
        params.insert("describe", "failed");
    } else {
        params.insert("issue_type", "1");
    }
    params.insert("voucher_infos", text);
    let parsed = match IssueParams::from_params(&params) {
        Ok(p) => p,
        Err(e) => return assert_shape_refusal(&e),
    };
    let mut codes = std::collections::HashSet::new();
    for v in &parsed.voucher_infos {
        assert!(!v.confirm_code.is_empty());
        assert!(
            codes.insert(v.confirm_code.clone()),
            "duplicate code accepted"
        );
        assert!(v.quantity >= 1);
        assert!(matches!(v.voucher_type, None | Some(1 | 2)));
    }
    let again: Params = parsed
        .to_params()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(
        IssueParams::from_params(&again).as_ref(),
        Ok(&parsed),
        "to_params → from_params changed the report"
    );
}

/// A shape refusal: missing (40) or invalid (41) argument, with an `isv.` sub-code.
fn assert_shape_refusal(e: &TopError) {
    assert!(matches!(e.code, 40 | 41), "unexpected code {e:?}");
    assert!(
        e.sub_code.as_deref().is_some_and(|s| s.starts_with("isv.")),
        "{e:?}"
    );
}

/// The first `confirm_code` value in the text, if it is a list of objects; else `X`.
fn first_code(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get(0)?.get("confirm_code")?.as_str().map(str::to_owned))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "X".to_owned())
}
