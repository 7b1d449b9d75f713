-- feature-gates: no-transaction
-- Opens the ledger of every count made before 0043: one 'opening' row per
-- counted row (per member share, and per bucket of a window) of what it had
-- used, in batches of FEATURE_GATES_MIGRATION_BATCH_SIZE rows, each in a short
-- transaction of its own (SKIP LOCKED: the application's writes go on; a row
-- locked by one is opened by a later batch). The rows still to open are found
-- by a partial index built concurrently for the purpose and dropped after.

CREATE INDEX CONCURRENTLY IF NOT EXISTS feature_usage_ledger_unopened
    ON feature_usage (user_id) WHERE ledger_since IS NULL;

CREATE INDEX CONCURRENTLY IF NOT EXISTS feature_usage_members_ledger_unopened
    ON feature_usage_members (org_id) WHERE ledger_since IS NULL;

-- feature-gates: batched
SELECT opened AS scanned FROM feature_usage_ledger_open(
    coalesce(nullif(current_setting('feature_gates.batch_size', true), ''), '1000')::integer);

DROP INDEX CONCURRENTLY IF EXISTS feature_usage_ledger_unopened;

DROP INDEX CONCURRENTLY IF EXISTS feature_usage_members_ledger_unopened;
