-- 0017_checks_without_lists (SQLite): the `CHECK`s that named a list of three or more values
-- (`x IN ('a', 'b', 'c')`) name each value (`x = 'a' OR x = 'b' OR x = 'c'`). No match on the
-- other engines (a cost of SQLite's code generation only).
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0018_<what>.sql` instead.
--
-- Issue 14: SQLite checks a constant list of more than two values by building a temporary
-- B-tree of the list, and it builds it again for every statement it runs: every verify's
-- `INSERT INTO audit_log` opened, filled and dropped one for `outcome` (about 1 in 20 of the
-- single writer's instructions per verify, with the event insert's own temporary B-tree,
-- removed in the same change). Comparisons cost nothing of the kind. Both forms accept and
-- refuse exactly the same values, NULL included (`NULL IN (…)` and `NULL = 'a' OR …` are both
-- NULL, which a CHECK lets through, as the nullable `resolution` needs).
--
-- The rows do not change, so the tables are not rebuilt: the new text replaces the old one
-- in `sqlite_schema`, the procedure SQLite documents for changes that leave the stored rows
-- valid (https://www.sqlite.org/lang_altertable.html#otheralter). `RESET` makes this
-- connection read the schema again; the migration runner moves `schema_version` on, so every
-- other connection does too. `ticket-store`'s test of this migration compares the schema
-- with the old one, constraint by constraint, and runs `PRAGMA integrity_check`.

PRAGMA writable_schema = ON;

UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (outcome IN (''accepted'', ''replayed'', ''rejected''))',
       'CHECK (outcome = ''accepted'' OR outcome = ''replayed'' OR outcome = ''rejected'')')
 WHERE type = 'table' AND name = 'audit_log';

UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (issue_state IN (''awaiting'', ''issued'', ''failed''))',
       'CHECK (issue_state = ''awaiting'' OR issue_state = ''issued'' OR issue_state = ''failed'')')
 WHERE type = 'table' AND name = 'orders';

UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (state IN (''pending'', ''succeeded'', ''failed''))',
       'CHECK (state = ''pending'' OR state = ''succeeded'' OR state = ''failed'')')
 WHERE type = 'table' AND name = 'refund_requests';

UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (resolution IN (''accepted'', ''reversed'', ''refund_adjusted'', ''dismissed''))',
       'CHECK (resolution = ''accepted'' OR resolution = ''reversed'' '
           || 'OR resolution = ''refund_adjusted'' OR resolution = ''dismissed'')')
 WHERE type = 'table' AND name = 'anomalies';

PRAGMA writable_schema = RESET;
