-- 0007_order_list (PostgreSQL): indexes for the operator's order list (`GET /admin/orders`);
-- equal in meaning to SQLite's 0010.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0008_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- The list is newest first by `(created_at_ms, order_id)` and pages on that pair, all orders or
-- one app's, and its search text finds an order by `order_id` (the primary key), by
-- `out_order_id` (of any app: the `orders_out_order_id` key starts with `app_key` and cannot
-- serve that) or by `app_key`. Each index lets a page read only the rows it shows (walked back
-- from the cursor) instead of sorting the table. Built inside the migration's transaction, so
-- a large `orders` table is locked against writes while they are built.
CREATE INDEX orders_by_created ON orders (created_at_ms, order_id);
CREATE INDEX orders_by_app_created ON orders (app_key, created_at_ms, order_id);
CREATE INDEX orders_by_out_order_id ON orders (out_order_id);
