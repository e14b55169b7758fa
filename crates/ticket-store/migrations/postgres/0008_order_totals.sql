-- 0008_order_totals (PostgreSQL): each order's count of codes and the sums of their capacity
-- and uses, kept on the order's row by the database itself.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0009_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- Why: every rule of a verify reads the codes it names and its order's totals (capacity, uses,
-- what a refund holds). A batch used to sum those totals over the order's vouchers each time,
-- 500 rows for a tour group's order: about 170 µs of the server's CPU per order per batch, the
-- largest cost of the 60 x 500 bench shape. The order's row is locked by every write of the
-- order first (`SELECT … FOR UPDATE`), so keeping the totals on it adds no lock and no lock
-- order a write did not already take.
--
-- Why triggers and not ticketd's statements: every change of `vouchers` — an issue, a verify
-- alone or in a batch, a reversal, an import, an operator's hand fix — moves the totals with
-- it in the same statement, so no write path can forget them. They are statement-level
-- triggers with transition tables: a batch's one `UPDATE` of 64 counters updates each of its
-- orders once.
--
-- A total that does not fit a BIGINT is NULL (a ledger from before `ticket_ledger::limits`
-- can hold codes of capacity i64::MAX) and stays NULL; ticketd then reads that order's
-- vouchers whole, as it did before.
ALTER TABLE orders
    ADD COLUMN voucher_count  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN capacity_total BIGINT DEFAULT 0,
    ADD COLUMN used_total     BIGINT DEFAULT 0;

UPDATE orders
SET voucher_count  = t.n,
    capacity_total = CASE WHEN t.c <= 9223372036854775807 THEN CAST(t.c AS BIGINT) END,
    used_total     = CASE WHEN t.u <= 9223372036854775807 THEN CAST(t.u AS BIGINT) END
FROM (SELECT order_id, count(*) AS n, sum(capacity) AS c, sum(used) AS u
      FROM vouchers GROUP BY order_id) AS t
WHERE orders.order_id = t.order_id;

-- A total plus a change, NULL once past a BIGINT (and NULL stays NULL). A one-expression SQL
-- function, which the planner inlines.
CREATE FUNCTION ticketd_total_plus(total BIGINT, delta NUMERIC) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN total + delta BETWEEN 0 AND 9223372036854775807
                THEN CAST(total + delta AS BIGINT) END
$$;

CREATE FUNCTION ticketd_vouchers_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orders AS o
    SET voucher_count  = o.voucher_count + d.n,
        capacity_total = ticketd_total_plus(o.capacity_total, d.c),
        used_total     = ticketd_total_plus(o.used_total, d.u)
    FROM (SELECT order_id, count(*) AS n, sum(capacity) AS c, sum(used) AS u
          FROM new_rows GROUP BY order_id) AS d
    WHERE o.order_id = d.order_id;
    RETURN NULL;
END $$;

-- Only `used` changes in ticketd's updates; a hand edit of `capacity` is followed too.
CREATE FUNCTION ticketd_vouchers_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orders AS o
    SET capacity_total = ticketd_total_plus(o.capacity_total, d.c),
        used_total     = ticketd_total_plus(o.used_total, d.u)
    FROM (SELECT order_id, sum(c) AS c, sum(u) AS u FROM (
              SELECT order_id, CAST(capacity AS NUMERIC) AS c, CAST(used AS NUMERIC) AS u
              FROM new_rows
              UNION ALL
              SELECT order_id, -CAST(capacity AS NUMERIC), -CAST(used AS NUMERIC)
              FROM old_rows) AS x
          GROUP BY order_id) AS d
    WHERE o.order_id = d.order_id AND (d.c <> 0 OR d.u <> 0);
    RETURN NULL;
END $$;

CREATE FUNCTION ticketd_vouchers_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orders AS o
    SET voucher_count  = o.voucher_count - d.n,
        capacity_total = ticketd_total_plus(o.capacity_total, -d.c),
        used_total     = ticketd_total_plus(o.used_total, -d.u)
    FROM (SELECT order_id, count(*) AS n, sum(capacity) AS c, sum(used) AS u
          FROM old_rows GROUP BY order_id) AS d
    WHERE o.order_id = d.order_id;
    RETURN NULL;
END $$;

CREATE TRIGGER vouchers_totals_insert AFTER INSERT ON vouchers
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ticketd_vouchers_inserted();
CREATE TRIGGER vouchers_totals_update AFTER UPDATE ON vouchers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ticketd_vouchers_updated();
CREATE TRIGGER vouchers_totals_delete AFTER DELETE ON vouchers
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ticketd_vouchers_deleted();
