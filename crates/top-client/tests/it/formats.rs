//! top-client against the real server in every sign method × format × simplify (PROTOCOL.md
//! §3, §4.2): each combination records exactly its own uses.

use serde_json::Value;
use top_client::{Format, SignMethod, VerifyParams, VoucherInfo};

use crate::helpers::{accepted_verifies, client, minutes_ago, spawn_server, KEY};

const ORDER: i64 = 9101;

fn report(code: &str, quantity: i64) -> VerifyParams {
    VerifyParams {
        order_id: Some(ORDER),
        voucher_infos: vec![VoucherInfo {
            confirm_code: code.to_owned(),
            used_quantity: quantity,
            used_date: Some(minutes_ago(1)),
        }],
        ..VerifyParams::default()
    }
}

/// Every combination a vendor can configure; simplify only applies to JSON.
fn combinations() -> Vec<(SignMethod, Format, bool)> {
    let mut out = Vec::new();
    for sign in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
        out.push((sign, Format::Json, false));
        out.push((sign, Format::Json, true));
        out.push((sign, Format::Xml, false));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_succeeds_in_every_sign_method_format_and_simplify() {
    let server = spawn_server().await;
    let combos = combinations();
    let codes: Vec<String> = (0..combos.len()).map(|i| format!("FMT-{i:02}")).collect();
    let vouchers: Vec<(&str, i64)> = codes.iter().map(|c| (c.as_str(), 5)).collect();
    server.create_order(ORDER, KEY, &vouchers).await;

    for (i, (sign, format, simplify)) in combos.into_iter().enumerate() {
        let client = client(&server)
            .sign_method(sign)
            .format(format)
            .simplify(simplify)
            .build()
            .unwrap();
        let quantity = (i % 3 + 1) as i64;
        let answer = client.verify(&report(&codes[i], quantity)).await;
        let case = format!("{sign:?} {format:?} simplify={simplify}");
        assert!(
            answer.unwrap_or_else(|e| panic!("{case}: {e}")).is_success,
            "{case}"
        );
        assert_eq!(server.used(ORDER, &codes[i]).await, quantity, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_returns_the_inner_object_with_its_request_id_in_every_format() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("EXEC-1", 100)]).await;
    for (sign, format, simplify) in combinations() {
        let client = client(&server)
            .sign_method(sign)
            .format(format)
            .simplify(simplify)
            .build()
            .unwrap();
        let inner = client
            .execute(
                "taobao.travel.ticket.order.verify",
                &[
                    ("order_id", ORDER.to_string()),
                    ("confirm_code", "EXEC-1".to_owned()),
                    ("check_num", "1".to_owned()),
                ],
            )
            .await
            .unwrap();
        let case = format!("{sign:?} {format:?} simplify={simplify}: {inner}");
        let success = &inner["is_success"];
        assert!(
            *success == Value::Bool(true) || *success == "true",
            "{case}"
        );
        let id = inner["request_id"].as_str().unwrap();
        assert_eq!(id.len(), 13, "{case}");
    }
    assert_eq!(server.used(ORDER, "EXEC-1").await, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_fingerprinted_report_is_answered_success_and_counted_once() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("TWICE", 3)]).await;
    let client = client(&server).build().unwrap();
    let r = report("TWICE", 2);
    assert!(client.verify(&r).await.unwrap().is_success);
    assert!(client.verify(&r).await.unwrap().is_success);
    assert_eq!(server.used(ORDER, "TWICE").await, 2);
    assert_eq!(accepted_verifies(&server, ORDER).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_partner_id_are_signed_and_accepted() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("EXTRA", 3)]).await;
    let client = client(&server)
        .session("user-session-token")
        .partner_id("top-client-test")
        .build()
        .unwrap();
    assert!(client.verify(&report("EXTRA", 1)).await.unwrap().is_success);
    let p = client
        .signed_params(
            "taobao.travel.ticket.order.verify",
            &[],
            "2024-05-01 12:00:00",
        )
        .unwrap();
    assert_eq!(p.get("session"), Some("user-session-token"));
    assert_eq!(p.get("partner_id"), Some("top-client-test"));
    // The secret never shows in Debug output.
    assert!(!format!("{client:?}").contains("sdk-secret"));
    assert!(!format!("{client:?}").contains("user-session-token"));
}
