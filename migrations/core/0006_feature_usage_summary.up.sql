-- Per feature and period: total uses, distinct users, last use. Refreshed by
-- refresh_feature_usage_summary() (cron: `feature-gates refresh`).

CREATE MATERIALIZED VIEW IF NOT EXISTS feature_usage_summary AS
SELECT
    feature,
    period_start,
    sum(usage_count)::bigint                      AS total_usage,
    count(*) FILTER (WHERE usage_count > 0)::bigint AS unique_users,
    max(updated_at)                               AS last_used_at
FROM feature_usage
GROUP BY feature, period_start
WITH DATA;

-- REFRESH ... CONCURRENTLY needs a unique index on plain NOT NULL columns.
CREATE UNIQUE INDEX IF NOT EXISTS feature_usage_summary_feature_period
    ON feature_usage_summary (feature, period_start);

-- Refreshes the summary without blocking its readers.
CREATE OR REPLACE FUNCTION refresh_feature_usage_summary()
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY feature_usage_summary;
END
$$;
