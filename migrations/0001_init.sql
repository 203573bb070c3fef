-- Placeholder so the migration machinery is exercised from the start; the ledger issue
-- defines the tables.
CREATE TABLE IF NOT EXISTS ledgerline_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
