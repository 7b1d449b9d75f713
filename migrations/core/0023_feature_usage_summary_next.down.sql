-- Swaps in the released feature_usage_summary that the rollback of 0024 built,
-- in one transaction (ACCESS EXCLUSIVE on the views only). No data is lost.
DROP MATERIALIZED VIEW IF EXISTS feature_usage_summary;
ALTER MATERIALIZED VIEW feature_usage_summary_next RENAME TO feature_usage_summary;
ALTER INDEX feature_usage_summary_next_key RENAME TO feature_usage_summary_feature_period;
