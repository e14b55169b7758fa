-- 0002_app_access (MySQL 8.0+ / MariaDB 10.5+): per-app rate limits, IP allow-lists and secret
-- rotation with an overlap; equal in meaning to SQLite's 0003.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0003_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- Every new column is nullable and NULL keeps what apps did before this migration: the
-- server's default rate limit, any address, one secret. One statement, so that a failure
-- cannot leave half the columns added (MySQL commits DDL implicitly).

ALTER TABLE apps
    -- The rate limit as written (`20/s`, `600/m`, `10000/h`, or `unlimited`); NULL follows the
    -- server's `--default-rate-limit`.
    ADD COLUMN rate_limit VARCHAR(32) NULL,
    -- Calls allowed at once; set exactly when `rate_limit` is a limited rate.
    ADD COLUMN rate_burst BIGINT NULL,
    -- Addresses and CIDR ranges allowed to call as the app, comma-separated; NULL allows any.
    ADD COLUMN ip_allowlist LONGTEXT NULL,
    -- The secret the last rotation replaced, and the first instant it is no longer accepted.
    ADD COLUMN previous_secret LONGTEXT NULL,
    ADD COLUMN previous_secret_expires_at_ms BIGINT NULL,
    ADD CONSTRAINT apps_rate_burst_positive CHECK (rate_burst >= 1);
