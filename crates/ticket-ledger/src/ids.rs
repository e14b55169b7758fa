//! Identifier newtypes. Each is built only through `parse`, so a value that exists is valid.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The platform's (Fliggy's) order id: a signed 64-bit number, positive on the wire.
///
/// Real ids exceed 2^31 and can exceed 2^53, so the wire's decimal text is parsed straight to
/// `i64` and never passes through a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(i64);

impl OrderId {
    /// Accepts a positive id; zero and negatives name no order.
    pub fn new(id: i64) -> Option<Self> {
        (id > 0).then_some(Self(id))
    }

    /// Parses the decimal text TOP sends (`"2983749123412345"`), digits only.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<i64>().ok().and_then(Self::new)
    }

    /// The raw number, for storage and the wire.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Checks the characters allowed in keys and codes: visible ASCII, no spaces. Codes are typed
/// at gates and printed on tickets, so anything else is almost certainly a transport mistake.
fn visible_ascii(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The longest value accepted.
            pub const MAX_LEN: usize = $max;

            /// Accepts 1..=`MAX_LEN` visible ASCII characters.
            pub fn parse(s: &str) -> Option<Self> {
                visible_ascii(s, $max).then(|| Self(s.to_owned()))
            }

            /// The value as received.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

text_id!(
    /// A vendor application's key (`app_key`): who is calling, and whose orders they may see.
    AppKey,
    64
);
text_id!(
    /// The vendor's own order id (`out_order_id`), unique per app.
    OutOrderId,
    128
);
text_id!(
    /// A confirm code (核销码): what the buyer shows at the gate.
    ///
    /// Whole codes are bearer credentials, so `Debug` and `Display` show only the mask of
    /// [`mask_code`] (at most the last four characters, never more than half of the code); use
    /// [`ConfirmCode::as_str`] where the whole value is really needed.
    ConfirmCode,
    128
);

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppKey({})", self.0)
    }
}

impl fmt::Display for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OutOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutOrderId({})", self.0)
    }
}

impl fmt::Display for OutOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ConfirmCode {
    /// The code masked by [`mask_code`] (`****C3D4`), for logs and messages that may be shown
    /// to people other than the buyer.
    pub fn masked(&self) -> String {
        mask_code(&self.0)
    }
}

/// The most characters a mask shows: the last four at most.
pub const MASK_SHOWN_MAX: usize = 4;

/// Masks any text the way confirm codes are shown: `****` and then the last characters, at
/// most [`MASK_SHOWN_MAX`] of them and never more than half of the code (`A1B2C3D4` →
/// `****C3D4`, `AB-12` → `****12`, `ABC` → `****C`).
///
/// Why half: the tail is there so people can tell codes apart, but on a short code four
/// characters would be most or all of it — a 5-character code with 4 shown leaves one to
/// guess. The prefix is always four stars, so the mask does not tell the code's length either.
/// Counts characters, so it also serves unparsed codes from hostile requests (audit summaries)
/// without splitting a multi-byte character. Empty text stays empty: there is nothing to hide.
pub fn mask_code(text: &str) -> String {
    let n = text.chars().count();
    if n == 0 {
        return String::new();
    }
    let shown = (n / 2).min(MASK_SHOWN_MAX);
    let tail: String = text.chars().skip(n - shown).collect();
    format!("****{tail}")
}

/// Masks a code as it arrived in a JSON request (`voucher_infos`' `confirm_code` or
/// `assist_code`), whatever its JSON type: a number (`12345678`, which the gateway accepts
/// as the code `"12345678"`) is masked as its digits, and a list or object as its JSON text, so
/// no shape of a hostile request keeps a whole code in the audit trail. `null` and booleans
/// carry no code and are kept.
pub fn mask_json_code(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) => value.clone(),
        Value::String(s) => Value::from(mask_code(s)),
        Value::Number(n) => Value::from(mask_code(&n.to_string())),
        Value::Array(_) | Value::Object(_) => Value::from(mask_code(&value.to_string())),
    }
}

impl fmt::Debug for ConfirmCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfirmCode({})", self.masked())
    }
}

impl fmt::Display for ConfirmCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_positive_decimal_without_sign_or_spaces() {
        assert_eq!(
            OrderId::parse("2983749123412345").map(OrderId::get),
            Some(2983749123412345)
        );
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            " 1",
            "1.0",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(OrderId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn confirm_codes_never_print_whole() {
        let code = ConfirmCode::parse("A1B2C3D4").expect("valid");
        assert_eq!(code.to_string(), "****C3D4");
        assert_eq!(format!("{code:?}"), "ConfirmCode(****C3D4)");
        assert_eq!(ConfirmCode::parse("ABC").expect("valid").masked(), "****C");
        assert_eq!(mask_code("核销码一二三四五"), "****二三四五");
        assert!(ConfirmCode::parse("A B").is_none());
        assert!(ConfirmCode::parse("码").is_none());
    }

    #[test]
    fn a_mask_shows_at_most_four_characters_and_never_half_the_code() {
        let expected = [
            ("A", "****"),
            ("AB", "****B"),
            ("ABC", "****C"),
            ("ABCD", "****CD"),
            ("ABCDE", "****DE"),
            ("ABCDEF", "****DEF"),
            ("ABCDEFG", "****EFG"),
            ("ABCDEFGH", "****EFGH"),
            ("ABCDEFGHIJKL", "****IJKL"),
        ];
        for (code, mask) in expected {
            assert_eq!(mask_code(code), mask, "{code}");
        }
        for n in 1..=8_usize {
            let code: String = ('a'..).take(n).collect();
            let masked = mask_code(&code);
            let shown = masked.strip_prefix("****").expect("four stars first");
            assert!(code.ends_with(shown), "{code} → {masked}");
            assert!(
                shown.chars().count() * 2 <= n,
                "{code} → {masked} shows more than half"
            );
            assert!(shown.chars().count() <= MASK_SHOWN_MAX, "{code} → {masked}");
        }
        assert_eq!(mask_code(""), "");
        assert_eq!(mask_code("码码码码码"), "****码码");
    }

    #[test]
    fn codes_in_json_are_masked_whatever_their_type() {
        use serde_json::json;
        assert_eq!(mask_json_code(&json!("A1B2C3D4")), json!("****C3D4"));
        assert_eq!(mask_json_code(&json!(12345678)), json!("****5678"));
        assert_eq!(mask_json_code(&json!(12345)), json!("****45"));
        assert_eq!(mask_json_code(&json!(["SECRET-CODE"])), json!("****DE\"]"));
        assert_eq!(mask_json_code(&json!(null)), json!(null));
        assert_eq!(mask_json_code(&json!(true)), json!(true));
    }
}
