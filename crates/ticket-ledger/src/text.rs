//! Cutting untrusted text to what the ledger keeps, and writing JSON values as the text it
//! stores.
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

/// `value` as compact JSON text: the one way an audit detail, an event's data or an anomaly's
/// detail becomes the text stored (and SQLite's view rebuilds an entry's event from the
/// detail's bytes, so there must be one).
///
/// `serde_json::to_string` writes into one buffer; a `Value`'s `Display` writes the same bytes
/// but hands them to `fmt::Write` a fragment at a time, twice the instructions for the audit
/// entries' details (321 against 156 million for 21,000 entries; docs/PERFORMANCE.md, "Tenth
/// session"). Strings, numbers and `Value`s cannot fail to serialize; were one to, `null`
/// stands for it rather than a partial text. The stores rely on that: SQLite no longer checks
/// that an audit detail is JSON as it is written (its migration 0019 took the `json_valid`
/// check off, a twentieth of the writer's instructions per verify).
pub fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
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
