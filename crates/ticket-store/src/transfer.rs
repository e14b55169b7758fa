//! Moving a whole ledger between stores: [`Transfer`], and the JSON-lines format it writes.
//!
//! `ticketd export` writes every row of every table — apps with their secrets, orders,
//! vouchers, fingerprints, the use log, refund requests, anomalies, the whole audit trail and
//! the change events —
//! and `ticketd import` writes them into an empty store of any backend, keeping every number
//! (audit `seq`, anomaly and use ids) so nothing that refers to one changes meaning. It is how
//! an operator moves from SQLite to PostgreSQL without losing an event.
//!
//! The record of calls refused before authentication (`rejected_calls`) is not ledger data
//! — anyone can add to it and it is pruned — so it is neither exported nor imported.
//!
//! This is deliberately not part of [`ticket_ledger::LedgerStore`]: it copies rows, not
//! domain operations, and only the stores of this crate know their rows.
//!
//! # Format
//!
//! UTF-8, one JSON object per line:
//!
//! ```text
//! {"header":{"format":"ticketd-export","version":1,"source":"sqlite","schema_version":2}}
//! {"table":"apps","row":{"app_key":"12345678","name":"…","secret":"…","created_at_ms":…}}
//! …every row of every table, tables in the order of [`TABLES`], rows by primary key…
//! {"end":{"counts":{"apps":1,"orders":…}}}
//! ```
//!
//! Each row names its columns; instants stay UTC milliseconds; JSON columns (audit `detail`,
//! anomaly `detail` and `request`) are embedded as JSON. A nullable column missing from a row
//! reads as NULL, so an export written before a column was added (such as the apps' access
//! settings and previous secret, schema 3 on SQLite) still imports. The `end` line counts the rows of each
//! table, so a truncated file is refused instead of half imported. An import runs in one
//! transaction (all or nothing) and refuses a store that already holds any row.
//!
//! The file holds app secrets and bearer codes: keep it like the database itself.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use ticket_ledger::LedgerError;

use crate::rows::{ReadRow, SqlValue};

/// What a format line's `header.format` says.
pub const FORMAT: &str = "ticketd-export";
/// The format's version.
pub const VERSION: u64 = 1;

/// Bulk copy of a whole store (see the module docs). Implemented by every store of this crate.
#[async_trait]
pub trait Transfer: Send + Sync + std::fmt::Debug {
    /// Writes every row, from one consistent snapshot, to `out`.
    async fn export(&self, out: &mut (dyn Write + Send)) -> Result<Counts, TransferError>;

    /// Reads an export from `input` and writes it, in one transaction, into this store, which
    /// must hold no row yet.
    async fn import(&self, input: &mut (dyn BufRead + Send)) -> Result<Counts, TransferError>;
}

/// Rows per table, in the order the export writes them (parents first).
pub type Counts = BTreeMap<String, u64>;

/// Why a transfer failed. Nothing was imported when an import fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The input is not a complete export of a format this binary reads.
    #[error("line {line}: {why}")]
    Format {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        why: String,
    },
    /// The target already holds rows: importing would mix two ledgers.
    #[error("the target store is not empty: table {table} holds {rows} rows")]
    NotEmpty {
        /// The first non-empty table found.
        table: &'static str,
        /// Its row count.
        rows: u64,
    },
    /// The store failed (or refused a row: a foreign key, a uniqueness or check constraint).
    #[error("store error: {0}")]
    Store(#[from] LedgerError),
}

/// How a column is stored and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Integer, never null.
    Int,
    /// Integer or null.
    OptInt,
    /// Text, never null.
    Text,
    /// Text or null.
    OptText,
    /// Text holding JSON, never null; exported as embedded JSON.
    Json,
}

/// One table as the export sees it.
#[derive(Debug)]
pub(crate) struct Table {
    /// Its name (the same on every backend).
    pub(crate) name: &'static str,
    /// Its columns and their kinds, in `SELECT` order.
    pub(crate) columns: &'static [(&'static str, Kind)],
    /// Primary key order, so two exports of one ledger are byte-identical.
    pub(crate) order_by: &'static str,
}

use Kind::{Int, Json, OptInt, OptText, Text};

/// Every table, parents before children (the order rows are written and imported in).
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "apps",
        columns: &[
            ("app_key", Text),
            ("name", Text),
            ("secret", Text),
            ("created_at_ms", Int),
            ("rate_limit", OptText),
            ("rate_burst", OptInt),
            ("ip_allowlist", OptText),
            ("previous_secret", OptText),
            ("previous_secret_expires_at_ms", OptInt),
        ],
        order_by: "app_key",
    },
    Table {
        name: "orders",
        columns: &[
            ("order_id", Int),
            ("app_key", Text),
            ("out_order_id", OptText),
            ("quantity", Int),
            ("valid_from_ms", OptInt),
            ("valid_until_ms", OptInt),
            ("created_at_ms", Int),
            ("issue_state", Text),
            ("issue_describe", OptText),
            ("issue_attributes", OptText),
            ("refunded_tickets", Int),
        ],
        order_by: "order_id",
    },
    Table {
        name: "vouchers",
        columns: &[
            ("order_id", Int),
            ("confirm_code", Text),
            ("seq", Int),
            ("capacity", Int),
            ("used", Int),
            ("voucher_type", OptInt),
            ("extras", OptText),
        ],
        order_by: "order_id, seq",
    },
    Table {
        name: "verify_fingerprints",
        columns: &[
            ("order_id", Int),
            ("confirm_code", Text),
            ("used_at_ms", Int),
            ("quantity", Int),
            ("request_id", Text),
        ],
        order_by: "order_id, confirm_code, used_at_ms, quantity",
    },
    Table {
        name: "voucher_uses",
        columns: &[
            ("id", Int),
            ("order_id", Int),
            ("confirm_code", Text),
            ("quantity", Int),
            ("reversed", Int),
            ("used_at_ms", Int),
            ("recorded_at_ms", Int),
            ("request_id", Text),
        ],
        order_by: "id",
    },
    Table {
        name: "refund_requests",
        columns: &[
            ("flow_id", Text),
            ("order_id", Int),
            ("quantity", Int),
            ("requested_at_ms", Int),
            ("request_id", Text),
            ("state", Text),
            ("refunded_tickets", Int),
            ("batch_no", OptText),
            ("failure_reason", OptText),
            ("settled_at_ms", OptInt),
            ("settled_by", OptText),
            ("needs_review", Int),
        ],
        order_by: "flow_id",
    },
    Table {
        name: "anomalies",
        columns: &[
            ("id", Int),
            ("kind", Text),
            ("order_id", OptInt),
            ("app_key", OptText),
            ("request_id", Text),
            ("at_ms", Int),
            ("detail", Json),
            ("request", Json),
            ("resolution", OptText),
            ("note", OptText),
            ("resolved_at_ms", OptInt),
            ("resolved_by", OptText),
        ],
        order_by: "id",
    },
    Table {
        name: "audit_log",
        columns: &[
            ("seq", Int),
            ("request_id", Text),
            ("at_ms", Int),
            ("action", Text),
            ("app_key", OptText),
            ("order_id", OptInt),
            ("outcome", Text),
            ("reason", Text),
            ("detail", Json),
            ("client_ip", OptText),
        ],
        order_by: "seq",
    },
    Table {
        name: "ledger_events",
        columns: &[
            ("seq", Int),
            ("event_type", Text),
            ("order_id", OptInt),
            ("at_ms", Int),
            ("data", Json),
            ("anomaly_id", OptInt),
        ],
        order_by: "seq",
    },
];

/// Run after an import, on every backend: the event counter continues after the last event
/// imported, so the feed goes on with the next `seq`. (The target keeps its own ledger id, so
/// the CloudEvents `id`s of the events carried over change; `seq`s do not.)
pub(crate) const AFTER_IMPORT_EVENTS: &str = "UPDATE ledger_event_seq \
     SET last = (SELECT COALESCE(MAX(seq), 0) FROM ledger_events) WHERE id = 1";

impl Table {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `SELECT <columns> FROM <table> ORDER BY <key>`.
    pub(crate) fn select(&self) -> String {
        format!(
            "SELECT {} FROM {} ORDER BY {}",
            self.column_list(),
            self.name,
            self.order_by
        )
    }

    /// `INSERT INTO <table> (<columns>) VALUES (?, …)`.
    pub(crate) fn insert(&self) -> String {
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name,
            self.column_list(),
            vec!["?"; self.columns.len()].join(", ")
        )
    }

    /// `SELECT COUNT(*) FROM <table>`.
    pub(crate) fn count(&self) -> String {
        format!("SELECT COUNT(*) FROM {}", self.name)
    }

    /// A stored row as the export's JSON object.
    pub(crate) fn to_json<R: ReadRow>(&self, row: &R) -> Result<Value, R::Error> {
        let mut object = Map::new();
        for (i, (name, kind)) in self.columns.iter().enumerate() {
            let value = match kind {
                Int => json!(row.int(i)?),
                OptInt => json!(row.opt_int(i)?),
                Text => json!(row.text(i)?),
                OptText => json!(row.opt_text(i)?),
                Json => {
                    let text = row.text(i)?;
                    serde_json::from_str(&text)
                        .map_err(|e| row.corrupt(i, format!("{name} is not JSON: {e}")))?
                }
            };
            object.insert((*name).to_owned(), value);
        }
        Ok(Value::Object(object))
    }

    /// The values to bind for an imported row, checked against the columns' kinds.
    fn values(&self, row: &Map<String, Value>) -> Result<Vec<SqlValue>, String> {
        if let Some(extra) = row
            .keys()
            .find(|k| !self.columns.iter().any(|(name, _)| name == k))
        {
            return Err(format!("{}: unknown column {extra:?}", self.name));
        }
        self.columns
            .iter()
            .map(|(name, kind)| {
                let value = row.get(*name).unwrap_or(&Value::Null);
                let wrong = || format!("{}.{name}: {value} is not a {kind:?}", self.name);
                match (kind, value) {
                    (Int | OptInt, Value::Number(n)) => {
                        n.as_i64().map(|i| SqlValue::Int(Some(i))).ok_or_else(wrong)
                    }
                    (OptInt, Value::Null) => Ok(SqlValue::Int(None)),
                    (Text | OptText, Value::String(s)) => Ok(SqlValue::Text(Some(s.clone()))),
                    (OptText, Value::Null) => Ok(SqlValue::Text(None)),
                    (Json, Value::Null) => Err(wrong()),
                    (Json, v) => Ok(SqlValue::Text(Some(v.to_string()))),
                    _ => Err(wrong()),
                }
            })
            .collect()
    }
}

/// Writes an export: the header, then rows, then the `end` line with the counts.
pub(crate) struct ExportWriter<'w> {
    out: &'w mut (dyn Write + Send),
    counts: Counts,
}

impl std::fmt::Debug for ExportWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportWriter")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl<'w> ExportWriter<'w> {
    /// Starts an export of a `source` store at `schema_version`.
    pub(crate) fn start(
        out: &'w mut (dyn Write + Send),
        source: &str,
        schema_version: i64,
    ) -> Result<Self, TransferError> {
        let header = json!({"header": {"format": FORMAT, "version": VERSION,
            "source": source, "schema_version": schema_version}});
        writeln!(out, "{header}")?;
        Ok(Self {
            out,
            counts: TABLES.iter().map(|t| (t.name.to_owned(), 0)).collect(),
        })
    }

    /// Writes one row of `table`.
    pub(crate) fn row(&mut self, table: &Table, row: Value) -> Result<(), TransferError> {
        writeln!(self.out, "{}", json!({"table": table.name, "row": row}))?;
        *self.counts.entry(table.name.to_owned()).or_default() += 1;
        Ok(())
    }

    /// Writes the `end` line and flushes; returns the counts.
    pub(crate) fn finish(self) -> Result<Counts, TransferError> {
        writeln!(self.out, "{}", json!({"end": {"counts": self.counts}}))?;
        self.out.flush()?;
        Ok(self.counts)
    }
}

/// One row to import: its table and the values to bind, in column order.
#[derive(Debug, Clone)]
pub(crate) struct ImportRow {
    /// Its table.
    pub(crate) table: &'static Table,
    /// One value per column.
    pub(crate) values: Vec<SqlValue>,
}

/// Reads an export line by line, checking the header, the table order, the columns and,
/// at the end, the counts.
pub(crate) struct ImportReader<'r> {
    input: &'r mut (dyn BufRead + Send),
    line: u64,
    /// Index in [`TABLES`] of the last table seen: tables must come in that order.
    stage: usize,
    counts: Counts,
    header_seen: bool,
    ended: bool,
}

impl std::fmt::Debug for ImportReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportReader")
            .field("line", &self.line)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl<'r> ImportReader<'r> {
    /// A reader of `input`.
    pub(crate) fn new(input: &'r mut (dyn BufRead + Send)) -> Self {
        Self {
            input,
            line: 0,
            stage: 0,
            counts: TABLES.iter().map(|t| (t.name.to_owned(), 0)).collect(),
            header_seen: false,
            ended: false,
        }
    }

    fn error(&self, why: impl Into<String>) -> TransferError {
        TransferError::Format {
            line: self.line,
            why: why.into(),
        }
    }

    /// The next row, or `None` after a complete, consistent `end` line.
    pub(crate) fn next_row(&mut self) -> Result<Option<ImportRow>, TransferError> {
        loop {
            let mut text = String::new();
            if self.input.read_line(&mut text)? == 0 {
                return if self.ended {
                    Ok(None)
                } else {
                    Err(self.error("the input ends before its `end` line (truncated?)"))
                };
            }
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            if self.ended {
                return Err(self.error("data after the `end` line"));
            }
            let value: Value =
                serde_json::from_str(&text).map_err(|e| self.error(format!("not JSON: {e}")))?;
            if let Some(header) = value.get("header") {
                self.header(header)?;
                continue;
            }
            if !self.header_seen {
                return Err(self.error(format!("the first line must be the {FORMAT} header")));
            }
            if let Some(end) = value.get("end") {
                self.end(end)?;
                continue;
            }
            return self.row(&value).map(Some);
        }
    }

    fn header(&mut self, header: &Value) -> Result<(), TransferError> {
        if self.header_seen {
            return Err(self.error("a second header"));
        }
        if header.get("format") != Some(&json!(FORMAT)) {
            return Err(self.error(format!("not a {FORMAT} file")));
        }
        if header.get("version") != Some(&json!(VERSION)) {
            return Err(self.error(format!(
                "format version {} is not {VERSION}, the one this binary reads",
                header.get("version").unwrap_or(&Value::Null)
            )));
        }
        self.header_seen = true;
        Ok(())
    }

    fn end(&mut self, end: &Value) -> Result<(), TransferError> {
        let claimed: Counts =
            serde_json::from_value(end.get("counts").cloned().unwrap_or_default())
                .map_err(|e| self.error(format!("bad counts: {e}")))?;
        for (table, count) in &self.counts {
            let said = claimed.get(table).copied().unwrap_or(0);
            if said != *count {
                return Err(self.error(format!(
                    "the end line counts {said} {table} rows, the file holds {count}"
                )));
            }
        }
        self.ended = true;
        Ok(())
    }

    fn row(&mut self, value: &Value) -> Result<ImportRow, TransferError> {
        let name = value
            .get("table")
            .and_then(Value::as_str)
            .ok_or_else(|| self.error("expected a header, a row or the end line"))?;
        let index = TABLES
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| self.error(format!("unknown table {name:?}")))?;
        if index < self.stage {
            return Err(self.error(format!(
                "{name} rows after {} rows: tables must come parents first",
                TABLES[self.stage].name
            )));
        }
        self.stage = index;
        let table = &TABLES[index];
        let row = value
            .get("row")
            .and_then(Value::as_object)
            .ok_or_else(|| self.error("a row line needs a `row` object"))?;
        let values = table.values(row).map_err(|why| self.error(why))?;
        *self.counts.entry(name.to_owned()).or_default() += 1;
        Ok(ImportRow { table, values })
    }

    /// The rows read per table.
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Result<Vec<ImportRow>, TransferError> {
        let mut input = std::io::Cursor::new(text.as_bytes().to_vec());
        let mut reader = ImportReader::new(&mut input);
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row()? {
            rows.push(row);
        }
        Ok(rows)
    }

    const HEADER: &str = r#"{"header":{"format":"ticketd-export","version":1,"source":"sqlite","schema_version":2}}"#;
    const APP: &str =
        r#"{"table":"apps","row":{"app_key":"k","name":"n","secret":"s","created_at_ms":5}}"#;

    fn end(apps: u64) -> String {
        format!(r#"{{"end":{{"counts":{{"apps":{apps}}}}}}}"#)
    }

    #[test]
    fn a_complete_export_is_read_with_typed_values() {
        let rows = read_all(&format!("{HEADER}\n{APP}\n{}\n", end(1))).expect("valid");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].table.name, "apps");
        assert_eq!(
            rows[0].values,
            [
                SqlValue::Text(Some("k".into())),
                SqlValue::Text(Some("n".into())),
                SqlValue::Text(Some("s".into())),
                SqlValue::Int(Some(5)),
                SqlValue::Text(None),
                SqlValue::Int(None),
                SqlValue::Text(None),
                SqlValue::Text(None),
                SqlValue::Int(None),
            ],
            "columns an older export lacks (rate limit, allow-list, previous secret) are NULL"
        );
    }

    #[test]
    fn truncated_miscounted_unordered_or_mistyped_input_is_refused() {
        let refused = |text: String, why: &str| {
            let err = read_all(&text).expect_err(why);
            assert!(err.to_string().contains(why), "{err} should say {why:?}");
        };
        refused(format!("{HEADER}\n{APP}\n"), "truncated");
        refused(format!("{HEADER}\n{APP}\n{}\n", end(2)), "counts 2 apps");
        refused(format!("{APP}\n{}\n", end(1)), "header");
        let order = r#"{"table":"orders","row":{"order_id":1,"app_key":"k","out_order_id":null,"quantity":1,"valid_from_ms":null,"valid_until_ms":null,"created_at_ms":1,"issue_state":"issued","issue_describe":null,"issue_attributes":null,"refunded_tickets":0}}"#;
        refused(
            format!("{HEADER}\n{order}\n{APP}\n{}\n", end(1)),
            "parents first",
        );
        refused(
            format!("{HEADER}\n{}\n{}\n", APP.replace("5}", "\"5\"}"), end(1)),
            "apps.created_at_ms",
        );
        refused(
            format!("{HEADER}\n{}\n{}\n", APP.replace("\"s\"", "null"), end(1)),
            "apps.secret",
        );
        refused(format!("{HEADER}\n{}\n{APP}\n", end(0)), "after the `end`");
    }
}
