//! The integration tests of `top-protocol`, one binary with one module per area: the tests link
//! once instead of once per file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checks;
mod codes;
mod envelopes;
mod parsing;
mod properties;
mod timestamps;
mod vectors;

use top_protocol::Params;

/// Builds a `Params` from string literals (last wins).
pub(crate) fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Owned pairs from string literals, for comparing parser output.
pub(crate) fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
