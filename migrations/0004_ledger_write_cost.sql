-- Cheaper ledger writes, with no guarantee given up (docs/ledger.md, "What a batch costs").
-- Measured by PostgreSQL's own statement durations over 10^5 transactions in batches of
-- 2,000, the posting insert was a third of the writer's database time, and most of that was
-- per-row work that a set-based check does once per statement.

-- 1. A posting's link to its transaction is checked per statement, not per row.
--
-- The foreign key ran one lookup, with a KEY SHARE lock on the transaction row, for every
-- posting: two per transaction. The statement-level check below joins the statement's
-- postings with their transactions once, and checks more than the key did: the transaction
-- exists and is POSTED (a DECLINED one has no legs), both legs carry its merchant and
-- currency, and the account leg is on its account with its signed amount.
ALTER TABLE postings DROP CONSTRAINT postings_transaction_id_fkey;

CREATE OR REPLACE FUNCTION postings_balance_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad uuid;
BEGIN
    -- Two legs of one merchant and currency, summing to zero.
    SELECT n.transaction_id INTO bad
    FROM new_postings n
    GROUP BY n.transaction_id, n.merchant_id, n.currency
    HAVING sum(n.amount_minor) <> 0 OR count(*) <> 2
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'postings of transaction % do not balance', bad
            USING ERRCODE = 'check_violation';
    END IF;
    -- The account leg (so one lookup per transaction; the clearing leg shares its merchant
    -- and currency, checked above) against its posted transaction.
    SELECT n.transaction_id INTO bad
    FROM new_postings n
    LEFT JOIN ledger_transactions t ON t.transaction_id = n.transaction_id
    WHERE n.leg = 'account'
      AND (t.transaction_id IS NULL
           OR t.result <> 'POSTED'
           OR n.merchant_id <> t.merchant_id
           OR n.currency <> t.currency
           OR n.account_id <> t.account_id
           OR n.amount_minor <> CASE t.txn_type WHEN 'credit' THEN t.amount_minor
                                                ELSE -t.amount_minor END)
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'postings of transaction % do not match a posted transaction', bad
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

-- Without the key, deleting a transaction (only a quarantine may: 0003) must not leave its
-- postings behind. A quarantine deletes the postings first, in the same database transaction.
CREATE FUNCTION ledger_transactions_orphan_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphaned uuid;
BEGIN
    SELECT o.transaction_id INTO orphaned
    FROM old_transactions o
    JOIN postings p ON p.transaction_id = o.transaction_id
    LIMIT 1;
    IF orphaned IS NOT NULL THEN
        RAISE EXCEPTION 'transaction % still has postings', orphaned
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ledger_transactions_orphans
    AFTER DELETE ON ledger_transactions
    REFERENCING OLD TABLE AS old_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_transactions_orphan_check();

-- 2. A posting is identified by its transaction and leg, which were unique already: the
-- surrogate identity (a sequence step and one more index entry per row) goes.
ALTER TABLE postings DROP COLUMN posting_id;
ALTER TABLE postings
    DROP CONSTRAINT postings_transaction_id_leg_key,
    ADD PRIMARY KEY (transaction_id, leg);

-- 3. Balance rows are updated by every batch that touches them. Free space on their pages
-- lets PostgreSQL write the new version beside the old one without a new index entry
-- (a heap-only update).
ALTER TABLE balances SET (fillfactor = 70);

-- 4. An account's history is found through its postings (`postings_account`, which the
-- reconciler's balance check reads too) and then each transaction by its key; a second index
-- on (merchant, account, currency, decided_at) of every transaction row was written by every
-- batch and read by nothing.
DROP INDEX ledger_transactions_account;

-- 5. Identifiers compare byte by byte (COLLATE "C"), whatever the database's locale.
--
-- They are names, not prose: a locale's collation only makes every index comparison slower
-- (a libc call per comparison, measured 13 % of the writer's database time on a C.UTF-8
-- database; more on en_US.UTF-8, the default of the official image). It also makes the
-- order in which a batch locks its balance rows (`ORDER BY merchant, account, currency`)
-- the order Rust sorts the same strings in, which the reconciler's balance rebuild relies on
-- to lock in the writer's order (under en_US, 'acc1' sorts before 'acc-10'; bytewise after).
-- Changing a column's collation rebuilds its indexes, not the table.
DROP VIEW clearing_balances;
ALTER TABLE balances
    ALTER COLUMN merchant_id TYPE text COLLATE "C",
    ALTER COLUMN account_id TYPE text COLLATE "C",
    ALTER COLUMN currency TYPE text COLLATE "C";
CREATE VIEW clearing_balances AS
SELECT merchant_id, currency, sum(balance_minor)::bigint AS balance_minor
FROM balances
WHERE account_id LIKE '~clearing/%'
GROUP BY merchant_id, currency;
ALTER TABLE account_limits
    ALTER COLUMN merchant_id TYPE text COLLATE "C",
    ALTER COLUMN account_id TYPE text COLLATE "C",
    ALTER COLUMN currency TYPE text COLLATE "C";
ALTER TABLE postings
    ALTER COLUMN leg TYPE text COLLATE "C",
    ALTER COLUMN merchant_id TYPE text COLLATE "C",
    ALTER COLUMN account_id TYPE text COLLATE "C",
    ALTER COLUMN currency TYPE text COLLATE "C";
ALTER TABLE ledger_transactions
    ALTER COLUMN merchant_id TYPE text COLLATE "C",
    ALTER COLUMN account_id TYPE text COLLATE "C",
    ALTER COLUMN currency TYPE text COLLATE "C",
    ALTER COLUMN source_topic TYPE text COLLATE "C";
