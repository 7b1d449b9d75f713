DROP FUNCTION IF EXISTS refresh_feature_usage_summary();
DROP MATERIALIZED VIEW IF EXISTS feature_usage_summary;
