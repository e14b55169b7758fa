//! `sqlite:` database URLs → file paths.
//!
//! The server picks its store from the database URL's scheme (STYLE §1, like vaultwarden's
//! `DbConnType::from_url`); this is the SQLite half. Accepted forms:
//!
//! | URL | Path |
//! |---|---|
//! | `sqlite:///var/lib/ticketd/ledger.db` | `/var/lib/ticketd/ledger.db` (absolute) |
//! | `sqlite://data/ledger.db` | `data/ledger.db` (relative to the working directory) |
//! | `sqlite:data/ledger.db` | `data/ledger.db` |
//! | `sqlite:/var/lib/ticketd/ledger.db` | `/var/lib/ticketd/ledger.db` |
//!
//! The path is taken literally (no percent-decoding). Query parameters (`?mode=rwc`) and
//! in-memory databases (`sqlite::memory:`) are refused rather than ignored: the store always
//! creates the file itself, and an in-memory ledger would forget every voucher it counted.

use std::path::PathBuf;

use crate::StoreError;

/// Extracts the database file path from a `sqlite:` URL (see the module docs for the forms).
pub(crate) fn path_from_url(url: &str) -> Result<PathBuf, StoreError> {
    let invalid = |why| StoreError::InvalidUrl {
        url: url.to_owned(),
        why,
    };
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| invalid("expected sqlite:PATH, sqlite://PATH or sqlite:///ABSOLUTE/PATH"))?;
    if !scheme.eq_ignore_ascii_case("sqlite") {
        return Err(invalid("the scheme must be sqlite"));
    }
    // `sqlite://x` names the relative path `x`, and `sqlite:///x` the absolute `/x`: stripping
    // exactly the two slashes of the authority marker gives both.
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.contains('?') || path.contains('#') {
        return Err(invalid("query parameters are not supported"));
    }
    if path.is_empty() {
        return Err(invalid("the path is empty"));
    }
    if path == ":memory:" || path.starts_with("file:") {
        return Err(invalid("only a database file path is supported"));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_url_forms_name_the_expected_paths() {
        for (url, path) in [
            (
                "sqlite:///var/lib/ticketd/ledger.db",
                "/var/lib/ticketd/ledger.db",
            ),
            ("sqlite://data/ledger.db", "data/ledger.db"),
            ("sqlite://./ledger.db", "./ledger.db"),
            ("sqlite:ledger.db", "ledger.db"),
            ("sqlite:/abs/ledger.db", "/abs/ledger.db"),
            ("SQLITE://ledger.db", "ledger.db"),
        ] {
            assert_eq!(path_from_url(url).expect(url), PathBuf::from(path), "{url}");
        }
    }

    #[test]
    fn other_schemes_queries_and_memory_databases_are_refused() {
        for url in [
            "postgres://localhost/ledger",
            "ledger.db",
            "sqlite:",
            "sqlite://",
            "sqlite://ledger.db?mode=rwc",
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite:file:ledger.db",
        ] {
            assert!(
                matches!(path_from_url(url), Err(StoreError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }
}
