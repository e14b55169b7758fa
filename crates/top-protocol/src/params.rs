//! Request parameters: decoding the query and the body, and merging them (docs/PROTOCOL.md §1.2,
//! §1.3).
//!
//! The signature covers the union of query and body parameters, so the server must see both as one
//! map before it checks anything. A key that appears twice could be signed with one value and acted
//! on with another, so it is refused instead of "last wins" (§1.2 rule 4).

use std::collections::BTreeMap;

use crate::error::{PlatformCode, TopError};

/// Most parameter pairs accepted in one request (query and body together).
///
/// Why a cap: the pairs are kept in a map and all hashed for the signature, so an unbounded count
/// is a cheap way to burn server CPU. The largest real request (verify with `voucher_infos`) has
/// about fifteen pairs; 1000 leaves room for any client's extras.
pub const MAX_PARAMS: usize = 1000;

/// The merged request parameters (query ∪ body), keys unique, iterated in ascending byte order of
/// the key.
///
/// Why sorted: the canonical signing string (§3.1) is then just an iteration, with no sort on the
/// hot path. Values are the decoded UTF-8 text exactly as received: signing never re-renders them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// An empty set, for clients that build a request field by field.
    pub fn new() -> Self {
        Params(BTreeMap::new())
    }

    /// The value of `key`, if present (names are case-sensitive, §1.2 rule 5).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether `key` is present, even with an empty value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Sets `key`, returning the previous value: for clients, which own their parameter set.
    /// Servers build `Params` through [`merge`], which refuses repeats instead.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// Removes `key`, returning its value (a client removes a stale `sign` before re-signing).
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The pairs in ascending byte order of the key: the order the signature is computed in.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds a set from pairs, refusing a repeated key (§1.2 rule 4) rather than silently
    /// keeping one of the values.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ParamError> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let k = k.into();
            if map.contains_key(&k) {
                return Err(ParamError::DuplicateKey(k));
            }
            map.insert(k, v.into());
        }
        Ok(Params(map))
    }

    /// The set as an `application/x-www-form-urlencoded` string, for clients: space as `+`, UTF-8
    /// percent-encoding, pairs in key order. [`parse_urlencoded`] reads it back exactly.
    pub fn to_form_urlencoded(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.iter())
            .finish()
    }
}

impl FromIterator<(String, String)> for Params {
    /// Last value wins: for clients and tests that build a set they own. Untrusted input goes
    /// through [`Params::from_pairs`] or [`merge`].
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Params(iter.into_iter().collect())
    }
}

/// Why the request's parameters could not be read; each maps to one `error_response`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The same key twice (inside the query, inside the body, or across both) → 41.
    #[error("parameter `{0}` is repeated")]
    DuplicateKey(String),
    /// A declared charset other than UTF-8, or bytes that do not decode as UTF-8 → 47.
    #[error("invalid encoding: {0}")]
    InvalidEncoding(String),
    /// A body that claims to be multipart but cannot be read as such → 43.
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// A non-empty body that is neither form-urlencoded nor multipart → 43.
    #[error("unsupported content type `{0}`")]
    UnsupportedContentType(String),
    /// More than [`MAX_PARAMS`] pairs → 43.
    #[error("too many parameters ({0})")]
    TooManyParameters(usize),
}

impl ParamError {
    /// The `error_response` for this failure. One exhaustive `match`, so a new variant must be
    /// mapped before it builds: no new way to fail can reach a caller without a decided answer.
    pub fn to_top_error(&self) -> TopError {
        match self {
            ParamError::DuplicateKey(key) => TopError::invalid_argument(key, "参数重复"),
            ParamError::InvalidEncoding(_) => TopError::platform(PlatformCode::InvalidEncoding),
            ParamError::MalformedBody(_)
            | ParamError::UnsupportedContentType(_)
            | ParamError::TooManyParameters(_) => TopError::platform(PlatformCode::ParameterError),
        }
    }
}

impl From<ParamError> for TopError {
    fn from(e: ParamError) -> Self {
        e.to_top_error()
    }
}

/// Parses application/x-www-form-urlencoded bytes ('+' = space, %XX), strictly UTF-8 after
/// decoding.
///
/// Why not `form_urlencoded::parse`: it replaces invalid UTF-8 with U+FFFD, and a value the server
/// changed would then be signed differently from what the client sent; TOP answers 47 instead
/// (§1.2 rule 3). Empty segments (`a=1&&b=2`) are skipped; a segment without `=` is a key with
/// an empty value; a `%` not followed by two hex digits is kept literally (WHATWG behaviour).
/// The query string is decoded with the same rules (§1.2 rule 2).
pub fn parse_urlencoded(input: &[u8]) -> Result<Vec<(String, String)>, ParamError> {
    let mut pairs = Vec::new();
    for segment in input.split(|&b| b == b'&') {
        if segment.is_empty() {
            continue;
        }
        if pairs.len() == MAX_PARAMS {
            let total = input
                .split(|&b| b == b'&')
                .filter(|s| !s.is_empty())
                .count();
            return Err(ParamError::TooManyParameters(total));
        }
        let (raw_key, raw_value) = match segment.iter().position(|&b| b == b'=') {
            Some(i) => (&segment[..i], &segment[i + 1..]),
            None => (segment, &segment[segment.len()..]),
        };
        let key = percent_decode_utf8(raw_key)?;
        let value = percent_decode_utf8(raw_value)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Decodes one form component: `+` → space, `%XX` → byte, then strict UTF-8.
fn percent_decode_utf8(raw: &[u8]) -> Result<String, ParamError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).and_then(|&b| hex_value(b)),
                raw.get(i + 2).and_then(|&b| hex_value(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|e| ParamError::InvalidEncoding(format!("form value is not UTF-8: {e}")))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses a request body by its Content-Type.
///
/// * Empty body → no pairs, whatever the content type (\[NODE\] GET sends none).
/// * `application/x-www-form-urlencoded`, or no content type at all → [`parse_urlencoded`].
/// * `multipart/form-data` (boundary from the header) → text parts become params; parts whose
///   Content-Disposition is `file` (non-standard, \[PY-OFF\]) or that carry a `filename` are files:
///   not params and not signed (§1.3), dropped.
/// * A `charset=` other than UTF-8 (case-insensitive, quotes allowed) → `InvalidEncoding` (47).
/// * Any other content type with a non-empty body → `UnsupportedContentType`: guessing would
///   mean signing bytes the client never meant as parameters.
pub fn parse_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<(String, String)>, ParamError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let Some(ct) = content_type.filter(|c| !c.trim().is_empty()) else {
        return parse_urlencoded(body);
    };
    let (mime, ct_params) = split_header_value(ct);
    check_charset(&ct_params)?;
    match mime.as_str() {
        "application/x-www-form-urlencoded" => parse_urlencoded(body),
        "multipart/form-data" => {
            // RFC 2046 §5.1.1: 1 to 70 characters. The cap also bounds the delimiter search.
            let boundary = ct_params
                .iter()
                .find(|(k, _)| k == "boundary")
                .map(|(_, v)| v.as_str())
                .filter(|b| !b.is_empty() && b.len() <= 70)
                .ok_or_else(|| {
                    ParamError::MalformedBody("multipart without a usable boundary".to_owned())
                })?;
            parse_multipart(body, boundary.as_bytes())
        }
        _ => Err(ParamError::UnsupportedContentType(mime)),
    }
}

/// Merges query and body pairs; a key repeated anywhere (inside one part or across both) is
/// refused (docs/PROTOCOL.md §1.2 rule 4).
pub fn merge(
    query: Vec<(String, String)>,
    body: Vec<(String, String)>,
) -> Result<Params, ParamError> {
    let total = query.len() + body.len();
    if total > MAX_PARAMS {
        return Err(ParamError::TooManyParameters(total));
    }
    Params::from_pairs(query.into_iter().chain(body))
}

/// Refuses a declared charset other than UTF-8 (§1.2 rule 3). `utf8` is accepted as a common
/// misspelling.
fn check_charset(params: &[(String, String)]) -> Result<(), ParamError> {
    for (k, v) in params {
        if k == "charset" && !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("utf8") {
            return Err(ParamError::InvalidEncoding(format!(
                "charset `{v}` is not supported, send UTF-8"
            )));
        }
    }
    Ok(())
}

/// Splits `type/subtype; k=v; k2="v2"` (or `form-data; name="x"`) into the lower-cased first
/// token and its parameters (names lower-cased, values unquoted, `\` escapes resolved).
fn split_header_value(value: &str) -> (String, Vec<(String, String)>) {
    let (head, mut rest) = match value.find(';') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, ""),
    };
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let name_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let name = rest[..name_end].trim().to_ascii_lowercase();
        rest = &rest[name_end..];
        let value = if let Some(after_eq) = rest.strip_prefix('=') {
            let after_eq = after_eq.trim_start_matches([' ', '\t']);
            if let Some(quoted) = after_eq.strip_prefix('"') {
                let mut v = String::new();
                let mut chars = quoted.char_indices();
                let mut consumed = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                v.push(escaped);
                            }
                        }
                        '"' => {
                            consumed = i + 1;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                rest = &quoted[consumed..];
                v
            } else {
                let end = after_eq.find(';').unwrap_or(after_eq.len());
                rest = &after_eq[end..];
                after_eq[..end].trim().to_owned()
            }
        } else {
            String::new()
        };
        if !name.is_empty() {
            params.push((name, value));
        }
    }
    (head.trim().to_ascii_lowercase(), params)
}

/// Where a multipart delimiter was found.
struct Delimiter {
    /// End of the previous part's content (before the line break that belongs to the delimiter).
    content_end: usize,
    /// First byte after the delimiter line.
    next: usize,
    /// Whether this was the closing `--boundary--`.
    last: bool,
}

/// Finds the next delimiter line `--boundary` at or after `from`. It must start the body or
/// follow a line break (CRLF, or a bare LF as Go's reader also tolerates), and be followed by
/// `--` or by optional transport padding and a line break; anything else is content.
fn find_delimiter(body: &[u8], from: usize, dash_boundary: &[u8]) -> Option<Delimiter> {
    let mut search = from;
    while search + dash_boundary.len() <= body.len() {
        let rel = body[search..]
            .windows(dash_boundary.len())
            .position(|w| w == dash_boundary)?;
        let at = search + rel;
        search = at + 1;
        // The line break before `--boundary` belongs to the delimiter, but only if it lies inside
        // the searched range. A delimiter right at `from` (the body start, or a part with no
        // content and no line break, which Go's reader also accepts) ends an empty part.
        let content_end = if at == from {
            from
        } else if body[at - 1] == b'\n' {
            if at >= from + 2 && body[at - 2] == b'\r' {
                at - 2
            } else {
                at - 1
            }
        } else {
            continue;
        };
        let after = at + dash_boundary.len();
        if body[after..].starts_with(b"--") {
            return Some(Delimiter {
                content_end,
                next: body.len(),
                last: true,
            });
        }
        let mut i = after;
        while i < body.len() && (body[i] == b' ' || body[i] == b'\t') {
            i += 1;
        }
        if body[i..].starts_with(b"\r\n") {
            return Some(Delimiter {
                content_end,
                next: i + 2,
                last: false,
            });
        }
        if body[i..].starts_with(b"\n") {
            return Some(Delimiter {
                content_end,
                next: i + 1,
                last: false,
            });
        }
    }
    None
}

/// Parses a `multipart/form-data` body (RFC 7578) into its text parameters.
fn parse_multipart(body: &[u8], boundary: &[u8]) -> Result<Vec<(String, String)>, ParamError> {
    let malformed = |why: &str| ParamError::MalformedBody(format!("multipart: {why}"));
    let mut dash_boundary = Vec::with_capacity(boundary.len() + 2);
    dash_boundary.extend_from_slice(b"--");
    dash_boundary.extend_from_slice(boundary);

    let first = find_delimiter(body, 0, &dash_boundary)
        .ok_or_else(|| malformed("no boundary delimiter"))?;
    if first.last {
        return Ok(Vec::new());
    }
    let mut pos = first.next;
    let mut pairs = Vec::new();
    loop {
        let (headers, content_start) = split_part_headers(body, pos)
            .ok_or_else(|| malformed("part headers are not terminated"))?;
        let delim = find_delimiter(body, content_start, &dash_boundary)
            .ok_or_else(|| malformed("missing closing boundary"))?;
        let content = &body[content_start..delim.content_end];
        if let Some(pair) = read_part(headers, content)? {
            if pairs.len() == MAX_PARAMS {
                return Err(ParamError::TooManyParameters(MAX_PARAMS + 1));
            }
            pairs.push(pair);
        }
        if delim.last {
            return Ok(pairs);
        }
        pos = delim.next;
    }
}

/// Splits a part into its header block and the offset where its content starts.
///
/// One pass that stops at the first blank line (CRLF or bare LF), so a body of many parts stays
/// linear to parse.
fn split_part_headers(body: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let rest = &body[start..];
    if rest.starts_with(b"\r\n") {
        return Some((&rest[..0], start + 2));
    }
    if rest.starts_with(b"\n") {
        return Some((&rest[..0], start + 1));
    }
    let mut from = 0;
    while let Some(rel) = rest[from..].iter().position(|&b| b == b'\n') {
        let nl = from + rel;
        let after = &rest[nl + 1..];
        let blank_len = if after.starts_with(b"\r\n") {
            2
        } else if after.starts_with(b"\n") {
            1
        } else {
            from = nl + 1;
            continue;
        };
        let end = if nl > 0 && rest[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        return Some((&rest[..end], start + nl + 1 + blank_len));
    }
    None
}

/// Reads one part: `Ok(None)` for a file part (dropped, never signed), `Ok(Some(pair))` for a
/// text parameter.
fn read_part(headers: &[u8], content: &[u8]) -> Result<Option<(String, String)>, ParamError> {
    let headers = std::str::from_utf8(headers)
        .map_err(|_| ParamError::InvalidEncoding("multipart headers are not UTF-8".to_owned()))?;
    let mut disposition = None;
    let mut content_type = None;
    for line in headers.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value.trim());
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim());
        }
    }
    let disposition = disposition.ok_or_else(|| {
        ParamError::MalformedBody("multipart part without Content-Disposition".to_owned())
    })?;
    let (kind, d_params) = split_header_value(disposition);
    let has_filename = d_params
        .iter()
        .any(|(k, _)| k == "filename" || k == "filename*");
    match kind.as_str() {
        // [PY-OFF] marks file parts with the non-standard `file` disposition (§1.3).
        "file" => return Ok(None),
        "form-data" if has_filename => return Ok(None),
        "form-data" => {}
        other => {
            return Err(ParamError::MalformedBody(format!(
                "multipart part with Content-Disposition `{other}`"
            )))
        }
    }
    let name = d_params
        .into_iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v)
        .ok_or_else(|| ParamError::MalformedBody("multipart part without a name".to_owned()))?;
    if let Some(ct) = content_type {
        let (_, ct_params) = split_header_value(ct);
        check_charset(&ct_params)?;
    }
    let value = String::from_utf8(content.to_vec()).map_err(|_| {
        ParamError::InvalidEncoding(format!("multipart part `{name}` is not UTF-8"))
    })?;
    Ok(Some((name, value)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn header_value_parameters_are_unquoted() {
        let (kind, params) =
            split_header_value(r#"form-data; name="a\"b"; filename="x;y.txt"; flag"#);
        assert_eq!(kind, "form-data");
        assert_eq!(
            params,
            vec![
                ("name".to_owned(), "a\"b".to_owned()),
                ("filename".to_owned(), "x;y.txt".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        let (mime, params) = split_header_value("Multipart/Form-Data;boundary=\"abc def\"");
        assert_eq!(mime, "multipart/form-data");
        assert_eq!(params, vec![("boundary".to_owned(), "abc def".to_owned())]);
    }

    #[test]
    fn percent_without_hex_digits_is_literal() {
        assert_eq!(
            parse_urlencoded(b"a=100%&b=%zz&c=%4").unwrap(),
            vec![
                ("a".to_owned(), "100%".to_owned()),
                ("b".to_owned(), "%zz".to_owned()),
                ("c".to_owned(), "%4".to_owned()),
            ]
        );
    }

    #[test]
    fn empty_segments_are_skipped_and_bare_keys_are_empty_values() {
        assert_eq!(
            parse_urlencoded(b"&a&&b=&").unwrap(),
            vec![
                ("a".to_owned(), String::new()),
                ("b".to_owned(), String::new())
            ]
        );
    }

    #[test]
    fn boundary_prefix_inside_content_is_not_a_delimiter() {
        let body =
            b"--xx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--xxy\r\n--xx--\r\n";
        assert_eq!(
            parse_multipart(body, b"xx").unwrap(),
            vec![("a".to_owned(), "1\r\n--xxy".to_owned())]
        );
    }

    #[test]
    fn empty_part_content_and_lf_only_line_breaks() {
        let body = b"preamble\n--b\nContent-Disposition: form-data; name=\"a\"\n\n\n--b\nContent-Disposition: form-data; name=\"c\"\n\nd\n--b--";
        assert_eq!(
            parse_multipart(body, b"b").unwrap(),
            vec![
                ("a".to_owned(), String::new()),
                ("c".to_owned(), "d".to_owned())
            ]
        );
    }

    #[test]
    fn a_huge_repeated_key_is_named_clipped_in_the_refusal() {
        let key = "K".repeat(400_000);
        let body = format!("{key}=1&{key}=2");
        let pairs = parse_urlencoded(body.as_bytes()).unwrap();
        let refusal = merge(Vec::new(), pairs).unwrap_err().to_top_error();
        let clipped = format!("{}…", "K".repeat(crate::error::MAX_ECHO_CHARS));
        assert_eq!(
            refusal.sub_code,
            Some(format!("isv.invalid-parameter:{clipped}"))
        );
        assert_eq!(
            refusal.sub_msg,
            Some(format!("非法参数:{clipped} (参数重复)"))
        );
    }

    #[test]
    fn too_many_pairs_are_refused() {
        let body: Vec<u8> = (0..=MAX_PARAMS)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes();
        assert_eq!(
            parse_urlencoded(&body),
            Err(ParamError::TooManyParameters(MAX_PARAMS + 1))
        );
        let ok: Vec<u8> = (0..MAX_PARAMS)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes();
        assert_eq!(parse_urlencoded(&ok).unwrap().len(), MAX_PARAMS);
    }
}
