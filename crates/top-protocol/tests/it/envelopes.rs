//! Response bodies, byte-exact (docs/PROTOCOL.md §4.2, §5.3).

use std::collections::HashSet;
use top_protocol::envelope::{
    new_request_id, render_error, render_success, response_root, UnknownFormat,
};
use top_protocol::{Field, Format, PlatformCode, TopError};

const VERIFY: &str = "taobao.travel.ticket.order.verify";
const OK: &[(&str, Field<'static>)] = &[("is_success", Field::Bool(true))];

fn text(body: Vec<u8>) -> String {
    String::from_utf8(body).unwrap()
}

#[test]
fn response_root_strips_only_taobao() {
    assert_eq!(response_root(VERIFY), "travel_ticket_order_verify_response");
    assert_eq!(
        response_root("taobao.travel.ticket.order.refund"),
        "travel_ticket_order_refund_response"
    );
    assert_eq!(
        response_root("alitrip.travel.ticket.order.create"),
        "alitrip_travel_ticket_order_create_response"
    );
    assert_eq!(response_root("taobaox.a"), "taobaox_a_response");
}

#[test]
fn json_success_is_byte_exact() {
    assert_eq!(
        text(render_success(Format::Json, VERIFY, OK, "3zq0b7wgxmw8y")),
        r#"{"travel_ticket_order_verify_response":{"is_success":true,"request_id":"3zq0b7wgxmw8y"}}"#
    );
    assert_eq!(
        text(render_success(
            Format::Json,
            "taobao.travel.ticket.order.refund",
            OK,
            "16ftclvr0ti3x"
        )),
        r#"{"travel_ticket_order_refund_response":{"is_success":true,"request_id":"16ftclvr0ti3x"}}"#
    );
}

#[test]
fn simplified_success_is_byte_exact() {
    assert_eq!(
        text(render_success(
            Format::SimplifiedJson,
            VERIFY,
            OK,
            "3zq0b7wgxmw8y"
        )),
        r#"{"is_success":true,"request_id":"3zq0b7wgxmw8y"}"#
    );
}

#[test]
fn xml_success_is_byte_exact() {
    assert_eq!(
        text(render_success(Format::Xml, VERIFY, OK, "3zq0b7wgxmw8y")),
        r#"<?xml version="1.0" encoding="utf-8" ?><travel_ticket_order_verify_response><is_success>true</is_success><request_id>3zq0b7wgxmw8y</request_id></travel_ticket_order_verify_response>"#
    );
}

#[test]
fn fields_keep_their_order_and_types() {
    let fields = [
        ("z", Field::Int(-5)),
        ("a", Field::Str("x")),
        ("m", Field::Bool(false)),
    ];
    assert_eq!(
        text(render_success(
            Format::SimplifiedJson,
            VERIFY,
            &fields,
            "r1234"
        )),
        r#"{"z":-5,"a":"x","m":false,"request_id":"r1234"}"#
    );
    assert_eq!(
        text(render_success(Format::Xml, VERIFY, &fields, "r1234")),
        r#"<?xml version="1.0" encoding="utf-8" ?><travel_ticket_order_verify_response><z>-5</z><a>x</a><m>false</m><request_id>r1234</request_id></travel_ticket_order_verify_response>"#
    );
}

#[test]
fn error_examples_of_4_2_are_byte_exact() {
    let e25 = TopError::platform(PlatformCode::InvalidSignature);
    let json =
        r#"{"error_response":{"code":25,"msg":"Invalid signature","request_id":"109wcmcgllsj1"}}"#;
    assert_eq!(
        text(render_error(Format::Json, &e25, "109wcmcgllsj1")),
        json
    );
    assert_eq!(
        text(render_error(Format::SimplifiedJson, &e25, "109wcmcgllsj1")),
        json
    );
    assert_eq!(
        text(render_error(Format::Xml, &e25, "109wcmcgllsj1")),
        r#"<?xml version="1.0" encoding="utf-8" ?><error_response><code>25</code><msg>Invalid signature</msg><request_id>109wcmcgllsj1</request_id></error_response>"#
    );

    let e40 = TopError::missing_argument("refund_status");
    let e40 = TopError {
        sub_code: None,
        sub_msg: None,
        ..e40
    };
    assert_eq!(
        text(render_error(Format::Json, &e40, "0j0brfaosnz45")),
        r#"{"error_response":{"code":40,"msg":"Missing required arguments:refund_status","request_id":"0j0brfaosnz45"}}"#
    );

    let e50 = TopError::business(
        "isv.invalid-parameter:confirm_code_not_exist",
        "核销码不存在",
    );
    assert_eq!(
        text(render_error(Format::Json, &e50, "utk0hpy90yyq0")),
        r#"{"error_response":{"code":50,"msg":"Remote service error","sub_code":"isv.invalid-parameter:confirm_code_not_exist","sub_msg":"核销码不存在","request_id":"utk0hpy90yyq0"}}"#
    );
    assert_eq!(
        text(render_error(Format::SimplifiedJson, &e50, "utk0hpy90yyq0")),
        text(render_error(Format::Json, &e50, "utk0hpy90yyq0"))
    );
    assert_eq!(
        text(render_error(Format::Xml, &e50, "utk0hpy90yyq0")),
        r#"<?xml version="1.0" encoding="utf-8" ?><error_response><code>50</code><msg>Remote service error</msg><sub_code>isv.invalid-parameter:confirm_code_not_exist</sub_code><sub_msg>核销码不存在</sub_msg><request_id>utk0hpy90yyq0</request_id></error_response>"#
    );
}

#[test]
fn json_bodies_fit_the_go_sdk_slicing() {
    let errors = [
        TopError::platform(PlatformCode::InvalidSignature),
        TopError::platform(PlatformCode::UploadFail),
        TopError::business("isp.service-error", "系统错误"),
        TopError::invalid_argument("a", ""),
    ];
    let id = new_request_id();
    for format in [Format::Json, Format::SimplifiedJson] {
        for e in &errors {
            let body = render_error(format, e, &id);
            assert!(body.len() >= 20);
            assert!(body.starts_with(br#"{"error_response":"#));
            assert!(body.ends_with(b"}}"));
            // [GO-NEW]: strings.Contains(body[0:20], "error_response"), then body[18:len-1].
            assert!(std::str::from_utf8(&body[..20])
                .unwrap()
                .contains("error_response"));
            let inner: serde_json::Value =
                serde_json::from_slice(&body[18..body.len() - 1]).unwrap();
            assert_eq!(inner["code"], e.code);
        }
        for fields in [OK, &[]] {
            for id in [id.as_str(), "abc"] {
                let body = render_success(format, VERIFY, fields, id);
                assert!(body.len() >= 20, "{}", text(body));
            }
        }
    }
    // The shortest possible success body: no fields, a 3-byte id, simplified.
    assert_eq!(
        render_success(Format::SimplifiedJson, VERIFY, &[], "abc").len(),
        20
    );
}

#[test]
fn bodies_have_no_bom_whitespace_or_trailing_newline() {
    let e = TopError::business("isv.x", "中文 with space");
    for format in [Format::Xml, Format::Json, Format::SimplifiedJson] {
        for body in [
            render_error(format, &e, "id0000000000a"),
            render_success(format, VERIFY, OK, "id0000000000a"),
        ] {
            assert!(!body.starts_with(&[0xEF, 0xBB, 0xBF]));
            assert!(!body.ends_with(b"\n"));
            assert!(!body.contains(&b'\n') && !body.contains(&b'\r') && !body.contains(&b'\t'));
        }
    }
}

#[test]
fn json_strings_are_escaped() {
    let nasty = "q\"uote\\back/slash\n\r\t\u{8}\u{c}\u{0}\u{1f}&<>'门\u{7f}\u{2028}";
    let body = render_error(Format::Json, &TopError::business("isv.x", nasty), "id\"");
    let s = text(body.clone());
    assert!(s.contains(r#""sub_msg":"q\"uote\\back/slash\n\r\t\b\f\u0000\u001f&<>'门"#));
    assert!(!s.contains("\\u95e8"), "non-ASCII stays raw UTF-8");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error_response"]["sub_msg"], nasty);
    assert_eq!(v["error_response"]["request_id"], "id\"");
}

#[test]
fn xml_strings_are_escaped() {
    let body = text(render_success(
        Format::Xml,
        VERIFY,
        &[("s", Field::Str("a&b<c>d\"e'f\u{1}g\n门"))],
        "r&1",
    ));
    assert!(body.contains("<s>a&amp;b&lt;c&gt;d&quot;e&apos;f\u{FFFD}g&#xA;门</s>"));
    assert!(body.contains("<request_id>r&amp;1</request_id>"));
    let err = text(render_error(
        Format::Xml,
        &TopError::business("isv.a&b", "<x>"),
        "r",
    ));
    assert!(err.contains("<sub_code>isv.a&amp;b</sub_code><sub_msg>&lt;x&gt;</sub_msg>"));
}

#[test]
fn format_from_params() {
    let f = |pairs: &[(&str, &str)]| Format::from_params(&crate::params(pairs));
    assert_eq!(f(&[]), Ok(Format::Xml));
    assert_eq!(f(&[("format", "xml")]), Ok(Format::Xml));
    assert_eq!(
        f(&[("format", "xml"), ("simplify", "true")]),
        Ok(Format::Xml)
    );
    assert_eq!(f(&[("format", "json")]), Ok(Format::Json));
    assert_eq!(
        f(&[("format", "json"), ("simplify", "true")]),
        Ok(Format::SimplifiedJson)
    );
    assert_eq!(
        f(&[("format", "json"), ("simplify", "TRUE")]),
        Ok(Format::SimplifiedJson)
    );
    assert_eq!(
        f(&[("format", "json"), ("simplify", "True")]),
        Ok(Format::SimplifiedJson)
    );
    // [PHP-NEW] sends simplify=1 but parses the wrapped form (§4.2).
    assert_eq!(
        f(&[("format", "json"), ("simplify", "1")]),
        Ok(Format::Json)
    );
    assert_eq!(
        f(&[("format", "json"), ("simplify", "false")]),
        Ok(Format::Json)
    );
    assert_eq!(f(&[("format", "json"), ("simplify", "")]), Ok(Format::Json));
    assert_eq!(
        f(&[("format", "json"), ("simplify", " true")]),
        Ok(Format::Json)
    );
    assert_eq!(f(&[("format", "JSON")]), Err(UnknownFormat));
    assert_eq!(f(&[("format", "yaml")]), Err(UnknownFormat));
    assert_eq!(f(&[("simplify", "true")]), Ok(Format::Xml));
}

#[test]
fn content_types() {
    assert_eq!(Format::Json.content_type(), "text/javascript;charset=UTF-8");
    assert_eq!(
        Format::SimplifiedJson.content_type(),
        "text/javascript;charset=UTF-8"
    );
    assert_eq!(Format::Xml.content_type(), "text/xml;charset=UTF-8");
}

#[test]
fn request_ids_are_13_lower_base36_and_unique() {
    let ids: Vec<String> = (0..10_000).map(|_| new_request_id()).collect();
    for id in &ids {
        assert_eq!(id.len(), 13, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
            "{id}"
        );
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

#[test]
fn request_ids_are_unique_across_threads() {
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| (0..2_000).map(|_| new_request_id()).collect::<Vec<_>>()))
        .collect();
    let mut all = HashSet::new();
    for h in handles {
        for id in h.join().unwrap() {
            assert!(all.insert(id));
        }
    }
}
