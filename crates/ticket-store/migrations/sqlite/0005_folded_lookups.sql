-- 0005_folded_lookups (SQLite): the lookups keyed by order are folded in bulk, not written by
-- every verify. SQLite only: it is the physical layout of one engine's file (PostgreSQL and
-- MySQL/MariaDB keep their indexes; their write path is a batch of set-based statements).
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0006_<what>.sql` instead.
--
-- Issue 14: a verify writes only rows that are appended (its audit entry, its uses, its
-- fingerprints) and its vouchers' counters. The three lookups that are keyed by order —
-- fingerprints by report, uses by code, audit entries by order — used to be B-trees that every
-- verify changed at a random place, each costing a 4 KB page in the WAL and again in the
-- checkpoint; they are now folded in bulk by the writer (src/sqlite/fold.rs), thousands of
-- rows at a time, sorted by key, so that one page takes many rows. What is not folded yet is
-- found by scanning the short tail past the fold marks in `ledger_fold`.

-- Fingerprints land in `pending_fingerprints` (appended) and are moved into
-- `folded_fingerprints` (the old table, keyed as before) by the fold. `verify_fingerprints`
-- stays the name of all of them, for exports and for operators' queries.
ALTER TABLE verify_fingerprints RENAME TO folded_fingerprints;

CREATE TABLE pending_fingerprints (
    id           INTEGER PRIMARY KEY,
    order_id     INTEGER NOT NULL,
    confirm_code TEXT    NOT NULL,
    used_at_ms   INTEGER NOT NULL,
    quantity     INTEGER NOT NULL,
    request_id   TEXT    NOT NULL,
    FOREIGN KEY (order_id, confirm_code) REFERENCES vouchers (order_id, confirm_code)
) STRICT;

CREATE VIEW verify_fingerprints (order_id, confirm_code, used_at_ms, quantity, request_id) AS
    SELECT order_id, confirm_code, used_at_ms, quantity, request_id FROM folded_fingerprints
    UNION ALL
    SELECT order_id, confirm_code, used_at_ms, quantity, request_id FROM pending_fingerprints;

CREATE TRIGGER verify_fingerprints_insert INSTEAD OF INSERT ON verify_fingerprints
BEGIN
    INSERT INTO pending_fingerprints (order_id, confirm_code, used_at_ms, quantity, request_id)
    VALUES (NEW.order_id, NEW.confirm_code, NEW.used_at_ms, NEW.quantity, NEW.request_id);
END;

-- Uses by code (a reversal's lookup), folded from `voucher_uses` up to `ledger_fold.use_id`.
CREATE TABLE uses_by_code (
    order_id       INTEGER NOT NULL,
    confirm_code   TEXT    NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    use_id         INTEGER NOT NULL,
    PRIMARY KEY (order_id, confirm_code, recorded_at_ms, use_id)
) STRICT, WITHOUT ROWID;

-- Audit entries by order (an order's history), folded from `audit_log` up to
-- `ledger_fold.audit_seq`.
CREATE TABLE audit_by_order (
    order_id INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (order_id, seq)
) STRICT, WITHOUT ROWID;

-- How far the fold has gone: every use with `id <= use_id` is in `uses_by_code`, every entry
-- with `seq <= audit_seq` naming an order is in `audit_by_order`. One row.
CREATE TABLE ledger_fold (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    use_id    INTEGER NOT NULL CHECK (use_id >= 0),
    audit_seq INTEGER NOT NULL CHECK (audit_seq >= 0)
) STRICT;

-- The ledger as it stands is folded here, once.
INSERT INTO uses_by_code (order_id, confirm_code, recorded_at_ms, use_id)
    SELECT order_id, confirm_code, recorded_at_ms, id FROM voucher_uses;
INSERT INTO audit_by_order (order_id, seq)
    SELECT order_id, seq FROM audit_log WHERE order_id IS NOT NULL;
INSERT INTO ledger_fold (id, use_id, audit_seq) VALUES (
    1,
    (SELECT coalesce(max(id), 0) FROM voucher_uses),
    (SELECT coalesce(max(seq), 0) FROM audit_log)
);

DROP INDEX voucher_uses_by_code;
DROP INDEX audit_log_by_order;
