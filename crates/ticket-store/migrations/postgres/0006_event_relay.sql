-- 0006_event_relay (PostgreSQL): where the relay to NATS JetStream stands, and who relays;
-- equal in meaning to SQLite's 0009.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0007_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- `position` is the last event `seq` JetStream acknowledged; it only moves after the ack. With
-- several ticketd processes on one ledger, exactly one relays: the one whose `holder` lease
-- (`lease_until_ms`) is current; another takes over when it expires.
CREATE TABLE ledger_event_relay (
    id             INTEGER     NOT NULL CHECK (id = 1),
    position       BIGINT      NOT NULL CHECK (position >= 0),
    holder         VARCHAR(64),
    lease_until_ms BIGINT      NOT NULL,
    CONSTRAINT ledger_event_relay_pkey PRIMARY KEY (id)
);

INSERT INTO ledger_event_relay (id, position, holder, lease_until_ms) VALUES (1, 0, NULL, 0);
