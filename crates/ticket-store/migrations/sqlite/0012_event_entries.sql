-- 0012_event_entries (SQLite): an event that records an audit entry names the entry instead
-- of copying it. SQLite only, like 0005, 0006 and 0011.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0013_<what>.sql` instead.
--
-- Issue 14: an entry's event carried the entry's request id, app, order, reason and whole
-- detail again (535 bytes per single-voucher verify, against 416 for the entry's detail), and
-- the events' pages were the largest share of a commit's WAL (7–8 leaf pages of 27 per
-- commit, from the WAL frames of the writer). `event_rows.audit_seq` now names the entry, and
-- the view `ledger_events` rebuilds the same JSON text from it; an event is written by
-- reference only when that text equals, byte for byte, the data it would have stored
-- (`statements::SQLITE_INSERT_EVENT`), and keeps its data otherwise. Readers — the feed, the
-- relay, exports, an operator's `sqlite3` — read `ledger_events` as before.

CREATE TABLE event_rows (
    seq        INTEGER PRIMARY KEY,
    event_type TEXT    NOT NULL,
    order_id   INTEGER,
    at_ms      INTEGER NOT NULL,
    -- CloudEvents `data`, JSON text; NULL when `audit_seq` names the entry it is built from.
    data       TEXT,
    anomaly_id INTEGER,
    audit_seq  INTEGER,
    CHECK ((data IS NULL) <> (audit_seq IS NULL))
) STRICT;

INSERT INTO event_rows (seq, event_type, order_id, at_ms, data, anomaly_id)
    SELECT seq, event_type, order_id, at_ms, data, anomaly_id FROM ledger_events;

DROP TABLE ledger_events;

-- `NewEvent::entry_data_json`, in SQL.
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

-- Imports (and anything else writing the old name) store the data they bring.
CREATE TRIGGER ledger_events_insert INSTEAD OF INSERT ON ledger_events
BEGIN
    INSERT INTO event_rows (seq, event_type, order_id, at_ms, data, anomaly_id)
    VALUES (NEW.seq, NEW.event_type, NEW.order_id, NEW.at_ms, NEW.data, NEW.anomaly_id);
END;
