//! Small readers shared by every method's parameter parsing, so each shape rule is written
//! once and every method refuses the same way.

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
