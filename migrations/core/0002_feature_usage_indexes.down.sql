-- feature-gates: no-transaction
-- Drops the two indexes (without blocking writes). No data is lost.
DROP INDEX CONCURRENTLY IF EXISTS idx_feature_usage_period_start;
DROP INDEX CONCURRENTLY IF EXISTS idx_feature_usage_user_feature_period;
