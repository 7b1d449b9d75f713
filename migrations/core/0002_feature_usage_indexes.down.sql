-- feature-gates: no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_feature_usage_period_start;
DROP INDEX CONCURRENTLY IF EXISTS idx_feature_usage_user_feature_period;
