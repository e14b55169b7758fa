-- 0006_staged_fold (SQLite): the fold copies in slices, so a fingerprint may be in both tables
-- for a moment. SQLite only, like 0005.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0007_<what>.sql` instead.
--
-- Issue 14: folding everything appended since the last fold in one transaction held the
-- writer 25–70 ms, and the requests queued behind it set the p99 at half load. The writer now
-- copies a fold a slice per transaction (src/sqlite/fold.rs, `Staged`) and forgets the pending
-- fingerprints only in the last one, so until then a fingerprint is in `pending_fingerprints`
-- and may already be in `folded_fingerprints`. The view every export and operator reads shows
-- it once.

DROP VIEW verify_fingerprints;

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

-- Dropping the view dropped its trigger: writes through the view still land in the pending
-- table.
CREATE TRIGGER verify_fingerprints_insert INSTEAD OF INSERT ON verify_fingerprints
BEGIN
    INSERT INTO pending_fingerprints (order_id, confirm_code, used_at_ms, quantity, request_id)
    VALUES (NEW.order_id, NEW.confirm_code, NEW.used_at_ms, NEW.quantity, NEW.request_id);
END;
