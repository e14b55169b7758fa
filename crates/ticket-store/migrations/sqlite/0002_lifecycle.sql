-- 0002_lifecycle: issuance, refunds, reversals and anomalies (the order's whole life).
--
-- NEVER EDIT THIS FILE once applied; add 0003_<what>.sql instead.

-- Where issuance stands. Orders created with codes before this migration were issued.
ALTER TABLE orders ADD COLUMN issue_state TEXT NOT NULL DEFAULT 'awaiting'
    CHECK (issue_state IN ('awaiting', 'issued', 'failed'));
ALTER TABLE orders ADD COLUMN issue_describe TEXT;
-- `attribute_map` of the issuance report, as received.
ALTER TABLE orders ADD COLUMN issue_attributes TEXT;
-- Tickets refunded by settled refunds; each takes capacity ÷ quantity uses out of the order.
ALTER TABLE orders ADD COLUMN refunded_tickets INTEGER NOT NULL DEFAULT 0
    CHECK (refunded_tickets >= 0);
UPDATE orders SET issue_state = 'issued'
    WHERE EXISTS (SELECT 1 FROM vouchers v WHERE v.order_id = orders.order_id);

-- Issuance details kept as received: `type` (1 one code per ticket, 2 one code for many) and
-- the optional extras (assist_code, url, pdf_url, img) as JSON text.
ALTER TABLE vouchers ADD COLUMN voucher_type INTEGER;
ALTER TABLE vouchers ADD COLUMN extras TEXT;

-- Every applied use, so an operator's reversal can take back exactly the uses recorded within
-- the reversal window (newest first) and a count can never go below zero.
CREATE TABLE voucher_uses (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id       INTEGER NOT NULL,
    confirm_code   TEXT    NOT NULL,
    quantity       INTEGER NOT NULL CHECK (quantity >= 1),
    reversed       INTEGER NOT NULL DEFAULT 0,
    used_at_ms     INTEGER NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    request_id     TEXT    NOT NULL,
    CHECK (reversed >= 0 AND reversed <= quantity),
    FOREIGN KEY (order_id, confirm_code) REFERENCES vouchers (order_id, confirm_code)
) STRICT;
CREATE INDEX voucher_uses_by_code ON voucher_uses (order_id, confirm_code, recorded_at_ms);

-- Refund requests opened on the platform side and settled by the vendor's notification.
-- A batch number settles at most one request of an order.
CREATE TABLE refund_requests (
    flow_id          TEXT    NOT NULL PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES orders (order_id),
    quantity         INTEGER NOT NULL CHECK (quantity >= 1),
    requested_at_ms  INTEGER NOT NULL,
    request_id       TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    refunded_tickets INTEGER NOT NULL DEFAULT 0 CHECK (refunded_tickets >= 0),
    batch_no         TEXT,
    failure_reason   TEXT,
    settled_at_ms    INTEGER,
    settled_by       TEXT,
    needs_review     INTEGER NOT NULL DEFAULT 0 CHECK (needs_review IN (0, 1)),
    UNIQUE (order_id, batch_no)
) STRICT;
CREATE INDEX refund_requests_by_order ON refund_requests (order_id, requested_at_ms);

-- Facts that could not be applied as reported, or were applied but matter to money or trust,
-- with the request that revealed them, waiting for an operator's resolution.
CREATE TABLE anomalies (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT    NOT NULL,
    order_id       INTEGER,
    app_key        TEXT,
    request_id     TEXT    NOT NULL,
    at_ms          INTEGER NOT NULL,
    detail         TEXT    NOT NULL CHECK (json_valid(detail)),
    request        TEXT    NOT NULL CHECK (json_valid(request)),
    resolution     TEXT CHECK (resolution IN ('accepted', 'reversed', 'refund_adjusted', 'dismissed')),
    note           TEXT,
    resolved_at_ms INTEGER,
    resolved_by    TEXT
) STRICT;
CREATE INDEX anomalies_by_order ON anomalies (order_id, id);
CREATE INDEX anomalies_open ON anomalies (resolution, id);
