//! Query and body decoding (docs/PROTOCOL.md §1.2, §1.3).

use crate::pairs;
use top_protocol::params::{merge, parse_body, parse_urlencoded, ParamError, MAX_PARAMS};
use top_protocol::{Params, PlatformCode, TopError};

const FORM: Option<&str> = Some("application/x-www-form-urlencoded;charset=UTF-8");

#[test]
fn plus_and_percent_20_both_decode_to_space() {
    // [PY-OFF]/[TBPY] send '+', [NODE] sends %20 (§1.2 rule 2), in the query as in the body.
    let plus = parse_urlencoded(b"timestamp=2024-05-01+10%3A00%3A00").unwrap();
    let pct = parse_urlencoded(b"timestamp=2024-05-01%2010:00:00").unwrap();
    assert_eq!(plus, pairs(&[("timestamp", "2024-05-01 10:00:00")]));
    assert_eq!(pct, plus);
    let body = parse_body(FORM, b"timestamp=2024-05-01+10%3A00%3A00").unwrap();
    assert_eq!(body, plus);
}

#[test]
fn literal_plus_is_sent_as_percent_2b() {
    assert_eq!(
        parse_urlencoded(b"a=1%2B1&b=%E9%97%A8%E7%A5%A8").unwrap(),
        pairs(&[("a", "1+1"), ("b", "门票")])
    );
}

#[test]
fn raw_utf8_bytes_are_accepted() {
    assert_eq!(
        parse_urlencoded("k=门票已核销，无法退票".as_bytes()).unwrap(),
        pairs(&[("k", "门票已核销，无法退票")])
    );
}

#[test]
fn duplicate_key_inside_the_query_is_refused() {
    let query = parse_urlencoded(b"order_id=1&order_id=2").unwrap();
    assert_eq!(
        merge(query, vec![]),
        Err(ParamError::DuplicateKey("order_id".to_owned()))
    );
}

#[test]
fn duplicate_key_inside_the_body_is_refused() {
    let body = parse_body(FORM, b"refund_num=1&x=2&refund_num=1").unwrap();
    assert_eq!(
        merge(vec![], body),
        Err(ParamError::DuplicateKey("refund_num".to_owned()))
    );
}

#[test]
fn duplicate_key_across_query_and_body_is_refused() {
    let query = parse_urlencoded(b"method=a&sign=X").unwrap();
    let body = parse_body(FORM, b"order_id=1&sign=Y").unwrap();
    let err = merge(query, body).unwrap_err();
    assert_eq!(err, ParamError::DuplicateKey("sign".to_owned()));
    assert_eq!(
        err.to_top_error(),
        TopError {
            code: 41,
            msg: "Invalid arguments:sign".to_owned(),
            sub_code: Some("isv.invalid-parameter:sign".to_owned()),
            sub_msg: Some("非法参数:sign (参数重复)".to_owned()),
        }
    );
}

#[test]
fn an_empty_and_a_non_empty_value_for_one_key_is_still_a_duplicate() {
    let q = parse_urlencoded(b"a=").unwrap();
    let b = parse_urlencoded(b"a=1").unwrap();
    assert!(matches!(merge(q, b), Err(ParamError::DuplicateKey(_))));
}

#[test]
fn merge_keeps_both_parts() {
    let query = parse_urlencoded(b"method=m&app_key=1").unwrap();
    let body = parse_body(None, b"order_id=9").unwrap();
    let p = merge(query, body).unwrap();
    let keys: Vec<&str> = p.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["app_key", "method", "order_id"]);
}

#[test]
fn declared_gbk_charset_is_invalid_encoding() {
    for ct in [
        "application/x-www-form-urlencoded; charset=GBK",
        "application/x-www-form-urlencoded;charset=\"gb2312\"",
        "multipart/form-data; boundary=b; charset=GBK",
    ] {
        let err = parse_body(Some(ct), b"a=1").unwrap_err();
        assert!(
            matches!(err, ParamError::InvalidEncoding(_)),
            "{ct}: {err:?}"
        );
        assert_eq!(
            err.to_top_error(),
            TopError::platform(PlatformCode::InvalidEncoding)
        );
    }
}

#[test]
fn utf8_charset_spellings_are_accepted() {
    for ct in [
        "application/x-www-form-urlencoded;charset=UTF-8",
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/x-www-form-urlencoded; charset=\"UTF-8\"",
        "Application/X-WWW-Form-Urlencoded",
    ] {
        assert_eq!(
            parse_body(Some(ct), b"a=1").unwrap(),
            pairs(&[("a", "1")]),
            "{ct}"
        );
    }
}

#[test]
fn invalid_utf8_bytes_are_invalid_encoding() {
    // "门" in GBK is C3 C5: not valid UTF-8, whether raw or percent-encoded.
    for body in [&b"a=%C3%C5"[..], b"a=\xC3\xC5", b"%FF=1"] {
        let err = parse_urlencoded(body).unwrap_err();
        assert!(matches!(err, ParamError::InvalidEncoding(_)), "{body:?}");
        assert_eq!(err.to_top_error().code, 47);
    }
}

#[test]
fn empty_body_gives_no_pairs_whatever_the_content_type() {
    for ct in [
        None,
        FORM,
        Some("application/json"),
        Some("text/plain; charset=GBK"),
    ] {
        assert_eq!(parse_body(ct, b"").unwrap(), vec![]);
    }
}

#[test]
fn absent_content_type_is_read_as_form() {
    // [NODE] POST sends the form without a charset; a body without any content type is read the
    // same way.
    assert_eq!(parse_body(None, b"a=1").unwrap(), pairs(&[("a", "1")]));
    assert_eq!(parse_body(Some(""), b"a=1").unwrap(), pairs(&[("a", "1")]));
}

#[test]
fn other_content_types_are_refused() {
    for ct in ["application/json", "text/plain", "application/xml"] {
        let err = parse_body(Some(ct), b"{\"a\":1}").unwrap_err();
        assert_eq!(err, ParamError::UnsupportedContentType(ct.to_owned()));
        assert_eq!(
            err.to_top_error(),
            TopError::platform(PlatformCode::ParameterError)
        );
    }
}

/// The exact shape `MultiPartForm.__str__` of [PY-OFF] produces (§1.3).
#[test]
fn python_sdk_multipart_drops_the_file_part() {
    let body = [
        "--PYTHON_SDK_BOUNDARY",
        "Content-Disposition: form-data; name=\"order_id\"",
        "Content-Type: text/plain; charset=UTF-8",
        "",
        "2983749123412345",
        "--PYTHON_SDK_BOUNDARY",
        "Content-Disposition: form-data; name=\"refund_failure_reason\"",
        "Content-Type: text/plain; charset=UTF-8",
        "",
        "门票已核销，无法退票",
        "--PYTHON_SDK_BOUNDARY",
        "Content-Disposition: file; name=\"k\"; filename=\"f\"",
        "Content-Type: application/octet-stream",
        "Content-Transfer-Encoding: binary",
        "",
        "\u{0}\u{1}binary--PYTHON_SDK_BOUNDARY-ish",
        "--PYTHON_SDK_BOUNDARY--",
        "",
    ]
    .join("\r\n");
    let got = parse_body(
        Some("multipart/form-data; boundary=PYTHON_SDK_BOUNDARY"),
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        got,
        pairs(&[
            ("order_id", "2983749123412345"),
            ("refund_failure_reason", "门票已核销，无法退票"),
        ])
    );
}

/// The shape Go's `mime/multipart.Writer` produces ([GO-NEW], [GO-BUB]): `WriteField` parts
/// carry no Content-Type, `CreateFormFile` parts have a `filename` and arbitrary bytes.
#[test]
fn go_mime_multipart_body_is_read() {
    let boundary = "9051914041544843365972754266a01bd9e1a8bc1f9f22d7e39ab2fe5c1e";
    let mut body = Vec::new();
    for (name, value) in [
        ("app_key", "12345678"),
        ("empty", ""),
        ("voucher_infos", "[{\"a\":1}]"),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0x00, b'\r', b'\n', 0x80]);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let got = parse_body(
        Some(&format!("multipart/form-data; boundary={boundary}")),
        &body,
    )
    .unwrap();
    assert_eq!(
        got,
        pairs(&[
            ("app_key", "12345678"),
            ("empty", ""),
            ("voucher_infos", "[{\"a\":1}]")
        ])
    );
}

#[test]
fn multipart_values_keep_inner_line_breaks() {
    let body = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nline1\r\nline2\r\n--b--";
    assert_eq!(
        parse_body(Some("multipart/form-data; boundary=\"b\""), body.as_bytes()).unwrap(),
        pairs(&[("a", "line1\r\nline2")])
    );
}

#[test]
fn multipart_duplicates_are_caught_by_merge() {
    let body = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n--b--\r\n";
    let got = parse_body(Some("multipart/form-data; boundary=b"), body.as_bytes()).unwrap();
    assert_eq!(
        merge(vec![], got),
        Err(ParamError::DuplicateKey("a".to_owned()))
    );
}

#[test]
fn malformed_multipart_is_malformed_body() {
    let ct = Some("multipart/form-data; boundary=b");
    let cases: [(&str, Option<&str>, &[u8]); 7] = [
        (
            "no boundary parameter",
            Some("multipart/form-data"),
            b"--b\r\n",
        ),
        ("no delimiter at all", ct, b"a=1&b=2"),
        (
            "no closing delimiter",
            ct,
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n",
        ),
        (
            "headers never end",
            ct,
            b"--b\r\nContent-Disposition: form-data; name=\"a\"",
        ),
        (
            "no Content-Disposition",
            ct,
            b"--b\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--\r\n",
        ),
        (
            "no name",
            ct,
            b"--b\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b--\r\n",
        ),
        (
            "unknown disposition",
            ct,
            b"--b\r\nContent-Disposition: inline; name=\"a\"\r\n\r\n1\r\n--b--\r\n",
        ),
    ];
    for (why, ct, body) in cases {
        let err = parse_body(ct, body).unwrap_err();
        assert!(
            matches!(err, ParamError::MalformedBody(_)),
            "{why}: {err:?}"
        );
        assert_eq!(err.to_top_error().code, 43, "{why}");
    }
}

#[test]
fn multipart_text_part_in_gbk_is_invalid_encoding() {
    let body = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain; charset=GBK\r\n\r\n\xC3\xC5\r\n--b--\r\n";
    let err = parse_body(Some("multipart/form-data; boundary=b"), body).unwrap_err();
    assert!(matches!(err, ParamError::InvalidEncoding(_)));
    let body = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xC3\xC5\r\n--b--\r\n";
    let err = parse_body(Some("multipart/form-data; boundary=b"), body).unwrap_err();
    assert!(matches!(err, ParamError::InvalidEncoding(_)));
}

#[test]
fn too_many_parameters_is_a_parameter_error() {
    let q: Vec<(String, String)> = (0..600).map(|i| (format!("q{i}"), String::new())).collect();
    let b: Vec<(String, String)> = (0..401).map(|i| (format!("b{i}"), String::new())).collect();
    let err = merge(q, b).unwrap_err();
    assert_eq!(err, ParamError::TooManyParameters(MAX_PARAMS + 1));
    assert_eq!(
        err.to_top_error(),
        TopError::platform(PlatformCode::ParameterError)
    );
}

#[test]
fn params_accessors() {
    let mut p = Params::new();
    assert!(p.is_empty());
    assert_eq!(p.insert("b", "2"), None);
    assert_eq!(p.insert("a", "1"), None);
    assert_eq!(p.insert("a", "3"), Some("1".to_owned()));
    assert_eq!(p.get("a"), Some("3"));
    assert_eq!(p.get("A"), None);
    assert_eq!(p.len(), 2);
    assert_eq!(p.remove("b"), Some("2".to_owned()));
    assert_eq!(p.to_form_urlencoded(), "a=3");
    let p = crate::params(&[("timestamp", "2024-05-01 10:00:00"), ("x", "a&b=c+d/门")]);
    assert_eq!(
        p.to_form_urlencoded(),
        "timestamp=2024-05-01+10%3A00%3A00&x=a%26b%3Dc%2Bd%2F%E9%97%A8"
    );
    assert_eq!(
        Params::from_pairs([("k", "1"), ("k", "2")]),
        Err(ParamError::DuplicateKey("k".to_owned()))
    );
}

#[test]
fn multipart_with_crlf_blank_line_after_lf_headers_and_overlong_boundary() {
    let body = b"--b\r\nContent-Disposition: form-data; name=\"a\"\n\r\n1\r\n--b--";
    assert_eq!(
        parse_body(Some("multipart/form-data; boundary=b"), body).unwrap(),
        pairs(&[("a", "1")])
    );
    let long = "x".repeat(71);
    let err = parse_body(
        Some(&format!("multipart/form-data; boundary={long}")),
        format!("--{long}--").as_bytes(),
    )
    .unwrap_err();
    assert!(matches!(err, ParamError::MalformedBody(_)));
}

#[test]
fn many_file_parts_parse_in_linear_time() {
    // 20 000 file parts in about 1.4 MB: a quadratic header search would take minutes.
    let mut body = Vec::new();
    for _ in 0..20_000 {
        body.extend_from_slice(
            b"--b\r\nContent-Disposition: file; name=\"f\"; filename=\"f\"\r\n\r\nxx\r\n",
        );
    }
    body.extend_from_slice(
        b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\n",
    );
    let start = std::time::Instant::now();
    let got = parse_body(Some("multipart/form-data; boundary=b"), &body).unwrap();
    assert_eq!(got, pairs(&[("a", "1")]));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}
