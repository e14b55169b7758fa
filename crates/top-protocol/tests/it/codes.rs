//! The platform code table (docs/PROTOCOL.md §5.1).

use top_protocol::{PlatformCode, TopError};

/// The §5.1 table, transcribed: (code, "msg (send)").
const TABLE: &[(u32, &str)] = &[
    (3, "Upload fail"),
    (7, "App Call Limited"),
    (9, "Http action not allowed"),
    (10, "Service currently unavailable"),
    (11, "Insufficient isv permissions"),
    (12, "Insufficient user permissions"),
    (13, "Insufficient partner permissions"),
    (21, "Missing method"),
    (22, "Invalid method"),
    (23, "Invalid format"),
    (24, "Missing signature"),
    (25, "Invalid signature"),
    (26, "Missing session"),
    (27, "Invalid session"),
    (28, "Missing app key"),
    (29, "Invalid app Key"),
    (30, "Missing timestamp"),
    (31, "Invalid timestamp"),
    (32, "Missing version"),
    (33, "Invalid version"),
    (34, "Unsupported version"),
    (40, "Missing required arguments"),
    (41, "Invalid arguments"),
    (42, "Forbidden request"),
    (43, "Parameter error"),
    (47, "Invalid encoding"),
    (50, "Remote service error"),
];

#[test]
fn every_platform_code_matches_the_5_1_table() {
    assert_eq!(PlatformCode::ALL.len(), TABLE.len());
    for (&code, &(n, msg)) in PlatformCode::ALL.iter().zip(TABLE) {
        assert_eq!((code.code(), code.msg()), (n, msg), "{code:?}");
        let e = TopError::platform(code);
        assert_eq!(
            (e.code, e.msg.as_str(), e.sub_code, e.sub_msg),
            (n, msg, None, None)
        );
    }
}

#[test]
fn named_variants_have_their_numbers() {
    use PlatformCode::*;
    let named = [
        (UploadFail, 3),
        (AppCallLimited, 7),
        (HttpActionNotAllowed, 9),
        (ServiceUnavailable, 10),
        (InsufficientIsvPermissions, 11),
        (InsufficientUserPermissions, 12),
        (InsufficientPartnerPermissions, 13),
        (MissingMethod, 21),
        (InvalidMethod, 22),
        (InvalidFormat, 23),
        (MissingSignature, 24),
        (InvalidSignature, 25),
        (MissingSession, 26),
        (InvalidSession, 27),
        (MissingAppKey, 28),
        (InvalidAppKey, 29),
        (MissingTimestamp, 30),
        (InvalidTimestamp, 31),
        (MissingVersion, 32),
        (InvalidVersion, 33),
        (UnsupportedVersion, 34),
        (MissingRequiredArguments, 40),
        (InvalidArguments, 41),
        (ForbiddenRequest, 42),
        (ParameterError, 43),
        (InvalidEncoding, 47),
        (RemoteServiceError, 50),
    ];
    for (variant, n) in named {
        assert_eq!(variant.code(), n, "{variant:?}");
    }
}

#[test]
fn argument_errors_append_the_name() {
    assert_eq!(
        TopError::missing_argument("refund_status"),
        TopError {
            code: 40,
            msg: "Missing required arguments:refund_status".to_owned(),
            sub_code: Some("isv.missing-parameter:refund_status".to_owned()),
            sub_msg: Some("缺少必选参数:refund_status".to_owned()),
        }
    );
    assert_eq!(
        TopError::invalid_argument("order_id", ""),
        TopError {
            code: 41,
            msg: "Invalid arguments:order_id".to_owned(),
            sub_code: Some("isv.invalid-parameter:order_id".to_owned()),
            sub_msg: Some("非法参数:order_id".to_owned()),
        }
    );
    assert_eq!(
        TopError::invalid_argument("order_id", "不是整数")
            .sub_msg
            .as_deref(),
        Some("非法参数:order_id (不是整数)")
    );
}

#[test]
fn business_errors_are_code_50_with_sub() {
    let e = TopError::business(
        "isv.invalid-parameter:confirm_code_not_exist",
        "核销码不存在",
    );
    assert_eq!(e.code, 50);
    assert_eq!(e.msg, "Remote service error");
    assert_eq!(
        e.sub_code.as_deref(),
        Some("isv.invalid-parameter:confirm_code_not_exist")
    );
    assert_eq!(e.sub_msg.as_deref(), Some("核销码不存在"));
    let e = TopError::platform(PlatformCode::AppCallLimited)
        .with_sub("accesscontrol.limited-by-api-access-count", "调用次数超限");
    assert_eq!(e.code, 7);
    assert_eq!(
        e.sub_code.as_deref(),
        Some("accesscontrol.limited-by-api-access-count")
    );
}

#[test]
fn isp_and_capacity_errors_are_retryable_isv_are_not() {
    assert!(TopError::business("isp.service-error", "系统错误").is_retryable());
    assert!(TopError::platform(PlatformCode::AppCallLimited).is_retryable());
    assert!(TopError::platform(PlatformCode::ServiceUnavailable).is_retryable());
    assert!(
        !TopError::business("isv.invalid-parameter:order_not_exist", "订单不存在").is_retryable()
    );
    assert!(!TopError::platform(PlatformCode::InvalidSignature).is_retryable());
    assert!(!TopError::missing_argument("order_id").is_retryable());
    assert!(!TopError::business("isp", "no dot").is_retryable());
}
