//! A batch of verifies planned and written in bulk (steps 1 to 3 of [`super::batch`]): a
//! fixed number of statements whatever the batch's size, the rows of each table travelling
//! as one JSON parameter.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Either};
use ticket_ledger::{
    plan_verify, refusal_anomaly, ConfirmCode, Fingerprint, LedgerError, OrderId, OrderSnapshot,
    VerifyCommand, VerifyOutcome, VerifyUses, VoucherRecord,
};

use super::db::{During, Failure};
use super::engine::{BatchRead, Engine, PREPARED_WRITE_EVENTS, PREPARED_WRITE_VERIFY};
use super::queries::{all, q, q_owned};
use super::trace::Mark;
use crate::plan_rows::{events, EventRow, FingerprintRow, VerifyRows, WRITE_EVENT_SEQ};
use crate::rows::{self, ReadRow, WRITE_REFUND_REVIEW, WRITE_VOUCHER_USED};
use crate::statements::{
    BulkInsert, ADVANCE_EVENT_SEQ_BY, BULK_COUNT_USES, BULK_INSERT_ANOMALIES, BULK_INSERT_AUDIT,
    BULK_INSERT_EVENTS, BULK_INSERT_FINGERPRINTS, BULK_INSERT_VOUCHER_USES,
    BULK_MARK_REFUND_REVIEWS, BULK_SELECT_VOUCHERS,
};

/// The answers of a batch, in its order.
pub(crate) type Answers = Vec<Result<VerifyOutcome, LedgerError>>;

/// The batch's orders, in `order_id` order (the order they are locked in).
pub(crate) fn order_ids(cmds: &[&VerifyCommand]) -> Vec<i64> {
    let mut ids: Vec<i64> = cmds
        .iter()
        .filter_map(|c| c.order.order_id())
        .map(OrderId::get)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Steps 1 and 2: locks and reads, then plans every verify, on snapshots that earlier verifies
/// of the batch have already updated. A refused verify contributes nothing but the anomaly its
/// refusal raises.
pub(crate) async fn plan_batch(
    conn: &mut AnyConnection,
    e: Engine,
    cmds: &[&VerifyCommand],
) -> Result<(Answers, VerifyRows), Failure> {
    let (mut orders, mut known) = read_batch(conn, e, cmds).await?;

    let mut answers = Vec::with_capacity(cmds.len());
    let mut rows = VerifyRows::default();
    for cmd in cmds {
        let id = cmd.order.order_id();
        let snapshot = id.and_then(|id| orders.get_mut(&id.get()));
        let Some(snapshot) = snapshot else {
            let refusal = LedgerError::OrderNotFound;
            if let Some(anomaly) = refusal_anomaly(&refusal, id, Some(&cmd.app_key), &cmd.meta) {
                rows.add_anomaly(&anomaly);
            }
            answers.push(Err(refusal));
            continue;
        };
        let order = snapshot.order.order_id.get();
        snapshot.seen = cmd
            .fingerprints()
            .into_iter()
            .filter(|fp| known.contains(&(order, fp.clone())))
            .collect();
        match plan_verify(snapshot, cmd) {
            Ok(plan) => {
                rows.add(snapshot, &plan, cmd);
                known.extend(plan.new_fingerprints.iter().map(|fp| (order, fp.clone())));
                // The next verify of this order in the batch is planned on the result. A plan
                // always fits the snapshot it was made from.
                if !plan.apply_to(snapshot) {
                    return Err(Failure::Conflict("a plan did not fit its own snapshot"));
                }
                answers.push(Ok(plan.outcome));
            }
            Err(refusal) => {
                if let Some(anomaly) = refusal_anomaly(&refusal, id, Some(&cmd.app_key), &cmd.meta)
                {
                    rows.add_anomaly(&anomaly);
                }
                answers.push(Err(refusal));
            }
        }
    }
    Ok((answers, rows))
}

/// Locks the batch's orders (in `order_id` order) and reads what its verifies are planned on:
/// each order's vouchers and refund requests (the snapshots, by `order_id`), and those of the
/// batch's fingerprints already recorded, as `(order_id, fingerprint)`.
///
/// An order whose verifies all name their codes gets a snapshot in brief ([`summarise`]): the
/// named codes, and the rest of its codes as one voucher holding their totals, which the
/// database keeps on the order's row. Every rule of `plan_verify` reads the codes a verify
/// names and the order's totals, nothing else of the other codes (the order's capacity and
/// uses, its status, what a refund holds); only a legacy report without a code draws down the
/// codes one by one in issuance order, so an order with such a verify in the batch is read
/// whole, as is an order whose totals are beyond a `BIGINT`.
///
/// The lock and the three reads go out together ([`run_reads`]): what each read asks for
/// follows from the batch alone, not from what the lock finds. Orders that turn out not to
/// exist get no snapshot, and an order the brief read cannot summarise is read whole by one
/// more statement.
async fn read_batch(
    conn: &mut AnyConnection,
    e: Engine,
    cmds: &[&VerifyCommand],
) -> Result<Snapshots, Failure> {
    let ids_json = to_json(&order_ids(cmds))?;
    // The codes each order's verifies name; `None` for an order read whole.
    let mut named: HashMap<i64, Option<HashSet<&ConfirmCode>>> = HashMap::new();
    for cmd in cmds {
        let Some(id) = cmd.order.order_id().map(OrderId::get) else {
            continue;
        };
        let codes = named.entry(id).or_insert_with(|| Some(HashSet::new()));
        match (&cmd.uses, codes.as_mut()) {
            (VerifyUses::Vouchers { entries, .. }, Some(codes)) => {
                codes.extend(entries.iter().map(|entry| &entry.code));
            }
            (VerifyUses::Code { code, .. }, Some(codes)) => {
                codes.insert(code);
            }
            (VerifyUses::Order { .. }, _) => *codes = None,
            (_, None) => {}
        }
    }
    let keys: Vec<NamedCode<'_>> = named
        .iter()
        .filter_map(|(id, codes)| Some((*id, codes.as_ref()?)))
        .flat_map(|(id, codes)| {
            codes.iter().map(move |code| NamedCode {
                order_id: id,
                code: code.as_str(),
            })
        })
        .collect();
    let wanted: Vec<FingerprintRow> = cmds
        .iter()
        .filter_map(|c| c.order.order_id().map(|id| (id, c)))
        .flat_map(|(id, c)| c.fingerprints().into_iter().map(move |fp| (id.get(), fp)))
        .enumerate()
        .map(|(i, (o, fp))| FingerprintRow::new(i, o, &fp, None))
        .collect();

    let mut reads = vec![
        (BatchRead::LockOrders, ids_json.clone()),
        (BatchRead::Refunds, ids_json),
    ];
    if !keys.is_empty() {
        reads.push((BatchRead::NamedVouchers, to_json(&keys)?));
    }
    if !wanted.is_empty() {
        reads.push((BatchRead::KnownFingerprints, to_json(&wanted)?));
    }
    // `run_reads` answers one result per read, in order.
    let mut results = run_reads(conn, e, &reads).await?.into_iter();
    let mut next = || results.next().unwrap_or_default();

    let locked = next()
        .iter()
        .map(|row| {
            let totals = match (row.opt_int(11)?, row.opt_int(12)?) {
                (Some(capacity), Some(used)) => Some(Totals {
                    count: row.int(10)?,
                    capacity,
                    used,
                }),
                _ => None,
            };
            Ok((rows::order(row)?, totals))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .during("locking the batch's orders")?;
    let mut totals: HashMap<i64, Option<Totals>> = HashMap::with_capacity(locked.len());
    let mut orders: HashMap<i64, OrderSnapshot> = HashMap::with_capacity(locked.len());
    for (order, order_totals) in locked {
        let id = order.order_id.get();
        totals.insert(id, order_totals);
        orders.insert(
            id,
            OrderSnapshot {
                order,
                vouchers: Vec::new(),
                seen: HashSet::new(),
                refunds: Vec::new(),
            },
        );
    }
    let mut refunds = next()
        .iter()
        .map(|row| Ok((row.int(0)?, rows::refund(&Shifted(row))?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .during("reading the batch's refunds")?;
    let mut found_by_order: HashMap<i64, Vec<NamedRow>> = HashMap::new();
    if !keys.is_empty() {
        for row in next() {
            let row = NamedRow::read(&row).during("reading the batch's vouchers")?;
            found_by_order.entry(row.order_id).or_default().push(row);
        }
    }
    let known = if wanted.is_empty() {
        HashSet::new()
    } else {
        let found = next()
            .iter()
            .map(|row| Ok((row.int(0)?, row.text(1)?, row.int(2)?, row.int(3)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .during("looking up the batch's fingerprints")?;
        known_of(&wanted, found, &orders)
    };

    let mut whole: Vec<i64> = Vec::new();
    for (id, codes) in &named {
        // No snapshot for an order that does not exist.
        let Some(order_totals) = totals.get(id) else {
            continue;
        };
        let brief = match (codes, order_totals) {
            (Some(codes), Some(order_totals)) => summarise(
                found_by_order.remove(id).unwrap_or_default(),
                *order_totals,
                codes,
            ),
            _ => None,
        };
        match (brief, orders.get_mut(id)) {
            (Some(vouchers), Some(s)) => s.vouchers = vouchers,
            _ => whole.push(*id),
        }
    }
    if !whole.is_empty() {
        whole.sort_unstable();
        let vouchers = all(
            conn,
            q_owned(e, e.select_by_ids(&BULK_SELECT_VOUCHERS)).bind(to_json(&whole)?),
            |row| Ok((row.int(0)?, rows::voucher(&Shifted(row))?)),
            "reading the batch's vouchers",
        )
        .await?;
        for (order, voucher) in vouchers {
            if let Some(s) = orders.get_mut(&order) {
                s.vouchers.push(voucher);
            }
        }
    }
    // Each order's in the order `SELECT_REFUNDS` reads one order's: sorted here, not by the
    // database (see `ByIdsOrder`).
    refunds.sort_by(|(a, x), (b, y)| {
        (a, x.requested_at, &x.flow_id).cmp(&(b, y.requested_at, &y.flow_id))
    });
    for (order, refund) in refunds {
        if let Some(s) = orders.get_mut(&order) {
            s.refunds.push(refund);
        }
    }
    Ok((orders, known))
}

/// What [`read_batch`] answers: the snapshots by `order_id`, and the batch's fingerprints
/// already recorded.
type Snapshots = (HashMap<i64, OrderSnapshot>, HashSet<(i64, Fingerprint)>);

/// What a batch's reads are called when they fail: they are sent together.
const READING_AT_ONCE: &str = "locking and reading the batch";

/// Begins the batch's transaction and runs `reads` (each with its JSON parameter) in it one
/// after another, and answers each one's rows.
///
/// The `BEGIN` and the reads go to the server in one round trip: one text-protocol query of
/// as many statements (PostgreSQL's simple query, MySQL's multi-statement `COM_QUERY`), each
/// parameter written in as a literal ([`literal`]): on PostgreSQL into an `EXECUTE` of the
/// read the connection prepared ([`Engine::prepared_statements`]), planned once per
/// connection; on MySQL into the statement's text ([`inline`]). Each
/// statement still runs on a snapshot taken when it starts (READ COMMITTED), and a locking
/// read reads the latest rows, so a read after the lock sees every write committed before the
/// lock was granted, as it would as a query of its own. A batch on PostgreSQL spent more of
/// its time waiting for ticketd's next statement, and for the server to wake up to it, than
/// running statements (half of the batch workers' connections' time at 64 clients, on two
/// cores); `docs/PERFORMANCE.md` (twentieth session) has what the round trips saved were
/// worth.
async fn run_reads(
    conn: &mut AnyConnection,
    e: Engine,
    reads: &[(BatchRead, String)],
) -> Result<Vec<Vec<AnyRow>>, Failure> {
    let mut text = String::from("BEGIN");
    for (read, json) in reads {
        text.push_str(";\n");
        let json = literal(e, json);
        match e {
            Engine::Postgres => {
                text.push_str(&format!("EXECUTE {} ({json})", read.prepared_name()));
            }
            Engine::MySql => text.push_str(&inline(&read.sql(e), &[&json])),
        }
    }
    let mut answers = Vec::with_capacity(reads.len());
    let mut rows = Vec::new();
    let mut stream = sqlx::raw_sql(AssertSqlSafe(text)).fetch_many(&mut *conn);
    let mut begun = false;
    while let Some(item) = stream.try_next().await.during(READING_AT_ONCE)? {
        match item {
            Either::Left(_) if !begun => begun = true,
            Either::Left(_) => answers.push(std::mem::take(&mut rows)),
            Either::Right(row) => rows.push(row),
        }
    }
    if answers.len() != reads.len() {
        return Err(Failure::Conflict(
            "the batch's reads answered too few results",
        ));
    }
    Ok(answers)
}

/// `text` (JSON that ticketd wrote, [`to_json`]) as a string literal of the engine's: on
/// PostgreSQL `E'…'` with quotes and backslashes doubled ([`pg_literal`]); on MySQL a
/// hexadecimal literal read as `utf8mb4`, which no character of the text can end early,
/// whatever the session's `sql_mode` says of backslashes.
fn literal(e: Engine, text: &str) -> String {
    match e {
        Engine::Postgres => pg_literal(text),
        Engine::MySql => {
            let mut out = String::with_capacity(2 * text.len() + 12);
            out.push_str("_utf8mb4 X'");
            for byte in text.bytes() {
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
            out.push('\'');
            out
        }
    }
}

/// The hexadecimal digits, by value.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// `sql` with each `?` replaced by the next of `params`, in one pass (a parameter's own text
/// is never searched).
fn inline(sql: &str, params: &[&str]) -> String {
    let mut out = String::with_capacity(sql.len() + params.iter().map(|p| p.len()).sum::<usize>());
    let mut params = params.iter();
    for c in sql.chars() {
        match (c, c == '?') {
            (_, true) => match params.next() {
                Some(param) => out.push_str(param),
                None => out.push(c),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// `text` as a PostgreSQL string literal (`E'…'`, quotes and backslashes doubled), whatever
/// `standard_conforming_strings` says. The text is JSON that ticketd wrote ([`to_json`]),
/// which holds no NUL.
fn pg_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A code a batch names, as
/// [`BULK_NAMED_VOUCHERS`](crate::statements::BULK_NAMED_VOUCHERS) reads it.
#[derive(Debug, Serialize)]
struct NamedCode<'a> {
    #[serde(rename = "o")]
    order_id: i64,
    #[serde(rename = "c")]
    code: &'a str,
}

/// A row of [`BULK_NAMED_VOUCHERS`](crate::statements::BULK_NAMED_VOUCHERS): a named code
/// that exists.
#[derive(Debug)]
struct NamedRow {
    order_id: i64,
    code: String,
    seq: i64,
    capacity: i64,
    used: i64,
}

impl NamedRow {
    fn read(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            order_id: row.int(0)?,
            code: row.text(1)?,
            seq: row.int(2)?,
            capacity: row.int(3)?,
            used: row.int(4)?,
        })
    }
}

/// An order's totals as the database keeps them on its row (`0008_order_totals`).
#[derive(Debug, Clone, Copy)]
struct Totals {
    /// Its codes.
    count: i64,
    /// Their capacities, summed.
    capacity: i64,
    /// Their uses, summed.
    used: i64,
}

/// One order's snapshot vouchers in brief: its named codes that exist, in issuance order, then
/// — when it has other codes — one voucher standing for all of them, with their summed
/// capacity and uses. `None` when the order must be read whole instead (rows that do not add
/// up to the totals).
///
/// The stand-in's code is one no verify of the batch names for this order, so a verify that
/// names an unknown code is still refused as not found, and no plan ever changes the
/// stand-in: a plan changes only the codes its verify names.
fn summarise(
    rows: Vec<NamedRow>,
    totals: Totals,
    named: &HashSet<&ConfirmCode>,
) -> Option<Vec<VoucherRecord>> {
    let mut codes: Vec<(i64, VoucherRecord)> = Vec::with_capacity(rows.len());
    for row in rows {
        codes.push((
            row.seq,
            VoucherRecord {
                code: ConfirmCode::parse(&row.code)?,
                capacity: row.capacity,
                used: row.used,
            },
        ));
    }
    codes.sort_unstable_by_key(|(seq, _)| *seq);
    let rest = totals.count.checked_sub(i64::try_from(codes.len()).ok()?)?;
    let rest_capacity = codes
        .iter()
        .try_fold(totals.capacity, |left, (_, v)| left.checked_sub(v.capacity))?;
    let rest_used = codes
        .iter()
        .try_fold(totals.used, |left, (_, v)| left.checked_sub(v.used))?;
    let mut vouchers: Vec<VoucherRecord> = codes.into_iter().map(|(_, v)| v).collect();
    if rest > 0 {
        vouchers.push(VoucherRecord {
            code: stand_in_code(named)?,
            capacity: rest_capacity,
            used: rest_used,
        });
    } else if rest < 0 || rest_capacity != 0 || rest_used != 0 {
        return None;
    }
    Some(vouchers)
}

/// A code none of `named` is: `~rest~`, longer if need be.
fn stand_in_code(named: &HashSet<&ConfirmCode>) -> Option<ConfirmCode> {
    let mut text = String::from("~rest~");
    while text.len() <= ConfirmCode::MAX_LEN {
        let code = ConfirmCode::parse(&text)?;
        if !named.contains(&code) {
            return Some(code);
        }
        text.push('~');
    }
    None
}

/// Those of `wanted` recorded (`found`: order, code, time, quantity) for an order of
/// `orders`, as `(order_id, fingerprint)`.
fn known_of(
    wanted: &[FingerprintRow],
    found: Vec<(i64, String, i64, i64)>,
    orders: &HashMap<i64, OrderSnapshot>,
) -> HashSet<(i64, Fingerprint)> {
    // Only fingerprints the batch asked about come back, so each matches one it holds.
    found
        .into_iter()
        .filter(|(order, ..)| orders.contains_key(order))
        .filter_map(|(order, code, used_at_ms, quantity)| {
            wanted
                .iter()
                .find(|w| {
                    w.voucher.order_id == order
                        && w.voucher.code.as_str() == code
                        && w.used_at_ms == used_at_ms
                        && w.quantity == quantity
                })
                .map(|w| (order, w.fingerprint()))
        })
        .collect()
}

/// A row that tells the batch committed: its first audit entry, or without one (every verify
/// refused) its first anomaly; `None` when it writes nothing (every accepted verify writes an
/// audit entry, and a refused one at most an anomaly).
pub(crate) fn mark(rows: &VerifyRows) -> Option<Mark> {
    if let Some(entry) = rows.audit.iter().find(|a| a.order_id.is_some()) {
        return Some(Mark::Audit {
            order_id: entry.order_id?,
            request_id: entry.request_id.clone(),
        });
    }
    rows.anomalies.first().map(|anomaly| Mark::Anomaly {
        order_id: anomaly.order_id,
        request_id: anomaly.request_id.clone(),
    })
}

/// Step 3 on MySQL: the rows of every plan of the batch, one statement per table that has
/// rows, the events last. PostgreSQL writes nothing here: its rows travel with the `COMMIT`
/// ([`commit_statement`]).
pub(crate) async fn write_verify(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &VerifyRows,
) -> Result<(), Failure> {
    match e {
        Engine::Postgres => Ok(()),
        Engine::MySql => write_verify_by_table(conn, e, rows).await,
    }
}

/// The statement that ends a batch's transaction: `COMMIT`, and on PostgreSQL before it the
/// batch's write ([`Engine::pg_write_verify`], which checks its own counts) and its events
/// ([`Engine::pg_write_events`]), so that the whole write travels in the commit's round trip:
/// two round trips a batch, the reads' and this. Both are `EXECUTE`s of the statements every
/// pooled connection prepared when it connected ([`Engine::prepared_statements`]), their
/// parameters written in as literals ([`pg_literal`]): planned once per connection, not once
/// per batch (written out whole instead, each planned anew, the four cells of
/// `docs/PERFORMANCE.md` ran 6 % slower than with three round trips).
///
/// A failed statement aborts the transaction, and the server skips what follows it in the
/// message, the `COMMIT` included. A connection lost while this message is out leaves the
/// batch's fate to the lookup of `Db::settle`, since the `COMMIT` may have run: the window
/// in which a commit's outcome can be unknown spans the write as well as the commit.
///
/// The events take the event counter's row, which every writer of the ledger waits for, so it
/// is held from the events to the commit and no longer (on MySQL the events are the last
/// write, [`write_events`]). A batch whose events find no counter row fails (their `seq` is
/// NULL, which the column refuses) and commits nothing.
pub(crate) fn commit_statement(e: Engine, rows: &VerifyRows) -> Result<String, Failure> {
    if e == Engine::MySql {
        return Ok("COMMIT".to_owned());
    }
    let mut statement = String::new();
    if !writes_nothing(rows) {
        statement += &format!(
            "EXECUTE {PREPARED_WRITE_VERIFY} ({}, {}, {}, {}, {}, {}, {}, {});\n",
            pg_literal(&to_json(&rows.counts)?),
            pg_literal(&to_json(&rows.reviews)?),
            pg_literal(&to_json(&rows.uses)?),
            pg_literal(&to_json(&rows.fingerprints)?),
            pg_literal(&to_json(&rows.audit)?),
            pg_literal(&to_json(&rows.anomalies)?),
            count(rows.counts.len()),
            count(rows.reviews.len()),
        );
    }
    let batch = batch_events(rows);
    if !batch.is_empty() {
        statement += &format!(
            "EXECUTE {PREPARED_WRITE_EVENTS} ({}, {});\n",
            count(batch.len()),
            pg_literal(&to_json(&batch)?)
        );
    }
    statement += "COMMIT";
    Ok(statement)
}

/// Whether a batch's plans write no row at all (every verify refused without an anomaly).
pub(crate) fn writes_nothing(rows: &VerifyRows) -> bool {
    rows.counts.is_empty()
        && rows.reviews.is_empty()
        && rows.uses.is_empty()
        && rows.fingerprints.is_empty()
        && rows.audit.is_empty()
        && rows.anomalies.is_empty()
}

/// Whether `error` says the connection's prepared statements ([`Engine::prepared_statements`])
/// cannot serve the batch: one is missing (`26000`: a pooler handed the session's statements
/// to another connection, or someone deallocated them) or its result's type changed since it
/// was prepared (`0A000`, "cached plan must not change result type": a migration changed a
/// column it reads). Either holds for every later batch on that connection, so the batch
/// closes it and runs again on another, which prepares them anew.
pub(crate) fn is_stale_prepared(e: Engine, error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    e == Engine::Postgres && matches!(db.code().as_deref(), Some("26000" | "0A000"))
}

/// The refusal a failed commit message ([`commit_statement`]) stands for, if it failed on one
/// of the batch's own checks: a write that changed no row. Either the write's count fell
/// short (`ticketd_write_changed_no_row`'s error, SQLSTATE `TK001`, naming the write as its
/// constraint), or the events found no event counter row (a NULL `seq` refused by
/// `ledger_events`, PostgreSQL's `not_null_violation`, which stands for the count of the
/// counter's row MySQL checks). `None` for any other error.
pub(crate) fn refusal_of(error: &dyn sqlx::error::DatabaseError) -> Option<LedgerError> {
    let write = match (error.code().as_deref(), error.constraint(), error.table()) {
        (Some("TK001"), Some(WRITE_VOUCHER_USED), _) => WRITE_VOUCHER_USED,
        (Some("TK001"), Some(WRITE_REFUND_REVIEW), _) => WRITE_REFUND_REVIEW,
        (Some("23502"), _, Some("ledger_events")) => WRITE_EVENT_SEQ,
        _ => return None,
    };
    Some(LedgerError::WriteChangedNoRow { write })
}

/// `len` as a count the database answers.
fn count(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// Step 3 on MySQL, which has no data-modifying `WITH`: one statement per table that has
/// rows.
async fn write_verify_by_table(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &VerifyRows,
) -> Result<(), Failure> {
    if !rows.counts.is_empty() {
        let changed = q_owned(e, e.bulk_update(&BULK_COUNT_USES))
            .bind(to_json(&rows.counts)?)
            .execute(&mut *conn)
            .await
            .during("counting the batch's uses")?
            .rows_affected();
        // Every order is locked and every count was planned on what was read under the lock,
        // so this cannot miss unless the database disagrees with what was read; then the
        // batch's verifies run alone (see the batch module docs), which pins the one whose
        // write changes no row.
        if changed != rows.counts.len() as u64 {
            return Err(Failure::Refused(LedgerError::WriteChangedNoRow {
                write: WRITE_VOUCHER_USED,
            }));
        }
        insert(
            conn,
            e,
            &BULK_INSERT_VOUCHER_USES,
            &rows.uses,
            "logging the batch's uses",
        )
        .await?;
    }
    insert(
        conn,
        e,
        &BULK_INSERT_FINGERPRINTS,
        &rows.fingerprints,
        "remembering the batch's fingerprints",
    )
    .await?;
    if !rows.reviews.is_empty() {
        // Every flow is a pending request of a locked order: each must match its row (both
        // engines count rows matched, so a request already marked counts too).
        let changed = q_owned(e, e.bulk_update(&BULK_MARK_REFUND_REVIEWS))
            .bind(to_json(&rows.reviews)?)
            .execute(&mut *conn)
            .await
            .during("marking refunds for review")?
            .rows_affected();
        if changed != rows.reviews.len() as u64 {
            return Err(Failure::Refused(LedgerError::WriteChangedNoRow {
                write: WRITE_REFUND_REVIEW,
            }));
        }
    }
    insert(
        conn,
        e,
        &BULK_INSERT_AUDIT,
        &rows.audit,
        "appending the batch's audit entries",
    )
    .await?;
    insert(
        conn,
        e,
        &BULK_INSERT_ANOMALIES,
        &rows.anomalies,
        "recording the batch's anomalies",
    )
    .await?;
    write_events(conn, e, rows).await
}

/// One event of a batch, with how far before the batch's last `seq` it is, and for an
/// anomaly's event the anomaly's request and kind.
#[derive(Serialize)]
struct BatchEvent<'a> {
    i: usize,
    back: usize,
    #[serde(flatten)]
    event: &'a EventRow,
    #[serde(skip_serializing_if = "Option::is_none")]
    anomaly_request: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anomaly_kind: Option<&'static str>,
}

/// Takes the batch's event `seq`s at once and writes its events with them: last, so the
/// counter row (which every writer of the ledger waits for) is held only through the commit.
async fn write_events(
    conn: &mut AnyConnection,
    e: Engine,
    rows: &VerifyRows,
) -> Result<(), Failure> {
    let batch = batch_events(rows);
    if batch.is_empty() {
        return Ok(());
    }
    let n = batch.len();
    let taken = q(e, ADVANCE_EVENT_SEQ_BY)
        .bind(count(n))
        .execute(&mut *conn)
        .await
        .during("taking the batch's event seqs")?
        .rows_affected();
    if taken != 1 {
        return Err(Failure::Refused(LedgerError::WriteChangedNoRow {
            write: WRITE_EVENT_SEQ,
        }));
    }
    insert(
        conn,
        e,
        &BULK_INSERT_EVENTS,
        &batch,
        "writing the batch's events",
    )
    .await
}

/// The batch's events, each with how far before the batch's last `seq` it is.
fn batch_events(rows: &VerifyRows) -> Vec<BatchEvent<'_>> {
    let events: Vec<_> = events(&rows.audit, &rows.anomalies).collect();
    let n = events.len();
    events
        .into_iter()
        .enumerate()
        .map(|(i, (event, anomaly))| BatchEvent {
            i,
            back: n - 1 - i,
            event,
            anomaly_request: anomaly.map(|a| a.request_id.as_str()),
            anomaly_kind: anomaly.map(|a| a.kind),
        })
        .collect()
}

/// Inserts `rows` with `statement`, nothing when there are none.
async fn insert<T: Serialize>(
    conn: &mut AnyConnection,
    e: Engine,
    statement: &BulkInsert,
    rows: &[T],
    during: &'static str,
) -> Result<(), Failure> {
    if rows.is_empty() {
        return Ok(());
    }
    q_owned(e, e.bulk_insert(statement))
        .bind(to_json(rows)?)
        .execute(conn)
        .await
        .during(during)
        .map(drop)
}

fn to_json<T: Serialize + ?Sized>(rows: &T) -> Result<String, Failure> {
    serde_json::to_string(rows).map_err(|e| {
        Failure::Refused(LedgerError::Internal(format!(
            "serialising a batch's rows: {e}"
        )))
    })
}

/// A row read with its first column (`order_id`) set aside: the shared readers of
/// [`crate::rows`] see the columns after it.
struct Shifted<'a>(&'a AnyRow);

impl ReadRow for Shifted<'_> {
    type Error = sqlx::Error;

    fn int(&self, column: usize) -> Result<i64, sqlx::Error> {
        self.0.int(column + 1)
    }

    fn opt_int(&self, column: usize) -> Result<Option<i64>, sqlx::Error> {
        self.0.opt_int(column + 1)
    }

    fn float(&self, column: usize) -> Result<f64, sqlx::Error> {
        self.0.float(column + 1)
    }

    fn text(&self, column: usize) -> Result<String, sqlx::Error> {
        self.0.text(column + 1)
    }

    fn opt_text(&self, column: usize) -> Result<Option<String>, sqlx::Error> {
        self.0.opt_text(column + 1)
    }

    fn corrupt(&self, column: usize, what: String) -> sqlx::Error {
        self.0.corrupt(column + 1, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_written_in_order_and_never_searched_for_placeholders() {
        assert_eq!(inline("a ? b ? c", &["'?'", "2"]), "a '?' b 2 c");
        assert_eq!(inline("no placeholder", &["x"]), "no placeholder");
        assert_eq!(
            inline("? ?", &["1"]),
            "1 ?",
            "a placeholder without a parameter stays"
        );
    }

    #[test]
    fn literals_cannot_be_ended_by_their_text() {
        let text = r#"{"c":"it's","d":"\\'); DROP TABLE vouchers; --","e":"中"}"#;
        assert_eq!(
            pg_literal(text),
            r#"E'{"c":"it''s","d":"\\\\''); DROP TABLE vouchers; --","e":"中"}'"#
        );
        let mysql = literal(Engine::MySql, text);
        let hex = mysql
            .strip_prefix("_utf8mb4 X'")
            .and_then(|rest| rest.strip_suffix('\''))
            .expect("a hexadecimal literal");
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{hex}");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        assert_eq!(String::from_utf8(bytes).expect("utf-8"), text);
    }

    fn code(text: &str) -> ConfirmCode {
        ConfirmCode::parse(text).expect("a valid code")
    }

    fn named(order_id: i64, text: &str, seq: i64, capacity: i64, used: i64) -> NamedRow {
        NamedRow {
            order_id,
            code: text.to_owned(),
            seq,
            capacity,
            used,
        }
    }

    fn totals(count: i64, capacity: i64, used: i64) -> Totals {
        Totals {
            count,
            capacity,
            used,
        }
    }

    #[test]
    fn the_codes_not_named_stand_in_as_one_voucher_with_their_totals() {
        let (a, b, missing) = (code("A"), code("B"), code("NOPE"));
        let wanted = HashSet::from([&a, &b, &missing]);
        let rows = vec![named(7, "B", 3, 5, 4), named(7, "A", 1, 5, 0)];
        let vouchers = summarise(rows, totals(500, 2_500, 1_000), &wanted).expect("a summary");
        let codes: Vec<&str> = vouchers.iter().map(|v| v.code.as_str()).collect();
        // Issuance order, the unknown code absent (so still refused as not found), and the
        // other 498 codes as one voucher whose code no verify named.
        assert_eq!(codes, ["A", "B", "~rest~"]);
        assert_eq!((vouchers[2].capacity, vouchers[2].used), (2_490, 996));
        let capacity: i64 = vouchers.iter().map(|v| v.capacity).sum();
        let used: i64 = vouchers.iter().map(|v| v.used).sum();
        assert_eq!(
            (capacity, used),
            (2_500, 1_000),
            "the order's totals are kept"
        );
    }

    #[test]
    fn an_order_whose_codes_are_all_named_gets_no_stand_in() {
        let (a, b) = (code("A"), code("B"));
        let wanted = HashSet::from([&a, &b]);
        let rows = vec![named(7, "A", 1, 5, 0), named(7, "B", 2, 5, 1)];
        let vouchers = summarise(rows, totals(2, 10, 1), &wanted).expect("a summary");
        assert_eq!(vouchers.len(), 2);
    }

    #[test]
    fn an_order_without_codes_has_an_empty_snapshot() {
        let a = code("A");
        let vouchers =
            summarise(Vec::new(), totals(0, 0, 0), &HashSet::from([&a])).expect("a summary");
        assert!(vouchers.is_empty(), "planned as not issued");
    }

    #[test]
    fn totals_not_adding_up_send_the_order_to_a_whole_read() {
        let a = code("A");
        let wanted = HashSet::from([&a]);
        // One code of capacity 5 cannot total 6, nor can a code be missing from a count of 1
        // and uses be left over, nor more codes be named than the order has.
        assert!(summarise(vec![named(7, "A", 1, 5, 0)], totals(1, 6, 0), &wanted).is_none());
        assert!(summarise(Vec::new(), totals(0, 0, 1), &wanted).is_none());
        assert!(summarise(vec![named(7, "A", 1, 5, 0)], totals(0, 5, 0), &wanted).is_none());
        // A named code whose capacity is more than the total (rows read under another
        // snapshot) cannot be subtracted either.
        assert!(summarise(
            vec![named(7, "A", 1, i64::MAX, 0)],
            totals(2, -5, 0),
            &wanted
        )
        .is_none());
    }

    #[test]
    fn the_stand_in_code_is_never_one_the_batch_names() {
        let (rest, longer) = (code("~rest~"), code("~rest~~"));
        let chosen = stand_in_code(&HashSet::from([&rest, &longer])).expect("a free code");
        assert_eq!(chosen.as_str(), "~rest~~~");
    }
}
