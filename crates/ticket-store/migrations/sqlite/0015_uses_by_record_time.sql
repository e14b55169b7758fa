-- 0015_uses_by_record_time (SQLite): an order's folded uses are kept in the order they were
-- recorded, so new ones are appended at the end of the order's range instead of inserted among
-- the old ones of each code.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0016_<what>.sql` instead.
--
-- Issue 14: `uses_by_code` was keyed `(order_id, confirm_code, recorded_at_ms, use_id)`, so
-- each code's new use landed after that code's old ones: a report of 999 codes changed a page
-- for nearly every code (500 of the 645 WAL pages per commit at 999 codes per report). Its one
-- reader is a reversal, which asks for one code's uses recorded since the start of the
-- reversal window (24 hours by default); keyed `(order_id, recorded_at_ms, use_id)` that is a
-- range of the order's uses in the window, filtered by code, and an order's new uses share
-- the last pages of its range, since the record time only grows.

CREATE TABLE uses_by_record_time (
    order_id       INTEGER NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    use_id         INTEGER NOT NULL,
    confirm_code   TEXT    NOT NULL,
    PRIMARY KEY (order_id, recorded_at_ms, use_id)
) STRICT, WITHOUT ROWID;

INSERT INTO uses_by_record_time (order_id, recorded_at_ms, use_id, confirm_code)
    SELECT order_id, recorded_at_ms, use_id, confirm_code FROM uses_by_code
    ORDER BY order_id, recorded_at_ms, use_id;

DROP TABLE uses_by_code;
ALTER TABLE uses_by_record_time RENAME TO uses_by_code;
