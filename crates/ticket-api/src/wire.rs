//! Small readers shared by every method's parameter parsing, so each shape rule is written
//! once and every method refuses the same way.

use serde_json::Value;
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
