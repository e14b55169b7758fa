//! The §5.1 checking order: `check_envelope` then `authenticate`.

use chrono::{DateTime, Duration, Utc};
use top_protocol::check::{
    authenticate, check_envelope, Envelope, Rejection, DEFAULT_TIMESTAMP_WINDOW_SECS,
};
use top_protocol::{EmptyValues, Format, Params, PlatformCode, SignMethod, TopError};

const SECRET: &[u8] = b"test_secret";
const VERIFY: &str = "taobao.travel.ticket.order.verify";

fn known(m: &str) -> bool {
    m == VERIFY || m == "taobao.travel.ticket.order.refund"
}

fn now() -> DateTime<Utc> {
    // 2024-05-01 12:00:00 Beijing time.
    DateTime::parse_from_rfc3339("2024-05-01T04:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn window() -> Duration {
    Duration::seconds(DEFAULT_TIMESTAMP_WINDOW_SECS)
}

/// A complete, correctly signed GV1-style request.
fn request() -> Params {
    let mut p = crate::params(&[
        ("method", VERIFY),
        ("app_key", "12345678"),
        ("sign_method", "md5"),
        ("timestamp", "2024-05-01 12:00:00"),
        ("v", "2.0"),
        ("format", "json"),
        ("order_id", "2983749123412345"),
        ("confirm_code", "A1B2C3D4"),
        ("check_num", "1"),
    ]);
    resign(&mut p);
    p
}

fn resign(p: &mut Params) {
    let method = p
        .get("sign_method")
        .map_or(Some(SignMethod::Md5), SignMethod::parse)
        .unwrap_or(SignMethod::Md5);
    let s = top_protocol::sign::sign(method, SECRET, p, EmptyValues::Skip);
    p.insert("sign", s);
}

fn rejection(code: PlatformCode, format: Format) -> Rejection {
    Rejection {
        format,
        error: TopError::platform(code),
    }
}

fn auth(p: &Params) -> Result<(), TopError> {
    authenticate(p, &[SECRET], now(), window())
}

fn code(r: Result<(), TopError>) -> u32 {
    r.unwrap_err().code
}

#[test]
fn a_good_request_passes_both_stages() {
    let p = request();
    assert_eq!(
        check_envelope("POST", &p, known),
        Ok(Envelope {
            method: VERIFY.to_owned(),
            format: Format::Json,
            app_key: "12345678".to_owned(),
            sign_method: Some(SignMethod::Md5),
        })
    );
    assert_eq!(
        check_envelope("GET", &p, known).map(|e| e.format),
        Ok(Format::Json)
    );
    assert_eq!(auth(&p), Ok(()));
}

#[test]
fn code_9_for_other_verbs_in_the_requested_format() {
    let p = request();
    for verb in ["PUT", "DELETE", "get", "Post", "HEAD", ""] {
        assert_eq!(
            check_envelope(verb, &p, known),
            Err(rejection(PlatformCode::HttpActionNotAllowed, Format::Json)),
            "{verb}"
        );
    }
}

#[test]
fn code_21_missing_method_comes_before_28() {
    let mut p = request();
    p.remove("method");
    p.remove("app_key");
    assert_eq!(
        check_envelope("POST", &p, known),
        Err(rejection(PlatformCode::MissingMethod, Format::Json))
    );
    let mut p = request();
    p.insert("method", "");
    assert_eq!(
        check_envelope("POST", &p, known).unwrap_err().error.code,
        21
    );
}

#[test]
fn code_22_unknown_method() {
    let mut p = request();
    p.insert("method", "taobao.travel.ticket.order.cancel");
    p.insert("simplify", "true");
    assert_eq!(
        check_envelope("POST", &p, known),
        Err(rejection(
            PlatformCode::InvalidMethod,
            Format::SimplifiedJson
        ))
    );
}

#[test]
fn code_23_bad_format_is_rendered_as_xml() {
    let mut p = request();
    p.insert("format", "yaml");
    assert_eq!(
        check_envelope("POST", &p, known),
        Err(rejection(PlatformCode::InvalidFormat, Format::Xml))
    );
    // A bad format with a bad verb is still a 9, rendered as XML too.
    assert_eq!(
        check_envelope("PUT", &p, known),
        Err(rejection(PlatformCode::HttpActionNotAllowed, Format::Xml))
    );
}

#[test]
fn code_28_missing_app_key() {
    let mut p = request();
    p.remove("app_key");
    p.remove("format");
    assert_eq!(
        check_envelope("POST", &p, known),
        Err(rejection(PlatformCode::MissingAppKey, Format::Xml))
    );
}

#[test]
fn unsupported_sign_method_passes_the_envelope_and_fails_authentication_with_25() {
    let mut p = request();
    p.insert("sign_method", "sha1");
    let env = check_envelope("POST", &p, known).unwrap();
    assert_eq!(env.sign_method, None);
    assert_eq!(
        auth(&p),
        Err(TopError::platform(PlatformCode::InvalidSignature))
    );
    // ...but a missing sign is reported first (24 before 25).
    p.remove("sign");
    assert_eq!(code(auth(&p)), 24);
}

#[test]
fn absent_sign_method_means_md5() {
    let mut p = request();
    p.remove("sign_method");
    resign(&mut p);
    assert_eq!(
        check_envelope("POST", &p, known).unwrap().sign_method,
        Some(SignMethod::Md5)
    );
    assert_eq!(auth(&p), Ok(()));
}

#[test]
fn every_sign_method_authenticates() {
    for m in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
        let mut p = request();
        p.insert("sign_method", m.as_str());
        resign(&mut p);
        assert_eq!(
            check_envelope("POST", &p, known).unwrap().sign_method,
            Some(m)
        );
        assert_eq!(auth(&p), Ok(()), "{m:?}");
    }
}

#[test]
fn code_24_missing_sign() {
    let mut p = request();
    p.remove("sign");
    assert_eq!(
        auth(&p),
        Err(TopError::platform(PlatformCode::MissingSignature))
    );
    p.insert("sign", "");
    assert_eq!(code(auth(&p)), 24);
}

#[test]
fn code_25_bad_signature() {
    let mut p = request();
    p.insert("sign", "BD4A9820B81BCD27A62DE2B7B674A583");
    assert_eq!(
        auth(&p),
        Err(TopError::platform(PlatformCode::InvalidSignature))
    );
    let mut p = request();
    p.insert("check_num", "2"); // value changed after signing
    assert_eq!(code(auth(&p)), 25);
    let p = request();
    assert_eq!(code(authenticate(&p, &[b"wrong"], now(), window())), 25);
    assert_eq!(code(authenticate(&p, &[], now(), window())), 25);
}

#[test]
fn lower_case_sign_is_accepted() {
    let mut p = request();
    let lower = p.get("sign").unwrap().to_ascii_lowercase();
    p.insert("sign", lower);
    assert_eq!(auth(&p), Ok(()));
}

#[test]
fn any_of_several_secrets_verifies() {
    let p = request();
    assert_eq!(authenticate(&p, &[b"old", SECRET], now(), window()), Ok(()));
    assert_eq!(authenticate(&p, &[SECRET, b"new"], now(), window()), Ok(()));
}

#[test]
fn bad_sign_and_bad_timestamp_is_25() {
    let mut p = request();
    p.insert("timestamp", "yesterday");
    p.insert("sign", "00000000000000000000000000000000");
    assert_eq!(code(auth(&p)), 25);
}

#[test]
fn code_30_missing_timestamp() {
    let mut p = request();
    p.remove("timestamp");
    resign(&mut p);
    assert_eq!(
        auth(&p),
        Err(TopError::platform(PlatformCode::MissingTimestamp))
    );
}

#[test]
fn code_31_unparsable_timestamp() {
    for bad in ["2024-5-1 12:00:00", "171453600000", "2024-05-01T12:00:00"] {
        let mut p = request();
        p.insert("timestamp", bad);
        resign(&mut p);
        assert_eq!(
            auth(&p),
            Err(TopError::platform(PlatformCode::InvalidTimestamp)),
            "{bad}"
        );
    }
}

#[test]
fn code_31_timestamp_out_of_window() {
    for (ts, ok) in [
        ("2024-05-01 12:10:00", true),
        ("2024-05-01 11:50:00", true),
        ("2024-05-01 12:10:01", false),
        ("2024-05-01 11:49:59", false),
        ("1714536600000", true),
        ("1714536601000", false),
        // [NODE] on a UTC host: the UTC wall clock, 8 h off.
        ("2024-05-01 04:00:00", false),
    ] {
        let mut p = request();
        p.insert("timestamp", ts);
        resign(&mut p);
        let expected = if ok {
            Ok(())
        } else {
            Err(TopError::platform(PlatformCode::InvalidTimestamp))
        };
        assert_eq!(auth(&p), expected, "{ts}");
    }
}

#[test]
fn code_32_missing_version() {
    let mut p = request();
    p.remove("v");
    resign(&mut p);
    assert_eq!(
        auth(&p),
        Err(TopError::platform(PlatformCode::MissingVersion))
    );
}

#[test]
fn code_34_unsupported_version() {
    for v in ["1.0", "2", "2.0 ", "3.0"] {
        let mut p = request();
        p.insert("v", v);
        resign(&mut p);
        assert_eq!(
            auth(&p),
            Err(TopError::platform(PlatformCode::UnsupportedVersion)),
            "{v}"
        );
    }
}

#[test]
fn timestamp_is_checked_before_version() {
    let mut p = request();
    p.remove("v");
    p.insert("timestamp", "2000-01-01 00:00:00");
    resign(&mut p);
    assert_eq!(code(auth(&p)), 31);
}

#[test]
fn empty_value_request_from_a_keep_style_sdk_authenticates() {
    let mut p = request();
    p.insert("out_order_id", "");
    let keep = top_protocol::sign::sign(SignMethod::Md5, SECRET, &p, EmptyValues::Keep);
    p.insert("sign", keep);
    assert_eq!(auth(&p), Ok(()));
}
