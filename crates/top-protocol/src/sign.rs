//! Request signatures (docs/PROTOCOL.md §3): the canonical string, `md5` / `hmac` / `hmac-sha256`,
//! and constant-time verification that accepts both empty-value conventions (§3.2).

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::params::Params;

/// The parameter that carries the signature; it is never part of the signed string.
const SIGN_KEY: &str = "sign";

/// The three `sign_method` values real SDKs send (§2, §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignMethod {
    /// `md5`: `MD5(secret + S + secret)`, the legacy default (\[PY-OFF\], \[NODE\], \[PHP-NEW\]).
    Md5,
    /// `hmac`: `HMAC-MD5(secret, S)` (\[TBPY\], \[GO-BUB\] option).
    HmacMd5,
    /// `hmac-sha256`: `HMAC-SHA256(secret, S)` (\[GO-NEW\] default).
    HmacSha256,
}

impl SignMethod {
    /// Reads the `sign_method` parameter: exactly `md5`, `hmac` or `hmac-sha256`, lower-case
    /// (§2 "match it exactly"); anything else is `None`, which the server answers with 25.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "md5" => Some(SignMethod::Md5),
            "hmac" => Some(SignMethod::HmacMd5),
            "hmac-sha256" => Some(SignMethod::HmacSha256),
            _ => None,
        }
    }

    /// The wire spelling, for clients that put it in `sign_method`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Md5 => "md5",
            SignMethod::HmacMd5 => "hmac",
            SignMethod::HmacSha256 => "hmac-sha256",
        }
    }

    /// Digest length in bytes (the hex signature is twice as long).
    fn digest_len(self) -> usize {
        match self {
            SignMethod::Md5 | SignMethod::HmacMd5 => 16,
            SignMethod::HmacSha256 => 32,
        }
    }
}

/// How empty-valued parameters enter the canonical string (docs/PROTOCOL.md §3.2).
///
/// Why both exist: \[JAVA\] and the \[DOC\] sample skip pairs whose value (or name) is empty, while
/// \[PY-OFF\], \[NODE\], \[TBPY\] and the Go SDKs append the name followed by nothing. A server must
/// accept either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyValues {
    /// Leave out pairs with an empty value or empty name (\[JAVA\] `areNotEmpty(key, value)`).
    Skip,
    /// Include every pair, an empty value contributing only its name.
    Keep,
}

/// Feeds the canonical string to `f` piece by piece, so verification needs no allocation.
fn feed(params: &Params, empty: EmptyValues, mut f: impl FnMut(&[u8])) {
    for (k, v) in params.iter() {
        if k == SIGN_KEY {
            continue;
        }
        if empty == EmptyValues::Skip && (k.is_empty() || v.is_empty()) {
            continue;
        }
        f(k.as_bytes());
        f(v.as_bytes());
    }
}

/// Appends the canonical string (name1 value1 name2 value2 …, sorted, excluding `sign`) to `out`,
/// reusing its allocation.
///
/// Why exposed: logging the string a request was checked against is the fastest way to debug a
/// vendor's "Invalid signature" (never log the secret or the `sign` itself).
pub fn canonical_string(params: &Params, empty: EmptyValues, out: &mut Vec<u8>) {
    feed(params, empty, |b| out.extend_from_slice(b));
}

/// A digest of at most 32 bytes, kept on the stack.
struct RawDigest {
    buf: [u8; 32],
    len: usize,
}

impl RawDigest {
    fn new(bytes: &[u8]) -> Self {
        let mut buf = [0u8; 32];
        let len = bytes.len().min(32);
        buf[..len].copy_from_slice(&bytes[..len]);
        RawDigest { buf, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// HMAC with a key of any length. `new_from_slice` cannot fail for HMAC (RFC 2104 §2 hashes long
/// keys and pads short ones); only its signature is shared with fixed-key MACs. Call it with
/// `Hmac<_>` types only.
fn keyed_hmac<M: KeyInit>(secret: &[u8]) -> M {
    let Ok(mac) = M::new_from_slice(secret) else {
        unreachable!("HMAC accepts keys of any length (RFC 2104 §2)")
    };
    mac
}

/// Computes the raw digest of §3.1 step 4, streaming the canonical string.
fn digest(method: SignMethod, secret: &[u8], params: &Params, empty: EmptyValues) -> RawDigest {
    match method {
        SignMethod::Md5 => {
            let mut h = Md5::new();
            h.update(secret);
            feed(params, empty, |b| h.update(b));
            h.update(secret);
            RawDigest::new(&h.finalize())
        }
        SignMethod::HmacMd5 => {
            let mut m = keyed_hmac::<Hmac<Md5>>(secret);
            feed(params, empty, |b| m.update(b));
            RawDigest::new(&m.finalize().into_bytes())
        }
        SignMethod::HmacSha256 => {
            let mut m = keyed_hmac::<Hmac<Sha256>>(secret);
            feed(params, empty, |b| m.update(b));
            RawDigest::new(&m.finalize().into_bytes())
        }
    }
}

/// Signs `params` (ignoring any `sign` already in it) and returns the upper-case hex signature
/// every SDK sends (§3.1 step 5).
///
/// Clients should sign with [`EmptyValues::Skip`] and not send empty values at all, like \[JAVA\]:
/// that form verifies on every server.
pub fn sign(method: SignMethod, secret: &[u8], params: &Params, empty: EmptyValues) -> String {
    hex::encode_upper(digest(method, secret, params, empty).as_slice())
}

/// True when `provided` (case-insensitive hex) matches the "skip empty" form, or — only if at
/// least one param (other than `sign`) has an empty value — the "keep empty" form (§3.2).
///
/// Comparison is constant-time (`subtle`), so response timing does not reveal how many leading
/// bytes of a forged signature were right. A wrong length or non-hex text is simply false. The
/// digest is fed straight from `params.iter()`: no canonical string is built.
pub fn verify(method: SignMethod, secret: &[u8], params: &Params, provided: &str) -> bool {
    let len = method.digest_len();
    if provided.len() != 2 * len {
        return false;
    }
    let mut expected = [0u8; 32];
    if hex::decode_to_slice(provided, &mut expected[..len]).is_err() {
        return false;
    }
    let expected = &expected[..len];
    let skip_ok: bool = digest(method, secret, params, EmptyValues::Skip)
        .as_slice()
        .ct_eq(expected)
        .into();
    let has_empty = params
        .iter()
        .any(|(k, v)| k != SIGN_KEY && (k.is_empty() || v.is_empty()));
    if !has_empty {
        return skip_ok;
    }
    let keep_ok: bool = digest(method, secret, params, EmptyValues::Keep)
        .as_slice()
        .ct_eq(expected)
        .into();
    skip_ok | keep_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_exact_and_round_trips() {
        for m in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
            assert_eq!(SignMethod::parse(m.as_str()), Some(m));
        }
        for bad in ["MD5", "Hmac", "sha1", "", " md5", "hmac_sha256"] {
            assert_eq!(SignMethod::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sign_is_excluded_and_empty_names_follow_the_mode() {
        let p: Params = [("a", "1"), ("sign", "XX"), ("", "z"), ("b", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut out = Vec::new();
        canonical_string(&p, EmptyValues::Skip, &mut out);
        assert_eq!(out, b"a1");
        out.clear();
        canonical_string(&p, EmptyValues::Keep, &mut out);
        assert_eq!(out, b"za1b");
    }

    #[test]
    fn wrong_length_or_non_hex_is_false() {
        let p = Params::new();
        let good = sign(SignMethod::Md5, b"s", &p, EmptyValues::Skip);
        assert!(verify(SignMethod::Md5, b"s", &p, &good));
        assert!(!verify(SignMethod::Md5, b"s", &p, &good[..31]));
        assert!(!verify(SignMethod::Md5, b"s", &p, &format!("{good}0")));
        assert!(!verify(
            SignMethod::Md5,
            b"s",
            &p,
            &format!("{}G", &good[..31])
        ));
        assert!(!verify(SignMethod::HmacSha256, b"s", &p, &good));
        assert!(!verify(SignMethod::Md5, b"s", &p, ""));
    }
}
