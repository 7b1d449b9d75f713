-- Drops the feature_usage_summary view; no data is lost (it is computed from
-- feature_usage).
DROP FUNCTION IF EXISTS refresh_feature_usage_summary();
DROP MATERIALIZED VIEW IF EXISTS feature_usage_summary;
