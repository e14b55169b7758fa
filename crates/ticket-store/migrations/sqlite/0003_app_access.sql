-- 0003_app_access: per-app rate limits, IP allow-lists and secret rotation with an overlap.
--
-- NEVER EDIT THIS FILE once applied; add 0004_<what>.sql instead.
--
-- Every new column is nullable and NULL keeps what apps did before this migration: the
-- server's default rate limit, any address, one secret.

-- The rate limit as written (`20/s`, `600/m`, `10000/h`, or `unlimited`); NULL follows the
-- server's `--default-rate-limit`.
ALTER TABLE apps ADD COLUMN rate_limit TEXT;
-- Calls allowed at once; set exactly when `rate_limit` is a limited rate.
ALTER TABLE apps ADD COLUMN rate_burst INTEGER CHECK (rate_burst >= 1);
-- Addresses and CIDR ranges allowed to call as the app, comma-separated; NULL allows any.
ALTER TABLE apps ADD COLUMN ip_allowlist TEXT;
-- The secret the last rotation replaced, and the first instant it is no longer accepted.
ALTER TABLE apps ADD COLUMN previous_secret TEXT;
ALTER TABLE apps ADD COLUMN previous_secret_expires_at_ms INTEGER;
