//! Executes the rows of a plan ([`crate::plan_rows`]) on SQLite, one statement per row.
//!
//! [`write`] runs inside the writer's transaction (a job's savepoint): an `Err` undoes the
//! job. Each statement is prepared once per connection and cached (`prepare_cached`), and
//! taken from the cache once for a run of rows of one table; a verify's statements are held
//! by the writer instead ([`write_held`], [`Held`]). Every write that must change
//! exactly one row checks that it did (`rows::one_row`): one that changes none means the database
//! disagrees with what the plan was made from, and the whole operation is refused with
//! [`LedgerError::WriteChangedNoRow`] and recorded as an anomaly — never answered as a
//! success that changed nothing.

use rusqlite::types::{Null, ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, Statement, ToSql};
use ticket_ledger::LedgerError;

use super::rows::{ledger_error, violation, During, Violation};
use crate::plan_rows::{Check, Param, Rows, WriteRow, WRITE_EVENT, WRITE_EVENT_SEQ};
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
    write_through(rows, |sql, execute| {
        let statement = match &mut prepared {
            Some((prepared, statement)) if *prepared == sql => statement,
            _ => &mut prepared.insert((sql, conn.prepare_cached(sql)?)).1,
        };
        Ok(execute(statement))
    })
}

/// [`write`] with the statements the writer holds ([`Held`]): the verifies' path, which
/// takes each of its statements from rusqlite's cache and gives it back otherwise.
pub(crate) fn write_held(
    held: &dyn Prepared,
    rows: &(impl Rows + ?Sized),
) -> Result<(), LedgerError> {
    write_through(rows, |sql, execute| held.with_statement(sql, execute))
}

/// Runs each row's statement through `run` (the outer error: it could not be prepared) and
/// checks what it changed.
fn write_through(
    rows: &(impl Rows + ?Sized),
    mut run: impl FnMut(&'static str, Execute<'_>) -> rusqlite::Result<rusqlite::Result<usize>>,
) -> Result<(), LedgerError> {
    // The keys of the entries written so far, in order: an entry's event written as a
    // reference names its entry by its place among them.
    let mut entries: Vec<i64> = Vec::new();
    for step in rows.steps() {
        let by_reference;
        let (sql, params): (_, &[Param<'_>]) = match (&step.entry_event, on_sqlite(step.sql)) {
            (_, None) => continue,
            (Some(entry), Some(_)) => {
                let seq = entries
                    .len()
                    .checked_sub(entry.back.saturating_add(1))
                    .and_then(|place| entries.get(place))
                    .ok_or_else(|| {
                        LedgerError::Internal(format!(
                            "{}: the event's entry is not among the {} written",
                            step.during,
                            entries.len()
                        ))
                    })?;
                by_reference = entry.params(*seq);
                (statements::SQLITE_INSERT_ENTRY_EVENT, &by_reference)
            }
            (None, Some(sql)) => (sql, &step.params),
        };
        let entry = sql == statements::INSERT_AUDIT;
        let mut seq = None;
        let changed = run(sql, &mut |statement| {
            let params = rusqlite::params_from_iter(params);
            if entry {
                // The key SQLite gave the entry, read from the connection right after its
                // insert (one row, or an error).
                statement.insert(params).map(|key| {
                    seq = Some(key);
                    1
                })
            } else {
                statement.execute(params)
            }
        })
        .during(step.during)?;
        entries.extend(seq);
        let changed = match (changed, &step.check) {
            (Ok(changed), _) => u64::try_from(changed).unwrap_or(u64::MAX),
            (Err(e), Check::OneRowUnique(_, unique)) => {
                return Err(match violation(&e) {
                    Some(Violation::Unique(_)) => unique.clone(),
                    _ => ledger_error(step.during, &e),
                })
            }
            (Err(e), Check::NewOrder) => return Err(order_refusal(&e)),
            // The one way an event's row fails its `CHECK`: no counter row to read the bound
            // value through (`statements::SQLITE_INSERT_EVENT`).
            (Err(e), Check::OneRow(WRITE_EVENT)) if violation(&e) == Some(Violation::Check) => {
                return Err(LedgerError::WriteChangedNoRow {
                    write: WRITE_EVENT_SEQ,
                })
            }
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

/// What [`write_through`] does with a prepared statement.
type Execute<'e> = &'e mut dyn FnMut(&mut Statement<'_>) -> rusqlite::Result<usize>;

/// Statements prepared once and run many times ([`Held`]); a trait so that a [`Tx`] can lend
/// them without naming the connection's lifetime twice.
///
/// [`Tx`]: super::writer::Tx
pub(crate) trait Prepared {
    /// Runs `execute` on the statement of `sql`, preparing it the first time; the outer error
    /// is the preparation's.
    fn with_statement(
        &self,
        sql: &'static str,
        execute: Execute<'_>,
    ) -> rusqlite::Result<rusqlite::Result<usize>>;
}

/// The write statements of the writer's verifies, held for its connection's life.
///
/// Why: `prepare_cached` looks a statement up by its text and puts it back afterwards, which
/// trims the text, hashes it twice, copies it into a new key and clears the bindings: about
/// 1,800 instructions each time, once per statement of a verify (five then, four since
/// migration 0018; docs/PERFORMANCE.md, "Eleventh session"). Held here, a statement is found
/// among a handful by its text's address. They are the few fixed texts of the verify plan
/// ([`on_sqlite`]), so the set stays that small; each goes back to rusqlite's cache when the
/// writer drops this, before it closes the connection.
pub(crate) struct Held<'c> {
    conn: &'c Connection,
    statements: std::cell::RefCell<Vec<(&'static str, CachedStatement<'c>)>>,
}

impl<'c> Held<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            statements: std::cell::RefCell::new(Vec::new()),
        }
    }
}

impl Prepared for Held<'_> {
    fn with_statement(
        &self,
        sql: &'static str,
        execute: Execute<'_>,
    ) -> rusqlite::Result<rusqlite::Result<usize>> {
        let mut statements = self.statements.borrow_mut();
        // The same text is the same `&'static str` wherever the plan names it; another copy of
        // it (the compiler may keep two) compares equal too.
        let found = statements
            .iter()
            .position(|(held, _)| std::ptr::eq(*held, sql) || *held == sql);
        let index = match found {
            Some(index) => index,
            None => {
                statements.push((sql, self.conn.prepare_cached(sql)?));
                statements.len() - 1
            }
        };
        Ok(execute(&mut statements[index].1))
    }
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
///   entry's event from the entry, migration 0012); an entry's event whose data the entry
///   rebuilds exactly is written as a reference to it instead (the step's
///   [`crate::plan_rows::EntryEvent`], [`statements::SQLITE_INSERT_ENTRY_EVENT`]).
/// - fingerprints are written into `pending_fingerprints`, where the view
///   `verify_fingerprints`' trigger would put them (migration 0005).
/// - an event's `seq` ([`statements::ADVANCE_EVENT_SEQ`]) is not taken from the counter row:
///   the event's own insert takes the one after the newest event (migration 0018,
///   [`statements::SQLITE_INSERT_EVENT`]). The insert still reads the counter row, so on a
///   ledger without it the event's row fails its `CHECK`, reported as the counter's write
///   changing no row ([`write_through`]), as on the other engines.
fn on_sqlite(sql: &'static str) -> Option<&'static str> {
    if sql == statements::COUNT_USES || sql == statements::ADVANCE_EVENT_SEQ {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scratch() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
            .unwrap();
        conn
    }

    const INSERT: &str = "INSERT INTO t (x) VALUES (?1)";

    fn insert(held: &dyn Prepared, sql: &'static str, x: i64) -> rusqlite::Result<usize> {
        held.with_statement(sql, &mut |statement| statement.execute([x]))?
    }

    #[test]
    fn a_held_statement_is_prepared_once_and_run_again_and_again() {
        let conn = scratch();
        let held = Held::new(&conn);
        for x in 0..3 {
            assert_eq!(insert(&held, INSERT, x), Ok(1));
        }
        // The same text at another address is the same statement.
        let copy: &'static str = String::from(INSERT).leak();
        assert!(!std::ptr::eq(copy, INSERT));
        assert_eq!(insert(&held, copy, 3), Ok(1));
        assert_eq!(held.statements.borrow().len(), 1);
        // A refused row is the execution's error; the statement stays usable.
        let refused = held
            .with_statement(INSERT, &mut |statement| statement.execute([1]))
            .expect("prepared");
        assert!(matches!(
            violation(&refused.unwrap_err()),
            Some(Violation::Unique(_))
        ));
        assert_eq!(insert(&held, INSERT, 4), Ok(1));
        // A statement that cannot be prepared is the outer error, and is not held.
        assert!(held
            .with_statement("INSERT INTO nowhere VALUES (1)", &mut |s| s.execute([]))
            .is_err());
        assert_eq!(held.statements.borrow().len(), 1);
        let count: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 5);
        // Dropped, the statement goes back to the connection, which then closes cleanly.
        drop(held);
        assert!(conn.close().is_ok());
    }
}
