//! Response bodies: success and `error_response`, in XML, JSON and simplified JSON
//! (docs/PROTOCOL.md §4.2, §5.3).
//!
//! The layout is byte-exact on purpose: \[GO-NEW\] slices `body[18..len-1]` of an error and reads
//! `body[0..20]` of every body, so a space, a newline, a BOM or a short body breaks it. Bodies are
//! written by hand (no serializer) so that nothing can add any of those.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{clip, TopError};
use crate::params::Params;

/// The exact XML prolog TOP sends (note the space before `?>`).
const XML_PROLOG: &str = r#"<?xml version="1.0" encoding="utf-8" ?>"#;

/// The most bytes an `error_response` body has, in any format, whatever the [`TopError`] holds.
///
/// Why a bound: refusals are answered to anyone, before authentication, and often name what the
/// caller sent; an answer that grows with the request makes the server amplify an attack. Real
/// refusals are under 400 bytes.
pub const MAX_ERROR_BODY_BYTES: usize = 4096;

/// Characters of `msg` that [`render_error`] keeps; longer text is cut with [`clip`], which adds
/// one mark character. Every message ticketd writes fits well within these limits.
pub const ERROR_MSG_CHARS: usize = 128;
/// Characters of `sub_code` that [`render_error`] keeps (see [`ERROR_MSG_CHARS`]).
pub const ERROR_SUB_CODE_CHARS: usize = 128;
/// Characters of `sub_msg` that [`render_error`] keeps (see [`ERROR_MSG_CHARS`]).
pub const ERROR_SUB_MSG_CHARS: usize = 256;
/// Characters of `request_id` that [`render_error`] keeps (see [`ERROR_MSG_CHARS`]).
pub const ERROR_REQUEST_ID_CHARS: usize = 64;

/// The most bytes one character takes once escaped: `\u001f` in JSON, `&quot;` in XML.
const MAX_ESCAPED_CHAR_BYTES: usize = 6;

/// Everything in an error body besides the field texts, for the longer form (XML; JSON's frame is
/// 90 bytes), with the code at its widest (`u32::MAX`, 10 digits).
const XML_ERROR_FRAME_BYTES: usize = XML_PROLOG.len()
    + "<error_response></error_response>".len()
    + "<code></code>".len()
    + 10
    + "<msg></msg>".len()
    + "<sub_code></sub_code>".len()
    + "<sub_msg></sub_msg>".len()
    + "<request_id></request_id>".len();

// The bound holds by construction: each field is at most its limit plus the clip mark, and no
// character escapes to more than MAX_ESCAPED_CHAR_BYTES.
const _: () = assert!(
    XML_ERROR_FRAME_BYTES
        + (ERROR_MSG_CHARS
            + ERROR_SUB_CODE_CHARS
            + ERROR_SUB_MSG_CHARS
            + ERROR_REQUEST_ID_CHARS
            + 4)
            * MAX_ESCAPED_CHAR_BYTES
        <= MAX_ERROR_BODY_BYTES
);

/// The response shape a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `format=xml`, or no `format` at all (the \[DOC\] default).
    Xml,
    /// `format=json`: the object wrapped in `<method>_response`.
    Json,
    /// `format=json&simplify=true`: the flat object (\[GO-NEW\], \[GO-BUB\]).
    SimplifiedJson,
}

/// The `format` parameter held a value other than `json` or `xml` (code 23, rendered as XML).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownFormat;

impl std::fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("format must be `json` or `xml`")
    }
}

impl std::error::Error for UnknownFormat {}

impl Format {
    /// From the `format` and `simplify` params: absent (or empty) format → Xml; "json" → Json, or
    /// SimplifiedJson when simplify is "true" (ASCII case-insensitive; anything else incl. "1" is
    /// false — docs/PROTOCOL.md §4.2, which is what keeps \[PHP-NEW\] working); "xml" → Xml
    /// (simplify ignored); other → [`UnknownFormat`].
    pub fn from_params(params: &Params) -> Result<Format, UnknownFormat> {
        match params.get("format") {
            None | Some("") | Some("xml") => Ok(Format::Xml),
            Some("json") => {
                if params
                    .get("simplify")
                    .is_some_and(|s| s.eq_ignore_ascii_case("true"))
                {
                    Ok(Format::SimplifiedJson)
                } else {
                    Ok(Format::Json)
                }
            }
            Some(_) => Err(UnknownFormat),
        }
    }

    /// The Content-Type header (§5.3 decision: what the TOP gateway is reported to send; no SDK
    /// reads it).
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "text/xml;charset=UTF-8",
            Format::Json | Format::SimplifiedJson => "text/javascript;charset=UTF-8",
        }
    }
}

/// A response field value; borrowed so rendering a response allocates only the body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// A JSON boolean (`is_success`): \[GO-*\] unmarshal into `bool`, so never a string.
    Bool(bool),
    /// A JSON number.
    Int(i64),
    /// A string, escaped for the format.
    Str(&'a str),
}

/// Root element/key for a method's response: strip a leading "taobao." only, dots → '_', append
/// "_response" (\[NODE\] `getApiResponseName`).
///
/// "taobao.travel.ticket.order.verify" → "travel_ticket_order_verify_response";
/// "alitrip.travel.ticket.order.create" → "alitrip_travel_ticket_order_create_response".
pub fn response_root(method: &str) -> String {
    let stem = method.strip_prefix("taobao.").unwrap_or(method);
    let mut root = stem.replace('.', "_");
    root.push_str("_response");
    root
}

/// Success body, byte-exact per docs/PROTOCOL.md §4.2/§5.3: compact JSON, fields in the given order
/// then `request_id` last (inside the method object), XML with the exact prolog and no whitespace;
/// strings JSON-/XML-escaped, non-ASCII raw UTF-8; no BOM, no trailing newline.
///
/// Field names are written as given: pass plain snake_case names (they are also XML element
/// names). With `request_id` of at least 3 bytes every body is ≥ 20 bytes, as \[GO-NEW\] needs;
/// [`new_request_id`] gives 13.
pub fn render_success(
    format: Format,
    method: &str,
    fields: &[(&str, Field<'_>)],
    request_id: &str,
) -> Vec<u8> {
    let root = response_root(method);
    let mut out = String::with_capacity(64 + root.len() * 2 + request_id.len());
    match format {
        Format::Json => {
            out.push_str("{\"");
            json_escape_into(&mut out, &root);
            out.push_str("\":");
            json_object(&mut out, fields, request_id);
            out.push('}');
        }
        Format::SimplifiedJson => json_object(&mut out, fields, request_id),
        Format::Xml => {
            out.push_str(XML_PROLOG);
            xml_element_open(&mut out, &root);
            for (name, value) in fields {
                xml_field(&mut out, name, *value);
            }
            xml_field(&mut out, "request_id", Field::Str(request_id));
            xml_element_close(&mut out, &root);
        }
    }
    out.into_bytes()
}

/// Error body: `{"error_response":{"code":N,"msg":"…","sub_code":"…","sub_msg":"…","request_id":"…"}}`
/// (sub_* omitted when None), the same in simplified mode (every SDK looks for `error_response`);
/// XML `<?xml version="1.0" encoding="utf-8" ?><error_response><code>N</code><msg>…</msg>…<request_id>…</request_id></error_response>`.
///
/// The body is at most [`MAX_ERROR_BODY_BYTES`], whatever `err` holds: each field is [`clip`]ped
/// to a fixed number of characters (`msg` and `sub_code` 128, `sub_msg` 256, `request_id` 64), so
/// a `TopError` built anywhere, however carelessly, cannot make a large answer.
pub fn render_error(format: Format, err: &TopError, request_id: &str) -> Vec<u8> {
    let msg = clip(&err.msg, ERROR_MSG_CHARS);
    let sub_code = err
        .sub_code
        .as_deref()
        .map(|s| clip(s, ERROR_SUB_CODE_CHARS));
    let sub_msg = err.sub_msg.as_deref().map(|s| clip(s, ERROR_SUB_MSG_CHARS));
    let request_id = clip(request_id, ERROR_REQUEST_ID_CHARS);
    let mut fields: Vec<(&str, Field<'_>)> = Vec::with_capacity(4);
    fields.push(("code", Field::Int(i64::from(err.code))));
    fields.push(("msg", Field::Str(&msg)));
    if let Some(sub_code) = &sub_code {
        fields.push(("sub_code", Field::Str(sub_code)));
    }
    if let Some(sub_msg) = &sub_msg {
        fields.push(("sub_msg", Field::Str(sub_msg)));
    }
    let fields = fields.as_slice();
    let request_id: &str = &request_id;
    let mut out = String::with_capacity(96 + msg.len() + request_id.len());
    match format {
        Format::Json | Format::SimplifiedJson => {
            out.push_str("{\"error_response\":");
            json_object(&mut out, fields, request_id);
            out.push('}');
        }
        Format::Xml => {
            out.push_str(XML_PROLOG);
            out.push_str("<error_response>");
            for (name, value) in fields {
                xml_field(&mut out, name, *value);
            }
            xml_field(&mut out, "request_id", Field::Str(request_id));
            out.push_str("</error_response>");
        }
    }
    debug_assert!(out.len() <= MAX_ERROR_BODY_BYTES, "{} bytes", out.len());
    out.into_bytes()
}

/// Per-process seed: mixed from the clock and the pid at first use, so ids differ across
/// restarts and across processes started in the same nanosecond.
static SEED: OnceLock<u64> = OnceLock::new();
/// Number of ids handed out. Relaxed ordering suffices: only uniqueness of the fetched value
/// matters, not its ordering against other memory.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// New request id: 13 lower-case base36 chars, like real TOP ids (`109wcmcgllsj1`).
///
/// Unique per process by construction: the id is `splitmix64(seed + counter)`, and splitmix64's
/// finaliser is a bijection on `u64`, so distinct counters give distinct ids (for 2^64 calls).
/// It is an opaque log key, not a secret, so no CSPRNG is needed.
pub fn new_request_id() -> String {
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        splitmix64(nanos ^ (u64::from(std::process::id()) << 32))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    base36_13(splitmix64(seed.wrapping_add(n)))
}

/// The splitmix64 output function (Steele, Lea, Flood 2014): every step is invertible.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `u64::MAX` has 13 base36 digits, so zero-padding to 13 keeps the mapping injective.
fn base36_13(mut v: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [b'0'; 13];
    for slot in buf.iter_mut().rev() {
        *slot = DIGITS[(v % 36) as usize];
        v /= 36;
    }
    buf.iter().map(|&b| char::from(b)).collect()
}

/// `{"k":v,…,"request_id":"…"}`.
fn json_object(out: &mut String, fields: &[(&str, Field<'_>)], request_id: &str) {
    out.push('{');
    for (name, value) in fields {
        json_member(out, name, *value);
        out.push(',');
    }
    json_member(out, "request_id", Field::Str(request_id));
    out.push('}');
}

fn json_member(out: &mut String, name: &str, value: Field<'_>) {
    out.push('"');
    json_escape_into(out, name);
    out.push_str("\":");
    match value {
        Field::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Field::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Field::Str(s) => {
            out.push('"');
            json_escape_into(out, s);
            out.push('"');
        }
    }
}

/// RFC 8259 string escaping: `"`, `\` and C0 controls; everything else, non-ASCII included, raw.
fn json_escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{08}' => "\\b",
            '\u{0C}' => "\\f",
            c if c < '\u{20}' => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(esc);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
}

fn xml_element_open(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
}

fn xml_element_close(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn xml_field(out: &mut String, name: &str, value: Field<'_>) {
    xml_element_open(out, name);
    match value {
        Field::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Field::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Field::Str(s) => xml_escape_into(out, s),
    }
    xml_element_close(out, name);
}

/// XML 1.0 text escaping: the five predefined entities; tab, LF and CR as character references
/// (keeps the body on one line and survives end-of-line normalisation); characters XML 1.0
/// forbids even as references (other C0 controls, U+FFFE, U+FFFF) become U+FFFD, as Go's
/// `xml.EscapeText` does, so the document stays well-formed.
fn xml_escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&apos;",
            '\t' => "&#x9;",
            '\n' => "&#xA;",
            '\r' => "&#xD;",
            c if c < '\u{20}' || c == '\u{FFFE}' || c == '\u{FFFF}' => "\u{FFFD}",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(esc);
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_is_zero_padded_to_13() {
        assert_eq!(base36_13(0), "0000000000000");
        assert_eq!(base36_13(35), "000000000000z");
        assert_eq!(base36_13(u64::MAX), "3w5e11264sgsf");
    }

    #[test]
    fn splitmix_differs_for_neighbours() {
        assert_ne!(splitmix64(0), splitmix64(1));
    }

    /// The costliest text to escape in each format: 6 bytes per character.
    fn worst_case_text(chars: usize) -> String {
        ["\"", "\u{1}", "'", "🎫"].concat().repeat(chars / 4 + 1)
    }

    #[test]
    fn error_bodies_never_exceed_4_kib() {
        let huge = worst_case_text(400_000);
        let err = TopError {
            code: u32::MAX,
            msg: huge.clone(),
            sub_code: Some(huge.clone()),
            sub_msg: Some(huge.clone()),
        };
        for format in [Format::Xml, Format::Json, Format::SimplifiedJson] {
            let body = render_error(format, &err, &huge);
            assert!(
                body.len() <= MAX_ERROR_BODY_BYTES,
                "{format:?}: {} bytes",
                body.len()
            );
            let text = String::from_utf8(body).unwrap_or_default();
            match format {
                Format::Xml => {
                    assert!(text.starts_with(XML_PROLOG), "{text}");
                    assert!(text.ends_with("</request_id></error_response>"), "{text}");
                }
                Format::Json | Format::SimplifiedJson => {
                    let v: serde_json::Value =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                    let sub_msg = v["error_response"]["sub_msg"].as_str().unwrap_or_default();
                    assert_eq!(
                        sub_msg.chars().count(),
                        ERROR_SUB_MSG_CHARS + 1,
                        "{sub_msg}"
                    );
                    assert!(sub_msg.ends_with('…'), "{sub_msg}");
                }
            }
        }
    }

    #[test]
    fn error_fields_that_fit_are_rendered_whole() {
        let err = TopError::invalid_argument("voucher_infos", &"说明".repeat(100));
        let body = render_error(Format::Json, &err, "utk0hpy90yyq0");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(
            v["error_response"]["sub_msg"].as_str(),
            err.sub_msg.as_deref()
        );
    }

    /// Arbitrary text of up to `max` characters, any code point.
    fn any_text(max: usize) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(any::<char>(), 0..max).prop_map(|v| v.into_iter().collect())
    }

    proptest::proptest! {
        #[test]
        fn any_error_renders_within_4_kib(
            msg in any_text(1000),
            sub in any_text(1000),
            request_id in any_text(300),
            code in proptest::prelude::any::<u32>(),
        ) {
            let err = TopError {
                code,
                msg,
                sub_code: Some(sub.clone()),
                sub_msg: Some(sub),
            };
            for format in [Format::Xml, Format::Json, Format::SimplifiedJson] {
                let len = render_error(format, &err, &request_id).len();
                proptest::prop_assert!(len <= MAX_ERROR_BODY_BYTES, "{} bytes", len);
            }
        }
    }

    #[test]
    fn xml_escapes_controls_and_entities() {
        let mut out = String::new();
        xml_escape_into(&mut out, "a&b<c>\"d'\t\n\r\u{1}\u{FFFF}é");
        assert_eq!(
            out,
            "a&amp;b&lt;c&gt;&quot;d&apos;&#x9;&#xA;&#xD;\u{FFFD}\u{FFFD}é"
        );
    }
}
