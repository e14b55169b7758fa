-- 0003_rejected_calls (MySQL/MariaDB): a bounded record of calls refused before the caller
-- was authenticated; equal in meaning to SQLite's 0004.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0004_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- Unlike `audit_log`, this table is not evidence of anything a vendor did: anyone on the
-- network can fill it. So it holds only short, clipped facts (at most 1 KiB a row), names no
-- order, and is pruned to the newest `--rejected-calls-keep` rows.
CREATE TABLE rejected_calls (
    seq       BIGINT       NOT NULL AUTO_INCREMENT,
    at_ms     BIGINT       NOT NULL,
    -- The id answered to the caller, so an operator can find the call a vendor quotes.
    request_id VARCHAR(64) NOT NULL,
    client_ip VARCHAR(64),
    app_key   VARCHAR(64),
    method    VARCHAR(128),
    code      BIGINT       NOT NULL,
    sub_code  VARCHAR(128),
    PRIMARY KEY (seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
