-- 0014_fingerprints_by_gate_time (SQLite): an order's folded fingerprints are kept in the order
-- of their gate times, so new ones are appended at the end of the order's range instead of
-- inserted among the old ones of each code.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0015_<what>.sql` instead.
--
-- Issue 14: `folded_fingerprints` was keyed `(order_id, confirm_code, used_at_ms, quantity)`.
-- A code's new fingerprint lands after that code's old ones, so a fold (or a report of many
-- codes, which writes its fingerprints at once) wrote a page for nearly every code it touched:
-- with 20,000 codes active, a fold of 16,384 verifies changed ≈ 16,000 pages, and a report of
-- 999 codes of an order used 20 times changed every page of that order's range. The only
-- lookup of this table is an exact match on all four columns (is this report a retry?), which
-- any order of them serves; gate times mostly grow, so keyed `(order_id, used_at_ms,
-- confirm_code, quantity)` an order's new fingerprints share the last pages of its range.

-- The view and its trigger name the table: rebuilt around it.
DROP VIEW verify_fingerprints;

CREATE TABLE fingerprints_by_gate_time (
    order_id     INTEGER NOT NULL,
    confirm_code TEXT    NOT NULL,
    used_at_ms   INTEGER NOT NULL,
    quantity     INTEGER NOT NULL,
    request_id   TEXT    NOT NULL,
    PRIMARY KEY (order_id, used_at_ms, confirm_code, quantity),
    FOREIGN KEY (order_id, confirm_code) REFERENCES counted_vouchers (order_id, confirm_code)
) STRICT, WITHOUT ROWID;

INSERT INTO fingerprints_by_gate_time (order_id, confirm_code, used_at_ms, quantity, request_id)
    SELECT order_id, confirm_code, used_at_ms, quantity, request_id FROM folded_fingerprints
    ORDER BY order_id, used_at_ms, confirm_code, quantity;

DROP TABLE folded_fingerprints;
ALTER TABLE fingerprints_by_gate_time RENAME TO folded_fingerprints;

CREATE VIEW verify_fingerprints (order_id, confirm_code, used_at_ms, quantity, request_id) AS
    SELECT order_id, confirm_code, used_at_ms, quantity, request_id FROM folded_fingerprints
    UNION ALL
    SELECT p.order_id, p.confirm_code, p.used_at_ms, p.quantity, p.request_id
    FROM pending_fingerprints AS p
    WHERE NOT EXISTS (
        SELECT 1 FROM folded_fingerprints AS f
        WHERE f.order_id = p.order_id AND f.confirm_code = p.confirm_code
          AND f.used_at_ms = p.used_at_ms AND f.quantity = p.quantity
    );

CREATE TRIGGER verify_fingerprints_insert INSTEAD OF INSERT ON verify_fingerprints
BEGIN
    INSERT INTO pending_fingerprints (order_id, confirm_code, used_at_ms, quantity, request_id)
    VALUES (NEW.order_id, NEW.confirm_code, NEW.used_at_ms, NEW.quantity, NEW.request_id);
END;
