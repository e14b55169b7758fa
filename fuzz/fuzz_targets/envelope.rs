//! Envelope rendering: `render_success` and `render_error` with arbitrary strings in every
//! value (docs/PROTOCOL.md §4.2, §5.3).
//!
//! Input: a format byte, four bytes of error code, then NUL-separated strings (lossy UTF-8):
//! `msg`, `sub_code`, `sub_msg`, `request_id`, and success field values. Method and field names
//! come from a fixed list, as in the server (they are element names, never caller text).
//! Checks, besides "never panics":
//! - JSON bodies parse (serde_json) and every value reads back exactly;
//! - XML bodies are well-formed (quick-xml, plus XML 1.0's legal-character rule, which
//!   quick-xml leaves to the caller) and every value reads back, with the characters XML
//!   cannot carry replaced by U+FFFD;
//! - the byte-exact layout real SDKs rely on: no BOM, no whitespace around, ≥ 20 bytes;
//! - an error body is at most `MAX_ERROR_BODY_BYTES`, its fields clipped to their limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::Value;
use top_protocol::envelope::{
    render_error, render_success, response_root, ERROR_MSG_CHARS, ERROR_REQUEST_ID_CHARS,
    ERROR_SUB_CODE_CHARS, ERROR_SUB_MSG_CHARS, MAX_ERROR_BODY_BYTES,
};
use top_protocol::error::clip;
use top_protocol::{Field, Format, TopError};

const METHODS: &[&str] = &[
    "taobao.travel.ticket.order.verify",
    "taobao.travel.ticket.order.refund",
    "alitrip.travel.ticket.order.create",
];
const NAMES: &[&str] = &["is_success", "describe", "order_id", "voucher_count"];

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let format = match data[0] % 3 {
        0 => Format::Xml,
        1 => Format::Json,
        _ => Format::SimplifiedJson,
    };
    let method = METHODS[usize::from(data[0] / 3) % METHODS.len()];
    let code = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let mut strings = data[5..]
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let mut next = || strings.next();
    let msg = next().unwrap_or_default();
    let sub_code = next();
    let sub_msg = next();
    let request_id = next().unwrap_or_else(|| "0000000000000".to_owned());
    let values: Vec<String> = std::iter::from_fn(&mut next).take(NAMES.len()).collect();

    // Error bodies.
    let mut err = TopError {
        code,
        msg,
        sub_code: None,
        sub_msg: None,
    };
    if let (Some(c), Some(m)) = (sub_code, sub_msg) {
        err = err.with_sub(c, m);
    }
    let body = render_error(format, &err, &request_id);
    assert!(body.len() <= MAX_ERROR_BODY_BYTES, "{} bytes", body.len());
    let clipped = |s: &str, max: usize| clip(s, max).into_owned();
    let mut expected = vec![
        ("code".to_owned(), code.to_string()),
        ("msg".to_owned(), clipped(&err.msg, ERROR_MSG_CHARS)),
    ];
    if let (Some(c), Some(m)) = (&err.sub_code, &err.sub_msg) {
        expected.push(("sub_code".to_owned(), clipped(c, ERROR_SUB_CODE_CHARS)));
        expected.push(("sub_msg".to_owned(), clipped(m, ERROR_SUB_MSG_CHARS)));
    }
    expected.push((
        "request_id".to_owned(),
        clipped(&request_id, ERROR_REQUEST_ID_CHARS),
    ));
    check(format, &body, "error_response", true, &expected);

    // Success bodies: string fields with the fuzzed values, plus a bool and an int.
    let mut fields: Vec<(&str, Field<'_>)> = vec![("is_success", Field::Bool(data[1] & 1 == 1))];
    fields.push(("order_id", Field::Int(i64::from(code) - 7)));
    for (name, value) in NAMES[1..].iter().zip(&values) {
        if *name != "order_id" {
            fields.push((name, Field::Str(value)));
        }
    }
    let body = render_success(format, method, &fields, &request_id);
    let mut expected: Vec<(String, String)> = fields
        .iter()
        .map(|(n, v)| {
            let text = match v {
                Field::Bool(b) => b.to_string(),
                Field::Int(i) => i.to_string(),
                Field::Str(s) => (*s).to_owned(),
            };
            ((*n).to_owned(), text)
        })
        .collect();
    expected.push(("request_id".to_owned(), request_id.clone()));
    let root = response_root(method);
    check(
        format,
        &body,
        &root,
        format != Format::SimplifiedJson,
        &expected,
    );
});

/// Parses `body` in its format and compares every leaf with `expected` (name, text).
fn check(format: Format, body: &[u8], root: &str, wrapped: bool, expected: &[(String, String)]) {
    assert!(!body.starts_with(b"\xEF\xBB\xBF"), "BOM");
    assert!(body.len() >= 20 || expected.last().is_some_and(|(_, id)| id.len() < 3));
    assert!(
        !body.first().is_some_and(u8::is_ascii_whitespace)
            && !body.last().is_some_and(u8::is_ascii_whitespace),
        "whitespace around the body"
    );
    let text = std::str::from_utf8(body).expect("bodies are UTF-8");
    match format {
        Format::Json | Format::SimplifiedJson => check_json(text, root, wrapped, expected),
        Format::Xml => check_xml(text, root, expected),
    }
}

fn check_json(text: &str, root: &str, wrapped: bool, expected: &[(String, String)]) {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let object = if wrapped {
        let outer = value.as_object().expect("an object");
        assert_eq!(outer.len(), 1, "one root key: {text}");
        outer
            .get(root)
            .unwrap_or_else(|| panic!("no {root}: {text}"))
            .clone()
    } else {
        value
    };
    let object = object.as_object().expect("an object");
    assert_eq!(object.len(), expected.len(), "{text}");
    for (name, want) in expected {
        let got = match &object[name.as_str()] {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => panic!("{name}: unexpected {other}"),
        };
        assert_eq!(&got, want, "{name} in {text}");
    }
}

/// XML 1.0 `Char`: what a well-formed document may contain, raw or as a reference.
fn legal(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// What the renderer promises an XML reader gets back for `s`.
fn as_xml_reads(s: &str) -> String {
    s.chars()
        .map(|c| if legal(c) { c } else { '\u{FFFD}' })
        .collect()
}

fn check_xml(text: &str, root: &str, expected: &[(String, String)]) {
    const PROLOG: &str = r#"<?xml version="1.0" encoding="utf-8" ?>"#;
    assert!(text.starts_with(PROLOG), "prolog: {text}");
    assert!(
        text.chars().all(legal),
        "an illegal XML character: {text:?}"
    );
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<String> = Vec::new();
    let mut leaves: Vec<(String, String)> = Vec::new();
    let mut current = String::new();
    let mut roots = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Decl(_)) => assert!(stack.is_empty() && roots == 0, "late declaration"),
            Ok(Event::Start(start)) => {
                let name = String::from_utf8(start.name().as_ref().to_vec()).expect("UTF-8 name");
                assert!(start.attributes().next().is_none(), "attributes: {text}");
                if stack.is_empty() {
                    roots += 1;
                    assert_eq!(name, root, "{text}");
                }
                assert!(current.is_empty(), "mixed content: {text}");
                stack.push(name);
            }
            Ok(Event::End(_)) => {
                let name = stack.pop().expect("balanced");
                if stack.len() == 1 {
                    leaves.push((name, std::mem::take(&mut current)));
                } else {
                    assert!(current.is_empty(), "text outside a leaf: {text}");
                }
            }
            Ok(Event::Text(t)) => {
                assert!(!stack.is_empty(), "text outside the root: {text}");
                current.push_str(&t.decode().expect("UTF-8 text"));
            }
            Ok(Event::GeneralRef(r)) => {
                let c = match r.resolve_char_ref().expect("a valid character reference") {
                    Some(c) => c,
                    None => match r.as_ref() {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"quot" => '"',
                        b"apos" => '\'',
                        other => panic!("undefined entity {:?}", String::from_utf8_lossy(other)),
                    },
                };
                assert!(legal(c), "reference to an illegal character: {text:?}");
                current.push(c);
            }
            Ok(Event::Eof) => break,
            Ok(other) => panic!("unexpected {other:?} in {text}"),
            Err(e) => panic!("not well-formed XML ({e}): {text}"),
        }
    }
    assert!(stack.is_empty() && roots == 1, "{text}");
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(n, v)| (n.clone(), as_xml_reads(v)))
        .collect();
    assert_eq!(leaves, want, "{text}");
}
