-- 0011_counted_uses (SQLite): the use log is the truth of a voucher's count; the stored
-- counter is folded from it. SQLite only, like 0005 and 0006.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0012_<what>.sql` instead.
--
-- Issue 14: with the lookups folded, most of what a single-voucher verify wrote was the page
-- of its voucher's counter, a random page of `vouchers` per verify, written whole into the WAL
-- and again by the checkpoint. A verify now appends its uses only; the writer adds them to the
-- counters in slices, sorted by voucher, so one page takes many uses (src/sqlite/fold.rs,
-- `count_uses`). `counted_vouchers.used` holds every use with `id <= ledger_fold.counted_use_id`;
-- the view `vouchers` adds the uses past that mark, so every reader — the store's own queries,
-- exports, an operator's `sqlite3` — sees the whole count and never a half-folded one: a fold
-- moves counters and the mark in one transaction.

ALTER TABLE vouchers RENAME TO counted_vouchers;

ALTER TABLE ledger_fold ADD COLUMN counted_use_id INTEGER NOT NULL DEFAULT 0
    CHECK (counted_use_id >= 0);

-- Every use logged so far is in the counters already.
UPDATE ledger_fold SET counted_use_id = (SELECT coalesce(max(id), 0) FROM voucher_uses);

-- The uses past the mark, summed per voucher once per query (the tail is a range of
-- `voucher_uses`' key, a slice or two long), then joined by key.
CREATE VIEW vouchers (order_id, confirm_code, seq, capacity, used, voucher_type, extras) AS
    SELECT v.order_id, v.confirm_code, v.seq, v.capacity, v.used + coalesce(t.n, 0),
           v.voucher_type, v.extras
    FROM counted_vouchers AS v
    LEFT JOIN (
        SELECT order_id, confirm_code, sum(quantity - reversed) AS n
        FROM voucher_uses
        WHERE id > (SELECT counted_use_id FROM ledger_fold WHERE id = 1)
        GROUP BY order_id, confirm_code
    ) AS t ON t.order_id = v.order_id AND t.confirm_code = v.confirm_code;

-- Issuing a code (and importing one) still writes through the old name.
CREATE TRIGGER vouchers_insert INSTEAD OF INSERT ON vouchers
BEGIN
    INSERT INTO counted_vouchers (order_id, confirm_code, seq, capacity, used, voucher_type, extras)
    VALUES (NEW.order_id, NEW.confirm_code, NEW.seq, NEW.capacity, NEW.used, NEW.voucher_type,
            NEW.extras);
END;
