//! Vendors' side of a test: signed TOP calls ([`TopCall`]) sent to the gateway, and its
//! answers ([`TopReply`]) as bytes.

use chrono::Utc;
use serde_json::Value;
use top_protocol::sign::sign;
use top_protocol::timestamp::format_beijing;
use top_protocol::{EmptyValues, Params, SignMethod};

use super::TestApp;

/// The verify method name.
pub const VERIFY: &str = "taobao.travel.ticket.order.verify";

impl TestApp {
    /// Sends a signed TOP call as a form-urlencoded POST body (like taobaopy / the Node SDK).
    pub async fn call(&self, call: &TopCall) -> TopReply {
        let body = call.signed().to_form_urlencoded();
        let r = self
            .http
            .post(self.gateway())
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=UTF-8",
            )
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /router/rest: {e}"));
        TopReply::read(r).await
    }

    /// Sends a raw request (any verb, query and body) and returns the reply.
    pub async fn raw(
        &self,
        verb: reqwest::Method,
        query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> TopReply {
        let url = if query.is_empty() {
            self.gateway()
        } else {
            format!("{}?{}", self.gateway(), query)
        };
        let mut req = self.http.request(verb, url).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{query}: {e}"));
        TopReply::read(r).await
    }
}

/// A TOP call under construction: system params with sensible defaults, business params, and
/// the secret and sign method used to sign it.
#[derive(Clone, Debug)]
pub struct TopCall {
    pub params: Params,
    pub secret: String,
    pub sign_method: SignMethod,
    pub empty: EmptyValues,
}

impl TopCall {
    /// A verify call by `app_key`, signed with `secret` (md5, json, timestamp now in UTC+8).
    pub fn verify(app_key: &str, secret: &str) -> Self {
        Self::method(VERIFY, app_key, secret)
    }

    pub fn method(method: &str, app_key: &str, secret: &str) -> Self {
        let mut params = Params::new();
        params.insert("method", method);
        params.insert("app_key", app_key);
        params.insert("sign_method", "md5");
        params.insert("timestamp", format_beijing(Utc::now()));
        params.insert("v", "2.0");
        params.insert("format", "json");
        Self {
            params,
            secret: secret.to_owned(),
            sign_method: SignMethod::Md5,
            empty: EmptyValues::Skip,
        }
    }

    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.params.insert(key, value.to_string());
        self
    }

    pub fn unset(mut self, key: &str) -> Self {
        self.params.remove(key);
        self
    }

    pub fn sign_with(mut self, method: SignMethod) -> Self {
        self.sign_method = method;
        self.params.insert("sign_method", method.as_str());
        self
    }

    /// The parameters with `sign` added (unless a test already set one).
    ///
    /// Every call a vendor's SDK could make is signed by our SDK, `top-client`,
    /// and checked against `top-protocol`'s signer, so each test also proves the two agree.
    /// Calls no SDK would send (missing system parameters, empty values signed in the
    /// keep-empty form, foreign system parameters) are signed by `top-protocol` alone.
    pub fn signed(&self) -> Params {
        let mut p = self.params.clone();
        if p.get("sign").is_some() {
            return p;
        }
        let raw = sign(self.sign_method, self.secret.as_bytes(), &p, self.empty);
        if let Some(by_sdk) = self.signed_by_sdk() {
            assert_eq!(
                by_sdk.get("sign"),
                Some(raw.as_str()),
                "top-client and top-protocol sign {:?} differently",
                self.params
            );
            return by_sdk;
        }
        p.insert("sign", raw);
        p
    }

    /// The same call as `top-client` builds it, when it is one the SDK can express.
    fn signed_by_sdk(&self) -> Option<Params> {
        let get = |k: &str| self.params.get(k);
        let format = match get("format")? {
            "json" => top_client::Format::Json,
            "xml" => top_client::Format::Xml,
            _ => return None,
        };
        let simplify = match get("simplify") {
            None => false,
            Some("true") if format == top_client::Format::Json => true,
            Some(_) => return None,
        };
        if get("v") != Some("2.0") || get("sign_method") != Some(self.sign_method.as_str()) {
            return None;
        }
        const SYSTEM: &[&str] = &[
            "method",
            "app_key",
            "sign_method",
            "timestamp",
            "v",
            "format",
            "simplify",
        ];
        let mut business = Vec::new();
        for (k, v) in self.params.iter() {
            if SYSTEM.contains(&k) {
                continue;
            }
            if v.is_empty() || matches!(k, "sign" | "session" | "partner_id") {
                return None;
            }
            business.push((k, v.to_owned()));
        }
        let client = top_client::TopClient::builder(
            "http://127.0.0.1:9/router/rest",
            get("app_key")?,
            &self.secret,
        )
        .sign_method(self.sign_method)
        .format(format)
        .simplify(simplify)
        .build()
        .ok()?;
        client
            .signed_params(get("method")?, &business, get("timestamp")?)
            .ok()
    }
}

/// An answer from the gateway.
#[derive(Debug)]
pub struct TopReply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl TopReply {
    pub(crate) async fn read(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned())
            .unwrap_or_default();
        let body = r
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("reading the answer: {e}"))
            .to_vec();
        Self {
            status,
            content_type,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// `(code, sub_code)` of an `error_response`, or panics with the body.
    pub fn error(&self) -> (i64, String) {
        assert_eq!(self.status, 200, "TOP answers are always HTTP 200");
        let v = self.json();
        let e = &v["error_response"];
        assert!(
            e.is_object(),
            "expected error_response, got {}",
            self.text()
        );
        (
            e["code"]
                .as_i64()
                .unwrap_or_else(|| panic!("no code: {}", self.text())),
            e["sub_code"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Asserts a wrapped JSON verify success.
    pub fn assert_success(&self) {
        assert_eq!(self.status, 200);
        let v = self.json();
        assert_eq!(
            v["travel_ticket_order_verify_response"]["is_success"],
            Value::Bool(true),
            "expected success, got {}",
            self.text()
        );
    }
}
