//! Parameter parsing: `parse_urlencoded` (the query), `parse_body` under any Content-Type (the
//! body) and `merge` (docs/PROTOCOL.md §1.2, §1.3).
//!
//! Input: `CONTENT-TYPE \n QUERY \n BODY` (the first two newlines split it; the body keeps any
//! later ones, so multipart bodies with `\r\n` work). Checks, besides "never panics":
//! - a parsed query or urlencoded body re-encodes and parses back to the same pairs;
//! - `merge` succeeds exactly when no key repeats and the pairs fit [`MAX_PARAMS`], and then
//!   holds every pair;
//! - every refusal maps to the TOP code the protocol names (41, 43 or 47).

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use top_protocol::params::{merge, parse_body, parse_urlencoded, ParamError, MAX_PARAMS};
use top_protocol::Params;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let content_type = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let content_type = std::str::from_utf8(content_type).ok();

    let query = check_refusal(parse_urlencoded(query));
    let body = check_refusal(parse_body(content_type, body));
    if let Some(pairs) = &query {
        assert_round_trips(pairs);
    }
    let (Some(query), Some(body)) = (query, body) else {
        return;
    };
    let total = query.len() + body.len();
    let mut keys = HashSet::new();
    let repeated = query
        .iter()
        .chain(&body)
        .any(|(k, _)| !keys.insert(k.clone()));
    let expected: Vec<(String, String)> = query.iter().chain(&body).cloned().collect();
    match check_refusal(merge(query, body)) {
        Some(params) => {
            assert!(
                total <= MAX_PARAMS && !repeated,
                "merge accepted {total} pairs, repeated={repeated}"
            );
            assert_eq!(params.len(), total);
            for (k, v) in &expected {
                assert_eq!(params.get(k), Some(v.as_str()), "merge lost {k:?}");
            }
        }
        None => assert!(total > MAX_PARAMS || repeated, "merge refused sound pairs"),
    }
});

/// Maps a refusal to its TOP error and checks the code; `None` for a refusal.
fn check_refusal<T>(result: Result<T, ParamError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            let top = e.to_top_error();
            let expected = match e {
                ParamError::DuplicateKey(_) => 41,
                ParamError::InvalidEncoding(_) => 47,
                ParamError::MalformedBody(_)
                | ParamError::UnsupportedContentType(_)
                | ParamError::TooManyParameters(_) => 43,
            };
            assert_eq!(top.code, expected, "{e:?} → {top:?}");
            None
        }
    }
}

/// Pairs without repeated keys encode (as a client would send them) and parse back unchanged.
fn assert_round_trips(pairs: &[(String, String)]) {
    let Ok(params) = Params::from_pairs(pairs.iter().cloned()) else {
        return;
    };
    let encoded = params.to_form_urlencoded();
    assert!(encoded.is_ascii());
    let back = parse_urlencoded(encoded.as_bytes()).expect("re-encoded pairs parse");
    let back = Params::from_pairs(back).expect("re-encoded pairs stay unique");
    assert_eq!(back, params);
}
