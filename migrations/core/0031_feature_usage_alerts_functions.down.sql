-- Drops the alerts' triggers and functions; the metered check of 0021 (without
-- thresholds) stays. No usage is lost.
DROP TRIGGER IF EXISTS feature_usage_alerts_before_update ON feature_usage_members;
DROP TRIGGER IF EXISTS feature_usage_alerts_before_insert ON feature_usage_members;
DROP TRIGGER IF EXISTS feature_usage_alerts_after_insert ON feature_usage_members;
DROP TRIGGER IF EXISTS feature_usage_alerts_before_update ON feature_usage;
DROP TRIGGER IF EXISTS feature_usage_alerts_before_insert ON feature_usage;
DROP TRIGGER IF EXISTS feature_usage_alerts_after_insert ON feature_usage;
DROP FUNCTION IF EXISTS archive_feature_usage_alerts(integer);
DROP FUNCTION IF EXISTS feature_usage_alerts_replay(uuid[], timestamptz);
DROP FUNCTION IF EXISTS feature_usage_alerts_settle(bigint, text, boolean, double precision, text);
DROP FUNCTION IF EXISTS feature_usage_alerts_claim(integer, double precision);
DROP FUNCTION IF EXISTS feature_usage_consume(feature_usage_user_id, text, text, text, date,
                                              integer, timestamptz, integer, bigint,
                                              feature_usage_user_id, bigint, bigint, numeric[],
                                              text);
DROP FUNCTION IF EXISTS feature_usage_alerts_undo(feature_usage_user_id, text, text, text, date,
                                                  integer);
DROP FUNCTION IF EXISTS feature_usage_alerts_record();
DROP FUNCTION IF EXISTS feature_usage_window_below(bigint[], bigint, numeric);
