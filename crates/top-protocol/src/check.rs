//! The platform checks of docs/PROTOCOL.md §5.1, in their documented order, without I/O.
//!
//! The order is split in two at the one step that needs storage: after [`check_envelope`] the
//! server looks the `app_key` up (answering 29 itself when it is unknown), then passes the app's
//! secrets to [`authenticate`]. Permissions and rate limits (11/7) and business parameters (40/41)
//! come after, in the server.
//!
//! A required system parameter that is present but empty (`method=`) counts as missing, as in a
//! Java gateway's `StringUtils.isEmpty` check: an empty value can never be valid, and "missing"
//! tells the caller more.

use chrono::{DateTime, Utc};

use crate::envelope::Format;
use crate::error::{PlatformCode, TopError};
use crate::params::Params;
use crate::sign::{verify, SignMethod};
use crate::timestamp::{parse_timestamp, within_window};

/// TOP's system parameters besides `sign`: the names the platform itself reads on every call
/// (§2). With a method's own parameters they are everything a server has reason to keep.
pub const SYSTEM_PARAMS: &[&str] = &[
    "method",
    "app_key",
    "timestamp",
    "format",
    "v",
    "sign_method",
    "simplify",
    "partner_id",
    "session",
    "target_app_key",
];

/// Default timestamp window: 600 s (\[DOC\]: "a maximum client time error of 10 minutes").
pub const DEFAULT_TIMESTAMP_WINDOW_SECS: i64 = 600;

/// What the first checks established, for routing and logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The `method` parameter, known to the server.
    pub method: String,
    /// How to render the response.
    pub format: Format,
    /// The `app_key` parameter, still to be looked up.
    pub app_key: String,
    /// `sign_method` (`md5` when absent). `None` when it names a method this crate does not
    /// support: that is refused with 25 by [`authenticate`], after the app lookup and the
    /// `sign`-present check, as §5.1 orders it.
    pub sign_method: Option<SignMethod>,
}

/// A refusal plus the format to render it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// [`Format::from_params`] when that is valid, else XML (§4.2: a bad `format` is answered in XML).
    pub format: Format,
    /// The `error_response` to send.
    pub error: TopError,
}

/// A required parameter's value; present-but-empty counts as missing (module doc).
fn required<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params.get(key).filter(|v| !v.is_empty())
}

/// The `sign_method` to use: absent (or empty) → `md5`, the legacy default (§2).
fn sign_method_of(params: &Params) -> Option<SignMethod> {
    match params.get("sign_method") {
        None | Some("") => Some(SignMethod::Md5),
        Some(s) => SignMethod::parse(s),
    }
}

/// Steps before the app lookup, in order: HTTP verb must be exactly "GET" or "POST" (else 9) →
/// `method` present (21) and `is_known_method(method)` (22) → `format` valid (23, rendered as
/// Xml) → `app_key` present (28).
///
/// The render format of a rejection is `Format::from_params(params)` when valid, else Xml. An
/// unsupported `sign_method` is not refused here (see [`Envelope::sign_method`]).
pub fn check_envelope(
    http_method: &str,
    params: &Params,
    is_known_method: impl Fn(&str) -> bool,
) -> Result<Envelope, Rejection> {
    let parsed_format = Format::from_params(params);
    let reject = |code: PlatformCode| Rejection {
        format: parsed_format.unwrap_or(Format::Xml),
        error: TopError::platform(code),
    };
    if http_method != "GET" && http_method != "POST" {
        return Err(reject(PlatformCode::HttpActionNotAllowed));
    }
    let method = required(params, "method").ok_or_else(|| reject(PlatformCode::MissingMethod))?;
    if !is_known_method(method) {
        return Err(reject(PlatformCode::InvalidMethod));
    }
    let format = parsed_format.map_err(|_| reject(PlatformCode::InvalidFormat))?;
    let app_key = required(params, "app_key").ok_or_else(|| reject(PlatformCode::MissingAppKey))?;
    Ok(Envelope {
        method: method.to_owned(),
        format,
        app_key: app_key.to_owned(),
        sign_method: sign_method_of(params),
    })
}

/// After the server found the app (29 is the server's job, `TopError::platform(InvalidAppKey)`):
/// `sign` present (24) → `sign_method` supported and the signature verifies against ANY of
/// `secrets` (25; several secrets allow a rotation overlap) → `timestamp` present (30), parsable
/// and within ±`window` of `now` (31) → `v` present (32) and == "2.0" (34).
///
/// The signature is checked before the timestamp so that an unauthenticated caller learns nothing
/// about the server's clock.
pub fn authenticate(
    params: &Params,
    secrets: &[&[u8]],
    now: DateTime<Utc>,
    window: chrono::Duration,
) -> Result<(), TopError> {
    check_signature(params, secrets)?;
    check_freshness(params, now, window)
}

/// The first half of [`authenticate`]: `sign` present (24), `sign_method` supported and the
/// signature verifies against any of `secrets` (25). A call refused here came from a caller
/// who has not shown the secret, so the server must not keep it as the app's act.
pub fn check_signature(params: &Params, secrets: &[&[u8]]) -> Result<(), TopError> {
    let provided = required(params, "sign")
        .ok_or_else(|| TopError::platform(PlatformCode::MissingSignature))?;
    let method =
        sign_method_of(params).ok_or_else(|| TopError::platform(PlatformCode::InvalidSignature))?;
    if !secrets
        .iter()
        .any(|secret| verify(method, secret, params, provided))
    {
        return Err(TopError::platform(PlatformCode::InvalidSignature));
    }
    Ok(())
}

/// The second half of [`authenticate`], for a call whose signature verified: `timestamp`
/// present (30), parsable and within ±`window` of `now` (31) → `v` present (32) and == "2.0"
/// (34).
pub fn check_freshness(
    params: &Params,
    now: DateTime<Utc>,
    window: chrono::Duration,
) -> Result<(), TopError> {
    let raw_ts = required(params, "timestamp")
        .ok_or_else(|| TopError::platform(PlatformCode::MissingTimestamp))?;
    if !parse_timestamp(raw_ts).is_some_and(|ts| within_window(ts, now, window)) {
        return Err(TopError::platform(PlatformCode::InvalidTimestamp));
    }
    let v =
        required(params, "v").ok_or_else(|| TopError::platform(PlatformCode::MissingVersion))?;
    if v != "2.0" {
        return Err(TopError::platform(PlatformCode::UnsupportedVersion));
    }
    Ok(())
}
