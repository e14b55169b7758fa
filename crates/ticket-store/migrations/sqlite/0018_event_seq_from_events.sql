-- 0018_event_seq_from_events (SQLite): an event takes the `seq` after the newest event's,
-- and the counter row `ledger_event_seq` is no longer advanced by every write. No match on
-- the other engines, whose writers share the counter row to hand out consecutive `seq`s.
--
-- NEVER EDIT THIS FILE once a database anywhere has applied it; add `0019_<what>.sql` instead.
--
-- Issue 14: the counter row's page was one of the few pages every commit rewrote whatever it
-- held (4 KiB of WAL per commit, about 1.3 KB per verify at half load, where commits carry
-- three verifies), and its `UPDATE` one of a verify's five statements. An event now inserts
-- `seq` NULL, which SQLite makes one more than the newest event's (`seq` is the rowid of
-- `event_rows`). SQLite has one writer at a time, holding the write lock for its whole
-- transaction, so the `seq`s are as consecutive as the counter made them and commit in the
-- same order; events are never deleted or renumbered (the two triggers below make sure), so
-- none is handed out twice (`statements::SQLITE_INSERT_EVENT`). The feed's head is the newest event's `seq`
-- (`statements::SQLITE_SELECT_LEDGER_ID`); an import still sets `last` to it.
--
-- Every ledger ticketd wrote has `last` equal to its newest event's `seq` (each advance and
-- its event were one transaction), so the statement below changes nothing there; were `last`
-- ever ahead, no event holds the `seq`s in between, so no reader has been handed one, and the
-- next event takes the first of them. What the migration is for is its version: a binary that
-- still advances the counter refuses a ledger that has applied it (`SchemaTooNew`), instead of
-- taking a `seq` that the events written since already hold.

UPDATE ledger_event_seq
   SET last = coalesce((SELECT max(seq) FROM event_rows), 0)
 WHERE id = 1;

-- A deleted or renumbered event would let its `seq` be handed out again, to another event
-- that a consumer positioned past it never reads. (Nothing in ticketd deletes or renumbers
-- one; the counter row protected the `seq`s from it before.)
CREATE TRIGGER event_rows_no_delete BEFORE DELETE ON event_rows
BEGIN
    SELECT RAISE(ABORT, 'event_rows is append-only');
END;

CREATE TRIGGER event_rows_no_renumber BEFORE UPDATE OF seq ON event_rows
BEGIN
    SELECT RAISE(ABORT, 'event_rows is append-only');
END;
