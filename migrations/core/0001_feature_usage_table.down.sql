-- Drops feature_usage and every recorded usage count.
DROP TABLE IF EXISTS feature_usage;
DROP DOMAIN IF EXISTS feature_usage_user_id;
