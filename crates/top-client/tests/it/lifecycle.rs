//! The typed issue and refund calls against the real server, and their retry rules: issuing is
//! always safe to repeat, a refund only with its batch number or flow id.

use std::sync::atomic::Ordering;

use serde_json::json;
use top_client::{Format, IssueParams, IssueVoucher, RefundParams, SignMethod};

use crate::helpers::{client, client_for, flaky_proxy, spawn_server, TestApp, KEY};

fn voucher(code: &str, quantity: i64, voucher_type: Option<i64>) -> IssueVoucher {
    IssueVoucher {
        confirm_code: code.to_owned(),
        voucher_type,
        quantity,
        extras: None,
    }
}

fn issued(order_id: i64, out: &str) -> IssueParams {
    IssueParams {
        order_id,
        out_order_id: out.to_owned(),
        issue_type: 1,
        describe: None,
        voucher_infos: vec![voucher("ISS-A", 1, Some(1)), voucher("ISS-G", 3, Some(2))],
        attribute_map: None,
    }
}

fn refund(order_id: i64, batch: Option<&str>) -> RefundParams {
    RefundParams {
        order_id,
        refund_status: 1,
        refund_num: Some(1),
        refund_batch_no: batch.map(str::to_owned),
        refund_failure_reason: None,
        refund_type: 1,
        fliggy_refund_flow_id: None,
    }
}

/// A paid order waiting for its codes.
async fn awaiting(server: &TestApp, order_id: i64, out: &str) {
    let (status, body) = server
        .admin_post(
            "/admin/orders",
            json!({"order_id": order_id, "app_key": KEY, "quantity": 4, "out_order_id": out}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn request_refund(server: &TestApp, order_id: i64, quantity: i64) {
    let (status, body) = server
        .admin_post(
            &format!("/admin/orders/{order_id}/refunds"),
            json!({"quantity": quantity}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_and_refund_succeed_in_every_format() {
    let server = spawn_server().await;
    let mut order_id = 9400;
    for (sign, format, simplify) in [
        (SignMethod::Md5, Format::Json, false),
        (SignMethod::HmacMd5, Format::Json, true),
        (SignMethod::HmacSha256, Format::Xml, false),
    ] {
        order_id += 1;
        let out = format!("OUT-{order_id}");
        awaiting(&server, order_id, &out).await;
        let client = client(&server)
            .sign_method(sign)
            .format(format)
            .simplify(simplify)
            .build()
            .unwrap();
        assert!(
            client
                .issue(&issued(order_id, &out))
                .await
                .unwrap()
                .is_success
        );
        let order = server.order(order_id).await;
        assert_eq!(order.status, "issued", "{order:?}");

        request_refund(&server, order_id, 1).await;
        let batch = format!("RB-{order_id}");
        assert!(
            client
                .refund(&refund(order_id, Some(&batch)))
                .await
                .unwrap()
                .is_success
        );
        let order = server.order(order_id).await;
        assert_eq!(order.status, "partly_refunded", "{order:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contradicting_issue_report_is_refused_with_its_meaning() {
    let server = spawn_server().await;
    awaiting(&server, 9410, "OUT-9410").await;
    let client = client(&server).build().unwrap();
    client.issue(&issued(9410, "OUT-9410")).await.unwrap();
    let mut other = issued(9410, "OUT-9410");
    other.voucher_infos[1].quantity = 5;
    let err = client.issue(&other).await.unwrap_err();
    assert_eq!(err.sub_code(), Some("isv.issue-conflict"));
    assert!(err.explain().is_some());
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_is_retried_and_applied_once() {
    let server = spawn_server().await;
    awaiting(&server, 9420, "OUT-9420").await;
    let proxy = flaky_proxy(server.gateway(), 2).await;
    let client = client_for(&proxy.url).build().unwrap();
    assert!(
        client
            .issue(&issued(9420, "OUT-9420"))
            .await
            .unwrap()
            .is_success
    );
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 3);
    let order = server.order(9420).await;
    assert_eq!(order.capacity, 4, "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_with_a_batch_number_is_retried_and_settled_once() {
    let server = spawn_server().await;
    awaiting(&server, 9430, "OUT-9430").await;
    client(&server)
        .build()
        .unwrap()
        .issue(&issued(9430, "OUT-9430"))
        .await
        .unwrap();
    request_refund(&server, 9430, 1).await;
    let proxy = flaky_proxy(server.gateway(), 2).await;
    let client = client_for(&proxy.url).build().unwrap();
    assert!(
        client
            .refund(&refund(9430, Some("RB-9430")))
            .await
            .unwrap()
            .is_success
    );
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 3);
    let order = server.order(9430).await;
    assert_eq!(order.status, "partly_refunded", "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_without_batch_number_or_flow_id_is_not_retried() {
    let server = spawn_server().await;
    awaiting(&server, 9440, "OUT-9440").await;
    client(&server)
        .build()
        .unwrap()
        .issue(&issued(9440, "OUT-9440"))
        .await
        .unwrap();
    request_refund(&server, 9440, 1).await;
    let proxy = flaky_proxy(server.gateway(), 1).await;
    let client = client_for(&proxy.url).build().unwrap();
    let err = client.refund(&refund(9440, None)).await.unwrap_err();
    assert_eq!(err.sub_code(), Some("isp.service-busy"));
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 1);
    let order = server.order(9440).await;
    assert_eq!(order.status, "refunding", "{order:?}");
}
