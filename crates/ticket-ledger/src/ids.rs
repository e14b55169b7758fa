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
    /// Whole codes are bearer credentials, so `Debug` and `Display` show only the last four
    /// characters; use [`ConfirmCode::as_str`] where the whole value is really needed.
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
    /// The code with all but its last four characters masked (`****C3D4`), for logs and
    /// messages that may be shown to people other than the buyer.
    pub fn masked(&self) -> String {
        mask_code(&self.0)
    }
}

/// Masks any text the way confirm codes are shown (`****C3D4`), counting characters, so it
/// also serves unparsed codes from hostile requests (audit summaries) without splitting a
/// multi-byte character.
pub fn mask_code(text: &str) -> String {
    let n = text.chars().count();
    if n <= 4 {
        "*".repeat(n)
    } else {
        let tail: String = text.chars().skip(n - 4).collect();
        format!("****{tail}")
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
        assert_eq!(ConfirmCode::parse("ABC").expect("valid").masked(), "***");
        assert_eq!(mask_code("核销码一二三四五"), "****二三四五");
        assert!(ConfirmCode::parse("A B").is_none());
        assert!(ConfirmCode::parse("码").is_none());
    }
}
