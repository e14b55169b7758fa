-- 0010_order_list (SQLite): indexes for the operator's order list (`GET /admin/orders`); equal in
-- meaning to PostgreSQL's and MySQL's 0007.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0011_<what>.sql` instead.
--
-- The list is newest first by `(created_at_ms, order_id)` and pages on that pair, all orders or
-- one app's, and its search text finds an order by `order_id` (the primary key), by
-- `out_order_id` (of any app: the `(app_key, out_order_id)` key cannot serve that) or by
-- `app_key`. Each index lets a page read only the rows it shows (walked back from the cursor)
-- instead of sorting the table.
CREATE INDEX orders_by_created ON orders (created_at_ms, order_id);
CREATE INDEX orders_by_app_created ON orders (app_key, created_at_ms, order_id);
CREATE INDEX orders_by_out_order_id ON orders (out_order_id);
