-- 0001_init: the ledger's first schema.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it: the store records a checksum of
-- every applied migration and refuses to open a database whose history disagrees with the
-- binary. Change the schema by adding `0002_<what>.sql` (see `src/sqlite/migrate.rs`).
--
-- Conventions: instants are UTC milliseconds since the epoch in INTEGER columns (`*_ms`);
-- counts are integers; tables are STRICT so a wrongly typed value fails instead of being
-- silently coerced.

-- Vendor applications allowed to call the gateway.
CREATE TABLE apps (
    app_key       TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    secret        TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- Paid orders. `out_order_id` is unique per app once known; SQLite's UNIQUE lets any number of
-- orders wait for theirs (NULL).
CREATE TABLE orders (
    order_id       INTEGER PRIMARY KEY CHECK (order_id > 0),
    app_key        TEXT    NOT NULL REFERENCES apps (app_key),
    out_order_id   TEXT,
    quantity       INTEGER NOT NULL CHECK (quantity >= 1),
    valid_from_ms  INTEGER,
    valid_until_ms INTEGER,
    created_at_ms  INTEGER NOT NULL,
    UNIQUE (app_key, out_order_id)
) STRICT;

-- Confirm codes and their counters. `seq` is the issuance order, which legacy order-level
-- reports draw down (R2). The CHECK is the last line of defence behind the conditional
-- `UPDATE ... WHERE used + ? <= capacity`: no code can ever be used beyond its capacity.
CREATE TABLE vouchers (
    order_id     INTEGER NOT NULL REFERENCES orders (order_id),
    confirm_code TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    capacity     INTEGER NOT NULL CHECK (capacity >= 1),
    used         INTEGER NOT NULL DEFAULT 0,
    CHECK (used >= 0 AND used <= capacity),
    PRIMARY KEY (order_id, confirm_code),
    UNIQUE (order_id, seq)
) STRICT, WITHOUT ROWID;

-- Delta reports already applied, so a retried report is recognised and not recounted (R16).
-- The key is the report's fingerprint; `request_id` names the request that first applied it.
CREATE TABLE verify_fingerprints (
    order_id     INTEGER NOT NULL,
    confirm_code TEXT    NOT NULL,
    used_at_ms   INTEGER NOT NULL,
    quantity     INTEGER NOT NULL,
    request_id   TEXT    NOT NULL,
    PRIMARY KEY (order_id, confirm_code, used_at_ms, quantity),
    FOREIGN KEY (order_id, confirm_code) REFERENCES vouchers (order_id, confirm_code)
) STRICT, WITHOUT ROWID;

-- The append-only audit trail: every attempt and operator action. `order_id` and `app_key` are
-- deliberately not foreign keys: rejected attempts name unknown orders and apps too.
-- AUTOINCREMENT so a `seq` is never handed out twice, which keeps `after_seq` paging exact.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    action     TEXT    NOT NULL,
    app_key    TEXT,
    order_id   INTEGER,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('accepted', 'replayed', 'rejected')),
    reason     TEXT    NOT NULL,
    detail     TEXT    NOT NULL CHECK (json_valid(detail)),
    client_ip  TEXT
) STRICT;

-- An order's history (admin order view) and an app's entries, both oldest first.
CREATE INDEX audit_log_by_order ON audit_log (order_id, seq);
CREATE INDEX audit_log_by_app ON audit_log (app_key, seq);

-- Append-only is enforced by the database itself, not only by the code that writes to it.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
