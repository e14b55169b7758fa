//! `sqlite:` database URLs → file paths.
//!
//! The server picks its store from the database URL's scheme (one binary, several backends, like vaultwarden's
//! `DbConnType::from_url`); this is the SQLite half. Accepted forms:
//!
//! | URL | Path |
//! |---|---|
//! | `sqlite:///var/lib/ticketd/ledger.db` | `/var/lib/ticketd/ledger.db` (absolute) |
//! | `sqlite://data/ledger.db` | `data/ledger.db` (relative to the working directory) |
//! | `sqlite:data/ledger.db` | `data/ledger.db` |
//! | `sqlite:/var/lib/ticketd/ledger.db` | `/var/lib/ticketd/ledger.db` |
//!
//! The path is taken literally (no percent-decoding). One query parameter is understood:
//! `busy_timeout=<milliseconds>` ([`SqliteOptions::busy_timeout`], e.g.
//! `sqlite:///var/lib/ticketd/ledger.db?busy_timeout=1000`). Any other (`?mode=rwc`) and
//! in-memory databases (`sqlite::memory:`) are refused rather than ignored: the store always
//! creates the file itself, and an in-memory ledger would forget every voucher it counted.

use std::path::PathBuf;
use std::time::Duration;

use super::SqliteOptions;
use crate::StoreError;

/// The file and the options a `sqlite:` URL names (see the module docs).
pub(crate) fn parse_url(url: &str) -> Result<(PathBuf, SqliteOptions), StoreError> {
    let invalid = |why| StoreError::InvalidUrl {
        url: url.to_owned(),
        why,
    };
    let (location, query) = match url.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (url, None),
    };
    let path = path_from_url(location)?;
    let mut options = SqliteOptions::default();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("busy_timeout", ms)) => {
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| invalid("busy_timeout must be a number of milliseconds"))?;
                options.busy_timeout = Duration::from_millis(ms);
            }
            _ => {
                return Err(invalid(
                    "the only query parameter supported is busy_timeout",
                ))
            }
        }
    }
    Ok((path, options))
}

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
    fn busy_timeout_is_the_one_query_parameter() {
        let (path, options) = parse_url("sqlite:///d/ledger.db?busy_timeout=250").expect("url");
        assert_eq!(path, PathBuf::from("/d/ledger.db"));
        assert_eq!(options.busy_timeout, Duration::from_millis(250));
        let (_, default) = parse_url("sqlite://ledger.db").expect("url");
        assert_eq!(default, SqliteOptions::default());
        for url in [
            "sqlite://ledger.db?busy_timeout=",
            "sqlite://ledger.db?busy_timeout=1s",
            "sqlite://ledger.db?busy_timeout=5&mode=rwc",
            "sqlite://ledger.db?mode=rwc",
        ] {
            assert!(
                matches!(parse_url(url), Err(StoreError::InvalidUrl { .. })),
                "{url}"
            );
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
