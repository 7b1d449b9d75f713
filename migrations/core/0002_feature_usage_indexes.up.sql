-- feature-gates: no-transaction
-- Built concurrently so that an application's existing table keeps taking
-- writes while the indexes are built.

-- The arbiter of every ON CONFLICT upsert, and the index for (user, feature)
-- lookups.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_feature_usage_user_feature_period
    ON feature_usage (user_id, feature, period_start);

-- Per-period reports (top features, users near a limit) and the archive job.
-- Partial: rows whose usage was fully refunded record nothing.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_feature_usage_period_start
    ON feature_usage (period_start)
    WHERE usage_count > 0;
