//! Small readers shared by every method's parameter parsing, so each shape rule is written
//! once and every method refuses the same way.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use top_protocol::{Params, TopError};

/// Reads an optional parameter, treating the empty string as absent (some SDKs send every
/// declared parameter, empty or not).
pub(crate) fn opt<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).filter(|v| !v.is_empty())
}

/// Reads a required parameter (40 when missing).
pub(crate) fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, TopError> {
    opt(params, name).ok_or_else(|| TopError::missing_argument(name))
}

/// Decimal integer text with an optional `-`, no spaces or `+` (what every SDK sends).
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Reads an optional integer parameter of at least `min` (41 otherwise).
pub(crate) fn opt_int(params: &Params, name: &str, min: i64) -> Result<Option<i64>, TopError> {
    opt(params, name)
        .map(|v| {
            parse_int(v).filter(|n| *n >= min).ok_or_else(|| {
                TopError::invalid_argument(name, &format!("必须为不小于{min}的整数"))
            })
        })
        .transpose()
}

/// Reads an optional count parameter of at least `min` (41 as [`opt_int`] answers it) and at
/// most `max`, one of the ledger's bounds (`ticket_ledger::limits`): 41 [`too_large`] above
/// it, also for a number too long for an `i64`.
pub(crate) fn opt_count(
    params: &Params,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, TopError> {
    if opt(params, name).is_some_and(beyond_i64) {
        return Err(too_large(name, name, max));
    }
    match opt_int(params, name, min)? {
        Some(n) if n > max => Err(too_large(name, name, max)),
        n => Ok(n),
    }
}

/// Whether `s` is a non-negative decimal number too long for [`parse_int`]: above every bound.
fn beyond_i64(s: &str) -> bool {
    s.len() > 18 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a count inside a JSON parameter (a number, or a numeric string as some SDKs send
/// it) is a whole number above `max`, also one too large for an `i64`. Anything else is left
/// to the caller's own shape check.
pub(crate) fn json_above(value: Option<&Value>, max: i64) -> bool {
    match value {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(q) => q > max,
            None => n.as_u64().is_some(),
        },
        Some(Value::String(s)) => parse_int(s).map_or_else(|| beyond_i64(s), |q| q > max),
        _ => false,
    }
}

/// The 41 for a count above its bound `max`: `sub_code` names the parameter, `sub_msg` the
/// field within it (`voucher_infos[0].quantity`) and the bound.
pub(crate) fn too_large(param: &str, field: &str, max: i64) -> TopError {
    TopError::invalid_argument(param, &format!("{field}最大为{max}"))
}

/// Reads a required integer parameter of at least `min`.
pub(crate) fn req_int(params: &Params, name: &str, min: i64) -> Result<i64, TopError> {
    opt_int(params, name, min)?.ok_or_else(|| TopError::missing_argument(name))
}

/// Reads an optional integer parameter that must be one of `allowed`.
pub(crate) fn opt_choice(
    params: &Params,
    name: &str,
    allowed: &[i64],
) -> Result<Option<i64>, TopError> {
    opt(params, name)
        .map(|v| {
            parse_int(v).filter(|n| allowed.contains(n)).ok_or_else(|| {
                let list: Vec<String> = allowed.iter().map(i64::to_string).collect();
                TopError::invalid_argument(name, &format!("只能为{}之一", list.join("/")))
            })
        })
        .transpose()
}

/// Parses JSON text like `serde_json::from_str::<Value>`, except that an object with the same
/// key twice, at any depth, is refused. The error is the detail for a 41's `sub_msg`: where the
/// text stops being JSON, or which key was repeated and where.
///
/// serde_json keeps the last of a repeated key's values. In a `voucher_infos` entry that would
/// let `{"used_quantity":1,"used_quantity":5}` count 5 uses while a log, a proxy or the vendor's
/// own records read 1 — two readers of one signed request disagreeing on what it says. Neither
/// reading is safe to guess (RFC 8259 leaves it open), so the list is refused instead, like any
/// other malformed list.
pub(crate) fn parse_json_unique_keys(text: &str) -> Result<Value, String> {
    serde_json::from_str::<UniqueKeys>(text)
        .map(|UniqueKeys(v)| v)
        .map_err(|e| {
            // Into a `Value` only the repeated key is a data error; the rest is syntax.
            if e.is_data() {
                e.to_string()
            } else {
                format!("不是合法的JSON: {e}")
            }
        })
}

/// A JSON value whose objects have no repeated key ([`parse_json_unique_keys`]). serde_json's
/// recursion limit still applies, so deep nesting cannot exhaust the stack.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

/// Builds the same [`Value`] serde_json's own visitor builds, refusing a repeated key.
struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // Value::from maps a non-finite float to null, as serde_json does (JSON text cannot
        // spell one anyway).
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        UniqueKeys::deserialize(deserializer).map(|UniqueKeys(v)| v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                // The key is the caller's own text: clipped, as it goes back in sub_msg.
                let shown: String = key.chars().take(32).collect();
                return Err(de::Error::custom(format!("键\"{shown}\"重复")));
            }
            let UniqueKeys(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Test helpers shared by every method's parameter tests.
#[cfg(test)]
pub(crate) mod test_support {
    use top_protocol::{Params, TopError};

    /// Parameters from pairs.
    pub(crate) fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The `(code, sub_code)` a parser refuses `pairs` with; panics when it accepts them.
    pub(crate) fn refusal<T: std::fmt::Debug>(
        parse: fn(&Params) -> Result<T, TopError>,
        pairs: &[(&str, &str)],
    ) -> (u32, String) {
        match parse(&params(pairs)) {
            Ok(v) => panic!("accepted {pairs:?} as {v:?}"),
            Err(e) => (e.code, e.sub_code.unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_without_repeated_keys_parses_exactly_as_serde_json_does() {
        for text in [
            r#"[{"a":1,"b":-2,"c":1.5,"d":"\u0043\/","e":null,"f":true,"g":[{"a":[]}],"h":{}}]"#,
            "18446744073709551615",
            "-9223372036854775808",
            "\"text\"",
            " [ ] ",
        ] {
            assert_eq!(
                parse_json_unique_keys(text).unwrap(),
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_repeated_key_is_named_and_bad_json_is_still_bad_json() {
        let e = parse_json_unique_keys(r#"[{"a":1},{"b":{"c":1,"c":1}}]"#).unwrap_err();
        assert!(e.starts_with("键\"c\"重复"), "{e}");
        assert!(e.contains("line 1"), "where it is: {e}");
        let e = parse_json_unique_keys(&format!(r#"{{"{k}":1,"{k}":2}}"#, k = "k".repeat(100)))
            .unwrap_err();
        assert!(
            e.starts_with(&format!("键\"{}\"重复", "k".repeat(32))),
            "clipped: {e}"
        );
        for bad in ["[", "[1,]", "{'a':1}", "[1] x", "1e999"] {
            let e = parse_json_unique_keys(bad).unwrap_err();
            assert!(e.starts_with("不是合法的JSON: "), "{bad}: {e}");
        }
        let deep = "[".repeat(10_000);
        assert!(
            parse_json_unique_keys(&deep).is_err(),
            "serde_json's recursion limit still holds"
        );
    }
}
