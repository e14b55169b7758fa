//! Golden vectors from real SDKs (`shared/vectors/signatures.json`, docs/PROTOCOL.md §3.3).

use serde::Deserialize;
use std::collections::BTreeMap;
use top_protocol::sign::{canonical_string, sign, verify};
use top_protocol::{EmptyValues, Params, SignMethod};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/signatures.json"
);

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    id: String,
    sign_method: String,
    secret: String,
    params: BTreeMap<String, String>,
    sign: String,
}

fn load() -> Vec<Vector> {
    let text =
        std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("cannot read {VECTORS}: {e}"));
    let file: File = serde_json::from_str(&text).expect("signatures.json parses");
    file.vectors
}

fn vector_params(v: &Vector) -> Params {
    Params::from_pairs(v.params.clone()).unwrap()
}

#[test]
fn every_golden_vector_is_reproduced_and_verifies() {
    let vectors = load();
    let ids: Vec<&str> = vectors.iter().map(|v| v.id.as_str()).collect();
    for expected in ["GV1", "GV2", "GV3", "GV5", "GV7"] {
        assert!(ids.contains(&expected), "{expected} missing from {VECTORS}");
    }
    for v in &vectors {
        let method = SignMethod::parse(&v.sign_method).expect("supported sign_method");
        assert_eq!(
            v.params.get("sign_method"),
            Some(&v.sign_method),
            "{}",
            v.id
        );
        let p = vector_params(v);
        let secret = v.secret.as_bytes();
        assert_eq!(
            sign(method, secret, &p, EmptyValues::Skip),
            v.sign,
            "{}",
            v.id
        );
        assert_eq!(
            sign(method, secret, &p, EmptyValues::Keep),
            v.sign,
            "{}",
            v.id
        );
        assert!(verify(method, secret, &p, &v.sign), "{}", v.id);
        assert!(
            verify(method, secret, &p, &v.sign.to_ascii_lowercase()),
            "{} lower-case",
            v.id
        );
        assert!(!verify(method, b"other_secret", &p, &v.sign), "{}", v.id);
    }
}

#[test]
fn vectors_verify_with_the_sign_param_present() {
    for v in load() {
        let method = SignMethod::parse(&v.sign_method).unwrap();
        let mut p = vector_params(&v);
        p.insert("sign", v.sign.clone());
        assert!(verify(method, v.secret.as_bytes(), &p, &v.sign), "{}", v.id);
    }
}

#[test]
fn gv1_canonical_string_is_the_one_quoted_in_protocol_3_3() {
    let gv1 = load().into_iter().find(|v| v.id == "GV1").unwrap();
    let mut out = Vec::new();
    canonical_string(&vector_params(&gv1), EmptyValues::Skip, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "app_key12345678check_num1confirm_codeA1B2C3D4formatjsonmethodtaobao.travel.ticket.order.verifyorder_id2983749123412345sign_methodmd5timestamp2024-05-01 12:00:00v2.0"
    );
}

#[test]
fn canonical_string_appends_to_the_buffer() {
    let mut out = b"prefix:".to_vec();
    canonical_string(
        &crate::params(&[("b", "2"), ("a", "1")]),
        EmptyValues::Skip,
        &mut out,
    );
    assert_eq!(out, b"prefix:a1b2");
}

#[test]
fn gv3_hashes_chinese_as_utf8() {
    let gv3 = load().into_iter().find(|v| v.id == "GV3").unwrap();
    let mut out = Vec::new();
    canonical_string(&vector_params(&gv3), EmptyValues::Skip, &mut out);
    let s = String::from_utf8(out).unwrap();
    assert!(s.contains("refund_failure_reason门票已核销，无法退票"));
}

#[test]
fn a_vector_signed_with_another_method_fails() {
    for v in load() {
        let right = SignMethod::parse(&v.sign_method).unwrap();
        let p = vector_params(&v);
        for other in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
            if other != right {
                assert!(!verify(other, v.secret.as_bytes(), &p, &v.sign), "{}", v.id);
            }
        }
    }
}

/// docs/PROTOCOL.md §3.2: [JAVA] skips empty values, the other SDKs keep them; both must pass.
#[test]
fn empty_value_request_verifies_in_keep_and_skip_form() {
    let mut p = crate::params(&[
        ("method", "taobao.travel.ticket.order.verify"),
        ("app_key", "12345678"),
        ("sign_method", "md5"),
        ("timestamp", "2024-05-01 12:00:00"),
        ("v", "2.0"),
        ("format", "json"),
        ("order_id", "2983749123412345"),
        ("confirm_code", "A1B2C3D4"),
        ("out_order_id", ""),
    ]);
    for method in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
        p.insert("sign_method", method.as_str());
        let keep = sign(method, b"test_secret", &p, EmptyValues::Keep);
        let skip = sign(method, b"test_secret", &p, EmptyValues::Skip);
        assert_ne!(keep, skip);
        assert!(verify(method, b"test_secret", &p, &keep));
        assert!(verify(method, b"test_secret", &p, &skip));
    }
}

#[test]
fn request_without_empty_values_accepts_only_the_skip_form() {
    let p = crate::params(&[("a", "1"), ("b", "2")]);
    let skip = sign(SignMethod::Md5, b"s", &p, EmptyValues::Skip);
    assert!(verify(SignMethod::Md5, b"s", &p, &skip));
    // The "keep" form of a request with an extra empty param is a different string; it must not
    // be accepted for a request that does not carry that param.
    let with_empty = crate::params(&[("a", "1"), ("b", "2"), ("c", "")]);
    let keep = sign(SignMethod::Md5, b"s", &with_empty, EmptyValues::Keep);
    assert_ne!(keep, skip);
    assert!(!verify(SignMethod::Md5, b"s", &p, &keep));
    // And with the empty param present, both forms pass.
    assert!(verify(SignMethod::Md5, b"s", &with_empty, &keep));
    assert!(verify(SignMethod::Md5, b"s", &with_empty, &skip));
}

/// Known-answer checks of §3.1 step 4 (values from Python's `hashlib`/`hmac`), so the vectors
/// are not the only thing tying each method to its definition.
#[test]
fn md5_wraps_the_secret_and_hmac_does_not() {
    let p = crate::params(&[("k", "v")]);
    let cases: [(SignMethod, &[u8], &str); 4] = [
        (SignMethod::Md5, b"s", "652A4F88C1FC308B5216E96B1626C1D7"),
        (
            SignMethod::HmacMd5,
            b"s",
            "010440C994ABF68347E67BC9FBD5E129",
        ),
        (
            SignMethod::HmacSha256,
            b"s",
            "CBD4F5A9B5A7ECF83BFF05DA7FE030F5FD959DFB7D36DC635F659D824C1FD36D",
        ),
        // A key longer than the block size is hashed first (RFC 2104).
        (
            SignMethod::HmacSha256,
            &[b'k'; 100],
            "BD0FC0C902F1F41FDAA02B4D2FEE692821159900CCA6585585CBA11C6136CB3D",
        ),
    ];
    for (method, secret, expected) in cases {
        assert_eq!(
            sign(method, secret, &p, EmptyValues::Skip),
            expected,
            "{method:?}"
        );
    }
}
