-- feature_usage_summary learns the counted key: one row per feature, scope,
-- rule and period start (total uses, subjects, last use), so that a day's
-- count and the month's are not added up. A user's calendar month in UTC reads
-- as before (scope 'user', period 'month', period_offset 0). Rolling windows
-- have no periods to sum and are left out; member shares are in their pools.
-- The new view is built beside the old one, as feature_usage_summary_next (it
-- reads feature_usage once: ACCESS SHARE, writes go on); 0024 swaps it in.

DROP MATERIALIZED VIEW IF EXISTS feature_usage_summary_next;

CREATE MATERIALIZED VIEW IF NOT EXISTS feature_usage_summary_next AS
SELECT
    feature,
    period_start,
    sum(usage_count)::bigint                      AS total_usage,
    count(*) FILTER (WHERE usage_count > 0)::bigint AS unique_users,
    max(updated_at)                               AS last_used_at,
    scope,
    period,
    period_offset
FROM feature_usage
WHERE period NOT LIKE 'window:%'
GROUP BY feature, scope, period, period_start, period_offset
WITH DATA;

-- REFRESH ... CONCURRENTLY needs a unique index on plain NOT NULL columns.
CREATE UNIQUE INDEX IF NOT EXISTS feature_usage_summary_next_key
    ON feature_usage_summary_next (feature, scope, period, period_start, period_offset);
