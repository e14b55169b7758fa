-- 0008_order_totals (MySQL/MariaDB): each order's count of codes and the sums of their
-- capacity and uses, kept on the order's row by the database itself; equal in meaning to
-- PostgreSQL's 0008.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0009_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- Why: every rule of a verify reads the codes it names and its order's totals (capacity, uses,
-- what a refund holds). A batch used to sum those totals over the order's vouchers each time,
-- 500 rows for a tour group's order: about 250 µs of the server's CPU per order per batch. The
-- order's row is locked by every write of the order first (`SELECT … FOR UPDATE`), so keeping
-- the totals on it adds no lock and no lock order a write did not already take.
--
-- Why triggers and not ticketd's statements: every change of `vouchers` — an issue, a verify
-- alone or in a batch, a reversal, an import, an operator's hand fix — moves the totals with
-- it, so no write path can forget them. (Creating triggers may need the TRIGGER privilege,
-- and SUPER when binary logging is on; see docs/OPERATIONS.md.)
--
-- A total that does not fit a BIGINT is NULL (a ledger from before `ticket_ledger::limits`
-- can hold codes of capacity i64::MAX) and stays NULL; ticketd then reads that order's
-- vouchers whole, as it did before. Sums are taken in DECIMAL, where they cannot overflow.
ALTER TABLE orders
    ADD COLUMN voucher_count  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN capacity_total BIGINT DEFAULT 0,
    ADD COLUMN used_total     BIGINT DEFAULT 0;

UPDATE orders
JOIN (SELECT order_id, count(*) AS n, sum(capacity) AS c, sum(used) AS u
      FROM vouchers GROUP BY order_id) AS t ON orders.order_id = t.order_id
SET orders.voucher_count  = t.n,
    orders.capacity_total = CASE WHEN t.c <= 9223372036854775807 THEN CAST(t.c AS SIGNED) END,
    orders.used_total     = CASE WHEN t.u <= 9223372036854775807 THEN CAST(t.u AS SIGNED) END;

CREATE TRIGGER vouchers_totals_insert AFTER INSERT ON vouchers FOR EACH ROW
    UPDATE orders
    SET voucher_count  = voucher_count + 1,
        capacity_total = CASE
            WHEN CAST(capacity_total AS DECIMAL(21, 0)) + NEW.capacity
                 BETWEEN 0 AND 9223372036854775807
            THEN CAST(CAST(capacity_total AS DECIMAL(21, 0)) + NEW.capacity AS SIGNED) END,
        used_total = CASE
            WHEN CAST(used_total AS DECIMAL(21, 0)) + NEW.used
                 BETWEEN 0 AND 9223372036854775807
            THEN CAST(CAST(used_total AS DECIMAL(21, 0)) + NEW.used AS SIGNED) END
    WHERE order_id = NEW.order_id;

-- Only `used` changes in ticketd's updates; a hand edit of `capacity` is followed too.
CREATE TRIGGER vouchers_totals_update AFTER UPDATE ON vouchers FOR EACH ROW
    UPDATE orders
    SET capacity_total = CASE
            WHEN CAST(capacity_total AS DECIMAL(21, 0)) + NEW.capacity - OLD.capacity
                 BETWEEN 0 AND 9223372036854775807
            THEN CAST(CAST(capacity_total AS DECIMAL(21, 0)) + NEW.capacity - OLD.capacity
                      AS SIGNED) END,
        used_total = CASE
            WHEN CAST(used_total AS DECIMAL(21, 0)) + NEW.used - OLD.used
                 BETWEEN 0 AND 9223372036854775807
            THEN CAST(CAST(used_total AS DECIMAL(21, 0)) + NEW.used - OLD.used AS SIGNED) END
    WHERE order_id = NEW.order_id;

CREATE TRIGGER vouchers_totals_delete AFTER DELETE ON vouchers FOR EACH ROW
    UPDATE orders
    SET voucher_count  = voucher_count - 1,
        capacity_total = CASE
            WHEN CAST(capacity_total AS DECIMAL(21, 0)) - OLD.capacity
                 BETWEEN 0 AND 9223372036854775807
            THEN CAST(CAST(capacity_total AS DECIMAL(21, 0)) - OLD.capacity AS SIGNED) END,
        used_total = CASE
            WHEN CAST(used_total AS DECIMAL(21, 0)) - OLD.used
                 BETWEEN 0 AND 9223372036854775807
            THEN CAST(CAST(used_total AS DECIMAL(21, 0)) - OLD.used AS SIGNED) END
    WHERE order_id = OLD.order_id;
