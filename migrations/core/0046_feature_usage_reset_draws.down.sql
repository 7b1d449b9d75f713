-- Puts back 0043's reset, which keeps a period's draws on grants when it takes
-- the count back to 0. The ledger keeps the rows that wrote draws off, and
-- the periods reset since keep their draws as written off. No data is lost.
DROP FUNCTION feature_usage_reset(feature_usage_user_id, text, text, text, date, integer);

ALTER FUNCTION feature_usage_reset_count(feature_usage_user_id, text, text, text, date, integer)
    RENAME TO feature_usage_reset;
