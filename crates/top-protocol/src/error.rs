//! Platform error codes (docs/PROTOCOL.md §5.1) and the `error_response` value (§4.2, §5.2).
//!
//! Every refusal the gateway sends is a [`TopError`]. The numeric codes below 100 and their
//! `msg` strings live in one table, [`PlatformCode`], so that no other crate spells a platform
//! message by hand: the gateway, the SDK and the generated `docs/ERRORS.md` read the same
//! pairs, and a message typed twice would drift. The platform `sub_code`s sit beside them in
//! [`sub_code`].
//!
//! A refusal often names what the caller sent wrong, and the caller chose that text: a
//! 400,000-character parameter name, repeated, once came back three times in a 1.2 MB answer.
//! [`clip`] is the one place such text is cut, and the constructors that echo a name
//! ([`TopError::missing_argument`], [`TopError::invalid_argument`]) call it themselves, so no
//! caller can forget it.

use std::borrow::Cow;
use std::fmt;

/// Most characters of a caller-supplied name or value that an error answer repeats.
///
/// Why 64: every parameter name TOP defines is shorter than 30 characters, so a real caller always
/// sees its whole name; anything longer is noise or an attack, and 64 characters still say which
/// parameter was meant.
pub const MAX_ECHO_CHARS: usize = 64;

/// What [`clip`] appends to text it cut, so that a reader sees the text was longer.
pub const CLIP_MARK: char = '…';

/// `text` cut to its first `max_chars` characters, followed by [`CLIP_MARK`] when anything was
/// cut; borrowed unchanged when it fits.
///
/// Counts characters, not bytes, so a cut never splits a UTF-8 sequence (a Chinese name is cut
/// after 64 characters like an ASCII one).
pub fn clip(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => {
            let mut clipped = String::with_capacity(cut + CLIP_MARK.len_utf8());
            clipped.push_str(&text[..cut]);
            clipped.push(CLIP_MARK);
            Cow::Owned(clipped)
        }
    }
}

/// The platform `sub_code`s (docs/PROTOCOL.md §5.1, §5.2), without any `:<name>` suffix.
///
/// Why a table: a `sub_code` may carry a caller's parameter name after a colon
/// (`isv.invalid-parameter:order_id`), so whoever groups answers by `sub_code` — the server's
/// metrics — needs the closed set of bases to tell a real one from text a caller made up. The
/// business `sub_code`s are in `ticket-api`'s catalogue.
pub mod sub_code {
    /// With 40: a required business parameter is missing (`isv.missing-parameter:<name>`).
    pub const MISSING_PARAMETER: &str = "isv.missing-parameter";
    /// With 41: a business parameter is malformed or a key is repeated
    /// (`isv.invalid-parameter:<name>`).
    pub const INVALID_PARAMETER: &str = "isv.invalid-parameter";
    /// With 11: the caller's address is not on the app's IP allow-list.
    pub const IP_NOT_ALLOWED: &str = "isv.permission-ip-whitelist-limit";
    /// With 7: the app is over its rate. The exact text \[TBPY\] retries on after a second (§5.2).
    pub const RATE_LIMITED: &str = "accesscontrol.limited-by-api-access-count";
    /// With 43: the body is larger than the server accepts.
    pub const REQUEST_TOO_LARGE: &str = "isv.request-too-large";
    /// With 43: the body did not arrive within the server's body timeout.
    pub const REQUEST_TIMEOUT: &str = "isv.request-timeout";

    /// Every platform `sub_code` base above.
    pub const ALL: &[&str] = &[
        MISSING_PARAMETER,
        INVALID_PARAMETER,
        IP_NOT_ALLOWED,
        RATE_LIMITED,
        REQUEST_TOO_LARGE,
        REQUEST_TIMEOUT,
    ];

    /// The part of a `sub_code` before its first `:` (the whole code when it has none):
    /// `isv.invalid-parameter:order_id` → `isv.invalid-parameter`. What follows the colon is
    /// free-form (§5.2), often a name the caller chose.
    pub fn base(sub_code: &str) -> &str {
        sub_code.split_once(':').map_or(sub_code, |(base, _)| base)
    }
}

/// Platform error codes of docs/PROTOCOL.md §5.1 (code < 100), with the exact `msg` to send.
///
/// Why an enum and not bare numbers: the table is the single place where a code is paired with
/// its wire `msg`, so the gateway, the SDK and `docs/ERRORS.md` cannot drift apart. Code 15 is
/// deliberately absent: ticketd sends 50 for every business failure (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlatformCode {
    /// 3, image upload failed. Listed for completeness; ticketd never sends it.
    UploadFail,
    /// 7, the app is over its call count or frequency limit.
    AppCallLimited,
    /// 9, an HTTP verb other than upper-case `GET` or `POST`.
    HttpActionNotAllowed,
    /// 10, overload or maintenance.
    ServiceUnavailable,
    /// 11, the app key may not call this method.
    InsufficientIsvPermissions,
    /// 12, listed for completeness (needs a user session, which ticketd never requires).
    InsufficientUserPermissions,
    /// 13, listed for completeness.
    InsufficientPartnerPermissions,
    /// 21, no `method` parameter.
    MissingMethod,
    /// 22, a `method` the server does not implement.
    InvalidMethod,
    /// 23, a `format` other than `json` or `xml`; rendered as XML.
    InvalidFormat,
    /// 24, no `sign` parameter.
    MissingSignature,
    /// 25, wrong signature, or an unsupported `sign_method` (decision in §2).
    InvalidSignature,
    /// 26, listed for completeness (no session is required).
    MissingSession,
    /// 27, listed for completeness.
    InvalidSession,
    /// 28, no `app_key` parameter.
    MissingAppKey,
    /// 29, an `app_key` the server does not know.
    InvalidAppKey,
    /// 30, no `timestamp` parameter.
    MissingTimestamp,
    /// 31, an unparsable `timestamp` or one outside the allowed window.
    InvalidTimestamp,
    /// 32, no `v` parameter.
    MissingVersion,
    /// 33, listed for completeness (ticketd answers 34 for a wrong `v`).
    InvalidVersion,
    /// 34, `v` other than `2.0`.
    UnsupportedVersion,
    /// 40, a required business parameter is missing; the name is appended to `msg`.
    MissingRequiredArguments,
    /// 41, a malformed business parameter (or a repeated key); the name is appended to `msg`.
    InvalidArguments,
    /// 42, listed for completeness.
    ForbiddenRequest,
    /// 43, a request whose parameters cannot be read at all (broken multipart, wrong body type).
    ParameterError,
    /// 47, a declared non-UTF-8 charset, or bytes that are not UTF-8.
    InvalidEncoding,
    /// 50, every business failure; always sent with a `sub_code` (§5.1, §5.2).
    RemoteServiceError,
}

impl PlatformCode {
    /// Every code, in ascending numeric order: for table-driven tests and generated docs.
    pub const ALL: &'static [PlatformCode] = &[
        PlatformCode::UploadFail,
        PlatformCode::AppCallLimited,
        PlatformCode::HttpActionNotAllowed,
        PlatformCode::ServiceUnavailable,
        PlatformCode::InsufficientIsvPermissions,
        PlatformCode::InsufficientUserPermissions,
        PlatformCode::InsufficientPartnerPermissions,
        PlatformCode::MissingMethod,
        PlatformCode::InvalidMethod,
        PlatformCode::InvalidFormat,
        PlatformCode::MissingSignature,
        PlatformCode::InvalidSignature,
        PlatformCode::MissingSession,
        PlatformCode::InvalidSession,
        PlatformCode::MissingAppKey,
        PlatformCode::InvalidAppKey,
        PlatformCode::MissingTimestamp,
        PlatformCode::InvalidTimestamp,
        PlatformCode::MissingVersion,
        PlatformCode::InvalidVersion,
        PlatformCode::UnsupportedVersion,
        PlatformCode::MissingRequiredArguments,
        PlatformCode::InvalidArguments,
        PlatformCode::ForbiddenRequest,
        PlatformCode::ParameterError,
        PlatformCode::InvalidEncoding,
        PlatformCode::RemoteServiceError,
    ];

    /// The numeric `code` sent in `error_response`.
    pub fn code(self) -> u32 {
        self.entry().0
    }

    /// The `msg` to send, exactly as the `msg` column of docs/PROTOCOL.md §5.1 spells it.
    ///
    /// For 40 and 41 this is the prefix only: [`TopError::missing_argument`] and
    /// [`TopError::invalid_argument`] append `:<name>`.
    pub fn msg(self) -> &'static str {
        self.entry().1
    }

    /// The code for a number received on the wire, for clients that want to branch on it.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// The one table: a `match` with no wildcard, so a new variant does not build until mapped.
    fn entry(self) -> (u32, &'static str) {
        match self {
            PlatformCode::UploadFail => (3, "Upload fail"),
            PlatformCode::AppCallLimited => (7, "App Call Limited"),
            PlatformCode::HttpActionNotAllowed => (9, "Http action not allowed"),
            PlatformCode::ServiceUnavailable => (10, "Service currently unavailable"),
            PlatformCode::InsufficientIsvPermissions => (11, "Insufficient isv permissions"),
            PlatformCode::InsufficientUserPermissions => (12, "Insufficient user permissions"),
            PlatformCode::InsufficientPartnerPermissions => {
                (13, "Insufficient partner permissions")
            }
            PlatformCode::MissingMethod => (21, "Missing method"),
            PlatformCode::InvalidMethod => (22, "Invalid method"),
            PlatformCode::InvalidFormat => (23, "Invalid format"),
            PlatformCode::MissingSignature => (24, "Missing signature"),
            PlatformCode::InvalidSignature => (25, "Invalid signature"),
            PlatformCode::MissingSession => (26, "Missing session"),
            PlatformCode::InvalidSession => (27, "Invalid session"),
            PlatformCode::MissingAppKey => (28, "Missing app key"),
            PlatformCode::InvalidAppKey => (29, "Invalid app Key"),
            PlatformCode::MissingTimestamp => (30, "Missing timestamp"),
            PlatformCode::InvalidTimestamp => (31, "Invalid timestamp"),
            PlatformCode::MissingVersion => (32, "Missing version"),
            PlatformCode::InvalidVersion => (33, "Invalid version"),
            PlatformCode::UnsupportedVersion => (34, "Unsupported version"),
            PlatformCode::MissingRequiredArguments => (40, "Missing required arguments"),
            PlatformCode::InvalidArguments => (41, "Invalid arguments"),
            PlatformCode::ForbiddenRequest => (42, "Forbidden request"),
            PlatformCode::ParameterError => (43, "Parameter error"),
            PlatformCode::InvalidEncoding => (47, "Invalid encoding"),
            PlatformCode::RemoteServiceError => (50, "Remote service error"),
        }
    }
}

/// One TOP `error_response`: what the platform answers for every refusal.
///
/// It is a plain value (not tied to [`PlatformCode`]) because a client SDK must also hold error
/// bodies it received with codes this crate does not list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopError {
    /// Numeric `code` (< 100 for platform errors; 50 for business failures).
    pub code: u32,
    /// Human `msg`, English, as in docs/PROTOCOL.md §5.1.
    pub msg: String,
    /// `isv.*` (caller's fault) or `isp.*` (retryable) detail code, §5.2.
    pub sub_code: Option<String>,
    /// Human detail, usually Chinese.
    pub sub_msg: Option<String>,
}

impl TopError {
    /// A bare platform error: code and msg from the §5.1 table, no `sub_code`.
    pub fn platform(code: PlatformCode) -> Self {
        TopError {
            code: code.code(),
            msg: code.msg().to_owned(),
            sub_code: None,
            sub_msg: None,
        }
    }

    /// Adds (or replaces) the `sub_code`/`sub_msg` pair, which TOP always sends together.
    pub fn with_sub(mut self, sub_code: impl Into<String>, sub_msg: impl Into<String>) -> Self {
        self.sub_code = Some(sub_code.into());
        self.sub_msg = Some(sub_msg.into());
        self
    }

    /// Code 40 for a missing required business parameter, spelled like real TOP bodies
    /// (`Missing required arguments:<name>`, `isv.missing-parameter:<name>`).
    ///
    /// `name` is echoed three times, so it is [`clip`]ped to [`MAX_ECHO_CHARS`] here: the name
    /// may be one the caller chose.
    pub fn missing_argument(name: &str) -> Self {
        let code = PlatformCode::MissingRequiredArguments;
        let name = clip(name, MAX_ECHO_CHARS);
        TopError {
            code: code.code(),
            msg: format!("{}:{name}", code.msg()),
            sub_code: Some(format!("{}:{name}", sub_code::MISSING_PARAMETER)),
            sub_msg: Some(format!("缺少必选参数:{name}")),
        }
    }

    /// Code 41 for a malformed (or repeated) parameter; `detail`, when non-empty, tells the
    /// caller what was wrong in the Chinese `sub_msg`.
    ///
    /// `name` may be one the caller chose (a repeated key is any key), so it is [`clip`]ped to
    /// [`MAX_ECHO_CHARS`] here. `detail` is the server's own explanation; the renderer bounds it
    /// with every other field ([`crate::envelope::render_error`]).
    pub fn invalid_argument(name: &str, detail: &str) -> Self {
        let code = PlatformCode::InvalidArguments;
        let name = clip(name, MAX_ECHO_CHARS);
        let sub_msg = if detail.is_empty() {
            format!("非法参数:{name}")
        } else {
            format!("非法参数:{name} ({detail})")
        };
        TopError {
            code: code.code(),
            msg: format!("{}:{name}", code.msg()),
            sub_code: Some(format!("{}:{name}", sub_code::INVALID_PARAMETER)),
            sub_msg: Some(sub_msg),
        }
    }

    /// Code 50 "Remote service error" with a business `sub_code`: how ticketd reports every
    /// business failure (docs/PROTOCOL.md §5.1, following the verify API's own documentation page).
    pub fn business(sub_code: impl Into<String>, sub_msg: impl Into<String>) -> Self {
        TopError::platform(PlatformCode::RemoteServiceError).with_sub(sub_code, sub_msg)
    }

    /// Whether a client may safely send the same request again later: `isp.*` sub codes
    /// (§5.2), rate limiting (7) and unavailability (10). `isv.*` errors are the caller's
    /// fault and would fail again.
    pub fn is_retryable(&self) -> bool {
        self.code == PlatformCode::AppCallLimited.code()
            || self.code == PlatformCode::ServiceUnavailable.code()
            || self
                .sub_code
                .as_deref()
                .is_some_and(|s| s.starts_with("isp."))
    }
}

impl From<PlatformCode> for TopError {
    fn from(code: PlatformCode) -> Self {
        TopError::platform(code)
    }
}

impl fmt::Display for TopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TOP error {}: {}", self.code, self.msg)?;
        match (&self.sub_code, &self.sub_msg) {
            (Some(code), Some(msg)) => write!(f, " ({code}: {msg})"),
            (Some(code), None) => write!(f, " ({code})"),
            (None, Some(msg)) => write!(f, " ({msg})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for TopError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_sorted_and_unique() {
        let codes: Vec<u32> = PlatformCode::ALL.iter().map(|c| c.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
    }

    #[test]
    fn from_code_round_trips() {
        for &c in PlatformCode::ALL {
            assert_eq!(PlatformCode::from_code(c.code()), Some(c));
        }
        assert_eq!(PlatformCode::from_code(15), None);
    }

    #[test]
    fn clip_keeps_short_text_and_marks_a_cut() {
        assert!(matches!(clip("order_id", 64), Cow::Borrowed("order_id")));
        let exactly = "k".repeat(64);
        assert_eq!(clip(&exactly, 64), exactly.as_str());
        let long = "k".repeat(400_000);
        assert_eq!(clip(&long, 64), format!("{}…", "k".repeat(64)));
        assert_eq!(clip("abc", 0), "…");
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn clip_counts_characters_and_never_splits_one() {
        // 3-byte and 4-byte UTF-8 sequences: a byte cut at 64 would land inside one.
        let chinese = "参数".repeat(100);
        let clipped = clip(&chinese, 64);
        assert_eq!(clipped.chars().count(), 65);
        assert_eq!(clipped, format!("{}…", "参数".repeat(32)));
        let emoji = "🎫".repeat(65);
        assert_eq!(clip(&emoji, 64), format!("{}…", "🎫".repeat(64)));
    }

    #[test]
    fn argument_errors_echo_at_most_64_characters_of_the_name() {
        let name = "K".repeat(400_000);
        for e in [
            TopError::missing_argument(&name),
            TopError::invalid_argument(&name, "参数重复"),
        ] {
            let echoed = format!("{e:?}");
            assert!(!echoed.contains(&"K".repeat(65)), "{echoed}");
            let clipped = format!("{}…", "K".repeat(64));
            assert!(e.msg.ends_with(&format!(":{clipped}")), "{}", e.msg);
            let sub_code = e.sub_code.as_deref().unwrap_or_default();
            assert!(sub_code.ends_with(&format!(":{clipped}")), "{sub_code}");
            assert!(e.sub_msg.as_deref().unwrap_or_default().contains(&clipped));
        }
        // Real names are untouched.
        assert_eq!(
            TopError::invalid_argument("order_id", "")
                .sub_code
                .as_deref(),
            Some("isv.invalid-parameter:order_id")
        );
    }

    #[test]
    fn sub_code_base_is_the_part_before_the_first_colon() {
        assert_eq!(
            sub_code::base("isv.invalid-parameter:order_id"),
            sub_code::INVALID_PARAMETER
        );
        assert_eq!(
            sub_code::base("isv.invalid-parameter:a:b"),
            "isv.invalid-parameter"
        );
        assert_eq!(sub_code::base("isp.service-error"), "isp.service-error");
        assert_eq!(sub_code::base(""), "");
        for base in sub_code::ALL {
            assert!(!base.contains(':'), "{base}");
        }
    }

    #[test]
    fn display_includes_sub() {
        let e = TopError::business("isp.service-error", "系统错误");
        assert_eq!(
            e.to_string(),
            "TOP error 50: Remote service error (isp.service-error: 系统错误)"
        );
        assert_eq!(
            TopError::platform(PlatformCode::InvalidSignature).to_string(),
            "TOP error 25: Invalid signature"
        );
    }
}
