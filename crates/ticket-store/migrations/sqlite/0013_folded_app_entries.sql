-- 0013_folded_app_entries (SQLite): an app's audit entries are folded like an order's, not
-- indexed by every verify.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0014_<what>.sql` instead.
--
-- Issue 14: `audit_log_by_app` was the last lookup every verify changed. The WAL frames the
-- writer wrote in one second put it at 3.3 of 27.5 pages per commit: the index is keyed
-- `(app_key, seq)`, so each app's entries append at their own place in it, a page per app per
-- commit, each written whole into the WAL and again by the checkpoint. It is now
-- `audit_by_app`, folded by the writer from `audit_log` up to `ledger_fold.app_seq`, sorted by
-- key, thousands of rows at a time (src/sqlite/fold.rs); an app's entries past the mark are
-- found by scanning the short tail (`statements::SQLITE_APP_ENTRIES`).

CREATE TABLE audit_by_app (
    app_key TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (app_key, seq)
) STRICT, WITHOUT ROWID;

-- Every entry with `seq <= app_seq` naming an app is in `audit_by_app`.
ALTER TABLE ledger_fold ADD COLUMN app_seq INTEGER NOT NULL DEFAULT 0 CHECK (app_seq >= 0);

-- The trail as it stands is folded here, once.
INSERT INTO audit_by_app (app_key, seq)
    SELECT app_key, seq FROM audit_log WHERE app_key IS NOT NULL ORDER BY app_key, seq;
UPDATE ledger_fold SET app_seq = (SELECT coalesce(max(seq), 0) FROM audit_log) WHERE id = 1;

DROP INDEX audit_log_by_app;
