//! What every backend's migration runner shares: the embedded migration, its checksum, and the
//! check of a database's applied history against the binary.
//!
//! Each backend embeds its own files (`migrations/{sqlite,postgres,mysql}/`, because each dialect's DDL differs) and
//! records applied ones in `schema_migrations (version, name, checksum, applied_at_ms)`. On
//! open it refuses a database migrated by a newer binary ([`StoreError::SchemaTooNew`]) or one
//! whose applied migrations differ from the embedded text ([`StoreError::MigrationChanged`]),
//! then applies the missing ones.

use crate::StoreError;

/// One embedded migration.
#[derive(Debug)]
pub(crate) struct Migration {
    /// 1, 2, 3, … without gaps.
    pub(crate) version: i64,
    /// The file's name without number and extension.
    pub(crate) name: &'static str,
    /// The file's text.
    pub(crate) sql: &'static str,
}

/// The newest version of `migrations` (0 when there are none).
pub(crate) fn latest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |m| m.version)
}

/// FNV-1a over the text with line endings normalised, so a checkout that turned `\n` into
/// `\r\n` does not look like an edited migration, while any real edit does.
pub(crate) fn checksum(sql: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.bytes().filter(|&b| b != b'\r') {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Checks the applied history (`(version, name, checksum)` rows) against the embedded
/// migrations and returns those still to apply, oldest first.
pub(crate) fn pending<'m>(
    embedded: &'m [Migration],
    applied: &[(i64, String, i64)],
) -> Result<Vec<&'m Migration>, StoreError> {
    let known = latest(embedded);
    for (version, name, sum) in applied {
        let Some(migration) = embedded.iter().find(|m| m.version == *version) else {
            return Err(StoreError::SchemaTooNew {
                found: applied.iter().map(|a| a.0).max().unwrap_or(*version),
                known,
            });
        };
        if *sum != checksum(migration.sql) {
            return Err(StoreError::MigrationChanged {
                version: *version,
                name: name.clone(),
            });
        }
    }
    Ok(embedded
        .iter()
        .filter(|m| !applied.iter().any(|a| a.0 == m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &[Migration] = &[
        Migration {
            version: 1,
            name: "one",
            sql: "a",
        },
        Migration {
            version: 2,
            name: "two",
            sql: "b",
        },
    ];

    #[test]
    fn checksum_ignores_carriage_returns_but_not_edits() {
        assert_eq!(checksum("a\nb\n"), checksum("a\r\nb\r\n"));
        assert_ne!(checksum("a\nb\n"), checksum("a\nc\n"));
    }

    #[test]
    fn pending_lists_what_is_missing_and_refuses_edits_and_newer_schemas() {
        let one = (1, "one".to_owned(), checksum("a"));
        let pending_after_one = pending(TWO, std::slice::from_ref(&one)).expect("ok");
        assert_eq!(
            pending_after_one
                .iter()
                .map(|m| m.version)
                .collect::<Vec<_>>(),
            [2]
        );
        assert!(matches!(
            pending(TWO, &[(1, "one".to_owned(), checksum("x"))]),
            Err(StoreError::MigrationChanged { version: 1, .. })
        ));
        assert!(matches!(
            pending(TWO, &[one, (9, "future".to_owned(), 0)]),
            Err(StoreError::SchemaTooNew { found: 9, known: 2 })
        ));
    }
}
