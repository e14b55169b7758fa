//! Every SQL statement the stores run, each named once.
//!
//! Written with plain `?` placeholders: rusqlite binds them in order, and the sqlx engine
//! numbers them for PostgreSQL (`Engine::sql`). A statement both families run the same is
//! written once here; the few that only one family runs are named for it:
//!
//! - `SQLITE_*`: SQLite only;
//! - `LOCK_*` and `SERVER_*`: PostgreSQL and MySQL/MariaDB only (`SELECT … FOR UPDATE`, and
//!   what a write shared by several processes must look up again);
//! - `BULK_*`: the group commit's statements over one JSON parameter ([`BulkByIds`], [`BulkInsert`], [`BulkJoin`]); their text
//!   per engine is built by `Engine::bulk_*`.
//!
//! A statement that writes one row of [`crate::plan_rows`] is that row type's
//! [`WriteRow::SQL`](crate::plan_rows::WriteRow::SQL), and takes its values in the order the
//! row's `params` gives them. The `SELECT` lists are the ones [`crate::rows`] reads.

use std::sync::LazyLock;

use crate::rows::{
    anomaly_columns, app_columns, audit_columns, order_columns, refund_columns,
    rejected_call_columns, use_columns, voucher_columns,
};

// The tables written both one row at a time and in bulk, with the columns an insert names:
// macros, so that every statement that writes one is `concat!`ed from one list.

macro_rules! voucher_uses {
    () => {
        "voucher_uses (order_id, confirm_code, quantity, used_at_ms, recorded_at_ms, request_id)"
    };
}
macro_rules! verify_fingerprints {
    () => {
        "verify_fingerprints (order_id, confirm_code, used_at_ms, quantity, request_id)"
    };
}
macro_rules! audit_log {
    () => {
        "audit_log (request_id, at_ms, action, app_key, order_id, outcome, reason, detail, \
         client_ip)"
    };
}
macro_rules! anomalies {
    () => {
        "anomalies (kind, order_id, app_key, request_id, at_ms, detail, request)"
    };
}
macro_rules! uses_by_code {
    () => {
        "uses_by_code (order_id, confirm_code, recorded_at_ms, use_id)"
    };
}
macro_rules! audit_by_order {
    () => {
        "audit_by_order (order_id, seq)"
    };
}
macro_rules! audit_by_app {
    () => {
        "audit_by_app (app_key, seq)"
    };
}

// ---------------------------------------------------------------------------------------------
// Apps
// ---------------------------------------------------------------------------------------------

/// Registers an app ([`crate::plan_rows::AppRow`]).
pub(crate) const INSERT_APP: &str = concat!(
    "INSERT INTO apps (",
    app_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
);
/// Replaces an app's access settings ([`crate::plan_rows::AppAccessRow`]).
pub(crate) const UPDATE_APP_ACCESS: &str =
    "UPDATE apps SET rate_limit = ?, rate_burst = ?, ip_allowlist = ? WHERE app_key = ?";
/// Rotates an app's secret in one statement ([`crate::plan_rows::SecretRotationRow`]).
///
/// `previous_secret = secret` comes first: MySQL evaluates the assignments of an `UPDATE` left
/// to right with the values already assigned, PostgreSQL and SQLite with the old row, and this
/// order means the same on all of them.
pub(crate) const ROTATE_APP_SECRET: &str =
    "UPDATE apps SET previous_secret = secret, previous_secret_expires_at_ms = ?, secret = ? \
     WHERE app_key = ?";
/// One app by key.
pub(crate) const SELECT_APP: &str =
    concat!("SELECT ", app_columns!(), " FROM apps WHERE app_key = ?");
/// Every app, to fill the cache when a store opens.
pub(crate) const SELECT_APPS: &str = concat!("SELECT ", app_columns!(), " FROM apps");
/// The apps after a key in the key's byte order, at most the bound limit (bind the key, `""`
/// from the first, then the limit): SQLite compares TEXT as bytes (BINARY), MySQL's columns
/// are `utf8mb4_bin`. PostgreSQL's text follows the database's collation, so it runs
/// [`SERVER_LIST_APPS_POSTGRES`] instead.
pub(crate) const LIST_APPS: &str = concat!(
    "SELECT ",
    app_columns!(),
    " FROM apps WHERE app_key > ? ORDER BY app_key LIMIT ?"
);
/// [`LIST_APPS`] on PostgreSQL, compared and ordered as bytes (`COLLATE "C"`) whatever the
/// database's collation, so every store lists apps in one order. It sorts the apps after the
/// key rather than walk the key's index: the apps are a short table (every store caches all of
/// them in memory).
pub(crate) const SERVER_LIST_APPS_POSTGRES: &str = concat!(
    "SELECT ",
    app_columns!(),
    " FROM apps WHERE app_key COLLATE \"C\" > ? ORDER BY app_key COLLATE \"C\" LIMIT ?"
);

// ---------------------------------------------------------------------------------------------
// Orders and their vouchers
// ---------------------------------------------------------------------------------------------

/// Creates an order ([`crate::plan_rows::OrderRow`]).
pub(crate) const INSERT_ORDER: &str = "INSERT INTO orders (order_id, app_key, out_order_id, \
     quantity, valid_from_ms, valid_until_ms, created_at_ms, issue_state) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
/// Records an issuance report ([`crate::plan_rows::IssueStateRow`]); a value left NULL keeps
/// what is stored.
pub(crate) const UPDATE_ISSUE: &str = "UPDATE orders SET issue_state = ?, \
     issue_describe = coalesce(?, issue_describe), \
     issue_attributes = coalesce(?, issue_attributes), \
     out_order_id = coalesce(?, out_order_id) WHERE order_id = ?";
/// Issues a code ([`crate::plan_rows::VoucherRow`]), unused.
pub(crate) const INSERT_VOUCHER: &str = "INSERT INTO vouchers (order_id, confirm_code, seq, \
     capacity, used, voucher_type, extras) VALUES (?, ?, ?, ?, 0, ?, ?)";
/// One order by id.
pub(crate) const SELECT_ORDER: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders WHERE order_id = ?"
);
/// One order by the app's own id for it.
pub(crate) const SELECT_ORDER_BY_OUT: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders WHERE app_key = ? AND out_order_id = ?"
);
/// Whether an order exists (its id, or no row).
pub(crate) const SELECT_ORDER_ID: &str = "SELECT order_id FROM orders WHERE order_id = ?";
/// The id of the order an app names by its own id.
pub(crate) const SELECT_ORDER_ID_BY_OUT: &str =
    "SELECT order_id FROM orders WHERE app_key = ? AND out_order_id = ?";
/// An order's vouchers in issuance order.
pub(crate) const SELECT_VOUCHERS: &str = concat!(
    "SELECT ",
    voucher_columns!(),
    " FROM vouchers WHERE order_id = ? ORDER BY seq"
);
/// On SQLite, the uses of order `?1` past the counters' mark, summed per code (`t`), and the
/// order's stored counters (`v`), for the readers of one order. The view `vouchers` (migration
/// 0011) sums the whole tail of the use log on every read: an order of 10 codes behind a tail
/// of 1,024 uses read in 578 µs through it and in 33 µs with the tail filtered by order here
/// (20 µs with no tail), and the writer reads an order this way whenever its memory lacks it.
macro_rules! sqlite_order_counts_from {
    () => {
        "WITH t AS (SELECT confirm_code, sum(quantity - reversed) AS n FROM voucher_uses \
         WHERE id > (SELECT counted_use_id FROM ledger_fold WHERE id = 1) AND order_id = ?1 \
         GROUP BY confirm_code) \
         SELECT v.confirm_code, v.capacity, v.used + coalesce(t.n, 0) \
         FROM counted_vouchers AS v LEFT JOIN t USING (confirm_code) WHERE v.order_id = ?1"
    };
}
/// [`SELECT_VOUCHERS`] on SQLite (the columns of `voucher_columns!`; bind the order once).
pub(crate) const SQLITE_SELECT_VOUCHERS: &str =
    concat!(sqlite_order_counts_from!(), " ORDER BY v.seq");
/// An order's vouchers' `(code, capacity, used)` on SQLite, of which the reader of the order
/// list ([`crate::rows::OrderTotals`]) sums the last two exactly, in `i128`: SQL's `sum` fails
/// past `i64::MAX` (bind the order once).
pub(crate) const SQLITE_SELECT_VOUCHER_COUNTS: &str = sqlite_order_counts_from!();
/// Whether an order has a pending refund request (one row, or none).
pub(crate) const SQLITE_SELECT_REFUND_PENDING: &str =
    "SELECT 1 FROM refund_requests WHERE order_id = ? AND state = 'pending' LIMIT 1";
/// The `(order_id, capacity, used)` of every voucher of `orders` orders (bind each id): the
/// order list's totals in one round trip for a chunk of orders.
pub(crate) fn server_voucher_counts_of_orders(orders: usize) -> String {
    let marks = vec!["?"; orders].join(", ");
    format!("SELECT order_id, capacity, used FROM vouchers WHERE order_id IN ({marks})")
}
/// Those of `orders` orders that have a pending refund request (bind each id).
pub(crate) fn server_refund_pending_of_orders(orders: usize) -> String {
    let marks = vec!["?"; orders].join(", ");
    format!(
        "SELECT DISTINCT order_id FROM refund_requests \
         WHERE state = 'pending' AND order_id IN ({marks})"
    )
}
/// One voucher's `(capacity, used)` as it is now, for `rows::capacity_refusal`.
pub(crate) const SELECT_VOUCHER_COUNT: &str =
    "SELECT capacity, used FROM vouchers WHERE order_id = ? AND confirm_code = ?";
/// An order's refund requests, oldest first.
pub(crate) const SELECT_REFUNDS: &str = concat!(
    "SELECT ",
    refund_columns!(),
    " FROM refund_requests WHERE order_id = ? ORDER BY requested_at_ms, flow_id"
);
/// An order's latest entries, newest first (the caller reverses them), at most the bound
/// parameter: `ORDER BY seq DESC LIMIT` walks the `(order_id, seq)` index back from the
/// order's end, so the read costs what it returns, however long the history.
pub(crate) const SELECT_LATEST_EVENTS: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_log WHERE order_id = ? ORDER BY seq DESC LIMIT ?"
);
/// How many entries name an order, counted on the `(order_id, seq)` index alone.
pub(crate) const COUNT_EVENTS: &str = "SELECT count(*) FROM audit_log WHERE order_id = ?";
/// The `seq`s of an order's entries on SQLite (bind the order twice): the folded ones
/// (`audit_by_order` up to `ledger_fold.audit_seq`) and those of the short tail past it, each
/// entry in exactly one part.
macro_rules! sqlite_order_seqs {
    () => {
        "SELECT seq FROM audit_by_order WHERE order_id = ? \
         AND seq <= (SELECT audit_seq FROM ledger_fold) UNION ALL SELECT seq FROM audit_log \
         WHERE seq > (SELECT audit_seq FROM ledger_fold) AND order_id = ?"
    };
}
/// The clause selecting an order's entries on SQLite (bind the order twice).
pub(crate) const SQLITE_ORDER_ENTRIES: &str = concat!("seq IN (", sqlite_order_seqs!(), ")");
/// The entries of one app on SQLite, as a table the audit list reads instead of `audit_log`
/// (bind the app twice): those folded into `audit_by_app` (migration 0013) up to
/// `ledger_fold.app_seq`, joined to their entries, and the short tail past it. Not a
/// `seq IN (…)` clause like [`SQLITE_ORDER_ENTRIES`]: an app's entries are unbounded, and SQLite
/// flattens this `UNION ALL` into the list's query, so its other terms, its order and its limit
/// reach both arms, each of which walks its key in order and stops at the limit (a clause would
/// collect every entry of the app first).
pub(crate) const SQLITE_APP_AUDIT: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM (SELECT ",
    audit_columns!(),
    " FROM audit_by_app JOIN audit_log USING (app_key, seq) WHERE app_key = ? \
     AND seq <= (SELECT app_seq FROM ledger_fold) UNION ALL SELECT ",
    audit_columns!(),
    " FROM audit_log WHERE seq > (SELECT app_seq FROM ledger_fold) AND app_key = ?)"
);
/// [`SELECT_LATEST_EVENTS`] and [`COUNT_EVENTS`] in one statement on SQLite (bind the order
/// as `?1`, the bound as `?2`): each row is an entry, newest first, with the order's total
/// after it as `events_total` (no row: no entry). The newest folded `seq`s walk the `(order_id, seq)` key
/// back from the order's end; the tail past the fold's mark has no index by order and is
/// scanned, once (`MATERIALIZED`), for both the entries and the total. Two statements scanned
/// it twice: 16.80 ms behind 32,768 unfolded entries against 8.75 ms in the `sqlite3` shell
/// (docs/PERFORMANCE.md, "Fifteenth session").
pub(crate) const SQLITE_LATEST_EVENTS_AND_TOTAL: &str = concat!(
    "WITH mark(m) AS (SELECT audit_seq FROM ledger_fold), \
     tail(seq) AS MATERIALIZED (SELECT seq FROM audit_log \
     WHERE seq > (SELECT m FROM mark) AND order_id = ?1) \
     SELECT ",
    audit_columns!(),
    ", (SELECT count(*) FROM audit_by_order WHERE order_id = ?1 \
     AND seq <= (SELECT m FROM mark)) + (SELECT count(*) FROM tail) AS events_total \
     FROM audit_log WHERE seq IN (\
     SELECT seq FROM (SELECT seq FROM audit_by_order WHERE order_id = ?1 \
     AND seq <= (SELECT m FROM mark) ORDER BY seq DESC LIMIT ?2) \
     UNION ALL SELECT seq FROM tail) \
     ORDER BY seq DESC LIMIT ?2"
);

// ---------------------------------------------------------------------------------------------
// Verifies
// ---------------------------------------------------------------------------------------------

/// Counts uses of one voucher ([`crate::plan_rows::UseCountRow`]), only while they fit its
/// capacity: a plan made from a stale snapshot changes no row instead of over-using.
pub(crate) const COUNT_USES: &str = "UPDATE vouchers SET used = used + ? \
     WHERE order_id = ? AND confirm_code = ? AND used + ? <= capacity";
/// Logs uses ([`crate::plan_rows::VoucherUseRow`]), so that a reversal can find them.
pub(crate) const INSERT_VOUCHER_USE: &str = concat!(
    "INSERT INTO ",
    voucher_uses!(),
    " VALUES (?, ?, ?, ?, ?, ?)"
);
/// Remembers a report's fingerprint ([`crate::plan_rows::FingerprintRow`]).
pub(crate) const INSERT_FINGERPRINT: &str = concat!(
    "INSERT INTO ",
    verify_fingerprints!(),
    " VALUES (?, ?, ?, ?, ?)"
);
/// Marks a pending refund request for review ([`crate::plan_rows::ReviewRow`]).
pub(crate) const MARK_REFUND_REVIEW: &str =
    "UPDATE refund_requests SET needs_review = 1 WHERE flow_id = ? AND state = 'pending'";

/// Whether one fingerprint is among the folded ones of an order (one lookup per fingerprint:
/// on SQLite a statement costs no round trip). The pending ones are in the writer's memory
/// (`sqlite::fold::Pending`).
pub(crate) const SQLITE_FINGERPRINT_SEEN: &str = "SELECT 1 FROM folded_fingerprints \
     WHERE order_id = ? AND confirm_code = ? AND used_at_ms = ? AND quantity = ?";
/// The latest gate time of an order's folded fingerprints (`sqlite::fold::Horizon`): the last
/// key of the order's range, since the table is keyed `(order_id, used_at_ms, …)` (migration
/// 0014).
pub(crate) const SQLITE_LATEST_FOLDED_GATE_TIME: &str =
    "SELECT max(used_at_ms) FROM folded_fingerprints WHERE order_id = ?";
/// A fingerprint written straight into the folded table (a large report, which folds at once:
/// `sqlite::fold::FOLD_DIRECTLY_AT`), with the columns of [`INSERT_FINGERPRINT`].
pub(crate) const SQLITE_INSERT_FOLDED_FINGERPRINT: &str = "INSERT INTO folded_fingerprints \
     (order_id, confirm_code, used_at_ms, quantity, request_id) VALUES (?, ?, ?, ?, ?)";
/// [`INSERT_FINGERPRINT`] on SQLite (the same parameters): straight into the pending table,
/// which is what the view's `INSTEAD OF` trigger does, without running a trigger program for
/// each fingerprint.
pub(crate) const SQLITE_INSERT_PENDING_FINGERPRINT: &str = "INSERT INTO pending_fingerprints \
     (order_id, confirm_code, used_at_ms, quantity, request_id) VALUES (?, ?, ?, ?, ?)";
/// Every fingerprint not folded yet (the writer's memory of them is rebuilt from this).
pub(crate) const SQLITE_PENDING_FINGERPRINTS: &str =
    "SELECT order_id, confirm_code, used_at_ms, quantity FROM pending_fingerprints";

/// The fingerprints recorded for an order under any of `codes` codes (bind the order, then
/// each code): one round trip for all the fingerprints a report could replay.
pub(crate) fn server_fingerprints_of_codes(codes: usize) -> String {
    let marks = vec!["?"; codes].join(", ");
    format!(
        "SELECT confirm_code, used_at_ms, quantity FROM verify_fingerprints \
         WHERE order_id = ? AND confirm_code IN ({marks})"
    )
}

// ---------------------------------------------------------------------------------------------
// Refunds and reversals
// ---------------------------------------------------------------------------------------------

/// Opens a refund request ([`crate::plan_rows::RefundRequestRow`]), pending.
pub(crate) const INSERT_REFUND_REQUEST: &str = "INSERT INTO refund_requests (flow_id, order_id, \
     quantity, requested_at_ms, request_id, state) VALUES (?, ?, ?, ?, ?, 'pending')";
/// Settles a pending refund request ([`crate::plan_rows::SettlementRow`]).
pub(crate) const SETTLE_REFUND: &str = "UPDATE refund_requests SET state = ?, \
     refunded_tickets = ?, batch_no = ?, failure_reason = ?, settled_at_ms = ?, settled_by = ? \
     WHERE flow_id = ? AND state = 'pending'";
/// Counts an order's refunded tickets ([`crate::plan_rows::RefundedTicketsRow`]), only while
/// they fit its quantity.
pub(crate) const COUNT_REFUNDED_TICKETS: &str = "UPDATE orders \
     SET refunded_tickets = refunded_tickets + ? \
     WHERE order_id = ? AND refunded_tickets + ? <= quantity";
/// The uses of one code recorded since an instant and not wholly reversed (bind the order, the
/// code, the instant).
pub(crate) const SELECT_REVERSIBLE_USES: &str = concat!(
    "SELECT ",
    use_columns!(),
    " FROM voucher_uses WHERE order_id = ? AND confirm_code = ? AND recorded_at_ms >= ? \
     AND reversed < quantity"
);
/// [`SELECT_REVERSIBLE_USES`] on SQLite, where uses are folded (`uses_by_code`) up to
/// `ledger_fold.use_id` and the short tail past it is scanned (bind the order, the code, the
/// instant, as `?1`–`?3`). The folded uses are keyed by order and record time (migration
/// 0015): the read is the order's uses within the window, filtered by code.
pub(crate) const SQLITE_SELECT_REVERSIBLE_USES: &str = concat!(
    "SELECT ",
    use_columns!(),
    " FROM voucher_uses WHERE id IN (SELECT use_id FROM uses_by_code \
     WHERE order_id = ?1 AND confirm_code = ?2 AND recorded_at_ms >= ?3 \
     AND use_id <= (SELECT use_id FROM ledger_fold)) AND reversed < quantity \
     UNION ALL SELECT ",
    use_columns!(),
    " FROM voucher_uses WHERE id > (SELECT use_id FROM ledger_fold) \
     AND order_id = ?1 AND confirm_code = ?2 AND recorded_at_ms >= ?3 AND reversed < quantity"
);
/// Gives uses of a voucher back ([`crate::plan_rows::ReversalCountRow`]), never below zero.
pub(crate) const REVERSE_USES: &str = "UPDATE vouchers SET used = used - ? \
     WHERE order_id = ? AND confirm_code = ? AND used - ? >= 0";
/// Marks logged uses reversed ([`crate::plan_rows::UseReversedRow`]), never more than logged.
pub(crate) const MARK_USES_REVERSED: &str = "UPDATE voucher_uses SET reversed = reversed + ? \
     WHERE id = ? AND reversed + ? <= quantity";

// ---------------------------------------------------------------------------------------------
// Audit trail, anomalies, refused calls
// ---------------------------------------------------------------------------------------------

/// Appends an audit entry ([`crate::plan_rows::AuditRow`]).
pub(crate) const INSERT_AUDIT: &str = concat!(
    "INSERT INTO ",
    audit_log!(),
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
);
/// Records an anomaly ([`crate::plan_rows::AnomalyRow`]).
pub(crate) const INSERT_ANOMALY: &str = concat!(
    "INSERT INTO ",
    anomalies!(),
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
);
/// Resolves an open anomaly ([`crate::plan_rows::ResolutionRow`]).
pub(crate) const RESOLVE_ANOMALY: &str = "UPDATE anomalies SET resolution = ?, note = ?, \
     resolved_at_ms = ?, resolved_by = ? WHERE id = ? AND resolution IS NULL";
/// One anomaly by id.
pub(crate) const SELECT_ANOMALY: &str = concat!(
    "SELECT ",
    anomaly_columns!(),
    " FROM anomalies WHERE id = ?"
);
/// Keeps one refused anonymous call.
pub(crate) const INSERT_REJECTED_CALL: &str = "INSERT INTO rejected_calls \
     (request_id, at_ms, client_ip, app_key, method, code, sub_code) VALUES (?, ?, ?, ?, ?, ?, ?)";
/// Drops the refused calls at or below a `seq` (`rows::rejected_calls_prune_through`). An index
/// range on the primary key, so its cost follows the rows dropped, not the rows kept.
pub(crate) const PRUNE_REJECTED_CALLS: &str = "DELETE FROM rejected_calls WHERE seq <= ?";
/// The newest refused calls below a `seq`, newest first (bind the cursor, then the limit).
pub(crate) const LIST_REJECTED_CALLS: &str = concat!(
    "SELECT ",
    rejected_call_columns!(),
    " FROM rejected_calls WHERE seq < ? ORDER BY seq DESC LIMIT ?"
);

// ---------------------------------------------------------------------------------------------
// Health and metrics
// ---------------------------------------------------------------------------------------------

/// Ledger totals for `/metrics`, the same SQL on every engine but for how a column is summed
/// into a double: `float_sum("capacity")` is SQLite's `total(capacity)`, PostgreSQL's
/// `CAST(coalesce(sum(capacity), 0) AS DOUBLE PRECISION)` and MySQL's `coalesce(sum(capacity),
/// 0) + 0e0`. Read by `rows::totals`.
///
/// Integer sums could fail: SQLite's `sum` raises "integer overflow" past `i64::MAX`, and a
/// `CAST(... AS BIGINT)` of PostgreSQL's NUMERIC or MySQL's DECIMAL sum fails the same way.
/// Within the ledger's bounds (`ticket_ledger::limits`) that takes more than nine billion
/// orders of the largest size, but a ledger from before the bounds can hold codes of capacity
/// `i64::MAX`, and two of them made `/metrics` answer `ticketd_ledger_up 0`. A double cannot
/// overflow on any sum of `i64`s, so reading the totals cannot fail on any state the ledger
/// holds.
pub(crate) fn totals(float_sum: impl Fn(&str) -> String) -> String {
    format!(
        "SELECT \
         (SELECT count(*) FROM orders), \
         (SELECT {} FROM vouchers), \
         (SELECT {} FROM vouchers), \
         (SELECT {} FROM orders), \
         (SELECT count(*) FROM anomalies WHERE resolution IS NULL)",
        float_sum("capacity"),
        float_sum("used"),
        float_sum("refunded_tickets"),
    )
}

/// SQLite's readiness read: the schema is readable.
pub(crate) const SQLITE_PING: &str = "SELECT count(*) FROM sqlite_schema";
/// A server's readiness read.
pub(crate) const SERVER_PING: &str = "SELECT 1";

// ---------------------------------------------------------------------------------------------
// PostgreSQL and MySQL/MariaDB only: row locks, and look-ups several processes need
// ---------------------------------------------------------------------------------------------

/// An order's row, locked for the rest of the transaction.
pub(crate) const LOCK_ORDER: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders WHERE order_id = ? FOR UPDATE"
);
/// An order named by the app's own id, locked.
pub(crate) const LOCK_ORDER_BY_OUT: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders WHERE app_key = ? AND out_order_id = ? FOR UPDATE"
);
/// An order's row lock, taken without reading the row.
pub(crate) const LOCK_ORDER_ROW: &str = "SELECT order_id FROM orders WHERE order_id = ? FOR UPDATE";
/// An anomaly, locked so that two operators cannot both resolve it.
pub(crate) const LOCK_ANOMALY: &str = concat!(
    "SELECT ",
    anomaly_columns!(),
    " FROM anomalies WHERE id = ? FOR UPDATE"
);
/// An anomaly's row lock, taken without reading the row.
pub(crate) const LOCK_ANOMALY_ROW: &str = "SELECT id FROM anomalies WHERE id = ? FOR UPDATE";
/// An app's row lock, taken without reading the row.
pub(crate) const LOCK_APP_ROW: &str = "SELECT app_key FROM apps WHERE app_key = ? FOR UPDATE";

/// The newest refused call's `seq`, read back after an insert: the engines disagree on how an
/// insert returns it (`RETURNING`, `LAST_INSERT_ID()`).
pub(crate) const SERVER_NEWEST_REJECTED_CALL: &str = "SELECT max(seq) FROM rejected_calls";

/// Whether a request left its own audit entry on an order (a commit's mark): not a `rejected`
/// one, which the gateway writes for refusals after answering.
pub(crate) const SERVER_AUDIT_MARK: &str = "SELECT 1 FROM audit_log WHERE order_id = ? \
     AND request_id = ? AND outcome <> 'rejected' LIMIT 1";
/// Whether a request raised an anomaly on an order (a commit's mark).
pub(crate) const SERVER_ANOMALY_MARK: &str = "SELECT 1 FROM anomalies WHERE order_id = ? \
     AND request_id = ? AND kind <> 'commit_outcome_unknown' LIMIT 1";
/// Whether a request raised an anomaly naming no order (a commit's mark).
pub(crate) const SERVER_ANOMALY_MARK_NO_ORDER: &str = "SELECT 1 FROM anomalies \
     WHERE order_id IS NULL AND request_id = ? AND kind <> 'commit_outcome_unknown' LIMIT 1";
/// Whether a request resolved an anomaly (a commit's mark).
pub(crate) const SERVER_RESOLUTION_MARK: &str =
    "SELECT 1 FROM anomalies WHERE id = ? AND resolved_by = ?";
/// Whether a request's `commit_outcome_unknown` anomaly on an order is recorded.
pub(crate) const SERVER_UNKNOWN_RECORDED: &str = "SELECT 1 FROM anomalies WHERE order_id = ? \
     AND request_id = ? AND kind = 'commit_outcome_unknown' LIMIT 1";
/// Whether a request's `commit_outcome_unknown` anomaly naming no order is recorded.
pub(crate) const SERVER_UNKNOWN_RECORDED_NO_ORDER: &str = "SELECT 1 FROM anomalies \
     WHERE order_id IS NULL AND request_id = ? AND kind = 'commit_outcome_unknown' LIMIT 1";

// ---------------------------------------------------------------------------------------------
// PostgreSQL and MySQL/MariaDB only: the group commit's bulk statements
// ---------------------------------------------------------------------------------------------

/// The SQL type a key of a bulk statement's JSON rows is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonType {
    /// A 64-bit integer.
    Int,
    /// Short text compared with the ledger's key columns (codes, ids).
    Key,
    /// Any text (audit details, requests).
    Text,
}

/// The keys of a bulk statement's JSON rows (table `d`), with the types they are read as: the
/// `serde` names of the `plan_rows` type serialised into them.
pub(crate) type JsonKeys = &'static [(&'static str, JsonType)];

/// `SELECT columns FROM table WHERE order_id IN <one JSON array of ids>`, in the order `order`
/// asks for, locked `FOR UPDATE` if `lock` (`Engine::select_by_ids`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BulkByIds {
    /// The table.
    pub(crate) table: &'static str,
    /// Its index that leads with `order_id`.
    pub(crate) index: &'static str,
    /// The `SELECT` list.
    pub(crate) columns: &'static str,
    /// Where its rows are sorted, and by what.
    pub(crate) order: ByIdsOrder,
    /// Whether the rows are locked.
    pub(crate) lock: bool,
}

/// What the order of a [`BulkByIds`] statement's rows is for, which decides where it is
/// sorted.
///
/// On MariaDB every such sort was costly: the statement joins a `JSON_TABLE`, which MariaDB
/// 10.11 sorts through temporary files (two per statement, with a merge pass, for 16 rows), or
/// copies into an on-disk temporary table first when a column is `LONGTEXT`. Together with the
/// batch's inserts (`Engine::bulk_insert`) that was about a fifth of its CPU per batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ByIdsOrder {
    /// The caller reads the rows in this order (an `ORDER BY` list), on every engine.
    Rows(&'static str),
    /// Only the row locks follow this order (an `ORDER BY` list), so that two transactions
    /// never take them in opposite orders. PostgreSQL locks each row as it leaves the sort, so
    /// it sorts. InnoDB locks each row as the join from the ids reaches it, in the ids' order
    /// (and sorted before the join when asked to): the caller binds the ids sorted, and MySQL
    /// does not sort again.
    Locks(&'static str),
    /// Any order: the caller sorts what it needs.
    Any,
}

/// `INSERT INTO into SELECT select FROM <JSON rows d>` (`Engine::bulk_insert`): the rows in
/// the batch's order (`d.i`, the position), so ids and audit `seq`s are handed out in arrival
/// order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BulkInsert {
    /// The table and the columns written.
    pub(crate) into: &'static str,
    /// The keys of `d` giving those columns.
    pub(crate) select: &'static str,
    /// The keys of `d`, `i` (the position) first.
    pub(crate) keys: JsonKeys,
}

/// A statement joining a table with JSON rows `d` on `on`, each row of the table found
/// through `index` by `lookup` (the table's column and the key of `d` it equals):
/// `Engine::bulk_update` (`SET set … WHERE and_where`) or `Engine::bulk_select` (`SELECT
/// set`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BulkJoin {
    /// The table with its alias.
    pub(crate) table: &'static str,
    /// The index `lookup` goes through.
    pub(crate) index: &'static str,
    /// The assignments of an update, or the columns of a select.
    pub(crate) set: &'static str,
    /// The keys of `d`.
    pub(crate) keys: JsonKeys,
    /// `(table column, key of d)`: the leading column of `index` and what it equals. (The
    /// statements now find each row by the whole of `on`; PostgreSQL's update takes the
    /// table's alias from the column.)
    pub(crate) lookup: (&'static str, &'static str),
    /// The join condition: the whole primary key.
    pub(crate) on: &'static str,
    /// The update's further condition (unused by a select).
    pub(crate) and_where: &'static str,
}

/// Locks a batch's orders and reads them.
///
/// Its rows are [`ORDER_COLUMNS`](crate::rows::ORDER_COLUMNS) then the order's totals kept by the database (migration
/// `0008_order_totals` on both engines): `voucher_count, capacity_total, used_total`, a sum
/// NULL when it does not fit a `BIGINT`.
pub(crate) const BULK_LOCK_ORDERS: BulkByIds = BulkByIds {
    table: "orders",
    index: "PRIMARY",
    columns: concat!(
        order_columns!(),
        ", voucher_count, capacity_total, used_total"
    ),
    order: ByIdsOrder::Locks("order_id"),
    lock: true,
};
/// Locks orders without reading them (a commit's fence).
pub(crate) const BULK_LOCK_ORDER_ROWS: BulkByIds = BulkByIds {
    table: "orders",
    index: "PRIMARY",
    columns: "orders.order_id",
    order: ByIdsOrder::Locks("orders.order_id"),
    lock: true,
};
/// A batch's vouchers, each row led by its `order_id`.
pub(crate) const BULK_SELECT_VOUCHERS: BulkByIds = BulkByIds {
    table: "vouchers",
    index: "PRIMARY",
    columns: concat!("vouchers.order_id, ", voucher_columns!()),
    order: ByIdsOrder::Rows("vouchers.order_id, seq"),
    lock: false,
};
/// The codes a batch names (`(order_id, confirm_code, seq, capacity, used)` of each that
/// exists), looked up by primary key (JSON rows `{"o": order_id, "c": code}`): with the
/// totals [`BULK_LOCK_ORDERS`] reads, what a batch of verifies that name their codes is
/// planned on, instead of every voucher of every order ([`BULK_SELECT_VOUCHERS`]: a tour
/// group's order has 500 codes, and reading them all for every batch cost ticketd about
/// 450 µs of CPU per verify, and summing them on the server about 170 µs per order).
pub(crate) const BULK_NAMED_VOUCHERS: BulkJoin = BulkJoin {
    table: "vouchers AS t",
    index: "PRIMARY",
    set: "t.order_id, t.confirm_code, t.seq, t.capacity, t.used",
    keys: &[("o", JsonType::Int), ("c", JsonType::Key)],
    lookup: ("t.order_id", "o"),
    on: "t.order_id = d.o AND t.confirm_code = d.c",
    and_where: "",
};
/// A batch's refund requests, each row led by its `order_id`.
pub(crate) const BULK_SELECT_REFUNDS: BulkByIds = BulkByIds {
    table: "refund_requests",
    index: "refund_requests_by_order",
    columns: concat!("refund_requests.order_id, ", refund_columns!()),
    // Sorted by the caller (`bulk::read_batch`), as `SELECT_REFUNDS` sorts one order's.
    order: ByIdsOrder::Any,
    lock: false,
};
/// Those of a batch's fingerprints ([`crate::plan_rows::FingerprintRow`]) already recorded.
pub(crate) const BULK_KNOWN_FINGERPRINTS: BulkJoin = BulkJoin {
    table: "verify_fingerprints AS f",
    index: "PRIMARY",
    set: "f.order_id, f.confirm_code, f.used_at_ms, f.quantity",
    keys: &[
        ("o", JsonType::Int),
        ("c", JsonType::Key),
        ("t", JsonType::Int),
        ("q", JsonType::Int),
    ],
    lookup: ("f.order_id", "o"),
    on: "f.order_id = d.o AND f.confirm_code = d.c AND f.used_at_ms = d.t AND f.quantity = d.q",
    and_where: "",
};
/// [`COUNT_USES`] for every voucher of a batch ([`crate::plan_rows::UseCountRow`]).
pub(crate) const BULK_COUNT_USES: BulkJoin = BulkJoin {
    table: "vouchers AS v",
    index: "PRIMARY",
    set: "used = v.used + d.n",
    keys: &[
        ("o", JsonType::Int),
        ("c", JsonType::Key),
        ("n", JsonType::Int),
    ],
    lookup: ("v.order_id", "o"),
    on: "v.order_id = d.o AND v.confirm_code = d.c",
    and_where: "v.used + d.n <= v.capacity",
};
/// [`MARK_REFUND_REVIEW`] for every refund of a batch ([`crate::plan_rows::ReviewRow`]).
pub(crate) const BULK_MARK_REFUND_REVIEWS: BulkJoin = BulkJoin {
    table: "refund_requests AS r",
    index: "PRIMARY",
    set: "needs_review = 1",
    keys: &[("f", JsonType::Key)],
    lookup: ("r.flow_id", "f"),
    on: "r.flow_id = d.f",
    and_where: "r.state = 'pending'",
};
/// [`INSERT_VOUCHER_USE`] for a batch ([`crate::plan_rows::VoucherUseRow`]).
pub(crate) const BULK_INSERT_VOUCHER_USES: BulkInsert = BulkInsert {
    into: voucher_uses!(),
    select: "o, c, n, t, r, q",
    keys: &[
        ("i", JsonType::Int),
        ("o", JsonType::Int),
        ("c", JsonType::Key),
        ("n", JsonType::Int),
        ("t", JsonType::Int),
        ("r", JsonType::Int),
        ("q", JsonType::Text),
    ],
};
/// [`INSERT_FINGERPRINT`] for a batch ([`crate::plan_rows::FingerprintRow`]).
pub(crate) const BULK_INSERT_FINGERPRINTS: BulkInsert = BulkInsert {
    into: verify_fingerprints!(),
    select: "o, c, t, q, r",
    keys: &[
        ("i", JsonType::Int),
        ("o", JsonType::Int),
        ("c", JsonType::Key),
        ("t", JsonType::Int),
        ("q", JsonType::Int),
        ("r", JsonType::Text),
    ],
};
/// [`INSERT_AUDIT`] for a batch ([`crate::plan_rows::AuditRow`]).
pub(crate) const BULK_INSERT_AUDIT: BulkInsert = BulkInsert {
    into: audit_log!(),
    select: "request_id, at_ms, action, app_key, order_id, outcome, reason, detail, client_ip",
    keys: &[
        ("i", JsonType::Int),
        ("request_id", JsonType::Text),
        ("at_ms", JsonType::Int),
        ("action", JsonType::Text),
        ("app_key", JsonType::Key),
        ("order_id", JsonType::Int),
        ("outcome", JsonType::Key),
        ("reason", JsonType::Text),
        ("detail", JsonType::Text),
        ("client_ip", JsonType::Text),
    ],
};
/// [`INSERT_ANOMALY`] for a batch ([`crate::plan_rows::AnomalyRow`]).
pub(crate) const BULK_INSERT_ANOMALIES: BulkInsert = BulkInsert {
    into: anomalies!(),
    select: "kind, order_id, app_key, request_id, at_ms, detail, request",
    keys: &[
        ("i", JsonType::Int),
        ("kind", JsonType::Key),
        ("order_id", JsonType::Int),
        ("app_key", JsonType::Key),
        ("request_id", JsonType::Text),
        ("at_ms", JsonType::Int),
        ("detail", JsonType::Text),
        ("request", JsonType::Text),
    ],
};

// ---------------------------------------------------------------------------------------------
// Change events (`ticket_ledger::events`)
// ---------------------------------------------------------------------------------------------

/// Takes the next event `seq` ([`crate::plan_rows::EventSeqRow`]): the counter row stays
/// locked until the transaction ends, so `seq`s are consecutive and commit in order. Not run
/// on SQLite, whose events take the next `seq` themselves ([`SQLITE_INSERT_EVENT`]).
pub(crate) const ADVANCE_EVENT_SEQ: &str =
    "UPDATE ledger_event_seq SET last = last + 1 WHERE id = 1";
/// Writes an event with the `seq` just taken ([`crate::plan_rows::EventRow`]).
pub(crate) const INSERT_EVENT: &str = "INSERT INTO ledger_events \
     (seq, event_type, order_id, at_ms, data) \
     SELECT last, ?, ?, ?, ? FROM ledger_event_seq WHERE id = 1";
/// The newest anomaly of a request and kind (bind both): the one just written in this
/// transaction. Walks the primary key back from the end, where that anomaly is.
macro_rules! anomaly_of_request {
    ($request:literal, $kind:literal) => {
        concat!(
            "(SELECT a.id FROM anomalies a WHERE a.request_id = ",
            $request,
            " AND a.kind = ",
            $kind,
            " ORDER BY a.id DESC LIMIT 1)"
        )
    };
}
/// Writes an anomaly's event ([`crate::plan_rows::AnomalyEventRow`]) with its anomaly's id, its
/// `seq` the counter row's (taken by the [`ADVANCE_EVENT_SEQ`] step before it).
pub(crate) const INSERT_ANOMALY_EVENT: &str = concat!(
    "INSERT INTO ledger_events (seq, event_type, order_id, at_ms, data, anomaly_id) \
     SELECT last, ?, ?, ?, ?, ",
    anomaly_of_request!("?", "?"),
    " FROM ledger_event_seq WHERE id = 1"
);
/// [`INSERT_EVENT`] on SQLite (the same parameters), into `event_rows` (migration 0012), the
/// data stored: an event that records no entry, or whose entry's strings JSON escapes
/// (`NewEvent::entry_data_unescaped`). An entry's other events name their entry instead
/// ([`SQLITE_INSERT_ENTRY_EVENT`]).
///
/// Its `seq` is `NULL`, which SQLite turns into one more than the newest event's (`seq` is
/// the table's rowid), so SQLite's writes do not advance the counter row ([`ADVANCE_EVENT_SEQ`]
/// is not run there, migration 0018): the single writer holds the write lock for its whole
/// transaction, so `seq`s are as consecutive as the counter made them and commit in the same
/// order, and no commit rewrites the counter's page (4 KiB of WAL each). Events are never
/// deleted or renumbered (migration 0018's triggers refuse it), so no `seq` is handed out
/// twice. (A `seq` computed by a subquery of `event_rows` would make SQLite copy the rows into
/// a temporary table first, as for any `INSERT … SELECT` reading its own table.)
///
/// The counter row is still read: the value bound for the event's one non-`NULL` column of
/// `data` and `audit_seq` is taken through it, so on a ledger without it both are `NULL`, the
/// table's `CHECK` refuses the row, and the writer reports the write of the counter as one
/// that changed no row, as the other engines do (`sqlite::exec`). Every SQLite event insert
/// is one row of `VALUES` for that reason, never an `INSERT … SELECT`: SQLite runs an
/// `INSERT … SELECT` into a table with a `CHECK` inside a statement journal, copying each page
/// it changes first, which cost the writer 2.6 % of its instructions per verify
/// (docs/PERFORMANCE.md, "Twenty-sixth session").
pub(crate) const SQLITE_INSERT_EVENT: &str =
    "INSERT INTO event_rows (seq, event_type, order_id, at_ms, data, audit_seq) \
     VALUES (NULL, ?1, ?2, ?3, (SELECT ?4 FROM ledger_event_seq WHERE id = 1), NULL)";
/// The event of an entry just written, as a reference to it ([`crate::plan_rows::EntryEvent`]:
/// bind the event's type, order and time, and the entry's `seq`, which the writer took from
/// the entry's own insert). The view `ledger_events` rebuilds its data from the entry, byte
/// for byte what `NewEvent::entry_data_json` wrote, since only entries whose strings JSON
/// copies as they are (`NewEvent::entry_data_unescaped`) are written this way. Its `seq`, and
/// the counter row's part, are as in [`SQLITE_INSERT_EVENT`].
///
/// (This statement's earlier form bound the data and compared it with the data rebuilt from
/// the sixteen newest entries: without that, a verify's job on the writer takes 66,500
/// instructions instead of 75,300; docs/PERFORMANCE.md, "Twenty-fifth session".)
pub(crate) const SQLITE_INSERT_ENTRY_EVENT: &str =
    "INSERT INTO event_rows (seq, event_type, order_id, at_ms, data, audit_seq) \
     VALUES (NULL, ?1, ?2, ?3, NULL, (SELECT ?4 FROM ledger_event_seq WHERE id = 1))";
/// [`INSERT_ANOMALY_EVENT`] on SQLite (the same parameters), into `event_rows` (its data is
/// stored), its `seq` and the counter row's part as in [`SQLITE_INSERT_EVENT`].
pub(crate) const SQLITE_INSERT_ANOMALY_EVENT: &str = concat!(
    "INSERT INTO event_rows (seq, event_type, order_id, at_ms, data, anomaly_id) \
     VALUES (NULL, ?, ?, ?, (SELECT ? FROM ledger_event_seq WHERE id = 1), ",
    anomaly_of_request!("?", "?"),
    ")"
);
/// Takes a batch's event `seq`s at once (bind how many).
pub(crate) const ADVANCE_EVENT_SEQ_BY: &str =
    "UPDATE ledger_event_seq SET last = last + ? WHERE id = 1";
/// The columns a batch's events fill.
const BATCH_EVENTS_INTO: &str =
    "ledger_events (seq, event_type, order_id, at_ms, data, anomaly_id)";
/// The select list of a batch's events (JSON rows `d`), each `seq` counted back from `$last`,
/// the last `seq` the batch took.
macro_rules! batch_events_select {
    ($last:literal) => {
        concat!(
            $last,
            " - d.back, d.event_type, d.order_id, d.at_ms, d.data, \
             CASE WHEN d.anomaly_request IS NULL THEN NULL ELSE ",
            anomaly_of_request!("d.anomaly_request", "d.anomaly_kind"),
            " END"
        )
    };
}
/// [`INSERT_EVENT`] for a batch whose `seq`s were taken by [`ADVANCE_EVENT_SEQ_BY`]: each row
/// says how far before the last `seq` it is (`back`).
pub(crate) const BULK_INSERT_EVENTS: BulkInsert = BulkInsert {
    into: BATCH_EVENTS_INTO,
    select: batch_events_select!("(SELECT last FROM ledger_event_seq WHERE id = 1)"),
    keys: EVENT_KEYS,
};
/// [`BULK_INSERT_EVENTS`] with the `seq`s taken in the same statement, which cannot see its
/// own update of the counter row: the `seq`s count back from what that update returns, a
/// `WITH` query named `taken` (`Engine::pg_write_events`) joined to every event, so that no
/// counter row means no event.
pub(crate) const BULK_INSERT_EVENTS_TAKEN: BulkInsert = BulkInsert {
    into: BATCH_EVENTS_INTO,
    select: batch_events_select!("taken.last"),
    keys: EVENT_KEYS,
};
/// The keys of a batch's events (`bulk::BatchEvent`).
const EVENT_KEYS: JsonKeys = &[
    ("i", JsonType::Int),
    ("back", JsonType::Int),
    ("event_type", JsonType::Key),
    ("order_id", JsonType::Int),
    ("at_ms", JsonType::Int),
    ("data", JsonType::Text),
    ("anomaly_request", JsonType::Key),
    ("anomaly_kind", JsonType::Key),
];
/// A page of the feed (bind after, limit).
pub(crate) const LIST_EVENTS: &str = "SELECT seq, event_type, order_id, at_ms, data, \
     anomaly_id FROM ledger_events WHERE seq > ? ORDER BY seq LIMIT ?";
/// The ledger's random id, drawn by the migration that created the events, and the last
/// `seq` handed out.
pub(crate) const SELECT_LEDGER_ID: &str =
    "SELECT ledger_id, last FROM ledger_event_seq WHERE id = 1";
/// [`SELECT_LEDGER_ID`] on SQLite, where the last `seq` handed out is the newest event's (see
/// [`SQLITE_INSERT_EVENT`]), the last key of `event_rows`, found without a scan.
pub(crate) const SQLITE_SELECT_LEDGER_ID: &str = "SELECT ledger_id, \
     coalesce((SELECT max(r.seq) FROM event_rows AS r), 0) \
     FROM ledger_event_seq WHERE id = 1";
/// Takes or renews the relay's lease (bind holder, until, holder, now): one row when `holder`
/// holds it now.
pub(crate) const CLAIM_RELAY: &str = "UPDATE ledger_event_relay SET holder = ?, \
     lease_until_ms = ? WHERE id = 1 AND (holder = ? OR holder IS NULL OR lease_until_ms < ?)";
/// Where the relay stands.
pub(crate) const SELECT_RELAY_POSITION: &str =
    "SELECT position FROM ledger_event_relay WHERE id = 1";
/// Moves the relay's position (bind to, holder, from): one row only while `holder` holds the
/// lease and the position is still `from`.
pub(crate) const ADVANCE_RELAY: &str = "UPDATE ledger_event_relay SET position = ? \
     WHERE id = 1 AND holder = ? AND position = ?";

// ---------------------------------------------------------------------------------------------
// SQLite's fold (`sqlite::fold`)
// ---------------------------------------------------------------------------------------------

/// How far the fold has gone: `(use_id, audit_seq, app_seq)`.
pub(crate) const SQLITE_FOLD_MARKS: &str =
    "SELECT use_id, audit_seq, app_seq FROM ledger_fold WHERE id = 1";
/// The newest use and entry, and the range of pending fingerprints' ids (the key before the
/// oldest, the newest): what a fold may go up to, and where its fingerprints start (the ids
/// of a busy ledger's pending fingerprints never restart, so a range from 0 would grow with
/// every fingerprint ever forgotten). Each is a lookup of a rowid table's first or last key.
pub(crate) const SQLITE_FOLD_ENDS: &str =
    "SELECT (SELECT coalesce(max(id), 0) FROM voucher_uses), \
     (SELECT coalesce(max(seq), 0) FROM audit_log), \
     (SELECT coalesce(min(id), 1) - 1 FROM pending_fingerprints), \
     (SELECT coalesce(max(id), 0) FROM pending_fingerprints)";
/// Moves the pending fingerprints with `id` in `(?, ?]` into the keyed table, in key order
/// (one page takes many rows). Rows a staged fold ([`SQLITE_STAGE_FINGERPRINTS`]) already
/// copied are skipped, here and in the two statements below: copies past the marks are
/// invisible to readers until the fold that made them, or this one, moves the marks.
pub(crate) const SQLITE_FOLD_FINGERPRINTS: &str = "INSERT INTO folded_fingerprints \
     (order_id, confirm_code, used_at_ms, quantity, request_id) \
     SELECT order_id, confirm_code, used_at_ms, quantity, request_id FROM pending_fingerprints \
     WHERE id > ? AND id <= ? ORDER BY order_id, used_at_ms, confirm_code, quantity \
     ON CONFLICT DO NOTHING";
/// Forgets the fingerprints folded by [`SQLITE_FOLD_FINGERPRINTS`] (the same bounds).
pub(crate) const SQLITE_FOLD_FORGET_FINGERPRINTS: &str =
    "DELETE FROM pending_fingerprints WHERE id > ? AND id <= ?";
/// Folds the uses with `id` in `(?, ?]` into `uses_by_code`.
pub(crate) const SQLITE_FOLD_USES: &str = concat!(
    "INSERT INTO ",
    uses_by_code!(),
    " SELECT order_id, confirm_code, recorded_at_ms, id FROM voucher_uses \
     WHERE id > ? AND id <= ? ORDER BY order_id, recorded_at_ms, id \
     ON CONFLICT DO NOTHING"
);
/// Folds the entries with `seq` in `(?, ?]` into `audit_by_order`.
pub(crate) const SQLITE_FOLD_AUDIT: &str = concat!(
    "INSERT INTO ",
    audit_by_order!(),
    " SELECT order_id, seq FROM audit_log \
     WHERE seq > ? AND seq <= ? AND order_id IS NOT NULL ORDER BY order_id, seq \
     ON CONFLICT DO NOTHING"
);
/// Folds the entries with `seq` in `(?, ?]` into `audit_by_app` (migration 0013).
pub(crate) const SQLITE_FOLD_APPS: &str = concat!(
    "INSERT INTO ",
    audit_by_app!(),
    " SELECT app_key, seq FROM audit_log \
     WHERE seq > ? AND seq <= ? AND app_key IS NOT NULL ORDER BY app_key, seq \
     ON CONFLICT DO NOTHING"
);
/// Moves the uses' mark (bind the new mark, the old: it must change one row, or another
/// writer folded meanwhile).
pub(crate) const SQLITE_FOLD_ADVANCE_USES: &str =
    "UPDATE ledger_fold SET use_id = ? WHERE id = 1 AND use_id = ?";
/// Moves the entries' mark (as [`SQLITE_FOLD_ADVANCE_USES`]).
pub(crate) const SQLITE_FOLD_ADVANCE_AUDIT: &str =
    "UPDATE ledger_fold SET audit_seq = ? WHERE id = 1 AND audit_seq = ?";
/// Moves the apps' entries' mark (as [`SQLITE_FOLD_ADVANCE_USES`]).
pub(crate) const SQLITE_FOLD_ADVANCE_APPS: &str =
    "UPDATE ledger_fold SET app_seq = ? WHERE id = 1 AND app_seq = ?";

// The counters (`sqlite::fold::count`): `counted_vouchers.used` holds the uses up to
// `ledger_fold.counted_use_id`; the view `vouchers` adds the rest (migration 0011).

/// How far the counters go, and the newest use: `(counted_use_id, max(id))`.
pub(crate) const SQLITE_COUNT_MARKS: &str = "SELECT counted_use_id, \
     (SELECT coalesce(max(id), 0) FROM voucher_uses) FROM ledger_fold WHERE id = 1";
/// The uses past the counters' mark, oldest first (bind the mark, the most to read): what
/// remains of each (`quantity - reversed`) is what it adds to its counter.
pub(crate) const SQLITE_UNCOUNTED_USES: &str = "SELECT id, order_id, confirm_code, \
     quantity - reversed FROM voucher_uses WHERE id > ? ORDER BY id LIMIT ?";
/// Adds folded uses to one counter, only while they fit its capacity (bind the uses, the
/// order, the code, the uses): it must change one row.
pub(crate) const SQLITE_COUNT_FOLDED_USES: &str = "UPDATE counted_vouchers SET used = used + ? \
     WHERE order_id = ? AND confirm_code = ? AND used + ? <= capacity";
/// Moves the counters' mark (bind the new mark, the old: it must change one row).
pub(crate) const SQLITE_ADVANCE_COUNTED: &str =
    "UPDATE ledger_fold SET counted_use_id = ? WHERE id = 1 AND counted_use_id = ?";
/// After an import: the imported counts include every imported use.
pub(crate) const SQLITE_COUNTED_AFTER_IMPORT: &str = "UPDATE ledger_fold \
     SET counted_use_id = (SELECT coalesce(max(id), 0) FROM voucher_uses) WHERE id = 1";
/// [`REVERSE_USES`] on SQLite, where the count is stored in `counted_vouchers` (a reversal
/// counts every logged use first, so the stored count is the whole count).
pub(crate) const SQLITE_REVERSE_USES: &str = "UPDATE counted_vouchers SET used = used - ? \
     WHERE order_id = ? AND confirm_code = ? AND used - ? >= 0";

// A staged fold (`sqlite::fold::Staged`): the same rows, read once in key order and copied a
// slice per transaction, so that no transaction holds the writer for long.

/// The pending fingerprints with `id` in `(?, ?]` (a range of the table's key: the writer
/// sorts them; sorting 5,000 in SQLite took 10–20 ms of the writer in one statement).
pub(crate) const SQLITE_STAGE_FINGERPRINTS: &str =
    "SELECT order_id, confirm_code, used_at_ms, quantity, request_id, id \
     FROM pending_fingerprints WHERE id > ? AND id <= ?";
/// The uses with `id` in `(?, ?]`.
pub(crate) const SQLITE_STAGE_USES: &str =
    "SELECT order_id, confirm_code, recorded_at_ms, id FROM voucher_uses WHERE id > ? AND id <= ?";
/// The entries naming an order with `seq` in `(?, ?]`.
pub(crate) const SQLITE_STAGE_AUDIT: &str = "SELECT order_id, seq FROM audit_log \
     WHERE seq > ? AND seq <= ? AND order_id IS NOT NULL";
/// The entries naming an app with `seq` in `(?, ?]`.
pub(crate) const SQLITE_STAGE_APPS: &str = "SELECT app_key, seq FROM audit_log \
     WHERE seq > ? AND seq <= ? AND app_key IS NOT NULL";
/// Copies one staged fingerprint (a copy an interrupted fold left is kept).
pub(crate) const SQLITE_STAGE_COPY_FINGERPRINT: &str = "INSERT INTO folded_fingerprints \
     (order_id, confirm_code, used_at_ms, quantity, request_id) VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT DO NOTHING";
/// Copies one staged use.
pub(crate) const SQLITE_STAGE_COPY_USE: &str = concat!(
    "INSERT INTO ",
    uses_by_code!(),
    " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
);
/// Copies one staged entry.
pub(crate) const SQLITE_STAGE_COPY_ENTRY: &str = concat!(
    "INSERT INTO ",
    audit_by_order!(),
    " VALUES (?, ?) ON CONFLICT DO NOTHING"
);
/// Copies one staged entry of an app.
pub(crate) const SQLITE_STAGE_COPY_APP_ENTRY: &str = concat!(
    "INSERT INTO ",
    audit_by_app!(),
    " VALUES (?, ?) ON CONFLICT DO NOTHING"
);

/// Rows a staged fold copies per statement into the folded tables that have no foreign key
/// ([`SQLITE_STAGE_COPY_USES`], [`SQLITE_STAGE_COPY_ENTRIES`], [`SQLITE_STAGE_COPY_APP_ENTRIES`]);
/// a slice's rows past the last full statement go one at a time. A copy in a statement of its
/// own cost the writer about 5,200 instructions (callgrind), one of 64 rows about 3,400 (the
/// rest is the B-tree's own work), and a single-voucher verify has three such rows to fold.
pub(crate) const STAGE_COPY_ROWS: usize = 64;

// The bulk copies say `INSERT OR IGNORE` where the one-row copies say `ON CONFLICT DO
// NOTHING`. Both skip a copy an interrupted fold left; they differ only on a `NULL` in a `NOT
// NULL` column, which a bound `i64` or `String` cannot be. The difference matters to SQLite:
// a statement that writes several rows and may abort halfway (`NOT NULL`'s default action
// is to abort) makes it keep a statement journal, a copy of every page the statement
// changes, to undo the statement alone (in memory on the writer's connection, whose
// `temp_store` is `MEMORY`; elsewhere spilled to a temporary file past 64 KiB). The fold
// undoes a failed slice by rolling back its whole transaction, so that copy is never needed.
// (`folded_fingerprints`' foreign key makes any multi-row insert keep the journal. Its copies
// stay one row at a time because 64 to a statement measured no faster: there a copy costs
// the pages its rows fall on, not the statement; docs/PERFORMANCE.md, "Twenty-eighth
// session".)

/// Copies [`STAGE_COPY_ROWS`] staged uses.
pub(crate) static SQLITE_STAGE_COPY_USES: LazyLock<String> = LazyLock::new(|| {
    values_rows(
        concat!("INSERT OR IGNORE INTO ", uses_by_code!()),
        "(?, ?, ?, ?)",
    )
});
/// Copies [`STAGE_COPY_ROWS`] staged entries.
pub(crate) static SQLITE_STAGE_COPY_ENTRIES: LazyLock<String> = LazyLock::new(|| {
    values_rows(
        concat!("INSERT OR IGNORE INTO ", audit_by_order!()),
        "(?, ?)",
    )
});
/// Copies [`STAGE_COPY_ROWS`] staged entries of apps.
pub(crate) static SQLITE_STAGE_COPY_APP_ENTRIES: LazyLock<String> =
    LazyLock::new(|| values_rows(concat!("INSERT OR IGNORE INTO ", audit_by_app!()), "(?, ?)"));

/// `head` followed by [`STAGE_COPY_ROWS`] rows of `row` in one `VALUES` list.
fn values_rows(head: &str, row: &str) -> String {
    let rows = vec![row; STAGE_COPY_ROWS];
    format!("{head} VALUES {}", rows.join(", "))
}
