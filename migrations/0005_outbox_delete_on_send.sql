-- The outbox holds only what is still to be sent: the relay deletes the rows it has sent in
-- the transaction that used to mark them (docs/ledger.md, "Outbox and relay").
--
-- Marking a row sent rewrote it: `sent_at` is in an index, so the update could not be
-- heap-only and wrote a full copy of the row (its payload included) and an entry in each of
-- its indexes, and a purge deleted that copy again days later. A delete writes neither. What
-- was sent is kept where it is read from: on `txn.postings` and in the audit trail.
--
-- Rows already sent are gone with the column; unsent ones stay and are sent as before.
DELETE FROM outbox WHERE sent_at IS NOT NULL;
DROP INDEX outbox_unsent;
DROP INDEX outbox_sent_at;
ALTER TABLE outbox DROP COLUMN sent_at;
