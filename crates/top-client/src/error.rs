//! [`ClientError`]: everything a call can end with other than success, and [`ApiError`], the
//! `error_response` the gateway answered.

use std::fmt;

use ticket_api::BusinessError;
use top_protocol::TopError;

/// An `error_response` as the gateway sent it (docs/PROTOCOL.md §4.2, §5).
///
/// Every field is kept as received, so a vendor can log exactly what the platform said and quote
/// the `request_id` to its operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Numeric `code`: below 100 for platform refusals (signature, timestamp, parameters…), 50
    /// for business refusals, which always carry a `sub_code`.
    pub code: u32,
    /// English `msg`, e.g. `Invalid signature` or `Remote service error`.
    pub msg: String,
    /// `isv.*` (the caller's to fix) or `isp.*` (the platform's; retryable).
    pub sub_code: Option<String>,
    /// Human detail, usually Chinese; ticketd appends specifics such as the uses left.
    pub sub_msg: Option<String>,
    /// The gateway's id of this request; quote it when asking the operator.
    pub request_id: Option<String>,
}

impl ApiError {
    /// The same error as `top-protocol`'s value (without the `request_id`).
    pub fn to_top_error(&self) -> TopError {
        TopError {
            code: self.code,
            msg: self.msg.clone(),
            sub_code: self.sub_code.clone(),
            sub_msg: self.sub_msg.clone(),
        }
    }

    /// Whether the same request may be sent again later: `isp.*` sub codes, rate limiting (7)
    /// and unavailability (10) — docs/PROTOCOL.md §5.2. `isv.*` answers are final.
    pub fn is_retryable(&self) -> bool {
        self.to_top_error().is_retryable()
    }

    /// The catalogue entry of a business `sub_code`, when it is one ticketd documents.
    pub fn business(&self) -> Option<BusinessError> {
        self.sub_code
            .as_deref()
            .and_then(BusinessError::from_sub_code)
    }

    /// What the answer means, in English: the catalogue's meaning for a business `sub_code`
    /// (`docs/ERRORS.md`), the parameter named by an `isv.missing-parameter:` /
    /// `isv.invalid-parameter:` sub code, or a hint for the platform codes a vendor meets while
    /// integrating. `None` when there is nothing to add to `msg` and `sub_msg`.
    pub fn explain(&self) -> Option<String> {
        if let Some(b) = self.business() {
            return Some(b.entry().meaning.to_owned());
        }
        let sub = self.sub_code.as_deref().unwrap_or_default();
        if let Some(name) = sub.strip_prefix("isv.missing-parameter:") {
            return Some(format!("The required parameter `{name}` is missing."));
        }
        if let Some(name) = sub.strip_prefix("isv.invalid-parameter:") {
            return Some(format!(
                "The parameter `{name}` is malformed or not allowed here; sub_msg says why."
            ));
        }
        if sub.starts_with("isp.") {
            return Some(
                "The platform or its provider failed; the same request may be sent again after a pause."
                    .to_owned(),
            );
        }
        let hint = match self.code {
            7 => "The app is over its call limit; slow down and retry later.",
            10 => "The service is unavailable right now; retry later.",
            11 => "This app_key may not call this method.",
            22 => "The gateway does not implement this method.",
            25 => "The signature does not match: check app_secret and sign_method.",
            29 => "The gateway does not know this app_key.",
            31 => "The timestamp is too far from the gateway's clock: check the host's clock.",
            _ => return None,
        };
        Some(hint.to_owned())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TOP error {}: {}", self.code, self.msg)?;
        match (&self.sub_code, &self.sub_msg) {
            (Some(code), Some(msg)) => write!(f, " ({code}: {msg})")?,
            (Some(code), None) => write!(f, " ({code})")?,
            (None, Some(msg)) => write!(f, " ({msg})")?,
            (None, None) => {}
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request_id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Why a call did not succeed.
///
/// One type for every failure, so callers match once: [`ClientError::Api`] is the gateway's
/// own `error_response`; the other variants mean no TOP answer was read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The gateway answered with an `error_response`.
    #[error("{0}")]
    Api(ApiError),
    /// The request could not be sent or its answer not received: connection refused or reset,
    /// DNS, TLS, timeout. The call may or may not have reached the gateway.
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The HTTP status was not 2xx. TOP answers every request with 200, so this comes from
    /// something in between (a proxy or load balancer) or from a server that is not a TOP gateway.
    #[error("HTTP status {status} from the gateway")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, for the log.
        body: String,
    },
    /// A 200 answer that is not a TOP envelope (or lacks a field the typed call needs).
    #[error("cannot read the gateway's answer: {reason}")]
    Decode {
        /// What was wrong.
        reason: String,
        /// The start of the body, for the log.
        body: String,
    },
    /// The request was refused before sending: a business parameter reuses a system
    /// parameter's name, or is given twice.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The client could not be built (bad URL, empty app key, HTTP client setup).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The `error_response`, when the gateway sent one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The TOP `code`, when the gateway answered with an `error_response`.
    pub fn code(&self) -> Option<u32> {
        self.api().map(|e| e.code)
    }

    /// The TOP `sub_code`, when there is one.
    pub fn sub_code(&self) -> Option<&str> {
        self.api().and_then(|e| e.sub_code.as_deref())
    }

    /// The TOP `sub_msg`, when there is one.
    pub fn sub_msg(&self) -> Option<&str> {
        self.api().and_then(|e| e.sub_msg.as_deref())
    }

    /// The gateway's `request_id`, when it answered with an `error_response`.
    pub fn request_id(&self) -> Option<&str> {
        self.api().and_then(|e| e.request_id.as_deref())
    }

    /// Whether sending the same request again may succeed: transport failures, a 429 or 5xx
    /// from something in front of the gateway, and the retryable TOP answers (`isp.*`, codes 7
    /// and 10). Whether it is also *safe* depends on the call (see the crate docs on retries).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Api(e) => e.is_retryable(),
            ClientError::Transport(e) => !e.is_builder() && !e.is_redirect(),
            ClientError::Status { status, .. } => *status == 429 || *status >= 500,
            ClientError::Decode { .. }
            | ClientError::InvalidRequest(_)
            | ClientError::Config(_) => false,
        }
    }

    /// What a TOP answer means (see [`ApiError::explain`]); `None` for other failures.
    pub fn explain(&self) -> Option<String> {
        self.api().and_then(ApiError::explain)
    }
}

impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> Self {
        ClientError::Api(e)
    }
}

/// The first bytes of a body as text, for error messages (never the whole of a large body).
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    if body.len() > MAX {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u32, sub: Option<&str>) -> ApiError {
        ApiError {
            code,
            msg: "m".into(),
            sub_code: sub.map(str::to_owned),
            sub_msg: None,
            request_id: Some("abc".into()),
        }
    }

    #[test]
    fn retry_advice_follows_the_sub_code_prefix_and_codes_7_and_10() {
        assert!(api(50, Some("isp.service-busy")).is_retryable());
        assert!(!api(50, Some("isv.verify-num-exceed")).is_retryable());
        assert!(api(7, None).is_retryable());
        assert!(api(10, None).is_retryable());
        assert!(!api(25, None).is_retryable());
    }

    #[test]
    fn explain_uses_the_catalogue_first() {
        let e = api(50, Some("isv.verify-num-exceed"));
        assert_eq!(e.business(), Some(BusinessError::VerifyNumExceed));
        assert_eq!(
            e.explain().as_deref(),
            Some(BusinessError::VerifyNumExceed.entry().meaning)
        );
        assert!(api(41, Some("isv.invalid-parameter:voucher_infos"))
            .explain()
            .is_some_and(|s| s.contains("`voucher_infos`")));
        assert_eq!(api(99, None).explain(), None);
    }

    #[test]
    fn display_carries_the_request_id() {
        let mut e = api(50, Some("isv.order-not-exist"));
        e.sub_msg = Some("订单不存在".into());
        assert_eq!(
            e.to_string(),
            "TOP error 50: m (isv.order-not-exist: 订单不存在) [request_id abc]"
        );
    }

    #[test]
    fn snippets_are_bounded() {
        assert_eq!(snippet(b"short"), "short");
        assert_eq!(snippet(&[b'a'; 600]).chars().count(), 513);
    }
}
