-- 0004_events (PostgreSQL): the ledger's change events (issue 15); equal in meaning to
-- SQLite's 0007.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0005_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- Every accepted change of the ledger writes an event in its own transaction (the outbox
-- pattern: `ticket_ledger::events`). `seq` is taken from the one row of `ledger_event_seq`,
-- whose row lock the writing transaction holds until it commits: `seq`s are consecutive, and
-- an event commits (and becomes visible) only after every event before it. Not a sequence:
-- a sequence hands out numbers that a rollback loses and that commit in any order.
CREATE TABLE ledger_events (
    seq        BIGINT      NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    order_id   BIGINT,
    at_ms      BIGINT      NOT NULL,
    data       TEXT        NOT NULL,
    CONSTRAINT ledger_events_pkey PRIMARY KEY (seq)
);

CREATE TABLE ledger_event_seq (
    id        INTEGER     NOT NULL CHECK (id = 1),
    last      BIGINT      NOT NULL CHECK (last >= 0),
    ledger_id VARCHAR(32) NOT NULL,
    CONSTRAINT ledger_event_seq_pkey PRIMARY KEY (id)
);

INSERT INTO ledger_event_seq (id, last, ledger_id)
    VALUES (1, 0, substr(md5(random()::text || clock_timestamp()::text), 1, 16));
