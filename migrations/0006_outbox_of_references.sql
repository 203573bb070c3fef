-- The outbox names the transaction to announce; the relay reads the event from the ledger row
-- (docs/ledger.md, "Outbox and relay").
--
-- Every field of `TransactionPosted` is a column of `ledger_transactions`, written in the same
-- database transaction as the outbox row, so the encoded copy the row carried was the ledger
-- row a second time: with its unique event-id key it was a third of the ledger's WAL
-- (docs/ledger.md, "What a batch writes to the WAL").
--
-- The copy had one use the ledger row cannot serve: a transaction a repair quarantined while its
-- row was waiting has no ledger row. A quarantine now deletes the transaction's outbox rows in
-- its own database transaction, under the relay's lock: what it moved aside contradicts the
-- log, and the replay that follows re-posts the transaction and writes a row of its own.
--
-- Rows an earlier writer wrote and had not sent are sent by the new relay, read from their
-- ledger rows like the new ones. The old columns are dropped (with the unique key on
-- `event_id`): nothing reads them any more.
ALTER TABLE outbox DROP COLUMN event_id;
ALTER TABLE outbox DROP COLUMN message_key;
ALTER TABLE outbox DROP COLUMN correlation_id;
ALTER TABLE outbox DROP COLUMN payload;
