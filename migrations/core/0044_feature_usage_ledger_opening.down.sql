-- feature-gates: no-transaction
-- The opening rows stay: the ledger is append-only, and 0043's rollback keeps
-- it. Only the indexes this migration may have left behind are dropped.
DROP INDEX CONCURRENTLY IF EXISTS feature_usage_ledger_unopened;

DROP INDEX CONCURRENTLY IF EXISTS feature_usage_members_ledger_unopened;
