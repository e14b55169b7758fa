-- 0009_write_checks (PostgreSQL): a function that refuses a batch's write from inside the
-- statement that makes it.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0010_<what>.sql` instead
-- (see `src/sql/migrate.rs`).
--
-- Why: a batch of verifies writes every table in one statement (`Engine::pg_write_verify`),
-- and every counter it updates and every refund it marks for review must change exactly one
-- row. ticketd used to read those counts back and check them before sending the `COMMIT`,
-- one round trip of its own. The statement now goes to the server with the batch's events
-- and the `COMMIT` in one message, so the check has to be made where the counts are: the
-- statement calls this function when a count is short, and the error it raises aborts the
-- transaction before the `COMMIT` runs.
--
-- `write` names what changed no row (`vouchers.used`, `refund_requests.needs_review`, as
-- `LedgerError::WriteChangedNoRow` does); it travels as the error's constraint name, under
-- the SQLSTATE `TK001`, which no PostgreSQL error uses. It returns a BIGINT only so that it
-- can stand in a `CASE` beside a count; it never returns.
CREATE FUNCTION ticketd_write_changed_no_row(write TEXT) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'a write of the batch changed no row: %', write
        USING ERRCODE = 'TK001', CONSTRAINT = write;
END
$$;
