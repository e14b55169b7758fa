-- 0009_event_relay (SQLite): where the relay to NATS JetStream stands, and who relays; equal in
-- meaning to PostgreSQL's and MySQL's 0006.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0010_<what>.sql` instead.
--
-- `position` is the last event `seq` JetStream acknowledged; it only moves after the ack, so a
-- relay that dies re-sends at most what it had not recorded (JetStream drops those duplicates
-- by their `Nats-Msg-Id`). With several ticketd processes on one ledger, exactly one relays: the
-- one whose `holder` lease (`lease_until_ms`) is current; another takes over when it expires.
CREATE TABLE ledger_event_relay (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    position       INTEGER NOT NULL CHECK (position >= 0),
    holder         TEXT,
    lease_until_ms INTEGER NOT NULL
) STRICT;

INSERT INTO ledger_event_relay (id, position, holder, lease_until_ms) VALUES (1, 0, NULL, 0);
