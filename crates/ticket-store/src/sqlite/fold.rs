//! The fold: the lookups keyed by order, built in bulk instead of by every verify.
//!
//! A verify records facts that are appended — its audit entry (`audit_log`, keyed by `seq`),
//! its uses (`voucher_uses`, keyed by `id`), its fingerprints (`pending_fingerprints`, keyed
//! by `id`) — and changes its vouchers' counters. Three lookups are keyed by order instead:
//! an order's fingerprints (is this report a retry?), a code's uses (what may a reversal give
//! back?) and an order's history. As B-trees that every verify changed, each cost a page at
//! a random place of the file per verify: written whole into the WAL at every commit, and
//! again by the checkpoint, about 4 KB each for a fact of 30 bytes (issue 14 measured
//! 23.5 KB written per single-voucher verify, 10.6 KB without the first two lookups and
//! 5.3 KB without all three).
//!
//! So the writer folds them: every [`FOLD_AT`] jobs (or [`FOLD_FINGERPRINTS`] pending
//! fingerprints, or once the queue is idle), one transaction of its own moves what was
//! appended since the last fold into `folded_fingerprints`, `uses_by_code` and
//! `audit_by_order` ([`Part`]), sorted by key, so one page takes many rows; `ledger_fold`
//! records how far each went. Nothing is lost in between, and nothing is read wrong:
//!
//! - What is not folded yet is still in the appended tables, committed with the verify that
//!   wrote it. A reader finds an order's history and a code's uses in the folded table plus
//!   the short tail past the marks (`statements::SQLITE_ORDER_ENTRIES`, …), scanned by key
//!   range; the fold's own transaction moves rows and marks together, so a reader sees a row
//!   in exactly one of the two.
//! - A verify looks a fingerprint up in `folded_fingerprints` and in [`Pending`], the
//!   writer's memory of `pending_fingerprints`, rebuilt from that table whenever it may be
//!   stale (at start, after a failed batch, after another connection's commit, after any
//!   write that is not a verify's). The writer is the only writer, so its memory and the
//!   table agree; when in doubt, it reads the table again.
//! - A crash between a verify and the next fold leaves the appended rows and the old marks:
//!   the store folds them when it opens ([`fold_parts`]). A fold interrupted by a crash never
//!   committed, so it is simply done again.

use std::collections::HashSet;

use rusqlite::{params, Connection};
use ticket_ledger::{Fingerprint, LedgerError, OrderId};

use super::rows::During;
use crate::plan_rows::{FingerprintRow, WriteRow};
use crate::statements;

/// Jobs between two folds under load. Each verify between folds adds a row to the tail that
/// readers scan past the marks (≈ 1 ms for 8,192 entries), and the larger the fold, the more
/// rows share a page: with 1,000 orders active, 8,192 verifies put ≈ 8 rows on each page
/// instead of one.
pub(crate) const FOLD_AT: u64 = 8_192;

/// Pending fingerprints that make a fold due whatever the jobs (999-voucher reports): bounds
/// [`Pending`]'s memory (≈ 100 bytes each, so ≈ 6.5 MB) and the tail.
pub(crate) const FOLD_FINGERPRINTS: usize = 65_536;

/// One fingerprint: order, code, gate time, quantity.
type Key = (i64, String, i64, i64);

/// The writer's memory of `pending_fingerprints` (see the module docs): `None` when it must
/// be read again before it is trusted.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    held: Option<HashSet<Key>>,
}

impl Pending {
    /// Whether `fp` of order `id` is pending, reading the table first if the memory is stale.
    pub(crate) fn contains(
        &mut self,
        conn: &Connection,
        id: OrderId,
        fp: &Fingerprint,
    ) -> Result<bool, LedgerError> {
        let held = match &mut self.held {
            Some(held) => held,
            empty => empty.insert(load(conn)?),
        };
        Ok(held.contains(&(
            id.get(),
            fp.code.as_str().to_owned(),
            fp.used_at_ms,
            fp.quantity,
        )))
    }

    /// Remembers fingerprints a verify has just written (in the open transaction). A stale
    /// memory stays stale: its next use reads them from the table.
    pub(crate) fn add<'a>(&mut self, id: OrderId, fps: impl IntoIterator<Item = &'a Fingerprint>) {
        if let Some(held) = &mut self.held {
            held.extend(fps.into_iter().map(|fp| {
                (
                    id.get(),
                    fp.code.as_str().to_owned(),
                    fp.used_at_ms,
                    fp.quantity,
                )
            }));
        }
    }

    /// Forgets everything: the table is read again at the next lookup.
    pub(crate) fn invalidate(&mut self) {
        self.held = None;
    }

    /// After a fold committed: nothing is pending.
    fn emptied(&mut self) {
        self.held = Some(HashSet::new());
    }

    /// Fingerprints held (0 when stale).
    pub(crate) fn len(&self) -> usize {
        self.held.as_ref().map_or(0, HashSet::len)
    }
}

fn load(conn: &Connection) -> Result<HashSet<Key>, LedgerError> {
    conn.prepare_cached(statements::SQLITE_PENDING_FINGERPRINTS)
        .during("preparing the pending fingerprint read")?
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .during("reading the pending fingerprints")?
        .collect::<rusqlite::Result<_>>()
        .during("reading the pending fingerprints")
}

/// What one fold moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Folded {
    pub(crate) fingerprints: u64,
    pub(crate) uses: u64,
    pub(crate) entries: u64,
}

/// The newest use, entry and pending fingerprint: where a fold may go up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ends {
    use_id: i64,
    audit_seq: i64,
    fingerprint_id: i64,
}

/// The current [`Ends`] (three lookups of a rowid table's last key).
fn ends(conn: &Connection) -> Result<Ends, LedgerError> {
    conn.prepare_cached(statements::SQLITE_FOLD_ENDS)
        .during("preparing the fold ends")?
        .query_row([], |row| {
            Ok(Ends {
                use_id: row.get(0)?,
                audit_seq: row.get(1)?,
                fingerprint_id: row.get(2)?,
            })
        })
        .during("reading the fold ends")
}

/// Runs one fold statement with its bounds and says how many rows it changed.
fn run(
    conn: &Connection,
    sql: &str,
    bounds: [i64; 2],
    during: &'static str,
) -> Result<u64, LedgerError> {
    conn.prepare_cached(sql)
        .during(during)?
        .execute(bounds)
        .map(|n| u64::try_from(n).unwrap_or(u64::MAX))
        .during(during)
}

/// Moves the pending fingerprints with `id` in `(after, upto]` into `folded_fingerprints`.
fn move_fingerprints(conn: &Connection, after: i64, upto: i64) -> Result<u64, LedgerError> {
    let moved = run(
        conn,
        statements::SQLITE_FOLD_FINGERPRINTS,
        [after, upto],
        "folding fingerprints",
    )?;
    let forgotten = run(
        conn,
        statements::SQLITE_FOLD_FORGET_FINGERPRINTS,
        [after, upto],
        "forgetting folded fingerprints",
    )?;
    if forgotten != moved {
        return Err(LedgerError::Internal(format!(
            "the fold moved {moved} fingerprints but forgot {forgotten}"
        )));
    }
    Ok(moved)
}

/// One of the three lookups a fold builds, each with its own mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Pending fingerprints into `folded_fingerprints`.
    Fingerprints,
    /// Uses into `uses_by_code`, up to `ledger_fold.use_id`.
    Uses,
    /// Entries into `audit_by_order`, up to `ledger_fold.audit_seq`.
    Audit,
}

impl Part {
    /// Every part.
    pub(crate) const ALL: [Part; 3] = [Part::Fingerprints, Part::Uses, Part::Audit];
}

/// Folds one part of everything appended since the last fold, inside the caller's write
/// transaction; returns the rows moved.
pub(crate) fn fold_one(conn: &Connection, part: Part) -> Result<u64, LedgerError> {
    let (use_mark, audit_mark): (i64, i64) = conn
        .prepare_cached(statements::SQLITE_FOLD_MARKS)
        .during("preparing the fold marks")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .during("reading the fold marks")?;
    let end = ends(conn)?;
    let (sql, advance, mark, upto, during) = match part {
        Part::Fingerprints => return move_fingerprints(conn, 0, end.fingerprint_id),
        Part::Uses => (
            statements::SQLITE_FOLD_USES,
            statements::SQLITE_FOLD_ADVANCE_USES,
            use_mark,
            end.use_id.max(use_mark),
            "folding uses",
        ),
        Part::Audit => (
            statements::SQLITE_FOLD_AUDIT,
            statements::SQLITE_FOLD_ADVANCE_AUDIT,
            audit_mark,
            end.audit_seq.max(audit_mark),
            "folding the audit trail",
        ),
    };
    let moved = run(conn, sql, [mark, upto], during)?;
    let advanced = run(conn, advance, [upto, mark], "advancing a fold mark")?;
    crate::rows::one_row(advanced, "ledger_fold")?;
    Ok(moved)
}

/// Folds every part, inside the caller's write transaction.
pub(crate) fn fold(conn: &Connection) -> Result<Folded, LedgerError> {
    Ok(Folded {
        fingerprints: fold_one(conn, Part::Fingerprints)?,
        uses: fold_one(conn, Part::Uses)?,
        entries: fold_one(conn, Part::Audit)?,
    })
}

/// Verifies with at least this many changes fold at once, inside their own job
/// ([`fold`] before and after their rows are written): a large report's rows are neighbours in
/// every lookup (one order, many codes), so folded alone they fill a few pages, where a later
/// fold would spread them over every page of the lookups with the other orders' rows (a fold
/// of 999-code reports rewrote the whole fingerprint table each time: 0.3–1.2 s per fold,
/// growing with the ledger). Folding first keeps the marks a single line: everything before
/// them folded, nothing after.
pub(crate) const FOLD_DIRECTLY_AT: usize = 32;

/// Writes a large report's fingerprints straight into `folded_fingerprints`, inside its job
/// (see [`FOLD_DIRECTLY_AT`]).
pub(crate) fn write_folded(conn: &Connection, rows: &[FingerprintRow]) -> Result<(), LedgerError> {
    let mut insert = conn
        .prepare_cached(statements::SQLITE_INSERT_FOLDED_FINGERPRINT)
        .during("preparing the folded fingerprint insert")?;
    for row in rows {
        insert
            .execute(rusqlite::params_from_iter(row.params()))
            .during(FingerprintRow::DURING)?;
    }
    Ok(())
}

/// Folds `parts` in a transaction of their own (the writer between batches, the store when
/// it opens), and empties `pending` once a fold of the fingerprints committed. A failure
/// rolls back and leaves `pending` as it was: the rows stay in the tail, correct, until a
/// later fold succeeds.
pub(crate) fn fold_parts(
    conn: &Connection,
    parts: &[Part],
    pending: &mut Pending,
) -> Result<Folded, LedgerError> {
    let during = |d| move |e: rusqlite::Error| super::rows::ledger_error(d, &e);
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(during("starting a fold"))?;
    let mut folded = Folded::default();
    let result = parts
        .iter()
        .try_for_each(|&part| {
            let moved = fold_one(conn, part)?;
            match part {
                Part::Fingerprints => folded.fingerprints = moved,
                Part::Uses => folded.uses = moved,
                Part::Audit => folded.entries = moved,
            }
            Ok(())
        })
        .and_then(|()| {
            conn.execute_batch("COMMIT")
                .map_err(during("committing a fold"))
        });
    match result {
        Ok(()) => {
            if parts.contains(&Part::Fingerprints) {
                pending.emptied();
            }
            Ok(folded)
        }
        Err(e) => {
            if !conn.is_autocommit() {
                if let Err(rollback) = conn.execute_batch("ROLLBACK") {
                    tracing::error!(error = %rollback, "a failed fold could not be rolled back");
                }
            }
            Err(e)
        }
    }
}

/// Whether a fingerprint is recorded for order `id`: folded, or pending in the writer's
/// memory.
pub(crate) fn seen(
    conn: &Connection,
    pending: &mut Pending,
    id: OrderId,
    fp: &Fingerprint,
) -> Result<bool, LedgerError> {
    let folded = conn
        .prepare_cached(statements::SQLITE_FINGERPRINT_SEEN)
        .during("preparing the fingerprint lookup")?
        .exists(params![
            id.get(),
            fp.code.as_str(),
            fp.used_at_ms,
            fp.quantity
        ])
        .during("looking up a fingerprint")?;
    Ok(folded || pending.contains(conn, id, fp)?)
}
