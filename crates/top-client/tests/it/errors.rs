//! Every kind of refusal reaches the caller as one `ClientError`, with the gateway's `code`,
//! `msg`, `sub_code`, `sub_msg` and `request_id` kept, and the catalogue's meaning.

use ticket_api::BusinessError;
use top_client::{ClientError, Format, TopClient, VerifyParams, VoucherInfo};

use crate::helpers::{client, minutes_ago, spawn_server, KEY};

const ORDER: i64 = 9201;

fn uses(code: &str, quantity: i64) -> VerifyParams {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_keeps_every_field_and_explains_itself_in_json_and_xml() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("CAP-2", 2)]).await;
    for format in [Format::Json, Format::Xml] {
        let client = client(&server).format(format).build().unwrap();
        let err = client.verify(&uses("CAP-2", 3)).await.unwrap_err();
        let api = err.api().unwrap_or_else(|| panic!("{format:?}: {err:?}"));
        assert_eq!(api.code, 50, "{format:?}");
        assert_eq!(api.msg, "Remote service error");
        assert_eq!(api.sub_code.as_deref(), Some("isv.verify-num-exceed"));
        let sub_msg = api.sub_msg.as_deref().unwrap();
        assert!(sub_msg.starts_with("核销数量超过可用数量"), "{sub_msg}");
        assert!(sub_msg.contains("剩余可核销2次"), "{sub_msg}");
        assert_eq!(api.request_id.as_deref().map(str::len), Some(13));
        assert_eq!(err.sub_code(), Some("isv.verify-num-exceed"));
        assert_eq!(err.request_id(), api.request_id.as_deref());
        assert_eq!(api.business(), Some(BusinessError::VerifyNumExceed));
        assert_eq!(
            err.explain().as_deref(),
            Some(BusinessError::VerifyNumExceed.entry().meaning)
        );
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("isv.verify-num-exceed"));
    }
    assert_eq!(server.used(ORDER, "CAP-2").await, 0, "nothing was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_platform_and_parameter_refusals_map_to_their_fields() {
    let server = spawn_server().await;
    server.create_order(ORDER, KEY, &[("CODE-1", 2)]).await;
    let client = client(&server).build().unwrap();

    let unknown_order = VerifyParams {
        order_id: Some(424242),
        ..uses("CODE-1", 1)
    };
    let e = client.verify(&unknown_order).await.unwrap_err();
    assert_eq!(
        (e.code(), e.sub_code()),
        (Some(50), Some("isv.order-not-exist"))
    );
    assert_eq!(
        e.explain().as_deref(),
        Some(BusinessError::OrderNotExist.entry().meaning)
    );

    let e = client.verify(&uses("NOPE", 1)).await.unwrap_err();
    assert_eq!(e.sub_code(), Some("isv.voucher-not-exist"));

    let nothing = VerifyParams {
        order_id: Some(ORDER),
        ..VerifyParams::default()
    };
    let e = client.verify(&nothing).await.unwrap_err();
    assert_eq!(e.code(), Some(40));
    assert_eq!(e.sub_code(), Some("isv.missing-parameter:voucher_infos"));
    assert!(e.explain().unwrap().contains("`voucher_infos`"));

    let wrong_secret = TopClient::builder(server.gateway(), KEY, "not-the-secret")
        .build()
        .unwrap();
    let e = wrong_secret.verify(&uses("CODE-1", 1)).await.unwrap_err();
    let api = e.api().unwrap();
    assert_eq!((api.code, api.msg.as_str()), (25, "Invalid signature"));
    assert_eq!(api.sub_code, None);
    assert!(e.explain().unwrap().contains("signature"));

    let unknown_app = TopClient::builder(server.gateway(), "no-such-app", "x")
        .format(Format::Xml)
        .build()
        .unwrap();
    let e = unknown_app.verify(&uses("CODE-1", 1)).await.unwrap_err();
    assert_eq!(e.code(), Some(29));

    let e = client
        .execute("taobao.no.such.method", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(22));

    assert_eq!(server.used(ORDER, "CODE-1").await, 0);
}

#[tokio::test]
async fn transport_and_configuration_failures_have_their_own_variants() {
    for bad in ["not a url", "ftp://host/router/rest", "http://"] {
        assert!(
            matches!(
                TopClient::builder(bad, KEY, "s").build(),
                Err(ClientError::Config(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        TopClient::builder("http://127.0.0.1:1/router/rest", "", "s").build(),
        Err(ClientError::Config(_))
    ));

    // A port nobody listens on: connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = TopClient::builder(format!("http://{addr}/router/rest"), KEY, "s")
        .build()
        .unwrap();
    let e = client
        .execute("taobao.travel.ticket.order.verify", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Transport(_)), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!((e.code(), e.explain()), (None, None));

    let e = client
        .execute(
            "taobao.travel.ticket.order.verify",
            &[("v", "3".to_owned())],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::InvalidRequest(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_top_answer_is_a_status_error() {
    let server = spawn_server().await;
    // The admin API answers 401 without a token: not a TOP gateway.
    let client = TopClient::builder(format!("http://{}/admin/apps", server.addr), KEY, "s")
        .build()
        .unwrap();
    let e = client.execute("x.y", &[]).await.unwrap_err();
    assert!(matches!(e, ClientError::Status { .. }), "{e:?}");
    assert!(!e.is_retryable());
}
