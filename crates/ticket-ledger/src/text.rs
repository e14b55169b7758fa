//! Cutting untrusted text to what the ledger keeps.
//!
//! Whatever a caller sends may end up in the audit trail, an anomaly or the record of rejected
//! calls, all of which are kept and shown back. Every such text goes through one of these
//! functions, so the bounds are stated once.

/// The longest text value an audit entry or an anomaly keeps, in characters.
pub const MAX_KEPT_TEXT: usize = 256;

/// `text` cut to at most `max` characters.
pub fn clip_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

/// The longest prefix of `text` of at most `max` bytes, cut at a character boundary.
///
/// Bytes, not characters: the bound is on what is stored, and a character may take 4 bytes.
pub fn clip_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_never_splits_a_character() {
        assert_eq!(clip_bytes("核销码", 7), "核销");
        assert_eq!(clip_bytes("核销码", 6), "核销");
        assert_eq!(clip_bytes("ab", 5), "ab");
        assert_eq!(clip_bytes("", 0), "");
        assert_eq!(clip_chars("核销码", 2), "核销");
        assert_eq!(clip_chars("ab", 5), "ab");
        assert_eq!(clip_chars("", 0), "");
    }
}
