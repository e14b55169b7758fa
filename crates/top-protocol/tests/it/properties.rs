//! Properties, checked on generated inputs rather than a few chosen ones: order never matters,
//! any one-byte change fails verification, render → parse round-trips (JSON and XML, with any
//! text in the values), and the parsers refuse exactly what they must: a repeated key, a wrong
//! charset, never a panic.

use proptest::prelude::*;
use std::collections::BTreeMap;
use top_protocol::envelope::{render_error, render_success, response_root};
use top_protocol::params::{merge, parse_body, parse_urlencoded, ParamError};
use top_protocol::sign::{sign, verify};
use top_protocol::{EmptyValues, Field, Format, Params, SignMethod, TopError};

fn sign_method() -> impl Strategy<Value = SignMethod> {
    prop_oneof![
        Just(SignMethod::Md5),
        Just(SignMethod::HmacMd5),
        Just(SignMethod::HmacSha256)
    ]
}

/// Unique parameter names (never `sign`) with non-empty printable-ASCII values.
fn ascii_params() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-z_]{1,12}", "[ -~]{1,24}", 1..12)
        .prop_filter("sign is not a signed param", |m| !m.contains_key("sign"))
}

/// Arbitrary UTF-8 keys and values, empty ones included.
fn utf8_params() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(any::<String>(), any::<String>(), 0..10)
}

#[derive(Debug, Clone)]
enum OwnedField {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl OwnedField {
    fn as_field(&self) -> Field<'_> {
        match self {
            OwnedField::Bool(b) => Field::Bool(*b),
            OwnedField::Int(i) => Field::Int(*i),
            OwnedField::Str(s) => Field::Str(s),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            OwnedField::Bool(b) => serde_json::Value::from(*b),
            OwnedField::Int(i) => serde_json::Value::from(*i),
            OwnedField::Str(s) => serde_json::Value::from(s.as_str()),
        }
    }
}

fn field() -> impl Strategy<Value = OwnedField> {
    prop_oneof![
        any::<bool>().prop_map(OwnedField::Bool),
        any::<i64>().prop_map(OwnedField::Int),
        any::<String>().prop_map(OwnedField::Str),
    ]
}

proptest! {
    #[test]
    fn insertion_order_never_matters(
        map in ascii_params(),
        method in sign_method(),
        shuffle_seed in any::<u64>(),
    ) {
        let pairs: Vec<(String, String)> = map.into_iter().collect();
        let mut shuffled = pairs.clone();
        // Deterministic Fisher–Yates from the seed.
        let mut s = shuffle_seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let a = Params::from_pairs(pairs).unwrap();
        let mut b = Params::new();
        for (k, v) in shuffled.into_iter().rev() {
            b.insert(k, v);
        }
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(
            sign(method, b"k", &a, EmptyValues::Skip),
            sign(method, b"k", &b, EmptyValues::Skip)
        );
        prop_assert_eq!(
            parse_urlencoded(a.to_form_urlencoded().as_bytes()).unwrap(),
            parse_urlencoded(b.to_form_urlencoded().as_bytes()).unwrap()
        );
    }

    #[test]
    fn any_one_byte_change_of_a_value_fails_verification(
        map in ascii_params(),
        method in sign_method(),
        which in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
        delta in 1u8..95,
    ) {
        let p = Params::from_pairs(map.clone()).unwrap();
        let good = sign(method, b"secret", &p, EmptyValues::Skip);
        prop_assert!(verify(method, b"secret", &p, &good));

        let key = which.get(&map.keys().collect::<Vec<_>>()).to_string();
        let mut bytes = map[&key].clone().into_bytes();
        let i = pos.index(bytes.len());
        // Stay in printable ASCII (0x20..=0x7E, 95 values) and differ from the original.
        bytes[i] = 0x20 + (bytes[i] - 0x20 + delta) % 95;
        let mut changed = p.clone();
        changed.insert(key, String::from_utf8(bytes).unwrap());
        prop_assert!(!verify(method, b"secret", &changed, &good));
    }

    #[test]
    fn any_one_byte_change_of_the_sign_fails_verification(
        map in ascii_params(),
        method in sign_method(),
        pos in any::<prop::sample::Index>(),
        delta in 1u8..16,
    ) {
        let p = Params::from_pairs(map).unwrap();
        let good = sign(method, b"secret", &p, EmptyValues::Skip);
        let mut bytes = good.clone().into_bytes();
        let i = pos.index(bytes.len());
        let digit = u8::try_from(char::from(bytes[i]).to_digit(16).unwrap()).unwrap();
        bytes[i] = b"0123456789ABCDEF"[usize::from((digit + delta) % 16)];
        let bad = String::from_utf8(bytes).unwrap();
        prop_assert!(!verify(method, b"secret", &p, &bad));
        prop_assert!(!verify(method, b"secret", &p, &bad.to_ascii_lowercase()));
    }

    #[test]
    fn json_success_round_trips(
        fields in prop::collection::btree_map("[a-z_]{1,10}", field(), 0..8),
        request_id in "[0-9a-z]{3,13}",
        method in "taobao\\.[a-z]{1,8}(\\.[a-z]{1,8}){0,3}",
        simplified in any::<bool>(),
    ) {
        let fields: Vec<(String, OwnedField)> =
            fields.into_iter().filter(|(k, _)| k != "request_id").collect();
        let borrowed: Vec<(&str, Field<'_>)> =
            fields.iter().map(|(k, v)| (k.as_str(), v.as_field())).collect();
        let format = if simplified { Format::SimplifiedJson } else { Format::Json };
        let body = render_success(format, &method, &borrowed, &request_id);
        prop_assert!(body.len() >= 20);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let object = if simplified {
            parsed
        } else {
            let root = parsed.as_object().unwrap();
            prop_assert_eq!(root.len(), 1);
            root[&response_root(&method)].clone()
        };
        let mut expected = serde_json::Map::new();
        for (k, v) in &fields {
            expected.insert(k.clone(), v.to_json());
        }
        expected.insert("request_id".to_owned(), request_id.clone().into());
        prop_assert_eq!(object, serde_json::Value::Object(expected));
    }

    #[test]
    fn json_error_round_trips(
        code in 0u32..100_000,
        msg in any::<String>(),
        sub in proptest::option::of((any::<String>(), any::<String>())),
        request_id in any::<String>(),
        simplified in any::<bool>(),
    ) {
        let mut err = TopError { code, msg, sub_code: None, sub_msg: None };
        if let Some((c, m)) = sub {
            err = err.with_sub(c, m);
        }
        let format = if simplified { Format::SimplifiedJson } else { Format::Json };
        let body = render_error(format, &err, &request_id);
        let prefix: &[u8] = br#"{"error_response":"#;
        prop_assert!(body.starts_with(prefix), "prefix");
        prop_assert!(body.ends_with(b"}}"), "suffix");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let e = &v["error_response"];
        prop_assert_eq!(&e["code"], &serde_json::Value::from(err.code));
        prop_assert_eq!(e["msg"].as_str(), Some(err.msg.as_str()));
        prop_assert_eq!(e.get("sub_code").and_then(|s| s.as_str()), err.sub_code.as_deref());
        prop_assert_eq!(e.get("sub_msg").and_then(|s| s.as_str()), err.sub_msg.as_deref());
        prop_assert_eq!(e["request_id"].as_str(), Some(request_id.as_str()));
    }

    #[test]
    fn urlencoded_round_trips_arbitrary_utf8(map in utf8_params()) {
        let p: Params = map.into_iter().collect();
        let encoded = p.to_form_urlencoded();
        prop_assert!(encoded.is_ascii());
        let back = Params::from_pairs(parse_urlencoded(encoded.as_bytes()).unwrap()).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn urlencoded_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_urlencoded(&bytes);
        let _ = top_protocol::params::parse_body(Some("multipart/form-data; boundary=b"), &bytes);
    }

    /// Values decode exactly as the form rules say, one byte at a time: escapes, stray `%`s,
    /// `+`, and bytes that are not UTF-8 (which refuse the whole body) included.
    #[test]
    fn urlencoded_values_decode_as_a_byte_at_a_time(
        bytes in prop::collection::vec(prop_oneof![
            Just(b'%'), Just(b'+'), Just(b'2'), Just(b'B'), Just(b'e'), Just(b'9'),
            Just(0xe9u8), Just(0x97u8), Just(0xa8u8), any::<u8>(),
        ], 0..64),
    ) {
        let value: Vec<u8> = bytes.into_iter().filter(|b| !matches!(b, b'&' | b'=')).collect();
        let mut body = b"k=".to_vec();
        body.extend_from_slice(&value);
        let parsed = parse_urlencoded(&body);
        match decode_a_byte_at_a_time(&value) {
            Some(expected) => prop_assert_eq!(parsed.unwrap(), vec![("k".to_owned(), expected)]),
            None => prop_assert!(matches!(parsed, Err(ParamError::InvalidEncoding(_)))),
        }
    }

    #[test]
    fn body_parser_never_panics_on_any_content_type(
        ct in "[ -~]{0,60}",
        bytes in prop::collection::vec(prop_oneof![Just(b'-'), Just(b'b'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..256),
    ) {
        let _ = top_protocol::params::parse_body(Some(&ct), &bytes);
        let mp = format!("multipart/form-data; {ct}");
        let _ = top_protocol::params::parse_body(Some(&mp), &bytes);
    }
}

/// A form component decoded by the rules, one byte at a time: `+` is a space, `%` and two hex
/// digits a byte, any other `%` itself; `None` when the result is not UTF-8.
fn decode_a_byte_at_a_time(raw: &[u8]) -> Option<String> {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// XML 1.0 `Char`: what a well-formed document may carry, raw or as a reference.
fn xml_legal(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Reads an envelope with quick-xml as a strict reader would: one root, leaf elements only, no
/// attributes, only the predefined entities and legal characters. Returns the root's name and
/// its leaves as (name, text); panics (failing the property) on anything not well-formed.
fn read_xml(body: &[u8]) -> (String, Vec<(String, String)>) {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.chars().all(xml_legal), "illegal character in {text:?}");
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack = Vec::new();
    let (mut root, mut leaves, mut current) = (String::new(), Vec::new(), String::new());
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("not well-formed ({e}): {text}"))
        {
            Event::Decl(_) => assert!(stack.is_empty() && root.is_empty()),
            Event::Start(s) => {
                assert!(s.attributes().next().is_none());
                let name = String::from_utf8(s.name().as_ref().to_vec()).unwrap();
                if stack.is_empty() {
                    assert!(root.is_empty(), "two roots: {text}");
                    root.clone_from(&name);
                }
                stack.push(name);
            }
            Event::End(_) => {
                let name = stack.pop().unwrap();
                if stack.len() == 1 {
                    leaves.push((name, std::mem::take(&mut current)));
                }
            }
            Event::Text(t) => current.push_str(&t.decode().unwrap()),
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().unwrap() {
                    Some(c) => c,
                    None => match r.as_ref() {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"quot" => '"',
                        b"apos" => '\'',
                        other => panic!("undefined entity {other:?} in {text}"),
                    },
                };
                assert!(
                    xml_legal(c),
                    "reference to an illegal character in {text:?}"
                );
                current.push(c);
            }
            Event::Eof => break,
            other => panic!("unexpected {other:?} in {text}"),
        }
    }
    assert!(stack.is_empty());
    (root, leaves)
}

/// What an XML reader gets back for `s`: characters XML cannot carry become U+FFFD.
fn as_xml_reads(s: &str) -> String {
    s.chars()
        .map(|c| if xml_legal(c) { c } else { '\u{FFFD}' })
        .collect()
}

proptest! {
    #[test]
    fn xml_error_is_well_formed_and_round_trips(
        code in 0u32..100_000,
        msg in any::<String>(),
        sub in proptest::option::of((any::<String>(), any::<String>())),
        request_id in any::<String>(),
    ) {
        let mut err = TopError { code, msg, sub_code: None, sub_msg: None };
        if let Some((c, m)) = sub {
            err = err.with_sub(c, m);
        }
        let (root, leaves) = read_xml(&render_error(Format::Xml, &err, &request_id));
        prop_assert_eq!(root, "error_response");
        let mut expected = vec![("code".to_owned(), code.to_string()), ("msg".to_owned(), as_xml_reads(&err.msg))];
        if let (Some(c), Some(m)) = (&err.sub_code, &err.sub_msg) {
            expected.push(("sub_code".to_owned(), as_xml_reads(c)));
            expected.push(("sub_msg".to_owned(), as_xml_reads(m)));
        }
        expected.push(("request_id".to_owned(), as_xml_reads(&request_id)));
        prop_assert_eq!(leaves, expected);
    }

    #[test]
    fn xml_success_is_well_formed_and_round_trips(
        fields in prop::collection::btree_map("[a-z_]{1,10}", field(), 0..8),
        request_id in "[0-9a-z]{3,13}",
        method in "taobao\\.[a-z]{1,8}(\\.[a-z]{1,8}){0,3}",
    ) {
        let fields: Vec<(String, OwnedField)> =
            fields.into_iter().filter(|(k, _)| k != "request_id").collect();
        let borrowed: Vec<(&str, Field<'_>)> =
            fields.iter().map(|(k, v)| (k.as_str(), v.as_field())).collect();
        let (root, leaves) = read_xml(&render_success(Format::Xml, &method, &borrowed, &request_id));
        prop_assert_eq!(root, response_root(&method));
        let mut expected: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    OwnedField::Bool(b) => b.to_string(),
                    OwnedField::Int(i) => i.to_string(),
                    OwnedField::Str(s) => as_xml_reads(s),
                };
                (k.clone(), text)
            })
            .collect();
        expected.push(("request_id".to_owned(), request_id));
        prop_assert_eq!(leaves, expected);
    }

    #[test]
    fn merge_refuses_exactly_a_repeated_key(
        query in prop::collection::vec(("[a-d]{1,2}", "[ -~]{0,8}"), 0..6),
        body in prop::collection::vec(("[a-d]{1,2}", "[ -~]{0,8}"), 0..6),
    ) {
        let mut seen = std::collections::HashSet::new();
        let repeated = query.iter().chain(&body).find(|(k, _)| !seen.insert(k.clone())).cloned();
        match merge(query.clone(), body.clone()) {
            Ok(p) => {
                prop_assert!(repeated.is_none());
                prop_assert_eq!(p.len(), query.len() + body.len());
                for (k, v) in query.iter().chain(&body) {
                    prop_assert_eq!(p.get(k), Some(v.as_str()));
                }
            }
            Err(e) => {
                prop_assert_eq!(e.clone(), ParamError::DuplicateKey(repeated.unwrap().0));
                prop_assert_eq!(e.to_top_error().code, 41);
            }
        }
    }

    #[test]
    fn multipart_text_parts_round_trip(
        map in prop::collection::btree_map("[a-z_]{1,12}", "[^\r\n]{0,24}", 1..10),
        boundary in "[A-Za-z0-9'()+_,./:=?-]{1,70}",
    ) {
        let mut body = String::new();
        for (k, v) in &map {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        // A value that happens to contain the delimiter is not this property's business.
        prop_assume!(map.values().all(|v| !v.contains(&format!("--{boundary}"))));
        let ct = format!("multipart/form-data; boundary=\"{boundary}\"");
        let pairs = parse_body(Some(&ct), body.as_bytes()).unwrap();
        let back: BTreeMap<String, String> = pairs.into_iter().collect();
        prop_assert_eq!(back, map);
    }

    #[test]
    fn a_charset_other_than_utf8_is_refused_with_47(
        charset in "(gbk|GB2312|latin1|iso-8859-1|utf-16|big5)",
        body in "[a-z]{1,4}=[a-z]{0,4}",
    ) {
        let ct = format!("application/x-www-form-urlencoded; charset={charset}");
        let e = parse_body(Some(&ct), body.as_bytes()).unwrap_err();
        prop_assert_eq!(e.to_top_error().code, 47);
    }
}
