//! [`StoreError`]: why a store could not be opened.
//!
//! Once a store is open, its methods answer with `ticket_ledger::LedgerError` like every other
//! backend; `StoreError` only covers what happens before that (bad URL, unusable file, a schema
//! this binary does not understand), where the server should refuse to start.

use std::path::PathBuf;

/// Opening or migrating a store failed. The server reports it and does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL is not one this crate accepts.
    #[error("invalid database URL {url:?}: {why}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The database file or its directory could not be created or opened.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the ledger writer thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The database refused a statement while opening or migrating.
    ///
    /// The source is boxed so that the driver's error type stays out of this crate's API.
    #[error("database error while {during}: {source}")]
    Database {
        /// What the store was doing.
        during: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A durability setting did not take effect (for example WAL on a file system that cannot
    /// hold it). The store refuses to run with weaker guarantees than it promises.
    #[error("database setting {setting} is {found:?}, expected {expected:?}")]
    Setting {
        /// The PRAGMA or server variable.
        setting: &'static str,
        /// What the database reports.
        found: String,
        /// What the store requires.
        expected: &'static str,
    },
    /// An applied migration differs from the one embedded in this binary: someone edited a
    /// migration after it ran. Add a new migration instead.
    #[error("migration {version} ({name}) was changed after it was applied")]
    MigrationChanged {
        /// Its number.
        version: i64,
        /// Its name.
        name: String,
    },
    /// The database server could not be reached (wrong address, not running, refused the
    /// credentials, no such database).
    #[error("cannot connect to {engine} at {url}")]
    Unreachable {
        /// Which engine.
        engine: &'static str,
        /// The URL with any password hidden.
        url: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database server is older than the oldest version the store supports.
    #[error("{engine} {found} is too old: ticketd needs {engine} {required} or later")]
    ServerTooOld {
        /// Which engine.
        engine: &'static str,
        /// The version the server reports.
        found: String,
        /// The oldest supported version.
        required: &'static str,
    },
    /// The database was migrated by a newer binary.
    #[error("database schema version {found} is newer than this binary knows ({known})")]
    SchemaTooNew {
        /// The newest applied migration.
        found: i64,
        /// The newest migration this binary embeds.
        known: i64,
    },
}

impl StoreError {
    pub(crate) fn db(during: &'static str, source: rusqlite::Error) -> Self {
        Self::Database {
            during,
            source: Box::new(source),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// The error and all its sources, `: `-separated, for logs and `Internal` messages.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
