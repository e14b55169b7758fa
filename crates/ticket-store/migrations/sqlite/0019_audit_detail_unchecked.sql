-- 0019_audit_detail_unchecked (SQLite): `audit_log.detail` is no longer checked with
-- `json_valid` as each entry is written. No match on the other engines (their column types
-- are theirs; a cost of SQLite's function only).
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0020_<what>.sql` instead.
--
-- Issue 14: the `CHECK (json_valid(detail))` made SQLite parse every entry's detail (about
-- 400 bytes of JSON) into its binary form and throw it away: about 7,800 instructions per
-- entry, a twentieth of the single writer's per verify (callgrind, docs/PERFORMANCE.md,
-- "Twenty-fourth session"). It could never refuse an entry ticketd writes: every detail is
-- the text `serde_json` makes of a value (`ticket_ledger::text::json_text`, which writes
-- `null` rather than a partial text, and an import's `Value`s), so it is JSON by
-- construction, and every reader parses it as JSON too. `anomalies` keeps its checks (a
-- refused verify's row, rare).
--
-- The rows do not change, so the table is not rebuilt: the new text replaces the old one in
-- `sqlite_schema`, as migration 0017 did (the procedure SQLite documents for removing a
-- CHECK, https://www.sqlite.org/lang_altertable.html#otheralter). `RESET` makes this
-- connection read the schema again; the migration runner moves `schema_version` on, so every
-- other connection does too. `ticket-store`'s test of this migration compares the schema
-- with the old one and runs `PRAGMA integrity_check`.

PRAGMA writable_schema = ON;

UPDATE sqlite_schema
   SET sql = replace(sql,
       'detail     TEXT    NOT NULL CHECK (json_valid(detail)),',
       'detail     TEXT    NOT NULL,')
 WHERE type = 'table' AND name = 'audit_log';

PRAGMA writable_schema = RESET;
