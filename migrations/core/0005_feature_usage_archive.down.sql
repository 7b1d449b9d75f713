-- Drops the archive and every archived usage count.
DROP FUNCTION IF EXISTS archive_old_feature_usage(integer);
DROP TABLE IF EXISTS feature_usage_archive;
