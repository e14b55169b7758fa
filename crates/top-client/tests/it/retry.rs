//! Automatic retries: only transport failures and `isp.*` answers, only for calls the server
//! treats idempotently, bounded by attempts and time — and a retried report changes the ledger
//! exactly once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use top_client::{Call, ClientError, RetryPolicy, VerifyParams, VoucherInfo};

use crate::helpers::{
    accepted_verifies, client_for, fast_retries, flaky_proxy, hang_up_server, minutes_ago,
    spawn_server, KEY,
};

const ORDER: i64 = 9301;

fn fingerprinted(code: &str, quantity: i64) -> VerifyParams {
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

fn legacy(code: &str, check_num: i64) -> VerifyParams {
    VerifyParams {
        order_id: Some(ORDER),
        confirm_code: Some(code.to_owned()),
        check_num: Some(check_num),
        ..VerifyParams::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_twice_then_success_takes_three_attempts_and_one_ledger_change() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("RETRY-1", 5)]).await;
    let proxy = flaky_proxy(server.gateway(), 2).await;
    let client = client_for(&proxy.url).build().unwrap();

    let answer = client.verify(&fingerprinted("RETRY-1", 2)).await.unwrap();
    assert!(answer.is_success);
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(server.used(ORDER, "RETRY-1").await, 2);
    assert_eq!(accepted_verifies(&server, ORDER).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cumulative_report_is_retried_too() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("CUMUL", 5)]).await;
    let proxy = flaky_proxy(server.gateway(), 1).await;
    let client = client_for(&proxy.url).build().unwrap();
    let report = VerifyParams {
        write_off_type: 1,
        ..legacy("CUMUL", 3)
    };
    assert!(client.verify(&report).await.unwrap().is_success);
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 2);
    assert_eq!(server.used(ORDER, "CUMUL").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_delta_report_is_never_retried() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("LEGACY", 5)]).await;
    let proxy = flaky_proxy(server.gateway(), 2).await;
    let client = client_for(&proxy.url).build().unwrap();

    let err = client.verify(&legacy("LEGACY", 1)).await.unwrap_err();
    assert_eq!(err.sub_code(), Some("isp.service-busy"));
    assert!(err.is_retryable(), "retryable in itself, but not safe here");
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 1);
    assert_eq!(server.used(ORDER, "LEGACY").await, 0);

    // The same holds for a `voucher_infos` entry without its gate time.
    let undated = VerifyParams {
        order_id: Some(ORDER),
        voucher_infos: vec![VoucherInfo {
            confirm_code: "LEGACY".into(),
            used_quantity: 1,
            used_date: None,
        }],
        ..VerifyParams::default()
    };
    let err = client.verify(&undated).await.unwrap_err();
    assert_eq!(err.sub_code(), Some("isp.service-busy"));
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_never_retries_unless_the_caller_opts_in() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("EXEC", 5)]).await;
    let params = [
        ("order_id", ORDER.to_string()),
        ("confirm_code", "EXEC".to_owned()),
        ("check_num", "5".to_owned()),
        ("write_off_type", "1".to_owned()),
    ];

    let proxy = flaky_proxy(server.gateway(), 1).await;
    let client = client_for(&proxy.url).build().unwrap();
    let err = client
        .execute("taobao.travel.ticket.order.verify", &params)
        .await
        .unwrap_err();
    assert_eq!(err.sub_code(), Some("isp.service-busy"));
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 1);

    let proxy = flaky_proxy(server.gateway(), 1).await;
    let client = client_for(&proxy.url).build().unwrap();
    let call = Call::new("taobao.travel.ticket.order.verify", params).idempotent(true);
    let inner = client.send(&call).await.unwrap();
    assert_eq!(inner["is_success"], true);
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 2);
    assert_eq!(server.used(ORDER, "EXEC").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isv_answers_are_not_retried() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("ONE", 1)]).await;
    let proxy = flaky_proxy(server.gateway(), 0).await;
    let client = client_for(&proxy.url).build().unwrap();
    let err = client.verify(&fingerprinted("ONE", 2)).await.unwrap_err();
    assert_eq!(err.sub_code(), Some("isv.verify-num-exceed"));
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_after_max_attempts() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("BUSY", 5)]).await;
    let proxy = flaky_proxy(server.gateway(), u32::MAX).await;
    let client = client_for(&proxy.url)
        .retry_policy(fast_retries(4))
        .build()
        .unwrap();
    let err = client.verify(&fingerprinted("BUSY", 1)).await.unwrap_err();
    assert_eq!(err.sub_code(), Some("isp.service-busy"));
    assert_eq!(proxy.attempts.load(Ordering::SeqCst), 4);
    assert_eq!(server.used(ORDER, "BUSY").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_when_the_time_budget_is_spent() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("SLOW", 5)]).await;
    let proxy = flaky_proxy(server.gateway(), u32::MAX).await;
    // Delays of 10–20 ms and a 25 ms budget: at most a couple of retries fit.
    let policy = RetryPolicy {
        max_attempts: 1000,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(20),
        max_elapsed: Duration::from_millis(25),
    };
    let client = client_for(&proxy.url).retry_policy(policy).build().unwrap();
    let err = client.verify(&fingerprinted("SLOW", 1)).await.unwrap_err();
    assert_eq!(err.sub_code(), Some("isp.service-busy"));
    let attempts = proxy.attempts.load(Ordering::SeqCst);
    assert!((1..=3).contains(&attempts), "{attempts} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_retried_for_idempotent_calls_only() {
    let (url, connections) = hang_up_server().await;
    let client = client_for(&url).build().unwrap();

    let err = client.verify(&fingerprinted("X", 1)).await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 3);

    let err = client.verify(&legacy("X", 1)).await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 4);
}
