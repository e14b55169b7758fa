//! Executes the rows of a plan ([`crate::plan_rows`]) on SQLite, one statement per row.
//!
//! [`write`] runs inside the writer's transaction (a job's savepoint): an `Err` undoes the
//! job. Each statement is prepared once per connection and cached (`prepare_cached`), and
//! taken from the cache once for a run of rows of one table. Every write that must change
//! exactly one row checks that it did (`rows::one_row`): one that changes none means the database
//! disagrees with what the plan was made from, and the whole operation is refused with
//! [`LedgerError::WriteChangedNoRow`] and recorded as an anomaly — never answered as a
//! success that changed nothing.

use rusqlite::types::{Null, ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, ToSql};
use ticket_ledger::LedgerError;

use super::rows::{ledger_error, violation, During, Violation};
use crate::plan_rows::{Check, Param, Rows, WriteRow};
use crate::statements;

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Int(Some(i)) => ToSqlOutput::from(i),
            Param::Text(Some(text)) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Param::Int(None) | Param::Text(None) => ToSqlOutput::from(Null),
        })
    }
}

/// Writes `rows` (a plan's, several verify plans', an entry, an anomaly), checking each
/// statement as its [`Check`] says.
pub(crate) fn write(conn: &Connection, rows: &(impl Rows + ?Sized)) -> Result<(), LedgerError> {
    let mut prepared: Option<(&'static str, CachedStatement<'_>)> = None;
    for step in rows.steps() {
        let Some(sql) = on_sqlite(step.sql) else {
            continue;
        };
        let statement = match &mut prepared {
            Some((prepared, statement)) if *prepared == sql => statement,
            _ => {
                let statement = conn.prepare_cached(sql).during(step.during)?;
                &mut prepared.insert((sql, statement)).1
            }
        };
        let changed = statement.execute(rusqlite::params_from_iter(&step.params));
        let changed = match (changed, &step.check) {
            (Ok(changed), _) => u64::try_from(changed).unwrap_or(u64::MAX),
            (Err(e), Check::OneRowUnique(_, unique)) => {
                return Err(match violation(&e) {
                    Some(Violation::Unique(_)) => unique.clone(),
                    _ => ledger_error(step.during, &e),
                })
            }
            (Err(e), Check::NewOrder) => return Err(order_refusal(&e)),
            (Err(e), _) => return Err(ledger_error(step.during, &e)),
        };
        // Only a verify's count checks a capacity, and SQLite does not write it (`on_sqlite`):
        // every row SQLite writes is decided by its own check here.
        if step.check.changed(changed)?.is_some() {
            return Err(LedgerError::Internal(format!(
                "{}: a capacity check on SQLite, which folds its counts",
                step.during
            )));
        }
    }
    Ok(())
}

/// The statement SQLite runs for one of the shared plan statements, or `None` when SQLite
/// does not write it. SQLite's counters are folded from the use log (migration 0011,
/// `fold::count_uses`), so:
///
/// - a verify's count ([`statements::COUNT_USES`]) is not written: its uses, appended with it,
///   are the count. What keeps a code within its capacity is the plan, checked against the
///   single writer's snapshot inside the same transaction; the fold checks it again when it
///   adds the uses to the stored counter.
/// - a reversal's count changes the stored counter (`counted_vouchers`; `vouchers` is the view
///   that adds the uses not folded yet), after the reversal counted every logged use.
/// - events are written into `event_rows` (`ledger_events` is the view that rebuilds an
///   entry's event from the entry, migration 0012), by reference to their entry when it
///   rebuilds their data exactly.
/// - fingerprints are written into `pending_fingerprints`, where the view
///   `verify_fingerprints`' trigger would put them (migration 0005).
fn on_sqlite(sql: &'static str) -> Option<&'static str> {
    if sql == statements::COUNT_USES {
        None
    } else if sql == statements::INSERT_FINGERPRINT {
        Some(statements::SQLITE_INSERT_PENDING_FINGERPRINT)
    } else if sql == statements::REVERSE_USES {
        Some(statements::SQLITE_REVERSE_USES)
    } else if sql == statements::INSERT_EVENT {
        Some(statements::SQLITE_INSERT_EVENT)
    } else if sql == statements::INSERT_ANOMALY_EVENT {
        Some(statements::SQLITE_INSERT_ANOMALY_EVENT)
    } else {
        Some(sql)
    }
}

/// The refusal an order's insert stands for. `orders` has one foreign key (its app) and two
/// unique keys, which SQLite names by their columns.
fn order_refusal(e: &rusqlite::Error) -> LedgerError {
    match violation(e) {
        Some(Violation::ForeignKey) => LedgerError::UnknownApp,
        Some(Violation::Unique(columns)) if columns.contains("out_order_id") => {
            LedgerError::OutOrderIdTaken
        }
        Some(Violation::Unique("orders.order_id")) => LedgerError::OrderExists,
        _ => ledger_error("creating an order", e),
    }
}

/// Writes one row and says how many rows changed, leaving the driver's error to the caller
/// (which turns a constraint violation into the refusal it stands for).
pub(crate) fn write_row<R: WriteRow>(conn: &Connection, row: &R) -> rusqlite::Result<u64> {
    let changed = conn
        .prepare_cached(R::SQL)?
        .execute(rusqlite::params_from_iter(row.params()))?;
    Ok(u64::try_from(changed).unwrap_or(u64::MAX))
}
