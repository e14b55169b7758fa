-- 0016_ids_without_autoincrement (SQLite): `audit_log.seq` and `voucher_uses.id` are handed out
-- as the table's largest key plus one, without `AUTOINCREMENT`. No match on the other engines
-- (a physical change of SQLite's file only).
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0017_<what>.sql` instead.
--
-- Issue 14: with `AUTOINCREMENT`, every insert into these two tables also reads and rewrites
-- the table's row in `sqlite_sequence`: about 0.7 µs of the single writer per insert (two
-- inserts per verify), and one more page of the WAL in every commit, written again by the
-- checkpoint. What `AUTOINCREMENT` adds over the plain rowid is that a key freed by deleting
-- the table's last row is never handed out again. Neither table ever loses a row:
-- `audit_log`'s triggers refuse every DELETE and UPDATE, and no statement deletes a use (a
-- reversal marks it), which a trigger now enforces too. So the keys handed out are the same
-- (the largest so far plus one, as `sqlite_sequence` said, since it never ran ahead of the
-- rows), and `after_seq` paging, the fold's marks and the events naming entries by `seq` see
-- no difference.
--
-- Both tables are rebuilt with the same columns, constraints and keys; the views that name
-- them (and the views' own triggers, which go with them) are dropped first and created
-- again, as they were. The copy
-- rewrites both tables once (a few seconds for millions of rows).

DROP VIEW ledger_events;
DROP VIEW vouchers;
DROP TRIGGER audit_log_no_update;
DROP TRIGGER audit_log_no_delete;

CREATE TABLE audit_log_rebuilt (
    seq        INTEGER PRIMARY KEY,
    request_id TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    action     TEXT    NOT NULL,
    app_key    TEXT,
    order_id   INTEGER,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('accepted', 'replayed', 'rejected')),
    reason     TEXT    NOT NULL,
    detail     TEXT    NOT NULL CHECK (json_valid(detail)),
    client_ip  TEXT
) STRICT;
INSERT INTO audit_log_rebuilt
    (seq, request_id, at_ms, action, app_key, order_id, outcome, reason, detail, client_ip)
    SELECT seq, request_id, at_ms, action, app_key, order_id, outcome, reason, detail, client_ip
    FROM audit_log ORDER BY seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_rebuilt RENAME TO audit_log;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE voucher_uses_rebuilt (
    id             INTEGER PRIMARY KEY,
    order_id       INTEGER NOT NULL,
    confirm_code   TEXT    NOT NULL,
    quantity       INTEGER NOT NULL CHECK (quantity >= 1),
    reversed       INTEGER NOT NULL DEFAULT 0,
    used_at_ms     INTEGER NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    request_id     TEXT    NOT NULL,
    CHECK (reversed >= 0 AND reversed <= quantity),
    FOREIGN KEY (order_id, confirm_code) REFERENCES counted_vouchers (order_id, confirm_code)
) STRICT;
INSERT INTO voucher_uses_rebuilt
    (id, order_id, confirm_code, quantity, reversed, used_at_ms, recorded_at_ms, request_id)
    SELECT id, order_id, confirm_code, quantity, reversed, used_at_ms, recorded_at_ms, request_id
    FROM voucher_uses ORDER BY id;
DROP TABLE voucher_uses;
ALTER TABLE voucher_uses_rebuilt RENAME TO voucher_uses;

-- A deleted use would let its key be handed out again, to a different use.
CREATE TRIGGER voucher_uses_no_delete BEFORE DELETE ON voucher_uses
BEGIN
    SELECT RAISE(ABORT, 'voucher_uses is append-only (a reversal marks a use)');
END;

-- The two tables' counters are no longer read.
DELETE FROM sqlite_sequence WHERE name IN ('audit_log', 'voucher_uses');

-- As migration 0011 made it.
CREATE VIEW vouchers (order_id, confirm_code, seq, capacity, used, voucher_type, extras) AS
    SELECT v.order_id, v.confirm_code, v.seq, v.capacity, v.used + coalesce(t.n, 0),
           v.voucher_type, v.extras
    FROM counted_vouchers AS v
    LEFT JOIN (
        SELECT order_id, confirm_code, sum(quantity - reversed) AS n
        FROM voucher_uses
        WHERE id > (SELECT counted_use_id FROM ledger_fold WHERE id = 1)
        GROUP BY order_id, confirm_code
    ) AS t ON t.order_id = v.order_id AND t.confirm_code = v.confirm_code;

CREATE TRIGGER vouchers_insert INSTEAD OF INSERT ON vouchers
BEGIN
    INSERT INTO counted_vouchers (order_id, confirm_code, seq, capacity, used, voucher_type, extras)
    VALUES (NEW.order_id, NEW.confirm_code, NEW.seq, NEW.capacity, NEW.used, NEW.voucher_type,
            NEW.extras);
END;

-- As migration 0012 made it.
CREATE VIEW ledger_events (seq, event_type, order_id, at_ms, data, anomaly_id) AS
    SELECT e.seq, e.event_type, e.order_id, e.at_ms,
           coalesce(e.data,
                    '{"request_id":' || json_quote(a.request_id)
                    || ',"app_key":' || json_quote(a.app_key)
                    || ',"order_id":' || coalesce(a.order_id, 'null')
                    || ',"reason":' || json_quote(a.reason)
                    || ',"detail":' || a.detail || '}'),
           e.anomaly_id
    FROM event_rows AS e
    LEFT JOIN audit_log AS a ON a.seq = e.audit_seq;

CREATE TRIGGER ledger_events_insert INSTEAD OF INSERT ON ledger_events
BEGIN
    INSERT INTO event_rows (seq, event_type, order_id, at_ms, data, anomaly_id)
    VALUES (NEW.seq, NEW.event_type, NEW.order_id, NEW.at_ms, NEW.data, NEW.anomaly_id);
END;
