//! The SDK's request builder reproduces every golden vector of `../shared/vectors` (signatures
//! computed by the real public TOP SDKs): same parameter set, same `sign`.

use serde::Deserialize;
use std::collections::BTreeMap;
use top_client::{Format, SignMethod, TopClient};

#[derive(Debug, Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
}

#[derive(Debug, Deserialize)]
struct Vector {
    id: String,
    sign_method: String,
    secret: String,
    params: BTreeMap<String, String>,
    sign: String,
}

/// Parameters the client sets itself from its configuration.
const SYSTEM: &[&str] = &[
    "method",
    "app_key",
    "sign_method",
    "timestamp",
    "v",
    "format",
    "simplify",
    "partner_id",
    "session",
];

fn vectors() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/signatures.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Vectors = serde_json::from_str(&text).unwrap();
    assert!(v.vectors.len() >= 5, "expected the golden vectors");
    v.vectors
}

#[test]
fn request_builder_reproduces_every_golden_vector() {
    for v in vectors() {
        let p = &v.params;
        let sign_method = SignMethod::parse(&v.sign_method).unwrap();
        assert_eq!(p["v"], "2.0", "{}", v.id);
        let mut builder =
            TopClient::builder("http://127.0.0.1:1/router/rest", &p["app_key"], &v.secret)
                .sign_method(sign_method)
                .format(Format::parse(&p["format"]).unwrap())
                .simplify(p.get("simplify").is_some_and(|s| s == "true"));
        if let Some(partner) = p.get("partner_id") {
            builder = builder.partner_id(partner);
        }
        let client = builder.build().unwrap();
        let business: Vec<(&str, String)> = p
            .iter()
            .filter(|(k, _)| !SYSTEM.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let signed = client
            .signed_params(&p["method"], &business, &p["timestamp"])
            .unwrap();
        assert_eq!(signed.get("sign"), Some(v.sign.as_str()), "{}", v.id);
        let sent: BTreeMap<String, String> = signed
            .iter()
            .filter(|(k, _)| *k != "sign")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            &sent, p,
            "{}: the SDK sends exactly the vector's parameters",
            v.id
        );
    }
}

#[test]
fn a_changed_byte_changes_the_signature() {
    let v = vectors().into_iter().next().unwrap();
    let p = &v.params;
    let client = TopClient::builder("http://127.0.0.1:1/router/rest", &p["app_key"], &v.secret)
        .sign_method(SignMethod::parse(&v.sign_method).unwrap())
        .build()
        .unwrap();
    let business: Vec<(&str, String)> = p
        .iter()
        .filter(|(k, _)| !SYSTEM.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), format!("{v}x")))
        .collect();
    let signed = client
        .signed_params(&p["method"], &business, &p["timestamp"])
        .unwrap();
    assert_ne!(signed.get("sign"), Some(v.sign.as_str()));
}
