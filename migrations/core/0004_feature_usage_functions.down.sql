-- Drops the feature usage functions. No data is lost.
DROP FUNCTION IF EXISTS get_user_feature_usage(feature_usage_user_id, date);
DROP FUNCTION IF EXISTS get_feature_usage(feature_usage_user_id, text, date);
DROP FUNCTION IF EXISTS refund_feature_usage(feature_usage_user_id, text, integer, date);
DROP FUNCTION IF EXISTS consume_feature_usage(feature_usage_user_id, text, integer, bigint, date);
DROP FUNCTION IF EXISTS increment_feature_usage_safe(feature_usage_user_id, text, integer, date);
DROP FUNCTION IF EXISTS feature_usage_check_amount(text, integer);
DROP FUNCTION IF EXISTS feature_usage_check_args(feature_usage_user_id, text, date);
DROP FUNCTION IF EXISTS feature_usage_current_period();
