-- 0006_event_relay (MySQL/MariaDB): where the relay to NATS JetStream stands, and who relays;
-- equal in meaning to SQLite's 0009.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0007_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- `position` is the last event `seq` JetStream acknowledged; it only moves after the ack. With
-- several ticketd processes on one ledger, exactly one relays: the one whose `holder` lease
-- (`lease_until_ms`) is current; another takes over when it expires. Each statement may run
-- again after a failure part-way (MySQL commits DDL on its own).
CREATE TABLE IF NOT EXISTS ledger_event_relay (
    id             INT         NOT NULL,
    position       BIGINT      NOT NULL,
    holder         VARCHAR(64),
    lease_until_ms BIGINT      NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT ledger_event_relay_one CHECK (id = 1),
    CONSTRAINT ledger_event_relay_position CHECK (position >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT IGNORE INTO ledger_event_relay (id, position, holder, lease_until_ms) VALUES (1, 0, NULL, 0);
