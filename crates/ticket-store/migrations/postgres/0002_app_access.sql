-- 0002_app_access (PostgreSQL): per-app rate limits, IP allow-lists and secret rotation with an
-- overlap; equal in meaning to SQLite's 0003.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0003_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- Every new column is nullable and NULL keeps what apps did before this migration: the
-- server's default rate limit, any address, one secret.

ALTER TABLE apps
    -- The rate limit as written (`20/s`, `600/m`, `10000/h`, or `unlimited`); NULL follows the
    -- server's `--default-rate-limit`.
    ADD COLUMN rate_limit TEXT,
    -- Calls allowed at once; set exactly when `rate_limit` is a limited rate.
    ADD COLUMN rate_burst BIGINT,
    -- Addresses and CIDR ranges allowed to call as the app, comma-separated; NULL allows any.
    ADD COLUMN ip_allowlist TEXT,
    -- The secret the last rotation replaced, and the first instant it is no longer accepted.
    ADD COLUMN previous_secret TEXT,
    ADD COLUMN previous_secret_expires_at_ms BIGINT,
    ADD CONSTRAINT apps_rate_burst_positive CHECK (rate_burst >= 1);
