-- 0007_events (SQLite): the ledger's change events (issue 15); equal in meaning to PostgreSQL's
-- and MySQL's 0004.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0008_<what>.sql` instead.
--
-- Every accepted change of the ledger writes an event in its own transaction (the outbox
-- pattern: `ticket_ledger::events`). `seq` is taken from the one row of `ledger_event_seq`,
-- advanced by the transaction that writes the event and locked by it until it ends, so `seq`s
-- are consecutive and become visible in order: a reader that always asks for the events after
-- the last `seq` it saw misses none. Events start with this migration; the history before it
-- stays in the audit trail.
CREATE TABLE ledger_events (
    seq        INTEGER PRIMARY KEY,
    event_type TEXT    NOT NULL,
    order_id   INTEGER,
    at_ms      INTEGER NOT NULL,
    -- CloudEvents `data`, JSON text (codes masked as in the audit trail).
    data       TEXT    NOT NULL
) STRICT;

-- One row: the last `seq` handed out, and the ledger's random id (each event's CloudEvents
-- `id` and `source` name it, so two ledgers' events never share an id).
CREATE TABLE ledger_event_seq (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last      INTEGER NOT NULL CHECK (last >= 0),
    ledger_id TEXT    NOT NULL
) STRICT;

INSERT INTO ledger_event_seq (id, last, ledger_id) VALUES (1, 0, lower(hex(randomblob(8))));
