-- feature-gates: no-transaction
-- Removes the counted key's columns, indexes and tables: every member share of
-- an organisation pool (feature_usage_members and its archive) is lost. The
-- counts of users by calendar month in UTC stay in feature_usage as they were
-- (0022's rollback has removed every other kind by then).
DROP INDEX CONCURRENTLY IF EXISTS feature_usage_idempotency_scoped_key;

DROP INDEX CONCURRENTLY IF EXISTS feature_usage_archive_counted_key;

DROP INDEX CONCURRENTLY IF EXISTS feature_usage_counted_key;

DROP TABLE IF EXISTS feature_usage_members_archive;

DROP TABLE IF EXISTS feature_usage_members;

DROP TABLE IF EXISTS feature_gates_replaced_keys;

ALTER TABLE feature_usage DROP CONSTRAINT IF EXISTS feature_usage_counted_key_format;

ALTER TABLE feature_usage
    DROP COLUMN IF EXISTS window_head,
    DROP COLUMN IF EXISTS window_buckets,
    DROP COLUMN IF EXISTS usage_limit,
    DROP COLUMN IF EXISTS period_end,
    DROP COLUMN IF EXISTS period_offset,
    DROP COLUMN IF EXISTS period,
    DROP COLUMN IF EXISTS scope;

ALTER TABLE feature_usage_archive
    DROP COLUMN IF EXISTS period_end,
    DROP COLUMN IF EXISTS period_offset,
    DROP COLUMN IF EXISTS period,
    DROP COLUMN IF EXISTS scope;

ALTER TABLE feature_usage_idempotency DROP COLUMN IF EXISTS scope;
