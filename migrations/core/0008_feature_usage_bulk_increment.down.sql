-- Drops the many-row form of increment_feature_usage_safe and the writer's
-- batch function. No data is lost.
DROP FUNCTION IF EXISTS write_feature_usage_batch(uuid, uuid[], feature_usage_user_id[], text[],
                                                  bigint[], date[], text[]);
DROP FUNCTION IF EXISTS increment_feature_usage_safe(feature_usage_user_id[], text[], bigint[],
                                                     date[], text[]);
