-- Reconciliation (design §9): every run, every discrepancy it found, every repair, every DLQ
-- redrive, and the ledger rows a repair quarantined.

CREATE TABLE reconciliation_runs (
    run_id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    window_from     timestamptz NOT NULL,
    window_to       timestamptz NOT NULL CHECK (window_to > window_from),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    -- running → clean | drift | failed
    status          text        NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'clean', 'drift', 'failed')),
    -- What started it: `cli`, `daemon`, or `recheck:<run_id>` after a repair.
    trigger         text        NOT NULL,
    -- Per store: messages / rows / documents compared; buckets compared and differing.
    counts          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Discrepancies by kind.
    discrepancies   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    duration_ms     bigint,
    error           text
);
CREATE INDEX reconciliation_runs_window ON reconciliation_runs (window_from, window_to);

CREATE TABLE reconciliation_discrepancies (
    id               bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id           bigint  NOT NULL REFERENCES reconciliation_runs (run_id),
    kind             text    NOT NULL,
    transaction_id   uuid,
    source_topic     text    NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint  NOT NULL,
    expected         jsonb,
    found            jsonb,
    detail           text    NOT NULL
);
CREATE INDEX reconciliation_discrepancies_run ON reconciliation_discrepancies (run_id);

CREATE TABLE reconciliation_repairs (
    repair_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        bigint      NOT NULL REFERENCES reconciliation_runs (run_id),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text        NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'repaired', 'drift_remains', 'failed')),
    -- The plan that was applied, and what each step did.
    plan          jsonb       NOT NULL,
    outcome       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recheck_run   bigint      REFERENCES reconciliation_runs (run_id),
    error         text
);

-- A dead letter sent back to its source topic (so a later run does not report it again).
CREATE TABLE dlq_redrives (
    dlq_topic      text        NOT NULL,
    dlq_partition  integer     NOT NULL,
    dlq_offset     bigint      NOT NULL,
    target_topic   text        NOT NULL,
    redriven_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);

-- Ledger rows that contradicted the log, moved aside by a repair before the log was replayed.
-- Evidence is kept: the rows as they were, as JSON, with the run that found them.
CREATE TABLE ledger_quarantine (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          bigint      NOT NULL REFERENCES reconciliation_runs (run_id),
    transaction_id  uuid        NOT NULL,
    ledger_row      jsonb       NOT NULL,
    postings        jsonb       NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT now()
);

-- Postings and transactions stay append-only, with one exception: a repair may move a row
-- that contradicts the log into `ledger_quarantine`. It says so explicitly for the duration of
-- its own transaction (`SET LOCAL ledgerline.quarantine = 'on'`); updates are never allowed.
CREATE OR REPLACE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('ledgerline.quarantine', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$;
