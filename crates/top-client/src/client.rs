//! [`TopClient`], its builder, and [`Call`], one request ready to send.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use secrecy::SecretString;
use serde_json::Value;
use ticket_api::issue::{IssueParams, IssueResponse};
use ticket_api::method::Method;
use ticket_api::refund::{RefundParams, RefundResponse};
use ticket_api::verify::{VerifyParams, VerifyResponse};
use top_protocol::timestamp::format_beijing;
use top_protocol::{Params, SignMethod};

use crate::error::{snippet, ClientError};
use crate::request::{Format, Signer};
use crate::response::{bool_field, parse_response};
use crate::retry::{refund_is_idempotent, verify_is_idempotent, RetryPolicy};

/// What the SDK sends as `Content-Type` (docs/PROTOCOL.md §1.2: what the official SDKs send).
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=UTF-8";
/// Default time allowed for one attempt, connection included.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time allowed to open a connection.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One TOP call ready to send: the method, its business parameters, and whether it may be
/// retried.
///
/// The typed constructors ([`Call::verify`], …) decide idempotency from the parameters (see
/// the crate docs, "Retries"); [`Call::new`] is never retried unless [`Call::idempotent`]
/// says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    method: String,
    params: Vec<(String, String)>,
    idempotent: bool,
}

impl Call {
    /// A call of any TOP method with its business parameters (wire strings). Not retried.
    pub fn new<K: Into<String>, V: Into<String>>(
        method: impl Into<String>,
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Call {
            method: method.into(),
            params: params
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            idempotent: false,
        }
    }

    /// Declares whether sending this call twice has the same effect as sending it once, which
    /// allows automatic retries. Only say yes when the *server* guarantees it.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// `taobao.travel.ticket.order.verify`; retried only when
    /// [`verify_is_idempotent`](crate::retry::verify_is_idempotent).
    pub fn verify(params: &VerifyParams) -> Self {
        Call::new(Method::Verify.name(), params.to_params())
            .idempotent(verify_is_idempotent(params))
    }

    /// `taobao.travel.ticket.order.refund`; retried only when
    /// [`refund_is_idempotent`](crate::retry::refund_is_idempotent).
    pub fn refund(params: &RefundParams) -> Self {
        Call::new(Method::Refund.name(), params.to_params())
            .idempotent(refund_is_idempotent(params))
    }

    /// `alitrip.travel.ticket.order.create`; always retryable: reporting the same codes again
    /// changes nothing, and a different report is refused, never applied twice.
    pub fn issue(params: &IssueParams) -> Self {
        Call::new(Method::Issue.name(), params.to_params()).idempotent(true)
    }

    /// The TOP method name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The business parameters, as they will be sent (empty values are dropped when sending).
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// Whether the call may be retried automatically.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

/// A TOP client: signs calls, sends them, reads the answer, and retries the idempotent ones.
///
/// Cheap to clone (the configuration and connection pool are shared); build it once with
/// [`TopClient::builder`] and reuse it.
#[derive(Clone)]
pub struct TopClient {
    inner: Arc<Inner>,
}

struct Inner {
    url: reqwest::Url,
    signer: Signer,
    http: reqwest::Client,
    timeout: Option<Duration>,
    retry: RetryPolicy,
}

impl fmt::Debug for TopClient {
    /// Never shows the secret or the session.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("TopClient")
            .field("url", &i.url.as_str())
            .field("app_key", &i.signer.app_key)
            .field("sign_method", &i.signer.sign_method)
            .field("format", &i.signer.format)
            .field("simplify", &i.signer.simplify)
            .field("partner_id", &i.signer.partner_id)
            .field("timeout", &i.timeout)
            .field("retry", &i.retry)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TopClient`]; see [`TopClient::builder`].
pub struct TopClientBuilder {
    url: String,
    app_key: String,
    secret: SecretString,
    sign_method: SignMethod,
    format: Format,
    simplify: bool,
    session: Option<SecretString>,
    partner_id: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
}

impl fmt::Debug for TopClientBuilder {
    /// Never shows the secret or the session.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopClientBuilder")
            .field("url", &self.url)
            .field("app_key", &self.app_key)
            .field("sign_method", &self.sign_method)
            .field("format", &self.format)
            .field("simplify", &self.simplify)
            .field("partner_id", &self.partner_id)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl TopClientBuilder {
    /// The signature method: `hmac-sha256` by default; `md5` and `hmac` (HMAC-MD5) for gateways
    /// or app registrations that require them.
    pub fn sign_method(mut self, method: SignMethod) -> Self {
        self.sign_method = method;
        self
    }

    /// The response format to ask for: JSON by default.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Asks for simplified (flat) JSON (`simplify=true`). Ignored with XML. Either form is
    /// read correctly; this only changes what is requested.
    pub fn simplify(mut self, simplify: bool) -> Self {
        self.simplify = simplify;
        self
    }

    /// A user authorisation token sent as `session` (signed, never logged). The travel-ticket
    /// methods need none.
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(SecretString::from(session.into()));
        self
    }

    /// An informational `partner_id` to send (signed like any parameter). None by default.
    pub fn partner_id(mut self, partner_id: impl Into<String>) -> Self {
        self.partner_id = Some(partner_id.into());
        self
    }

    /// Time allowed for one attempt, from sending to the end of the answer: 30 s by default.
    /// Applies to a client given with [`http_client`](Self::http_client) too.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Time allowed to open a connection: 10 s by default. Only for the HTTP client the
    /// builder creates; a client given with [`http_client`](Self::http_client) keeps its own.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Uses this HTTP client (proxies, TLS roots, connection pool shared with the rest of the
    /// program) instead of building one.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// How idempotent calls are retried; [`RetryPolicy::default`] unless set.
    /// [`RetryPolicy::never`] turns retries off.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Checks the configuration and builds the client.
    ///
    /// Fails with [`ClientError::Config`] for a URL that is not `http(s)://…`, an empty app
    /// key, or an HTTP client that cannot be set up.
    pub fn build(self) -> Result<TopClient, ClientError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| ClientError::Config(format!("gateway URL {:?}: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(ClientError::Config(format!(
                "gateway URL {:?} must be http:// or https:// with a host",
                self.url
            )));
        }
        if self.app_key.is_empty() {
            return Err(ClientError::Config("the app key is empty".into()));
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .user_agent(concat!("top-client-rust/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?,
        };
        if self.retry.max_attempts == 0 {
            return Err(ClientError::Config(
                "retry policy: max_attempts must be at least 1".into(),
            ));
        }
        Ok(TopClient {
            inner: Arc::new(Inner {
                url,
                signer: Signer {
                    app_key: self.app_key,
                    secret: self.secret,
                    sign_method: self.sign_method,
                    format: self.format,
                    simplify: self.simplify,
                    session: self.session,
                    partner_id: self.partner_id,
                },
                http,
                timeout: self.timeout,
                retry: self.retry,
            }),
        })
    }
}

impl TopClient {
    /// Starts configuring a client for the gateway at `url` (the full address, e.g.
    /// `https://gw.api.taobao.com/router/rest` or `http://127.0.0.1:8080/router/rest`), calling
    /// as `app_key` with `app_secret`.
    ///
    /// Defaults: `hmac-sha256`, JSON not simplified, 30 s per attempt, 10 s to connect,
    /// [`RetryPolicy::default`] for idempotent calls.
    pub fn builder(
        url: impl Into<String>,
        app_key: impl Into<String>,
        app_secret: impl Into<String>,
    ) -> TopClientBuilder {
        TopClientBuilder {
            url: url.into(),
            app_key: app_key.into(),
            secret: SecretString::from(app_secret.into()),
            sign_method: SignMethod::HmacSha256,
            format: Format::Json,
            simplify: false,
            session: None,
            partner_id: None,
            timeout: Some(DEFAULT_TIMEOUT),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            http: None,
            retry: RetryPolicy::default(),
        }
    }

    /// The gateway URL.
    pub fn url(&self) -> &str {
        self.inner.url.as_str()
    }

    /// The app key calls are made as.
    pub fn app_key(&self) -> &str {
        &self.inner.signer.app_key
    }

    /// The signature method in use.
    pub fn sign_method(&self) -> SignMethod {
        self.inner.signer.sign_method
    }

    /// The response format asked for.
    pub fn format(&self) -> Format {
        self.inner.signer.format
    }

    /// The retry policy for idempotent calls.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Reports a redemption (`taobao.travel.ticket.order.verify`, 核销).
    ///
    /// Retried after a transport failure or an `isp.*` answer only when the report is
    /// idempotent on the server: `write_off_type` 1, or `voucher_infos` whose every entry has
    /// a `used_date` ([`verify_is_idempotent`](crate::retry::verify_is_idempotent)).
    pub async fn verify(&self, params: &VerifyParams) -> Result<VerifyResponse, ClientError> {
        let inner = self.send(&Call::verify(params)).await?;
        Ok(VerifyResponse {
            is_success: bool_field(&inner, "is_success")?,
        })
    }

    /// Reports the result of a refund (`taobao.travel.ticket.order.refund`, 退票).
    ///
    /// Retried after a transport failure or an `isp.*` answer only when the notification
    /// carries a `refund_batch_no` or a `fliggy_refund_flow_id`, the keys the server recognises
    /// a repeat by ([`refund_is_idempotent`](crate::retry::refund_is_idempotent)).
    pub async fn refund(&self, params: &RefundParams) -> Result<RefundResponse, ClientError> {
        let inner = self.send(&Call::refund(params)).await?;
        Ok(RefundResponse {
            is_success: bool_field(&inner, "is_success")?,
        })
    }

    /// Reports the codes issued for a paid order, or the failure to issue them
    /// (`alitrip.travel.ticket.order.create`, 发码). Always retryable: the same report again
    /// changes nothing.
    pub async fn issue(&self, params: &IssueParams) -> Result<IssueResponse, ClientError> {
        let inner = self.send(&Call::issue(params)).await?;
        Ok(IssueResponse {
            is_success: bool_field(&inner, "is_success")?,
        })
    }

    /// Calls any TOP method with business parameters given as wire strings, and returns the
    /// inner response object (`request_id` included) — in XML, leaves are strings.
    ///
    /// Never retried: the SDK cannot know whether an unknown method is idempotent. Use
    /// [`send`](Self::send) with [`Call::idempotent`] to opt in.
    pub async fn execute(
        &self,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.send(&Call::new(
            method,
            params.iter().map(|(k, v)| (*k, v.as_str())),
        ))
        .await
    }

    /// Sends a [`Call`], retrying per the policy if the call is idempotent, and returns the
    /// inner response object.
    pub async fn send(&self, call: &Call) -> Result<Value, ClientError> {
        let policy = &self.inner.retry;
        let started = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            let error = match self.attempt(call).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !call.idempotent || !error.is_retryable() || attempt >= policy.max_attempts {
                return Err(error);
            }
            let delay = policy.backoff(attempt);
            if started.elapsed() + delay > policy.max_elapsed {
                return Err(error);
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The complete, signed parameter set this client would send for `method` at `timestamp`
    /// (`yyyy-MM-dd HH:mm:ss`, UTC+8): system parameters, the business parameters without
    /// empty values, and `sign`.
    ///
    /// Deterministic, so it reproduces signatures computed elsewhere (the golden vectors) and
    /// helps debug an "Invalid signature" answer. Calls use the current time, formatted with
    /// [`top_protocol::timestamp::format_beijing`], whatever the host's time zone.
    pub fn signed_params(
        &self,
        method: &str,
        params: &[(&str, String)],
        timestamp: &str,
    ) -> Result<Params, ClientError> {
        self.inner.signer.signed_params(
            method,
            params.iter().map(|(k, v)| (*k, v.as_str())),
            timestamp,
        )
    }

    /// One attempt: sign with a fresh timestamp (a retry after a long pause must still be
    /// inside the gateway's window), POST the form, read the answer.
    async fn attempt(&self, call: &Call) -> Result<Value, ClientError> {
        let inner = &self.inner;
        let timestamp = format_beijing(Utc::now());
        let params = inner.signer.signed_params(
            &call.method,
            call.params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &timestamp,
        )?;
        let mut request = inner
            .http
            .post(inner.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE))
            .body(params.to_form_urlencoded());
        if let Some(timeout) = inner.timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(ClientError::Transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(ClientError::Transport)?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status: status.as_u16(),
                body: snippet(&body),
            });
        }
        parse_response(&body, &call.method)
    }
}
