-- The summary built by 0023 takes the name feature_usage_summary, in one
-- transaction: ACCESS EXCLUSIVE on the views only (their readers wait
-- milliseconds); feature_usage is not touched.
DROP MATERIALIZED VIEW IF EXISTS feature_usage_summary;
ALTER MATERIALIZED VIEW feature_usage_summary_next RENAME TO feature_usage_summary;
ALTER INDEX feature_usage_summary_next_key RENAME TO feature_usage_summary_feature_period;
