-- The double-entry ledger (design §7).
--
-- Accounts are scoped by merchant: two merchants may both have an account called `acc-1`, and
-- their balances must never meet. An account is therefore (merchant_id, account_id, currency).
--
-- The counterparty of every transaction is the merchant's clearing account. So that it is not
-- one hot row that every partition fights over, it is sharded by the Kafka partition the
-- transaction came from (`account_id = '~clearing/<partition>'`; `~` and `/` cannot occur in an
-- AccountId). One partition is consumed by one writer at a time, so each shard has one writer.
-- The merchant's clearing balance is the sum of its shards (`clearing_balances` below).

CREATE TABLE ledger_transactions (
    transaction_id      uuid        PRIMARY KEY,
    request_id          uuid        NOT NULL,
    decided_event_id    uuid        NOT NULL,
    posted_event_id     uuid        NOT NULL UNIQUE,
    merchant_id         text        NOT NULL CHECK (merchant_id <> ''),
    account_id          text        NOT NULL CHECK (account_id <> '' AND account_id NOT LIKE '~%'),
    txn_type            text        NOT NULL CHECK (txn_type IN ('credit', 'debit')),
    amount_minor        bigint      NOT NULL CHECK (amount_minor > 0),
    currency            text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    result              text        NOT NULL CHECK (result IN ('POSTED', 'DECLINED')),
    reason_code         text,
    balance_after_minor bigint,
    correlation_id      text        NOT NULL,
    received_at         timestamptz NOT NULL,
    decided_at          timestamptz NOT NULL,
    posted_at           timestamptz NOT NULL,
    source_topic        text        NOT NULL,
    source_partition    integer     NOT NULL CHECK (source_partition >= 0),
    source_offset       bigint      NOT NULL CHECK (source_offset >= 0),
    -- A posted transaction has a balance and no reason; a declined one the reverse.
    CHECK ((result = 'POSTED') = (reason_code IS NULL)),
    CHECK ((result = 'POSTED') = (balance_after_minor IS NOT NULL)),
    UNIQUE (source_topic, source_partition, source_offset)
);
CREATE INDEX ledger_transactions_decided_at ON ledger_transactions (decided_at);
CREATE INDEX ledger_transactions_account
    ON ledger_transactions (merchant_id, account_id, currency, decided_at);

CREATE TABLE postings (
    posting_id       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id   uuid    NOT NULL REFERENCES ledger_transactions (transaction_id),
    leg              text    NOT NULL CHECK (leg IN ('account', 'clearing')),
    merchant_id      text    NOT NULL,
    account_id       text    NOT NULL,
    currency         text    NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor     bigint  NOT NULL CHECK (amount_minor <> 0),
    source_topic     text    NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint  NOT NULL,
    UNIQUE (transaction_id, leg),
    -- The clearing leg is on a clearing shard, the account leg never is.
    CHECK ((leg = 'clearing') = (account_id LIKE '~clearing/%'))
);
CREATE INDEX postings_account ON postings (merchant_id, account_id, currency);

-- Every statement that inserts postings must leave each of its transactions with exactly two
-- legs summing to zero. Checked once per statement over the inserted rows (set-based, so it
-- costs one aggregate per batch, not a query per row).
CREATE FUNCTION postings_balance_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad uuid;
BEGIN
    SELECT n.transaction_id INTO bad
    FROM new_postings n
    GROUP BY n.transaction_id, n.currency
    HAVING sum(n.amount_minor) <> 0 OR count(*) <> 2
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'postings of transaction % do not balance', bad
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER postings_balance
    AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION postings_balance_check();

-- Postings are facts: they are never changed or removed.
CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER postings_append_only
    BEFORE UPDATE OR DELETE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();

CREATE TABLE balances (
    merchant_id    text        NOT NULL,
    account_id     text        NOT NULL,
    currency       text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance_minor  bigint      NOT NULL DEFAULT 0,
    postings_count bigint      NOT NULL DEFAULT 0 CHECK (postings_count >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, account_id, currency)
);

-- How far below zero an account may go. Absent: the writer's configured default (0).
CREATE TABLE account_limits (
    merchant_id     text   NOT NULL,
    account_id      text   NOT NULL CHECK (account_id NOT LIKE '~%'),
    currency        text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    overdraft_minor bigint NOT NULL CHECK (overdraft_minor >= 0),
    PRIMARY KEY (merchant_id, account_id, currency)
);

CREATE VIEW clearing_balances AS
SELECT merchant_id, currency, sum(balance_minor)::bigint AS balance_minor
FROM balances
WHERE account_id LIKE '~clearing/%'
GROUP BY merchant_id, currency;

-- Outcomes waiting to be relayed to `txn.postings`, written in the same transaction as the
-- postings. The relay marks rows sent once Kafka acknowledged them; sent rows are purged after
-- a retention period.
CREATE TABLE outbox (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    transaction_id uuid        NOT NULL,
    message_key    text        NOT NULL,
    correlation_id text        NOT NULL,
    payload        bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
