-- Drops feature_usage_archive and every archived usage count in it.
DROP FUNCTION IF EXISTS archive_old_feature_usage(integer);
DROP TABLE IF EXISTS feature_usage_archive;
