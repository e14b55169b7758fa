-- 0001_init (MySQL 8.0+ / MariaDB 10.5+): the whole ledger schema, equal in meaning to SQLite's
-- 0001 + 0002.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it: the store records a checksum of
-- every applied migration and refuses to open a database whose history disagrees with the
-- binary. Change the schema by adding `0002_<what>.sql` (see `src/sql/migrate.rs`).
--
-- Conventions as on SQLite: instants are UTC milliseconds since the epoch in BIGINT columns
-- (`*_ms`), counts are BIGINT, JSON is kept as the exact text written (LONGTEXT, checked to be
-- JSON). Every table is InnoDB (transactions, row locks, crash recovery) and utf8mb4 with the
-- binary collation, so codes and keys compare byte for byte as on SQLite and PostgreSQL (the
-- default collations would take `abc` and `ABC` for the same code). Key columns are VARCHARs
-- sized to what the gateway accepts; other text is LONGTEXT. Constraints are named as in the
-- PostgreSQL schema.

CREATE TABLE apps (
    app_key       VARCHAR(64) NOT NULL,
    name          LONGTEXT    NOT NULL,
    secret        LONGTEXT    NOT NULL,
    created_at_ms BIGINT      NOT NULL,
    PRIMARY KEY (app_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE orders (
    order_id         BIGINT       NOT NULL,
    app_key          VARCHAR(64)  NOT NULL,
    out_order_id     VARCHAR(128),
    quantity         BIGINT       NOT NULL,
    valid_from_ms    BIGINT,
    valid_until_ms   BIGINT,
    created_at_ms    BIGINT       NOT NULL,
    issue_state      VARCHAR(16)  NOT NULL DEFAULT 'awaiting',
    issue_describe   LONGTEXT,
    issue_attributes LONGTEXT,
    refunded_tickets BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id),
    CONSTRAINT orders_app FOREIGN KEY (app_key) REFERENCES apps (app_key),
    CONSTRAINT orders_out_order_id UNIQUE (app_key, out_order_id),
    CONSTRAINT orders_order_id_positive CHECK (order_id > 0),
    CONSTRAINT orders_quantity_positive CHECK (quantity >= 1),
    CONSTRAINT orders_issue_state CHECK (issue_state IN ('awaiting', 'issued', 'failed')),
    CONSTRAINT orders_refunded_tickets CHECK (refunded_tickets >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE vouchers (
    order_id     BIGINT       NOT NULL,
    confirm_code VARCHAR(128) NOT NULL,
    seq          BIGINT       NOT NULL,
    capacity     BIGINT       NOT NULL,
    used         BIGINT       NOT NULL DEFAULT 0,
    voucher_type BIGINT,
    extras       LONGTEXT,
    PRIMARY KEY (order_id, confirm_code),
    CONSTRAINT vouchers_seq UNIQUE (order_id, seq),
    CONSTRAINT vouchers_order FOREIGN KEY (order_id) REFERENCES orders (order_id),
    CONSTRAINT vouchers_capacity_positive CHECK (capacity >= 1),
    CONSTRAINT vouchers_used_within_capacity CHECK (used >= 0 AND used <= capacity)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE verify_fingerprints (
    order_id     BIGINT       NOT NULL,
    confirm_code VARCHAR(128) NOT NULL,
    used_at_ms   BIGINT       NOT NULL,
    quantity     BIGINT       NOT NULL,
    request_id   LONGTEXT     NOT NULL,
    PRIMARY KEY (order_id, confirm_code, used_at_ms, quantity),
    CONSTRAINT verify_fingerprints_voucher FOREIGN KEY (order_id, confirm_code)
        REFERENCES vouchers (order_id, confirm_code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- AUTO_INCREMENT hands out increasing `seq`s; explicit values are accepted (and move the
-- counter past them) so `ticketd import` keeps a trail's numbers.
CREATE TABLE audit_log (
    seq        BIGINT       NOT NULL AUTO_INCREMENT,
    request_id LONGTEXT     NOT NULL,
    at_ms      BIGINT       NOT NULL,
    action     LONGTEXT     NOT NULL,
    app_key    VARCHAR(255),
    order_id   BIGINT,
    outcome    VARCHAR(16)  NOT NULL,
    reason     LONGTEXT     NOT NULL,
    detail     LONGTEXT     NOT NULL,
    client_ip  LONGTEXT,
    PRIMARY KEY (seq),
    INDEX audit_log_by_order (order_id, seq),
    INDEX audit_log_by_app (app_key, seq),
    CONSTRAINT audit_log_outcome CHECK (outcome IN ('accepted', 'replayed', 'rejected')),
    CONSTRAINT audit_log_detail_json CHECK (JSON_VALID(detail))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Append-only is enforced by the database itself (creating triggers may need the TRIGGER
-- privilege, and SUPER when binary logging is on; see docs/OPERATIONS.md).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_log is append-only';
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_log is append-only';

CREATE TABLE voucher_uses (
    id             BIGINT       NOT NULL AUTO_INCREMENT,
    order_id       BIGINT       NOT NULL,
    confirm_code   VARCHAR(128) NOT NULL,
    quantity       BIGINT       NOT NULL,
    reversed       BIGINT       NOT NULL DEFAULT 0,
    used_at_ms     BIGINT       NOT NULL,
    recorded_at_ms BIGINT       NOT NULL,
    request_id     LONGTEXT     NOT NULL,
    PRIMARY KEY (id),
    INDEX voucher_uses_by_code (order_id, confirm_code, recorded_at_ms),
    CONSTRAINT voucher_uses_voucher FOREIGN KEY (order_id, confirm_code)
        REFERENCES vouchers (order_id, confirm_code),
    CONSTRAINT voucher_uses_quantity_positive CHECK (quantity >= 1),
    CONSTRAINT voucher_uses_reversed CHECK (reversed >= 0 AND reversed <= quantity)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE refund_requests (
    flow_id          VARCHAR(255) NOT NULL,
    order_id         BIGINT       NOT NULL,
    quantity         BIGINT       NOT NULL,
    requested_at_ms  BIGINT       NOT NULL,
    request_id       LONGTEXT     NOT NULL,
    state            VARCHAR(16)  NOT NULL,
    refunded_tickets BIGINT       NOT NULL DEFAULT 0,
    batch_no         VARCHAR(512),
    failure_reason   LONGTEXT,
    settled_at_ms    BIGINT,
    settled_by       LONGTEXT,
    needs_review     SMALLINT     NOT NULL DEFAULT 0,
    PRIMARY KEY (flow_id),
    INDEX refund_requests_by_order (order_id, requested_at_ms),
    CONSTRAINT refund_requests_order FOREIGN KEY (order_id) REFERENCES orders (order_id),
    CONSTRAINT refund_requests_batch_no UNIQUE (order_id, batch_no),
    CONSTRAINT refund_requests_quantity_positive CHECK (quantity >= 1),
    CONSTRAINT refund_requests_state CHECK (state IN ('pending', 'succeeded', 'failed')),
    CONSTRAINT refund_requests_refunded_tickets CHECK (refunded_tickets >= 0),
    CONSTRAINT refund_requests_needs_review CHECK (needs_review IN (0, 1))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE anomalies (
    id             BIGINT      NOT NULL AUTO_INCREMENT,
    kind           VARCHAR(64) NOT NULL,
    order_id       BIGINT,
    app_key        VARCHAR(255),
    request_id     LONGTEXT    NOT NULL,
    at_ms          BIGINT      NOT NULL,
    detail         LONGTEXT    NOT NULL,
    request        LONGTEXT    NOT NULL,
    resolution     VARCHAR(32),
    note           LONGTEXT,
    resolved_at_ms BIGINT,
    resolved_by    LONGTEXT,
    PRIMARY KEY (id),
    INDEX anomalies_by_order (order_id, id),
    INDEX anomalies_open (resolution, id),
    CONSTRAINT anomalies_detail_json CHECK (JSON_VALID(detail)),
    CONSTRAINT anomalies_request_json CHECK (JSON_VALID(request)),
    CONSTRAINT anomalies_resolution
        CHECK (resolution IN ('accepted', 'reversed', 'refund_adjusted', 'dismissed'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
