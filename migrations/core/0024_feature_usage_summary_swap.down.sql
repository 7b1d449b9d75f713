-- feature-gates: no-transaction
-- Builds the released feature_usage_summary (by feature and period start)
-- beside the current one, as feature_usage_summary_next, for the rollback of
-- 0023 to swap in. No data is lost (it is computed from feature_usage).

DROP MATERIALIZED VIEW IF EXISTS feature_usage_summary_next;

CREATE MATERIALIZED VIEW IF NOT EXISTS feature_usage_summary_next AS
SELECT
    feature,
    period_start,
    sum(usage_count)::bigint                      AS total_usage,
    count(*) FILTER (WHERE usage_count > 0)::bigint AS unique_users,
    max(updated_at)                               AS last_used_at
FROM feature_usage
GROUP BY feature, period_start
WITH DATA;

CREATE UNIQUE INDEX IF NOT EXISTS feature_usage_summary_next_key
    ON feature_usage_summary_next (feature, period_start);
