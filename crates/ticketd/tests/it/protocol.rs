//! The TOP wire protocol through the real server (docs/PROTOCOL.md §1–§5): every platform error
//! code of §5.1 with its exact body and no ledger change, the checking order, success envelopes
//! byte for byte for every sign method and format, both empty-value signing forms, and the places
//! parameters travel (query, body, multipart).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use ticketd::clock::SystemClock;
use top_protocol::sign::sign;
use top_protocol::timestamp::{format_beijing, parse_beijing};
use top_protocol::{EmptyValues, Params, SignMethod};

use crate::helpers::{
    assert_error_body, assert_error_xml, assert_success_body, assert_top_envelope,
    create_order_with, error_json, json_str, kept_refusal, ledger_snapshot, post_params, spawn_app,
    spawn_app_at, spawn_app_with, success_json, success_simplified, success_xml, KeptRefusal,
    TestApp, TopCall, TopReply,
};

const KEY: &str = "proto-vendor";
const SECRET: &str = "proto-secret-0123456789";
const ORDER: i64 = 7001;
const CODE: &str = "CODE-0001";
const FORM: &str = "application/x-www-form-urlencoded;charset=UTF-8";

async fn setup() -> TestApp {
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(ORDER, KEY, &[(CODE, 1000)]).await;
    app
}

/// A valid legacy verify of one use: every bad request below is this one, broken once.
fn good() -> TopCall {
    TopCall::verify(KEY, SECRET)
        .set("order_id", ORDER)
        .set("confirm_code", CODE)
        .set("check_num", 1)
}

fn with_secret(mut call: TopCall, secret: &str) -> TopCall {
    call.secret = secret.to_owned();
    call
}

fn beijing_in(d: Duration) -> String {
    format_beijing(Utc::now() + d)
}

fn millis_in(d: Duration) -> String {
    (Utc::now() + d).timestamp_millis().to_string()
}

/// What a refused request must get back.
#[derive(Debug, Clone)]
struct Want {
    code: i64,
    msg: String,
    sub: Option<(String, String)>,
    xml: bool,
    /// `sub_msg` is only checked as a prefix (it ends with a parser's message).
    sub_msg_prefix: bool,
}

fn plat(code: i64, msg: &str) -> Want {
    Want {
        code,
        msg: msg.to_owned(),
        sub: None,
        xml: false,
        sub_msg_prefix: false,
    }
}

fn plat_xml(code: i64, msg: &str) -> Want {
    Want {
        xml: true,
        ..plat(code, msg)
    }
}

fn missing(name: &str) -> Want {
    Want {
        code: 40,
        msg: format!("Missing required arguments:{name}"),
        sub: Some((
            format!("isv.missing-parameter:{name}"),
            format!("缺少必选参数:{name}"),
        )),
        xml: false,
        sub_msg_prefix: false,
    }
}

fn invalid(name: &str, detail: &str) -> Want {
    Want {
        code: 41,
        msg: format!("Invalid arguments:{name}"),
        sub: Some((
            format!("isv.invalid-parameter:{name}"),
            format!("非法参数:{name} ({detail})"),
        )),
        xml: false,
        sub_msg_prefix: false,
    }
}

/// One refused request, sent exactly as given.
struct Bad {
    name: &'static str,
    verb: Method,
    query: String,
    content_type: Option<String>,
    body: Vec<u8>,
    want: Want,
}

/// POST with every parameter in a form body.
fn form(name: &'static str, params: Params, want: Want) -> Bad {
    Bad {
        name,
        verb: Method::POST,
        query: String::new(),
        content_type: Some(FORM.to_owned()),
        body: params.to_form_urlencoded().into_bytes(),
        want,
    }
}

async fn send(app: &TestApp, bad: &Bad) -> TopReply {
    app.raw(
        bad.verb.clone(),
        &bad.query,
        bad.content_type.as_deref(),
        bad.body.clone(),
    )
    .await
}

/// Asserts the exact body, and returns the request id.
fn check_answer(name: &str, reply: &TopReply, want: &Want) -> String {
    let sub = want.sub.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
    let text = reply.text();
    if want.sub_msg_prefix {
        let id = assert_top_envelope(reply);
        let (sub_code, sub_msg) = sub.unwrap();
        let head = format!(
            "{{\"error_response\":{{\"code\":{},\"msg\":{},\"sub_code\":{},\"sub_msg\":{}",
            want.code,
            json_str(&want.msg),
            json_str(sub_code),
            json_str(sub_msg).trim_end_matches('"')
        );
        assert!(
            text.starts_with(&head),
            "{name}: {text} does not start with {head}"
        );
        assert!(
            text.ends_with(&format!(",\"request_id\":\"{id}\"}}}}")),
            "{name}: {text}"
        );
        return id;
    }
    if want.xml {
        assert!(
            text.starts_with("<?xml"),
            "{name}: expected an XML answer, got {text}"
        );
        assert_error_xml(reply, want.code, &want.msg, sub)
    } else {
        assert!(
            text.starts_with('{'),
            "{name}: expected a JSON answer, got {text}"
        );
        assert_error_body(reply, want.code, &want.msg, sub)
    }
}

/// The reason the gateway records for a refusal: the sub_code, else "code msg".
fn reason(want: &Want) -> String {
    match &want.sub {
        Some((c, _)) => c.clone(),
        None => format!("{} {}", want.code, want.msg),
    }
}

fn bad_cases() -> Vec<Bad> {
    let cases = vec![
        // 9: only upper-case GET and POST.
        Bad {
            verb: Method::PUT,
            ..form("PUT", good().signed(), plat(9, "Http action not allowed"))
        },
        Bad {
            name: "DELETE with everything in the query",
            verb: Method::DELETE,
            query: good().signed().to_form_urlencoded(),
            content_type: None,
            body: Vec::new(),
            want: plat(9, "Http action not allowed"),
        },
        Bad {
            verb: Method::PATCH,
            ..form("PATCH", good().signed(), plat(9, "Http action not allowed"))
        },
        Bad {
            verb: Method::from_bytes(b"post").unwrap(),
            ..form(
                "lower-case post",
                good().signed(),
                plat(9, "Http action not allowed"),
            )
        },
        // 21 / 22.
        form(
            "no method",
            good().unset("method").signed(),
            plat(21, "Missing method"),
        ),
        form(
            "empty method",
            good().set("method", "").signed(),
            plat(21, "Missing method"),
        ),
        form(
            "unknown method",
            good()
                .set("method", "taobao.travel.ticket.order.consume")
                .signed(),
            plat(22, "Invalid method"),
        ),
        form(
            "method in upper case",
            good()
                .set("method", "TAOBAO.TRAVEL.TICKET.ORDER.VERIFY")
                .signed(),
            plat(22, "Invalid method"),
        ),
        // 23: answered in XML.
        form(
            "format yaml",
            good().set("format", "yaml").signed(),
            plat_xml(23, "Invalid format"),
        ),
        form(
            "format JSON upper case",
            good().set("format", "JSON").signed(),
            plat_xml(23, "Invalid format"),
        ),
        // 28 / 29.
        form(
            "no app_key",
            good().unset("app_key").signed(),
            plat(28, "Missing app key"),
        ),
        form(
            "unknown app_key",
            good().set("app_key", "nobody").signed(),
            plat(29, "Invalid app Key"),
        ),
        // 24 / 25.
        form("no sign", good().params, plat(24, "Missing signature")),
        form(
            "empty sign",
            good().set("sign", "").params,
            plat(24, "Missing signature"),
        ),
        form(
            "wrong secret",
            with_secret(good(), "not-the-secret").signed(),
            plat(25, "Invalid signature"),
        ),
        form(
            "sign of other params",
            good()
                .set(
                    "sign",
                    sign(
                        SignMethod::Md5,
                        SECRET.as_bytes(),
                        &good().set("check_num", 2).params,
                        EmptyValues::Skip,
                    ),
                )
                .params,
            plat(25, "Invalid signature"),
        ),
        form(
            "unsupported sign_method sha1",
            good().set("sign_method", "sha1").signed(),
            plat(25, "Invalid signature"),
        ),
        form(
            "sign_method MD5 upper case",
            good().set("sign_method", "MD5").signed(),
            plat(25, "Invalid signature"),
        ),
        form(
            "md5 digest declared as hmac",
            good().set("sign_method", "hmac").signed(),
            plat(25, "Invalid signature"),
        ),
        form(
            "hmac-sha256 declared, md5-length sign",
            good().set("sign_method", "hmac-sha256").signed(),
            plat(25, "Invalid signature"),
        ),
        // 30 / 31.
        form(
            "no timestamp",
            good().unset("timestamp").signed(),
            plat(30, "Missing timestamp"),
        ),
        form(
            "timestamp with slashes",
            good().set("timestamp", "2024/05/01 12:00:00").signed(),
            plat(31, "Invalid timestamp"),
        ),
        form(
            "timestamp ISO 8601",
            good()
                .set(
                    "timestamp",
                    format!("{}", Utc::now().format("%Y-%m-%dT%H:%M:%S")),
                )
                .signed(),
            plat(31, "Invalid timestamp"),
        ),
        form(
            "timestamp 11 minutes old",
            good()
                .set("timestamp", beijing_in(Duration::minutes(-11)))
                .signed(),
            plat(31, "Invalid timestamp"),
        ),
        form(
            "timestamp 11 minutes ahead",
            good()
                .set("timestamp", beijing_in(Duration::minutes(11)))
                .signed(),
            plat(31, "Invalid timestamp"),
        ),
        form(
            "epoch ms 11 minutes old",
            good()
                .set("timestamp", millis_in(Duration::minutes(-11)))
                .signed(),
            plat(31, "Invalid timestamp"),
        ),
        form(
            "epoch ms 11 minutes ahead",
            good()
                .set("timestamp", millis_in(Duration::minutes(11)))
                .signed(),
            plat(31, "Invalid timestamp"),
        ),
        form(
            "12-digit timestamp",
            good()
                .set("timestamp", &millis_in(Duration::zero())[..12])
                .signed(),
            plat(31, "Invalid timestamp"),
        ),
        form(
            "timestamp in UTC, not UTC+8",
            good()
                .set(
                    "timestamp",
                    Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
                )
                .signed(),
            plat(31, "Invalid timestamp"),
        ),
        // 32 / 34.
        form(
            "no v",
            good().unset("v").signed(),
            plat(32, "Missing version"),
        ),
        form(
            "v 1.0",
            good().set("v", "1.0").signed(),
            plat(34, "Unsupported version"),
        ),
        form(
            "v 2",
            good().set("v", "2").signed(),
            plat(34, "Unsupported version"),
        ),
        // 40 / 41.
        form(
            "no order_id",
            good().unset("order_id").signed(),
            missing("order_id"),
        ),
        form(
            "confirm_code without check_num",
            good().unset("check_num").signed(),
            missing("check_num"),
        ),
        form(
            "order_id not a number",
            good().set("order_id", "abc").signed(),
            invalid("order_id", "必须为不小于1的整数"),
        ),
        form(
            "order_id zero",
            good().set("order_id", "0").signed(),
            invalid("order_id", "必须为不小于1的整数"),
        ),
        form(
            "order_id beyond int64",
            good().set("order_id", "99999999999999999999").signed(),
            invalid("order_id", "必须为不小于1的整数"),
        ),
        form(
            "voucher_infos not JSON",
            good()
                .unset("confirm_code")
                .unset("check_num")
                .set("voucher_infos", "[{'confirm_code': 'CODE-0001'}]")
                .signed(),
            Want {
                sub: Some((
                    "isv.invalid-parameter:voucher_infos".to_owned(),
                    "非法参数:voucher_infos (不是合法的JSON: ".to_owned(),
                )),
                sub_msg_prefix: true,
                ..invalid("voucher_infos", "")
            },
        ),
        Bad {
            name: "order_id in the query and in the body",
            verb: Method::POST,
            query: format!("format=json&order_id={ORDER}"),
            content_type: Some(FORM.to_owned()),
            body: good()
                .unset("format")
                .signed()
                .to_form_urlencoded()
                .into_bytes(),
            want: invalid("order_id", "参数重复"),
        },
        // 47.
        Bad {
            name: "charset GBK",
            verb: Method::POST,
            query: "format=json".to_owned(),
            content_type: Some("application/x-www-form-urlencoded; charset=GBK".to_owned()),
            body: good()
                .unset("format")
                .signed()
                .to_form_urlencoded()
                .into_bytes(),
            want: plat(47, "Invalid encoding"),
        },
        Bad {
            name: "bytes that are not UTF-8",
            verb: Method::POST,
            query: "format=json".to_owned(),
            content_type: Some(FORM.to_owned()),
            body: format!(
                "{}&note=%C3%28",
                good().unset("format").signed().to_form_urlencoded()
            )
            .into_bytes(),
            want: plat(47, "Invalid encoding"),
        },
        // 43.
        Bad {
            name: "JSON body",
            verb: Method::POST,
            query: "format=json".to_owned(),
            content_type: Some("application/json".to_owned()),
            body: json!({"order_id": ORDER}).to_string().into_bytes(),
            want: plat(43, "Parameter error"),
        },
        Bad {
            name: "multipart without its closing boundary",
            verb: Method::POST,
            query: "format=json".to_owned(),
            content_type: Some("multipart/form-data; boundary=XYZ".to_owned()),
            body: b"--XYZ\r\nContent-Disposition: form-data; name=\"order_id\"\r\n\r\n7001\r\n"
                .to_vec(),
            want: plat(43, "Parameter error"),
        },
        // Checking order (§5.1): the first failing check answers.
        Bad {
            verb: Method::PUT,
            ..form(
                "PUT and no method",
                good().unset("method").signed(),
                plat(9, "Http action not allowed"),
            )
        },
        form(
            "no method and no app_key",
            good().unset("method").unset("app_key").signed(),
            plat(21, "Missing method"),
        ),
        form(
            "unknown method and bad format",
            good().set("method", "x.y").set("format", "yaml").signed(),
            plat_xml(22, "Invalid method"),
        ),
        form(
            "bad format and no app_key",
            good().set("format", "yaml").unset("app_key").signed(),
            plat_xml(23, "Invalid format"),
        ),
        form(
            "no app_key and no sign",
            good().unset("app_key").params,
            plat(28, "Missing app key"),
        ),
        form(
            "unknown app_key and no sign",
            good().set("app_key", "nobody").params,
            plat(29, "Invalid app Key"),
        ),
        form(
            "no sign and stale timestamp",
            good()
                .set("timestamp", beijing_in(Duration::hours(-3)))
                .params,
            plat(24, "Missing signature"),
        ),
        form(
            "bad sign, stale timestamp, no v",
            with_secret(
                good()
                    .set("timestamp", beijing_in(Duration::hours(-3)))
                    .unset("v"),
                "x",
            )
            .signed(),
            plat(25, "Invalid signature"),
        ),
        form(
            "stale timestamp and no v",
            good()
                .set("timestamp", beijing_in(Duration::hours(-3)))
                .unset("v")
                .signed(),
            plat(31, "Invalid timestamp"),
        ),
        form(
            "no v and no order_id",
            good().unset("v").unset("order_id").signed(),
            plat(32, "Missing version"),
        ),
        form(
            "v 3.0 and bad order_id",
            good().set("v", "3.0").set("order_id", "x").signed(),
            plat(34, "Unsupported version"),
        ),
    ];
    cases
}

/// Every platform code of §5.1 through the real server: HTTP 200, the exact body, nothing
/// applied, and a `rejected` audit entry with the code as its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_code_and_changes_nothing() {
    let app = setup().await;
    let before = ledger_snapshot(&app, ORDER).await;
    let mut failures = Vec::new();
    let mut answered = Vec::new();
    for bad in bad_cases() {
        let reply = send(&app, &bad).await;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_answer(bad.name, &reply, &bad.want)
        }));
        match outcome {
            Ok(id) => answered.push((bad.name, id, bad.want.clone())),
            Err(_) => failures.push(format!(
                "{}: got HTTP {} {}",
                bad.name,
                reply.status,
                reply.text()
            )),
        }
        assert_eq!(
            ledger_snapshot(&app, ORDER).await,
            before,
            "{}: the ledger changed",
            bad.name
        );
    }
    // Every refusal left exactly one record naming why: an audit entry when the caller had
    // shown the secret, else a row among the calls refused before authentication (codes 9 and
    // 21-29 always are).
    for (name, id, want) in &answered {
        let kept = kept_refusal(&app, id).await;
        assert_eq!(
            kept.code(),
            (want.code, want.sub.as_ref().map(|(c, _)| c.clone())),
            "{name}: {kept:?}"
        );
        match kept {
            KeptRefusal::Audited(entry) => {
                assert!(
                    !matches!(want.code, 9 | 21..=29),
                    "{name}: refused before authentication but audited: {entry}"
                );
                assert_eq!(entry["reason"], reason(want).as_str(), "{name}: {entry}");
                assert!(
                    entry["detail"]["request"].get("sign").is_none(),
                    "{name}: sign stored: {entry}"
                );
            }
            KeptRefusal::Anonymous(call) => {
                assert_eq!(call["order_id"], Value::Null, "{name}: {call}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "wrong answers:\n{}",
        failures.join("\n")
    );
    // The server is still healthy after all of it.
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A key repeated inside one part (query or body) is refused with 41, nothing applied. The
/// request asked for JSON (`format=json`, itself not repeated), so the refusal must be JSON:
/// an SDK that asked for JSON cannot read an XML body (\[NODE\] `JSON.parse`s it, \[GO-NEW\]
/// slices it), and would report a parse failure instead of code 41.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_key_inside_one_part_is_41_in_the_requested_format() {
    let app = setup().await;
    let before = ledger_snapshot(&app, ORDER).await;
    let cases = [
        Bad {
            name: "app_key twice in the query",
            verb: Method::GET,
            query: format!("{}&app_key={KEY}", good().signed().to_form_urlencoded()),
            content_type: None,
            body: Vec::new(),
            want: invalid("app_key", "参数重复"),
        },
        Bad {
            name: "check_num twice in the body",
            verb: Method::POST,
            query: String::new(),
            content_type: Some(FORM.to_owned()),
            body: format!("{}&check_num=1", good().signed().to_form_urlencoded()).into_bytes(),
            want: invalid("check_num", "参数重复"),
        },
    ];
    let mut wrong_format = Vec::new();
    for bad in &cases {
        let reply = send(&app, bad).await;
        let id = assert_top_envelope(&reply);
        let (sub_code, sub_msg) = bad.want.sub.clone().unwrap();
        // The code is right whatever the format.
        let text = reply.text();
        assert!(
            text.contains("41") && text.contains(&sub_code) && text.contains(&sub_msg),
            "{}: {text}",
            bad.name
        );
        assert_eq!(ledger_snapshot(&app, ORDER).await, before, "{}", bad.name);
        // Refused while parsing, before the signature was checked: kept apart from the trail.
        let kept = kept_refusal(&app, &id).await;
        assert!(matches!(kept, KeptRefusal::Anonymous(_)), "{}", bad.name);
        assert_eq!(kept.code(), (41, Some(sub_code.clone())), "{}", bad.name);
        if text != error_json(41, &bad.want.msg, Some((&sub_code, &sub_msg)), &id) {
            wrong_format.push(format!("{}: {text}", bad.name));
        }
    }
    assert!(
        wrong_format.is_empty(),
        "asked for format=json, answered:\n{}",
        wrong_format.join("\n")
    );
}

/// A body above `--max-body-bytes` is refused with 43 before it is read, declared or chunked;
/// a body of exactly the limit is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_43() {
    const LIMIT: usize = 1024;
    let app = spawn_app_with(|s| s.max_body_bytes = LIMIT, Arc::new(SystemClock)).await;
    app.create_app(KEY, SECRET).await;
    app.create_order(ORDER, KEY, &[(CODE, 1000)]).await;
    let before = ledger_snapshot(&app, ORDER).await;

    // A signed body padded (with an extra, signed, parameter) to `len` bytes.
    let padded = |len: usize| {
        let base = good().set("pad", "x").signed().to_form_urlencoded().len() - 1;
        let body = good()
            .set("pad", "x".repeat(len - base))
            .signed()
            .to_form_urlencoded();
        assert_eq!(body.len(), len);
        body
    };
    let too_large = (
        43,
        "Parameter error",
        Some(("isv.request-too-large", "请求体超过1024字节上限")),
    );

    // Over the limit, with Content-Length; the answer follows the query's format.
    let reply = app
        .raw(
            Method::POST,
            "format=json",
            Some(FORM),
            padded(LIMIT + 1).into_bytes(),
        )
        .await;
    let id = assert_error_body(&reply, too_large.0, too_large.1, too_large.2);
    assert_eq!(ledger_snapshot(&app, ORDER).await, before);

    // Much larger, no format in the query: XML.
    let reply = app
        .raw(Method::POST, "", Some(FORM), padded(64 * 1024).into_bytes())
        .await;
    assert_error_xml(&reply, too_large.0, too_large.1, too_large.2);

    // Chunked, so no Content-Length: the limit holds while reading.
    let raw = chunked_post(&app, "format=json", padded(4 * LIMIT).as_bytes()).await;
    assert!(raw.starts_with("HTTP/1.1 200 "), "{raw}");
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.starts_with("{\"error_response\":{\"code\":43,\"msg\":\"Parameter error\",\"sub_code\":\"isv.request-too-large\""), "{raw}");
    assert_eq!(ledger_snapshot(&app, ORDER).await, before);

    // Exactly the limit is fine.
    let reply = app
        .raw(Method::POST, "", Some(FORM), padded(LIMIT).into_bytes())
        .await;
    assert_success_body(&reply);
    assert_eq!(app.used(ORDER, CODE).await, 1);

    let kept = kept_refusal(&app, &id).await;
    assert!(matches!(kept, KeptRefusal::Anonymous(_)), "{kept:?}");
    assert_eq!(kept.code(), (43, Some("isv.request-too-large".into())));
}

/// POSTs `body` with `Transfer-Encoding: chunked` on a raw socket; returns the raw response.
async fn chunked_post(app: &TestApp, query: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut req = format!(
        "POST /router/rest?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    )
    .into_bytes();
    for chunk in body.chunks(500) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer (and close) before reading everything; a failed write is fine.
    let _ = s.write_all(&req).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Upper-case is what SDKs send, lower-case hex is accepted too (§2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_case_sign_is_accepted() {
    let app = setup().await;
    for method in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
        let mut params = good().sign_with(method).signed();
        let lower = params.get("sign").unwrap().to_lowercase();
        params.insert("sign", lower);
        assert_success_body(&post_params(&app, &params).await);
    }
    assert_eq!(app.used(ORDER, CODE).await, 3);
}

/// Epoch milliseconds (\[PY-OFF\]) and seconds are accepted, as is anything within the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_forms_within_the_window_are_accepted() {
    let app = setup().await;
    let stamps = [
        millis_in(Duration::zero()),
        millis_in(Duration::minutes(-9)),
        millis_in(Duration::minutes(9)),
        Utc::now().timestamp().to_string(),
        beijing_in(Duration::minutes(-9)),
        beijing_in(Duration::minutes(9)),
    ];
    for ts in &stamps {
        let reply = app.call(&good().set("timestamp", ts)).await;
        assert_success_body(&reply);
    }
    assert_eq!(app.used(ORDER, CODE).await, stamps.len() as i64);
}

/// Success bodies byte for byte: every sign method × every format, `simplify=1` read as false
/// (PHP-NEW), no `format` meaning XML. Request ids are unique.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sign_method_answers_exact_bytes_in_every_format() {
    let app = setup().await;
    type Render = fn(&str) -> String;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Render);
    let formats: [Case<'_>; 6] = [
        ("json", &[("format", "json")], success_json),
        (
            "json simplify=true",
            &[("format", "json"), ("simplify", "true")],
            success_simplified,
        ),
        (
            "json simplify=TRUE",
            &[("format", "json"), ("simplify", "TRUE")],
            success_simplified,
        ),
        (
            "json simplify=1",
            &[("format", "json"), ("simplify", "1")],
            success_json,
        ),
        (
            "xml",
            &[("format", "xml"), ("simplify", "true")],
            success_xml,
        ),
        ("no format", &[], success_xml),
    ];
    let mut ids = HashSet::new();
    let mut count = 0;
    for method in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
        for (name, extra, render) in &formats {
            let mut call = good().unset("format").sign_with(method);
            for (k, v) in *extra {
                call = call.set(k, v);
            }
            let reply = app.call(&call).await;
            let id = assert_top_envelope(&reply);
            assert_eq!(reply.text(), render(&id), "{} / {name}", method.as_str());
            assert!(ids.insert(id), "request_id repeated");
            count += 1;
            assert_eq!(
                app.used(ORDER, CODE).await,
                count,
                "{} / {name}",
                method.as_str()
            );
        }
    }
}

/// Errors keep the `error_response` wrapper in every format; XML carries sub_code and sub_msg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_errors_render_in_every_format() {
    let app = setup().await;
    let sub = Some(("isv.voucher-not-exist", "核销码不存在: 核销码****5678"));
    let call = good().set("confirm_code", "NOPE-5678");
    assert_error_body(&app.call(&call).await, 50, "Remote service error", sub);
    assert_error_body(
        &app.call(&call.clone().set("simplify", "true")).await,
        50,
        "Remote service error",
        sub,
    );
    assert_error_xml(
        &app.call(&call.clone().set("format", "xml")).await,
        50,
        "Remote service error",
        sub,
    );
    assert_error_xml(
        &app.call(&call.clone().unset("format")).await,
        50,
        "Remote service error",
        sub,
    );
    assert_eq!(app.used(ORDER, CODE).await, 0);
}

/// A request with an empty parameter verifies whether the client skipped it when signing
/// (\[JAVA\]) or kept its name (\[PY-OFF\], \[NODE\], Go), for every sign method (§3.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_empty_value_signing_forms_verify() {
    let app = setup().await;
    let mut n = 0;
    for method in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
        for empty in [EmptyValues::Keep, EmptyValues::Skip] {
            let mut call = good()
                .sign_with(method)
                .set("session", "")
                .set("out_order_id", "");
            call.empty = empty;
            let params = call.signed();
            // The two forms really differ, so each is exercised.
            let other = match empty {
                EmptyValues::Keep => EmptyValues::Skip,
                EmptyValues::Skip => EmptyValues::Keep,
            };
            assert_ne!(
                params.get("sign").unwrap(),
                sign(method, SECRET.as_bytes(), &call.params, other)
            );
            assert_success_body(&post_params(&app, &params).await);
            n += 1;
        }
    }
    assert_eq!(app.used(ORDER, CODE).await, n);
    // Neither form lets a wrong secret through.
    let mut call = with_secret(good().set("session", ""), "wrong");
    call.empty = EmptyValues::Keep;
    assert_error_body(&app.call(&call).await, 25, "Invalid signature", None);
}

/// Where parameters travel: system params in the query and business ones in the body
/// (\[PY-OFF\], with epoch ms), everything in a GET query (\[NODE\], `+` or `%20` for spaces),
/// a body without Content-Type, multipart with an unsigned file part, a trailing `/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_may_travel_in_query_body_or_multipart() {
    let app = setup().await;
    let system = [
        "method",
        "app_key",
        "sign_method",
        "timestamp",
        "v",
        "format",
        "partner_id",
        "sign",
    ];
    let split = |params: &Params| {
        let (q, b): (Vec<_>, Vec<_>) = params.iter().partition(|(k, _)| system.contains(k));
        let enc = |pairs: Vec<(&str, &str)>| form_encode(&pairs);
        (enc(q), enc(b))
    };

    // 1. PY-OFF: system in the query, business in the body, epoch ms timestamp.
    let params = good()
        .set("timestamp", millis_in(Duration::zero()))
        .set("partner_id", "taobao-sdk-python-20200622")
        .signed();
    let (query, body) = split(&params);
    assert!(!query.contains("order_id") && body.contains("order_id"));
    let reply = app
        .raw(Method::POST, &query, Some(FORM), body.into_bytes())
        .await;
    assert_success_body(&reply);

    // 2. GET with everything in the query, spaces as `+`.
    let query = good().signed().to_form_urlencoded();
    assert!(query.contains('+'), "{query}");
    assert_success_body(&app.raw(Method::GET, &query, None, Vec::new()).await);

    // 3. GET with spaces as `%20` (NODE).
    let query = good().signed().to_form_urlencoded().replace('+', "%20");
    assert_success_body(&app.raw(Method::GET, &query, None, Vec::new()).await);

    // 4. POST body without a Content-Type.
    let body = good().signed().to_form_urlencoded();
    assert_success_body(&app.raw(Method::POST, "", None, body.into_bytes()).await);

    // 5. Trailing slash.
    let body = good().signed().to_form_urlencoded();
    let r = app
        .http
        .post(format!("{}/", app.gateway()))
        .header("content-type", FORM)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("{\"travel_ticket_order_verify_response\":{\"is_success\":true,"),
        "{text}"
    );

    // 6. Multipart (PY-OFF layout): system params in the query, business params as text
    // parts, plus a `file` part that is neither a parameter nor signed.
    let params = good()
        .set("timestamp", millis_in(Duration::zero()))
        .signed();
    let (query, _) = split(&params);
    let mut body = Vec::new();
    for (k, v) in params.iter().filter(|(k, _)| !system.contains(k)) {
        body.extend_from_slice(
            format!("--PYTHON_SDK_BOUNDARY\r\nContent-Disposition: form-data; name=\"{k}\"\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(b"--PYTHON_SDK_BOUNDARY\r\nContent-Disposition: file; name=\"image\"; filename=\"gate.jpg\"\r\nContent-Type: application/octet-stream\r\n\r\n\xff\xd8\xff\xe0binary\r\n");
    body.extend_from_slice(b"--PYTHON_SDK_BOUNDARY--\r\n");
    let ct = "multipart/form-data; boundary=PYTHON_SDK_BOUNDARY";
    assert_success_body(&app.raw(Method::POST, &query, Some(ct), body.clone()).await);

    // 7. Everything (system params too) as multipart form-data parts, Go style.
    let params = good().signed();
    let mut body = Vec::new();
    for (k, v) in params.iter() {
        body.extend_from_slice(
            format!("--b0undary\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(b"--b0undary--\r\n");
    assert_success_body(
        &app.raw(
            Method::POST,
            "",
            Some("multipart/form-data; boundary=b0undary"),
            body,
        )
        .await,
    );

    assert_eq!(app.used(ORDER, CODE).await, 7);
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let p: Params = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    p.to_form_urlencoded()
}

/// GV5's business parameters (docs/PROTOCOL.md §3.3) re-sent with a fresh timestamp, signed by each
/// method: accepted and applied exactly as the vector says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gv5_business_params_verify_with_each_sign_method() {
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/signatures.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let gv5 = vectors["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "GV5")
        .unwrap();
    let secret = gv5["secret"].as_str().unwrap();
    let key = gv5["params"]["app_key"].as_str().unwrap();
    let order_id: i64 = gv5["params"]["order_id"].as_str().unwrap().parse().unwrap();
    for method in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
        let app = spawn_app().await;
        app.create_app(key, secret).await;
        create_order_with(
            &app,
            order_id,
            key,
            &[("CODE-001", 1), ("CODE-002", 2)],
            json!({"out_order_id": "OUT-20240501-0001", "created_at": "2024-04-30 00:00:00"}),
        )
        .await;
        let mut call = TopCall::verify(key, secret).sign_with(method);
        for (k, v) in gv5["params"].as_object().unwrap() {
            if ![
                "method",
                "app_key",
                "sign_method",
                "timestamp",
                "v",
                "format",
            ]
            .contains(&k.as_str())
            {
                call = call.set(k, v.as_str().unwrap());
            }
        }
        let reply = app.call(&call).await;
        assert_success_body(&reply);
        assert_eq!(
            app.used(order_id, "CODE-001").await,
            1,
            "{}",
            method.as_str()
        );
        assert_eq!(
            app.used(order_id, "CODE-002").await,
            2,
            "{}",
            method.as_str()
        );
    }
}

/// GV5 (md5) and GV7 (hmac-sha256, simplified) sent exactly as the SDKs signed them, with the
/// server's clock pinned to their timestamp: the golden signatures verify end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gv5_and_gv7_verify_byte_for_byte_at_their_own_time() {
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/signatures.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for id in ["GV5", "GV7"] {
        let v = vectors["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .unwrap();
        let now = parse_beijing(v["params"]["timestamp"].as_str().unwrap()).unwrap();
        let app = spawn_app_at(now).await;
        let key = v["params"]["app_key"].as_str().unwrap();
        app.create_app(key, v["secret"].as_str().unwrap()).await;
        let order_id: i64 = v["params"]["order_id"].as_str().unwrap().parse().unwrap();
        create_order_with(
            &app,
            order_id,
            key,
            &[("CODE-001", 1), ("CODE-002", 2)],
            json!({"out_order_id": "OUT-20240501-0001", "created_at": "2024-04-30 00:00:00"}),
        )
        .await;
        let mut params: Params = v["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        params.insert("sign", v["sign"].as_str().unwrap());
        let reply = post_params(&app, &params).await;
        let rid = assert_top_envelope(&reply);
        let want = if id == "GV7" {
            success_simplified(&rid)
        } else {
            success_json(&rid)
        };
        assert_eq!(reply.text(), want, "{id}");
        assert_eq!(app.used(order_id, "CODE-002").await, 2, "{id}");
        // One byte changed in the signed text: refused.
        params.insert("out_order_id", "OUT-20240501-0002");
        let reply = post_params(&app, &params).await;
        assert_eq!(
            reply.text(),
            error_json(
                25,
                "Invalid signature",
                None,
                &crate::helpers::request_id_of(&reply)
            ),
            "{id}"
        );
    }
}
