-- 0004_rejected_calls (SQLite): a bounded record of calls refused before the caller was
-- authenticated (TOP codes 21-29 and every shape error met before the signature check).
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0005_<what>.sql` instead.
--
-- Unlike `audit_log`, this table is not evidence of anything a vendor did: anyone on the
-- network can fill it. So it holds only short, clipped facts (at most 1 KiB a row, enforced by
-- the CHECKs below as well as by the code), names no order, and is pruned to the newest
-- `--rejected-calls-keep` rows. No append-only triggers: pruning is its purpose.
CREATE TABLE rejected_calls (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    -- The id answered to the caller, so an operator can find the call a vendor quotes.
    request_id TEXT   NOT NULL CHECK (length(request_id) <= 64),
    client_ip TEXT    CHECK (length(client_ip) <= 64),
    app_key   TEXT    CHECK (length(app_key) <= 64),
    method    TEXT    CHECK (length(method) <= 128),
    code      INTEGER NOT NULL,
    sub_code  TEXT    CHECK (length(sub_code) <= 128)
) STRICT;
