-- 0008_event_anomaly_id (SQLite): an `ticketd.anomaly.opened` event names its anomaly; equal in
-- meaning to PostgreSQL's and MySQL's 0005.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0009_<what>.sql` instead.
--
-- The anomaly's id is handed out by the database when the anomaly is written, after its event's
-- data was built, so the event row keeps it in a column of its own (found, in the same
-- transaction, as the newest anomaly of the request and kind) and the feed adds it to `data`.
ALTER TABLE ledger_events ADD COLUMN anomaly_id INTEGER;
