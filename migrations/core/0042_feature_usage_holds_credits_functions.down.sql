-- Drops the functions of holds and credits; the metered check goes back to
-- 0031's feature_usage_consume, which reclaims no expired hold and draws on no
-- grant. No usage is lost.
DROP FUNCTION IF EXISTS feature_usage_credits_audit();
DROP FUNCTION IF EXISTS feature_usage_balance(feature_usage_user_id, text, text, text, date,
                                              integer, feature_usage_user_id, timestamptz);
DROP FUNCTION IF EXISTS feature_usage_held(feature_usage_user_id, text, text, text, date, integer,
                                           feature_usage_user_id, timestamptz);
DROP FUNCTION IF EXISTS feature_usage_hold_settle(feature_usage_user_id, uuid, integer,
                                                  timestamptz, bigint);
DROP FUNCTION IF EXISTS feature_usage_reserve(feature_usage_user_id, text, text, text, date,
                                              integer, timestamptz, integer, bigint,
                                              feature_usage_user_id, bigint, bigint, numeric[],
                                              text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS feature_usage_take(feature_usage_user_id, text, text, text, date,
                                           integer, timestamptz, integer, bigint,
                                           feature_usage_user_id, bigint, bigint, numeric[],
                                           text, timestamptz);
DROP FUNCTION IF EXISTS feature_usage_holds_reclaim(feature_usage_user_id, text, text, text, date,
                                                    integer, timestamptz, bigint);
DROP FUNCTION IF EXISTS feature_usage_rollover(feature_usage_user_id, text, text, text, date,
                                               integer, bigint, bigint, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS feature_usage_grant(feature_usage_user_id, text, text, bigint,
                                            timestamptz, text, text, text, timestamptz);
DROP FUNCTION IF EXISTS feature_usage_grants_expire(feature_usage_user_id, text, text,
                                                    timestamptz);
DROP FUNCTION IF EXISTS feature_usage_give_back(feature_usage_user_id, text, text, text, date,
                                                integer, integer, feature_usage_user_id, bigint,
                                                bigint, timestamptz);
