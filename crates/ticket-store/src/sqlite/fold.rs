//! The fold: the lookups keyed by order or app, built in bulk instead of by every verify.
//!
//! A verify records facts that are appended — its audit entry (`audit_log`, keyed by `seq`),
//! its uses (`voucher_uses`, keyed by `id`), its fingerprints (`pending_fingerprints`, keyed
//! by `id`) — and changes its vouchers' counters. Four lookups are keyed otherwise: an
//! order's fingerprints (is this report a retry?), a code's uses (what may a reversal give
//! back?), an order's history and an app's entries (the audit list filtered by app). As
//! B-trees that every verify changed, each cost a page at a random place of the file per
//! verify: written whole into the WAL at every commit, and again by the checkpoint, about
//! 4 KB each for a fact of 30 bytes (issue 14 measured 23.5 KB written per single-voucher
//! verify, 10.6 KB without the first two lookups and 5.3 KB without the first three; the app's
//! index was 3.3 of 27.5 WAL pages per commit before migration 0013 folded it too).
//!
//! So the writer folds them: every [`FOLD_AT`] jobs (or [`FOLD_FINGERPRINTS`] pending
//! fingerprints, or once the queue is idle) it copies what was appended since the last fold
//! into `folded_fingerprints`, `uses_by_code`, `audit_by_order` and `audit_by_app` ([`Part`]),
//! sorted by key, so one page takes many rows, and then moves the marks in `ledger_fold`.
//! Under load the copy is [`Staged`]: read [`READ`] keys per step and sorted, then copied
//! [`SLICE`] rows per transaction between the writer's batches, in key order, so a slice fills
//! neighbouring pages and no transaction holds the writer for long (a whole fold in one
//! transaction held it 25–70 ms, and the requests queued behind it set the p99 at half load),
//! paced by the writer so that its steps take at most an eighth of the writer's time unless
//! it falls behind (`FOLD_SHARE` in `writer.rs`). Copies of uses and entries past the marks
//! are invisible to every reader until the last transaction moves the marks; a copied fingerprint
//! is found at once (a lookup reads both tables). Once all of them are copied, the pending
//! fingerprints are forgotten [`FORGET`] at a time (a lookup finds a forgotten one folded).
//! Nothing is lost in between, and nothing is read wrong:
//!
//! - What is not folded yet is still in the appended tables, committed with the verify that
//!   wrote it. A reader finds an order's history and a code's uses in the folded table plus
//!   the short tail past the marks (`statements::SQLITE_ORDER_ENTRIES`, …), scanned by key
//!   range; the fold's own transaction moves rows and marks together, so a reader sees a row
//!   in exactly one of the two.
//! - A verify looks a fingerprint up in `folded_fingerprints` and in [`Pending`], the
//!   writer's memory of `pending_fingerprints`, rebuilt from that table whenever it may be
//!   stale (at start, after a failed batch, after another connection's commit, after any
//!   write that is not a verify's). The writer is the only writer, so its memory holds every
//!   pending fingerprint not yet copied by a staged fold (a copied one leaves the memory with
//!   its slice's commit, the table later); when in doubt, it reads the table again. Only a
//!   fingerprint its order's [`Horizon`] lets through is looked up at all: one later than
//!   every recorded pass of the order is new.
//! - A crash between a verify and the next fold leaves the appended rows and the old marks:
//!   the store folds them when it opens ([`fold_parts`]). A fold interrupted by a crash
//!   leaves at most copies past the marks, which nobody reads; the next fold skips them
//!   (`ON CONFLICT DO NOTHING`) and moves the marks over them.
//! - A staged fold checks the marks at every slice: if anything else folded meanwhile (a large
//!   report folds inside its own job, [`FOLD_DIRECTLY_AT`]; another process opening the file
//!   folds at start), the staged one stops, and the next starts from the new marks.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, params_from_iter, Connection, ToSql};
use ticket_ledger::{ConfirmCode, Fingerprint, LedgerError, OrderId};

use super::rows::During;
use crate::plan_rows::{FingerprintRow, WriteRow};
use crate::statements;

/// Jobs between two folds under load. The larger the fold, the more of its rows share a page
/// of the folded lookups, whose keys start with the order: with 2,000 orders active, a fold
/// writes a page or more per order it touches. (Measured while the fingerprints and uses were
/// still keyed by order and code, before migrations 0014 and 0015, when a fold wrote nearly a
/// page per row: at saturation, 30 s runs of 2,000 orders of 10 codes, 8,192 / 16,384 /
/// 32,768 wrote 12.4 / 9.1 / 8.3 KB per verify.) Each verify between folds also adds a row to
/// the tail that readers scan past the marks: an order's view (its latest entries and their
/// count, in one scan of the tail) took 4.95 ms behind 16,384 entries and 8.75 ms behind
/// 32,768 in the `sqlite3` shell (docs/PERFORMANCE.md, "Fifteenth session"). A fold leaves
/// past the marks what came after its start until it ends, and a paced fold lasts long (the
/// writer's `FOLD_SHARE`): it stops pacing at twice this (`BEHIND_AT`), which keeps the
/// readers' worst case about 9 ms.
pub(crate) const FOLD_AT: u64 = 16_384;

/// Pending fingerprints that make a fold due whatever the jobs (reports of several codes,
/// fewer than [`FOLD_DIRECTLY_AT`]): with the writer's pace, which lets twice as many wait
/// before it stops (`BEHIND_FINGERPRINTS`), bounds [`Pending`]'s memory (≈ 100 bytes each, so
/// ≈ 13 MB, and what arrives while an unpaced fold finishes) and the tail.
pub(crate) const FOLD_FINGERPRINTS: usize = 65_536;

/// One fingerprint: order, code, gate time, quantity.
type Key = (i64, String, i64, i64);

/// The writer's memory of `pending_fingerprints` (see the module docs): `None` when it must
/// be read again before it is trusted.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    held: Option<Held>,
}

/// What [`Pending`] holds when it is trusted.
#[derive(Debug, Default)]
struct Held {
    keys: HashSet<Key>,
    /// For each order with a pending fingerprint, the latest gate time among them, or a later
    /// one: a staged fold removes keys without lowering it. An upper bound is all a
    /// [`Horizon`] needs (a too-late one only costs lookups), and the map is rebuilt from
    /// `keys` once it outgrows them ([`Held::trim`]), so it stays bounded by them.
    newest: HashMap<i64, i64>,
}

impl Held {
    fn of(keys: HashSet<Key>) -> Self {
        let mut held = Self {
            keys,
            newest: HashMap::new(),
        };
        held.rebuild_newest();
        held
    }

    fn rebuild_newest(&mut self) {
        self.newest.clear();
        for (order, _, at, _) in &self.keys {
            note_newest(&mut self.newest, *order, *at);
        }
    }

    /// Rebuilds `newest` once it names more orders than twice the keys (plus slack), so the
    /// rebuild's cost is spread over the removals that made it due.
    fn trim(&mut self) {
        if self.newest.len() > 2 * self.keys.len() + 1_024 {
            self.rebuild_newest();
        }
    }
}

/// Raises order `key`'s latest time in `newest` to `at`.
fn note_newest(newest: &mut HashMap<i64, i64>, key: i64, at: i64) {
    newest
        .entry(key)
        .and_modify(|t| *t = (*t).max(at))
        .or_insert(at);
}

impl Pending {
    /// The trusted memory, read from the table first if it is stale.
    fn held(&mut self, conn: &Connection) -> Result<&mut Held, LedgerError> {
        Ok(match &mut self.held {
            Some(held) => held,
            empty => empty.insert(Held::of(load(conn)?)),
        })
    }

    /// Whether `fp` of order `id` is pending, reading the table first if the memory is stale.
    pub(crate) fn contains(
        &mut self,
        conn: &Connection,
        id: OrderId,
        fp: &Fingerprint,
    ) -> Result<bool, LedgerError> {
        Ok(self.held(conn)?.keys.contains(&(
            id.get(),
            fp.code.as_str().to_owned(),
            fp.used_at_ms,
            fp.quantity,
        )))
    }

    /// The latest gate time of order `id`'s pending fingerprints (or a later one, see
    /// [`Held::newest`]), `None` if it has none.
    fn newest(&mut self, conn: &Connection, id: OrderId) -> Result<Option<i64>, LedgerError> {
        Ok(self.held(conn)?.newest.get(&id.get()).copied())
    }

    /// Remembers fingerprints a verify has just written (in the open transaction). A stale
    /// memory stays stale: its next use reads them from the table.
    pub(crate) fn add<'a>(&mut self, id: OrderId, fps: impl IntoIterator<Item = &'a Fingerprint>) {
        if let Some(held) = &mut self.held {
            for fp in fps {
                note_newest(&mut held.newest, id.get(), fp.used_at_ms);
                held.keys.insert((
                    id.get(),
                    fp.code.as_str().to_owned(),
                    fp.used_at_ms,
                    fp.quantity,
                ));
            }
        }
    }

    /// Forgets everything: the table is read again at the next lookup.
    pub(crate) fn invalidate(&mut self) {
        self.held = None;
    }

    /// After a fold committed: nothing is pending.
    fn emptied(&mut self) {
        self.held = Some(Held::default());
    }

    /// After a staged fold's slice committed: `folded` are folded now, so a lookup no longer
    /// needs them here (they stay in the table until the fold forgets them there too).
    fn remove<'a>(&mut self, folded: impl IntoIterator<Item = &'a Key>) {
        if let Some(held) = &mut self.held {
            for key in folded {
                held.keys.remove(key);
            }
            held.trim();
        }
    }

    /// Fingerprints held (0 when stale).
    pub(crate) fn len(&self) -> usize {
        self.held.as_ref().map_or(0, |held| held.keys.len())
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

/// Which passes of one order may be recorded already: those not later than the latest gate
/// time of the order's fingerprints when its snapshot was read (folded or pending, or a later
/// time), or than the latest of the same code's recorded since. Any other pass cannot be a
/// retry, and its lookups are skipped.
///
/// Why: every fingerprint of a verify was looked up in `folded_fingerprints`, a B-tree of the
/// whole history, and almost always missed — gates report their passes as they happen, so a
/// new pass is later than every one before it. The lookups were 7 % of the writer's time at
/// saturation (a `perf` profile of the writer thread, issue 14's eighth session). Gate times
/// have a second's precision and a group passes its codes in the same second, so what is
/// recorded while the order is held is kept per code. The horizon is held with the order's
/// snapshot ([`super::snapshots::Snapshots`]) and dropped with it, under the same rules, so
/// nothing can add a fingerprint to the order behind its back; a fold moves fingerprints from
/// pending to folded and leaves the latest of both unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Horizon {
    /// The latest gate time of the order's fingerprints when it was read (`Some(None)`: it
    /// had none); `None` until a verify that carries fingerprints needs it, so a verify
    /// without (a cumulative report, a code and a count) never reads it, nor the pending
    /// fingerprints behind it.
    read: Option<Option<i64>>,
    /// The latest gate time of each code's fingerprints recorded since. Bounded by the order's
    /// codes: a fingerprint names one of them (R10).
    since: HashMap<ConfirmCode, i64>,
}

impl Horizon {
    /// Reads the horizon of order `id`, unless it was read: the latest folded gate time (the
    /// last key of the order's range in `folded_fingerprints`) and the latest pending one.
    pub(crate) fn read(
        &mut self,
        conn: &Connection,
        pending: &mut Pending,
        id: OrderId,
    ) -> Result<(), LedgerError> {
        if self.read.is_none() {
            let folded: Option<i64> = conn
                .prepare_cached(statements::SQLITE_LATEST_FOLDED_GATE_TIME)
                .during("preparing the latest fingerprint's lookup")?
                .query_row(params![id.get()], |row| row.get(0))
                .during("looking up the latest fingerprint")?;
            self.read = Some(folded.max(pending.newest(conn, id)?));
        }
        Ok(())
    }

    /// Whether `fp` may be recorded already: always, until the horizon is read.
    pub(crate) fn may_hold(&self, fp: &Fingerprint) -> bool {
        self.read
            .is_none_or(|read| read.is_some_and(|latest| fp.used_at_ms <= latest))
            || self
                .since
                .get(&fp.code)
                .is_some_and(|&latest| fp.used_at_ms <= latest)
    }

    /// Counts `fps` as recorded.
    pub(crate) fn add<'a>(&mut self, fps: impl IntoIterator<Item = &'a Fingerprint>) {
        for fp in fps {
            // Looked up first: a held order's codes are mostly known, and need no new key.
            match self.since.get_mut(&fp.code) {
                Some(latest) => *latest = (*latest).max(fp.used_at_ms),
                None => {
                    self.since.insert(fp.code.clone(), fp.used_at_ms);
                }
            }
        }
    }
}

/// What one fold moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Folded {
    pub(crate) fingerprints: u64,
    pub(crate) uses: u64,
    pub(crate) entries: u64,
    /// Entries folded into `audit_by_app`.
    pub(crate) app_entries: u64,
}

/// The newest use, entry and pending fingerprint: where a fold may go up to; and the id before
/// the oldest pending fingerprint, where its fingerprints start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ends {
    use_id: i64,
    audit_seq: i64,
    /// The id before the oldest pending fingerprint (0 if there is none).
    fingerprint_after: i64,
    fingerprint_id: i64,
}

/// The current [`Ends`] (four lookups of a rowid table's first or last key).
fn ends(conn: &Connection) -> Result<Ends, LedgerError> {
    conn.prepare_cached(statements::SQLITE_FOLD_ENDS)
        .during("preparing the fold ends")?
        .query_row([], |row| {
            Ok(Ends {
                use_id: row.get(0)?,
                audit_seq: row.get(1)?,
                fingerprint_after: row.get(2)?,
                fingerprint_id: row.get(3)?,
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
    // Fewer moved than forgotten: a staged fold had copied the others already.
    if moved > forgotten {
        return Err(LedgerError::Internal(format!(
            "the fold moved {moved} fingerprints but forgot {forgotten}"
        )));
    }
    Ok(forgotten)
}

/// One of the four lookups a fold builds, each with its own mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Pending fingerprints into `folded_fingerprints`.
    Fingerprints,
    /// Uses into `uses_by_code`, up to `ledger_fold.use_id`.
    Uses,
    /// Entries into `audit_by_order`, up to `ledger_fold.audit_seq`.
    Audit,
    /// Entries into `audit_by_app`, up to `ledger_fold.app_seq` (migration 0013).
    Apps,
}

impl Part {
    /// Every part.
    pub(crate) const ALL: [Part; 4] = [Part::Fingerprints, Part::Uses, Part::Audit, Part::Apps];

    /// The keys of this part's rows a fold moves, `(after, upto]`: from its mark to the newest
    /// row (the pending fingerprints have no mark: every one of them is moved, from the
    /// oldest).
    fn bounds(self, marks: Marks, ends: Ends) -> (i64, i64) {
        let from = |mark: i64, newest: i64| (mark, newest.max(mark));
        match self {
            Part::Fingerprints => from(ends.fingerprint_after, ends.fingerprint_id),
            Part::Uses => from(marks.use_id, ends.use_id),
            Part::Audit => from(marks.audit_seq, ends.audit_seq),
            Part::Apps => from(marks.app_seq, ends.audit_seq),
        }
    }

    /// The statement moving this part's mark (bind the new mark, the old), if it has one.
    fn advance(self) -> Option<&'static str> {
        match self {
            Part::Fingerprints => None,
            Part::Uses => Some(statements::SQLITE_FOLD_ADVANCE_USES),
            Part::Audit => Some(statements::SQLITE_FOLD_ADVANCE_AUDIT),
            Part::Apps => Some(statements::SQLITE_FOLD_ADVANCE_APPS),
        }
    }
}

impl Folded {
    /// Records that `part` moved `n` rows.
    fn record(&mut self, part: Part, n: u64) {
        match part {
            Part::Fingerprints => self.fingerprints = n,
            Part::Uses => self.uses = n,
            Part::Audit => self.entries = n,
            Part::Apps => self.app_entries = n,
        }
    }
}

/// Moves `part`'s mark from `from` to `to`: it must change one row, or something else folded
/// meanwhile.
fn advance(conn: &Connection, part: Part, (from, to): (i64, i64)) -> Result<(), LedgerError> {
    if let Some(sql) = part.advance() {
        let advanced = run(conn, sql, [to, from], "advancing a fold mark")?;
        crate::rows::one_row(advanced, "ledger_fold")?;
    }
    Ok(())
}

/// Folds one part of everything appended since the last fold, inside the caller's write
/// transaction; returns the rows moved.
pub(crate) fn fold_one(conn: &Connection, part: Part) -> Result<u64, LedgerError> {
    let bounds = part.bounds(marks(conn)?, ends(conn)?);
    let (sql, during) = match part {
        Part::Fingerprints => return move_fingerprints(conn, bounds.0, bounds.1),
        Part::Uses => (statements::SQLITE_FOLD_USES, "folding uses"),
        Part::Audit => (statements::SQLITE_FOLD_AUDIT, "folding the audit trail"),
        Part::Apps => (
            statements::SQLITE_FOLD_APPS,
            "folding the audit trail by app",
        ),
    };
    let moved = run(conn, sql, [bounds.0, bounds.1], during)?;
    advance(conn, part, bounds)?;
    Ok(moved)
}

/// Folds every part, inside the caller's write transaction.
pub(crate) fn fold(conn: &Connection) -> Result<Folded, LedgerError> {
    Ok(Folded {
        fingerprints: fold_one(conn, Part::Fingerprints)?,
        uses: fold_one(conn, Part::Uses)?,
        entries: fold_one(conn, Part::Audit)?,
        app_entries: fold_one(conn, Part::Apps)?,
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
    let mut folded = Folded::default();
    in_transaction(conn, "a fold", || {
        parts.iter().try_for_each(|&part| {
            folded.record(part, fold_one(conn, part)?);
            Ok(())
        })
    })?;
    if parts.contains(&Part::Fingerprints) {
        pending.emptied();
    }
    Ok(folded)
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

/// Rows a staged fold copies per transaction. A slice of sorted keys fills neighbouring
/// pages, so slicing costs few extra page writes. At 5,000 verifies/s (60 s, soak shape) slices
/// of 256 gave a p99 of 15.6–16.5 ms, slices of 1,024 23.3–37.1 ms.
pub(crate) const SLICE: usize = 256;

/// Keys of the appended tables a staged fold reads per step (a range of rowids, so a read
/// costs what it returns; the rows are sorted once all are read).
pub(crate) const READ: i64 = 1_024;

/// The rows of one part, sorted by key once all are read.
#[derive(Debug)]
enum Rows {
    /// Each with its request and its id in `pending_fingerprints`.
    Fingerprints(Vec<(Key, String, i64)>),
    Uses(Vec<(i64, String, i64, i64)>),
    Entries(Vec<(i64, i64)>),
    AppEntries(Vec<(String, i64)>),
}

impl Rows {
    fn new(part: Part) -> Self {
        match part {
            Part::Fingerprints => Rows::Fingerprints(Vec::new()),
            Part::Uses => Rows::Uses(Vec::new()),
            Part::Audit => Rows::Entries(Vec::new()),
            Part::Apps => Rows::AppEntries(Vec::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Rows::Fingerprints(rows) => rows.len(),
            Rows::Uses(rows) => rows.len(),
            Rows::Entries(rows) => rows.len(),
            Rows::AppEntries(rows) => rows.len(),
        }
    }

    /// Appends the rows with keys in `(after, upto]`.
    fn read(&mut self, conn: &Connection, after: i64, upto: i64) -> Result<(), LedgerError> {
        let bounds = [after, upto];
        match self {
            Rows::Fingerprints(rows) => append(
                conn,
                statements::SQLITE_STAGE_FINGERPRINTS,
                bounds,
                rows,
                |row| {
                    Ok((
                        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?),
                        row.get(4)?,
                        row.get(5)?,
                    ))
                },
            ),
            Rows::Uses(rows) => append(conn, statements::SQLITE_STAGE_USES, bounds, rows, |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            }),
            Rows::Entries(rows) => {
                append(conn, statements::SQLITE_STAGE_AUDIT, bounds, rows, |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
            }
            Rows::AppEntries(rows) => {
                append(conn, statements::SQLITE_STAGE_APPS, bounds, rows, |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
            }
        }
    }

    /// Sorts by the folded table's key, so that consecutive rows share pages.
    fn sort(&mut self) {
        match self {
            // `folded_fingerprints`' key: order, gate time, code, quantity (migration 0014).
            Rows::Fingerprints(rows) => {
                rows.sort_unstable_by(|((o1, c1, t1, q1), ..), ((o2, c2, t2, q2), ..)| {
                    (o1, t1, c1, q1).cmp(&(o2, t2, c2, q2))
                })
            }
            // `uses_by_code`' key: order, record time, use (migration 0015).
            Rows::Uses(rows) => {
                rows.sort_unstable_by_key(|&(order, _, recorded_at, id)| (order, recorded_at, id))
            }
            Rows::Entries(rows) => rows.sort_unstable(),
            Rows::AppEntries(rows) => rows.sort_unstable(),
        }
    }
}

/// Appends the rows `sql` reads with `bounds` to `rows`, each made by `map`.
fn append<T>(
    conn: &Connection,
    sql: &str,
    bounds: [i64; 2],
    rows: &mut Vec<T>,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<(), LedgerError> {
    let during = "reading what a staged fold copies";
    let mut stmt = conn.prepare_cached(sql).during(during)?;
    for row in stmt.query_map(bounds, map).during(during)? {
        rows.push(row.during(during)?);
    }
    Ok(())
}

/// What a [`Staged::step`] left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// More steps are needed.
    More,
    /// The marks moved: the fold is complete.
    Done(Folded),
}

/// Pending fingerprints a staged fold forgets per transaction, once all of them are copied.
/// Forgetting them all in the fold's last transaction held the writer 3.3–4.5 ms once a
/// second at 10,000 verifies/s (about 10,000 rows); a copied fingerprint may be forgotten at
/// any time, since a lookup finds it folded.
pub(crate) const FORGET: i64 = 2_048;

/// A fold in progress, a step at a time (see the module docs): per part, steps read its rows
/// [`READ`] keys at a time, then each step copies [`SLICE`] of them, sorted, in a
/// transaction; once the fingerprints are copied, steps forget [`FORGET`] of the pending ones
/// at a time; a last step moves the marks.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The marks when the fold started: every step checks they did not move.
    marks: Marks,
    ends: Ends,
    /// Index into [`Part::ALL`] of the part being read or copied; `Part::ALL.len()` when
    /// finishing.
    part: usize,
    /// The current part's rows read so far.
    rows: Option<Rows>,
    /// The key up to which the current part's rows were read.
    read_to: i64,
    /// Whether all of the current part's rows are read (and sorted).
    sorted: bool,
    /// The next row of `rows` to copy.
    next: usize,
    /// While the copied pending fingerprints are being forgotten: the id up to which they
    /// are.
    forgot_to: Option<i64>,
    /// The ids of the pending fingerprints copied, in order: a slice forgets exactly those in
    /// its range, or nothing.
    copied_ids: Vec<i64>,
    folded: Folded,
}

impl Staged {
    /// A fold of everything appended up to now, or `None` if nothing is.
    pub(crate) fn start(conn: &Connection) -> Result<Option<Self>, LedgerError> {
        let marks = marks(conn)?;
        let ends = ends(conn)?;
        let nothing = |part: Part| {
            let (after, upto) = part.bounds(marks, ends);
            upto <= after
        };
        if Part::ALL.into_iter().all(nothing) {
            return Ok(None);
        }
        let mut staged = Self {
            marks,
            ends,
            part: 0,
            rows: None,
            read_to: 0,
            sorted: false,
            next: 0,
            forgot_to: None,
            copied_ids: Vec::new(),
            folded: Folded::default(),
        };
        staged.begin_part();
        Ok(Some(staged))
    }

    /// The keys of `part`'s rows this fold moves: `(after, upto]`.
    fn bounds(&self, part: Part) -> (i64, i64) {
        part.bounds(self.marks, self.ends)
    }

    fn begin_part(&mut self) {
        if let Some(&part) = Part::ALL.get(self.part) {
            self.rows = Some(Rows::new(part));
            self.read_to = self.bounds(part).0;
            self.sorted = false;
            self.next = 0;
        }
    }

    /// What the next step does, for the writer's trace: `read`, `copy` or `forget` and the
    /// part (`fingerprints`, `uses`, `audit`, `apps`), or `finish`.
    pub(crate) fn next_step(&self) -> &'static str {
        let Some(part) = Part::ALL.get(self.part) else {
            return "finish";
        };
        match (part, self.forgot_to.is_some(), self.sorted) {
            (_, true, _) => "forget fingerprints",
            (Part::Fingerprints, _, false) => "read fingerprints",
            (Part::Fingerprints, _, true) => "copy fingerprints",
            (Part::Uses, _, false) => "read uses",
            (Part::Uses, _, true) => "copy uses",
            (Part::Audit, _, false) => "read audit",
            (Part::Audit, _, true) => "copy audit",
            (Part::Apps, _, false) => "read apps",
            (Part::Apps, _, true) => "copy apps",
        }
    }

    /// Takes the next step. An error leaves the marks where they were: the caller drops the
    /// fold, and the next one starts again from the marks (copies already made are skipped).
    pub(crate) fn step(
        &mut self,
        conn: &Connection,
        pending: &mut Pending,
    ) -> Result<Step, LedgerError> {
        let Some(&part) = Part::ALL.get(self.part) else {
            return self.finish(conn).map(Step::Done);
        };
        let (_, end) = self.bounds(part);
        let started = self.marks;
        if let Some(from) = self.forgot_to {
            return self.forget(conn, from, end);
        }
        let Some(rows) = self.rows.as_mut() else {
            return self.finish(conn).map(Step::Done);
        };
        if !self.sorted {
            let upto = end.min(self.read_to.saturating_add(READ));
            rows.read(conn, self.read_to, upto)?;
            self.read_to = upto;
            if upto >= end {
                rows.sort();
                self.sorted = true;
                self.folded.record(part, count(rows.len()));
            }
            return Ok(Step::More);
        }
        let end = rows.len().min(self.next.saturating_add(SLICE));
        let next = self.next;
        let rows = &*rows;
        in_transaction(conn, "a staged fold's slice", || {
            check_marks(conn, started)?;
            copy(conn, rows, next..end)
        })?;
        // The slice's fingerprints are folded now, where every lookup finds them: the writer
        // forgets them at once, a slice at a time, rather than all at the fold's end (which
        // held the writer 5.2 ms at the mean, once a fold, at 12,000 verifies/s).
        if let Rows::Fingerprints(rows) = rows {
            pending.remove(
                rows.get(next..end)
                    .unwrap_or(&[])
                    .iter()
                    .map(|(key, ..)| key),
            );
        }
        self.next = end;
        if end == rows.len() {
            match self.rows.take() {
                Some(Rows::Fingerprints(rows)) => {
                    let mut ids: Vec<i64> = rows.into_iter().map(|(.., id)| id).collect();
                    ids.sort_unstable();
                    self.copied_ids = ids;
                    self.forgot_to = Some(self.bounds(part).0);
                }
                _ => self.next_part(),
            }
        }
        Ok(Step::More)
    }

    fn next_part(&mut self) {
        self.part = self.part.saturating_add(1);
        self.begin_part();
    }

    /// Forgets the copied pending fingerprints with ids in `(from, from + FORGET]`, up to
    /// `end`.
    ///
    /// A slice must delete exactly the copied ids in its range, or it rolls back: a pending
    /// fingerprint this fold did not copy is never forgotten, and since the slices cover the
    /// whole range the fold read, every copied one is forgotten. (None should be there: new
    /// fingerprints take ids above the newest, and the newest in the range is forgotten
    /// last.)
    fn forget(&mut self, conn: &Connection, from: i64, end: i64) -> Result<Step, LedgerError> {
        let upto = end.min(from.saturating_add(FORGET));
        let ids = &self.copied_ids;
        let expected = count(
            ids.partition_point(|&id| id <= upto)
                .saturating_sub(ids.partition_point(|&id| id <= from)),
        );
        if upto > from {
            in_transaction(conn, "forgetting folded fingerprints", || {
                check_marks(conn, self.marks)?;
                let forgotten = run(
                    conn,
                    statements::SQLITE_FOLD_FORGET_FINGERPRINTS,
                    [from, upto],
                    "forgetting folded fingerprints",
                )?;
                if forgotten == expected {
                    Ok(())
                } else {
                    Err(LedgerError::Internal(format!(
                        "a staged fold copied {expected} fingerprints with ids in \
                         ({from}, {upto}] but would forget {forgotten}"
                    )))
                }
            })?;
        }
        if upto < end {
            self.forgot_to = Some(upto);
            return Ok(Step::More);
        }
        self.forgot_to = None;
        self.next_part();
        Ok(Step::More)
    }

    /// The last step: moves the marks. (The folded fingerprints left [`Pending`] slice by
    /// slice as they were copied.)
    fn finish(&mut self, conn: &Connection) -> Result<Folded, LedgerError> {
        in_transaction(conn, "finishing a staged fold", || {
            check_marks(conn, self.marks)?;
            Part::ALL
                .into_iter()
                .try_for_each(|part| advance(conn, part, self.bounds(part)))?;
            Ok(())
        })?;
        Ok(self.folded)
    }
}

/// Fails if the marks are no longer `started`: something else folded during a staged fold.
fn check_marks(conn: &Connection, started: Marks) -> Result<(), LedgerError> {
    let now = marks(conn)?;
    if now == started {
        Ok(())
    } else {
        Err(LedgerError::Internal(format!(
            "the fold marks moved from {started:?} to {now:?} during a staged fold"
        )))
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// How far each lookup is folded (`ledger_fold`): every row up to its mark is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marks {
    use_id: i64,
    audit_seq: i64,
    app_seq: i64,
}

/// The [`Marks`] of `ledger_fold`.
fn marks(conn: &Connection) -> Result<Marks, LedgerError> {
    conn.prepare_cached(statements::SQLITE_FOLD_MARKS)
        .during("preparing the fold marks")?
        .query_row([], |row| {
            Ok(Marks {
                use_id: row.get(0)?,
                audit_seq: row.get(1)?,
                app_seq: row.get(2)?,
            })
        })
        .during("reading the fold marks")
}

/// Copies `range` of `rows` into their folded table.
fn copy(conn: &Connection, rows: &Rows, range: std::ops::Range<usize>) -> Result<(), LedgerError> {
    match rows {
        // One row a statement: 64 to a statement (which its foreign key makes keep a
        // statement journal) measured no faster (see `statements::STAGE_COPY_ROWS`).
        Rows::Fingerprints(rows) => copy_rows(
            conn,
            statements::SQLITE_STAGE_COPY_FINGERPRINT,
            None,
            rows.get(range).unwrap_or(&[]),
            |((order, code, used_at, quantity), request, _)| {
                [order as &dyn ToSql, code, used_at, quantity, request]
            },
        ),
        Rows::Uses(rows) => copy_rows(
            conn,
            statements::SQLITE_STAGE_COPY_USE,
            Some(&statements::SQLITE_STAGE_COPY_USES),
            rows.get(range).unwrap_or(&[]),
            |(order, code, recorded_at, id)| [order as &dyn ToSql, code, recorded_at, id],
        ),
        Rows::Entries(rows) => copy_rows(
            conn,
            statements::SQLITE_STAGE_COPY_ENTRY,
            Some(&statements::SQLITE_STAGE_COPY_ENTRIES),
            rows.get(range).unwrap_or(&[]),
            |(order, seq)| [order as &dyn ToSql, seq],
        ),
        Rows::AppEntries(rows) => copy_rows(
            conn,
            statements::SQLITE_STAGE_COPY_APP_ENTRY,
            Some(&statements::SQLITE_STAGE_COPY_APP_ENTRIES),
            rows.get(range).unwrap_or(&[]),
            |(app, seq)| [app as &dyn ToSql, seq],
        ),
    }
}

/// Inserts `rows`, each bound as `values` gives it: [`statements::STAGE_COPY_ROWS`] at a time
/// with `many` when there is one, and what is left (or every row) one at a time with `one`.
fn copy_rows<'r, T, const N: usize>(
    conn: &Connection,
    one: &str,
    many: Option<&str>,
    rows: &'r [T],
    values: impl Fn(&'r T) -> [&'r dyn ToSql; N],
) -> Result<(), LedgerError> {
    let during = "copying a staged fold's slice";
    let mut rest = rows;
    if let Some(many) = many {
        let mut chunks = rows.chunks_exact(statements::STAGE_COPY_ROWS);
        if chunks.len() > 0 {
            let mut insert = conn.prepare_cached(many).during(during)?;
            for chunk in &mut chunks {
                insert
                    .execute(params_from_iter(chunk.iter().flat_map(&values)))
                    .during(during)?;
            }
        }
        rest = chunks.remainder();
    }
    if !rest.is_empty() {
        let mut insert = conn.prepare_cached(one).during(during)?;
        for row in rest {
            insert
                .execute(params_from_iter(values(row)))
                .during(during)?;
        }
    }
    Ok(())
}

/// Runs `body` in a write transaction of its own: committed if it succeeds, rolled back if
/// not.
fn in_transaction(
    conn: &Connection,
    what: &'static str,
    body: impl FnOnce() -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    let during = |d| move |e: rusqlite::Error| super::rows::ledger_error(d, &e);
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(during("starting a fold transaction"))?;
    let result = body().and_then(|()| {
        conn.execute_batch("COMMIT")
            .map_err(during("committing a fold transaction"))
    });
    if result.is_err() && !conn.is_autocommit() {
        if let Err(rollback) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %rollback, what, "a failed fold could not be rolled back");
        }
    }
    result
}

/// Uses the writer adds to the counters per transaction ([`count_uses`]). A slice's uses are
/// summed per voucher and added in key order, so a counter page takes every use of the slice
/// that falls on it: 10,000 codes fill 84 leaf pages of `counted_vouchers` (`dbstat` of a bench
/// ledger), so a slice writes at most those 84 where its verifies themselves wrote one each.
///
/// A slice holds the writer, and every request that arrives meanwhile waits for it, so its
/// size is the writer's longest pause as much as its page economy. At 1,024 uses a slice held
/// the writer 1.8 ms at the median (max 4.0 ms) and was the longest step in flight for 21 % of
/// the requests over 5 ms at half load; at 256, 0.42 ms (max 3.6 ms) and 4 %, with the same
/// share of the writer's time (2.0 %) and a half-load p99 of 4.8–5.6 ms against 5.2–8.7 (five
/// 30 s runs each, alternating; 128 was worse, 5.5 and 6.1 ms). The price is the counter
/// pages written more often: 6.7–6.8 against 6.6–6.7 KB per verify at saturation, 817 against
/// 780 KB per 999-voucher request. docs/PERFORMANCE.md, "Seventeenth session".
pub(crate) const COUNT_SLICE: i64 = 256;

/// How far the counters go and the newest use: `(counted_use_id, max(voucher_uses.id))`.
pub(crate) fn count_marks(conn: &Connection) -> Result<(i64, i64), LedgerError> {
    conn.prepare_cached(statements::SQLITE_COUNT_MARKS)
        .during("preparing the counters' mark")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .during("reading the counters' mark")
}

/// Adds up to `limit` uses past `ledger_fold.counted_use_id` to `counted_vouchers` and moves
/// the mark past them, inside the caller's write transaction; returns the uses counted.
///
/// Each counter changes only while it stays within its capacity, and must change one row: a
/// use the verify's plan accepted always fits, so a miss means the file disagrees with the
/// log (a write from outside the store). The caller's transaction then rolls back, leaving the
/// uses past the mark, where every reader still counts them.
pub(crate) fn count_uses(conn: &Connection, limit: i64) -> Result<u64, LedgerError> {
    let (mark, _) = count_marks(conn)?;
    let during = "reading uses to count";
    let mut sums: std::collections::BTreeMap<(i64, String), i64> = Default::default();
    let mut last = mark;
    let mut read = 0_u64;
    let mut stmt = conn
        .prepare_cached(statements::SQLITE_UNCOUNTED_USES)
        .during(during)?;
    let mut rows = stmt.query(params![mark, limit]).during(during)?;
    while let Some(row) = rows.next().during(during)? {
        let (id, order, code, left): (i64, i64, String, i64) = (
            row.get(0).during(during)?,
            row.get(1).during(during)?,
            row.get(2).during(during)?,
            row.get(3).during(during)?,
        );
        let sum = sums.entry((order, code)).or_insert(0);
        *sum = sum
            .checked_add(left)
            .ok_or_else(|| LedgerError::Internal("a counter's folded uses overflow".into()))?;
        last = id;
        read += 1;
    }
    drop(rows);
    if read == 0 {
        return Ok(0);
    }
    let mut add = conn
        .prepare_cached(statements::SQLITE_COUNT_FOLDED_USES)
        .during("preparing the counter update")?;
    for ((order, code), uses) in &sums {
        // Uses wholly reversed before they were counted add nothing.
        if *uses == 0 {
            continue;
        }
        let changed = add
            .execute(params![uses, order, code, uses])
            .during("counting folded uses")?;
        crate::rows::one_row(count(changed), crate::rows::WRITE_VOUCHER_USED)?;
    }
    let advanced = conn
        .prepare_cached(statements::SQLITE_ADVANCE_COUNTED)
        .during("preparing the counters' mark")?
        .execute(params![last, mark])
        .during("moving the counters' mark")?;
    crate::rows::one_row(count(advanced), "ledger_fold.counted_use_id")?;
    Ok(read)
}

/// Counts every use past the mark, a slice at a time with `slice` (a slice ends the count when
/// it is not whole).
fn count_every(mut slice: impl FnMut() -> Result<u64, LedgerError>) -> Result<(), LedgerError> {
    while slice()? == u64::try_from(COUNT_SLICE).unwrap_or(u64::MAX) {}
    Ok(())
}

/// Counts every use past the mark inside the caller's write transaction (a reversal, which
/// changes a stored count).
pub(crate) fn count_all(conn: &Connection) -> Result<(), LedgerError> {
    count_every(|| count_uses(conn, COUNT_SLICE))
}

/// Counts every use past the mark, a slice per transaction (the store when it opens).
pub(crate) fn count_all_in_slices(conn: &Connection) -> Result<(), LedgerError> {
    count_every(|| count_slice(conn, COUNT_SLICE))
}

/// [`count_uses`] in a transaction of its own (the writer between batches).
pub(crate) fn count_slice(conn: &Connection, limit: i64) -> Result<u64, LedgerError> {
    let mut counted = 0;
    in_transaction(conn, "counting uses", || {
        counted = count_uses(conn, limit)?;
        Ok(())
    })?;
    Ok(counted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp_of(code: &str, at: i64) -> Fingerprint {
        Fingerprint {
            code: ConfirmCode::parse(code).expect("code"),
            used_at_ms: at,
            quantity: 1,
        }
    }

    fn fp(at: i64) -> Fingerprint {
        fp_of("CODE-A", at)
    }

    #[test]
    fn a_horizon_lets_through_only_passes_not_later_than_the_latest() {
        assert!(
            Horizon::default().may_hold(&fp(i64::MAX)),
            "one not read yet holds every pass"
        );
        let mut h = Horizon {
            read: Some(None),
            since: HashMap::new(),
        };
        assert!(
            !h.may_hold(&fp(i64::MIN)),
            "an order with no pass holds none"
        );
        h.add(&[fp(30), fp(10)]);
        assert!(h.may_hold(&fp(30)) && h.may_hold(&fp(-5)));
        assert!(!h.may_hold(&fp(31)));
        let before = h.clone();
        h.add(&[fp(20)]);
        assert_eq!(h, before, "an earlier pass does not move it");
        // Recorded while held: per code, so a group's codes in one second are all new.
        assert!(!h.may_hold(&fp_of("CODE-B", 30)));
        // Read from the database: the order's latest, whatever the code.
        let read = Horizon {
            read: Some(Some(30)),
            since: HashMap::new(),
        };
        assert!(read.may_hold(&fp_of("CODE-B", 30)) && !read.may_hold(&fp_of("CODE-B", 31)));
    }

    #[test]
    fn the_latest_pending_pass_per_order_stays_bounded_by_the_pending_ones() {
        // Far past the slack: 100,000 orders with a pending pass each, all folded by staged
        // slices (`remove`), which never lower an order's latest on their own.
        let keys: HashSet<Key> = (0..100_000)
            .map(|order| (order, "CODE-A".to_owned(), order * 10, 1))
            .collect();
        let mut pending = Pending {
            held: Some(Held::of(keys.clone())),
        };
        let all: Vec<Key> = keys.into_iter().collect();
        for slice in all.chunks(256) {
            pending.remove(slice);
            let held = pending.held.as_ref().expect("held");
            assert!(
                held.newest.len() <= 2 * held.keys.len() + 1_024,
                "{} orders for {} keys",
                held.newest.len(),
                held.keys.len()
            );
        }
        assert_eq!(pending.len(), 0);
        // What is left is an upper bound, never lower than a pending pass.
        pending.add(OrderId::new(7).expect("id"), &[fp(5)]);
        let held = pending.held.as_ref().expect("held");
        assert!(held.newest.get(&7).is_some_and(|&t| t >= 5));
    }
}
