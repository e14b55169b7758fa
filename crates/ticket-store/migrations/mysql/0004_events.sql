-- 0004_events (MySQL/MariaDB): the ledger's change events (issue 15); equal in meaning to
-- SQLite's 0007.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0005_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- Every accepted change of the ledger writes an event in its own transaction (the outbox
-- pattern: `ticket_ledger::events`). `seq` is taken from the one row of `ledger_event_seq`,
-- whose row lock the writing transaction holds until it commits: `seq`s are consecutive, and
-- an event commits (and becomes visible) only after every event before it. Not
-- AUTO_INCREMENT: it hands out numbers that a rollback loses and that commit in any order.
--
-- MySQL commits each DDL statement on its own, so every statement here may be run again after
-- a failure part-way (IF NOT EXISTS, INSERT IGNORE).
CREATE TABLE IF NOT EXISTS ledger_events (
    seq        BIGINT      NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    order_id   BIGINT,
    at_ms      BIGINT      NOT NULL,
    data       LONGTEXT    NOT NULL,
    PRIMARY KEY (seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS ledger_event_seq (
    id        INT         NOT NULL,
    last      BIGINT      NOT NULL,
    ledger_id VARCHAR(32) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT ledger_event_seq_one CHECK (id = 1),
    CONSTRAINT ledger_event_seq_last CHECK (last >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT IGNORE INTO ledger_event_seq (id, last, ledger_id)
    VALUES (1, 0, substr(sha2(concat(uuid(), rand()), 256), 1, 16));
