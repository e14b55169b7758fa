//! Signature verification: `top_protocol::sign::verify` on arbitrary parameters and `sign`
//! text (docs/PROTOCOL.md §3).
//!
//! Input: one byte choosing the sign method, then NUL-separated fields: the secret, the `sign`
//! value offered, then parameter names and values alternately (lossy UTF-8). Checks, besides
//! "never panics":
//! - what `sign` computes (either empty-value convention) always verifies, in either case;
//! - an offered signature verifies only if it is one of those two, ignoring case — nothing else
//!   is ever accepted;
//! - changing one hex digit of a good signature makes it fail.

#![no_main]

use libfuzzer_sys::fuzz_target;
use top_protocol::sign::{sign, verify};
use top_protocol::{EmptyValues, Params, SignMethod};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let method = match which % 3 {
        0 => SignMethod::Md5,
        1 => SignMethod::HmacMd5,
        _ => SignMethod::HmacSha256,
    };
    let mut fields = rest.split(|&b| b == 0);
    let secret = fields.next().unwrap_or_default();
    let offered = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let mut params = Params::new();
    while let Some(name) = fields.next() {
        let value = fields.next().unwrap_or_default();
        params.insert(
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        );
    }
    params.insert("sign", offered.clone());

    let skip = sign(method, secret, &params, EmptyValues::Skip);
    let keep = sign(method, secret, &params, EmptyValues::Keep);
    let has_empty = params
        .iter()
        .any(|(k, v)| k != "sign" && (k.is_empty() || v.is_empty()));

    // Anything accepted is one of the two conventions (the second only with empty values).
    if verify(method, secret, &params, &offered) {
        let upper = offered.to_ascii_uppercase();
        assert!(
            upper == skip || (has_empty && upper == keep),
            "accepted a signature that is neither form: {offered:?}"
        );
    }
    // What a client computes always verifies, whatever the case of its hex.
    assert!(verify(method, secret, &params, &skip));
    assert!(verify(method, secret, &params, &skip.to_ascii_lowercase()));
    if has_empty {
        assert!(verify(method, secret, &params, &keep));
    }
    // One wrong hex digit fails.
    let pos = usize::from(which) % skip.len();
    let mut bad = skip.clone().into_bytes();
    bad[pos] = if bad[pos] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).expect("hex is ASCII");
    if bad != keep.as_str() || !has_empty {
        assert!(
            !verify(method, secret, &params, &bad),
            "a changed digit verified"
        );
    }
});
