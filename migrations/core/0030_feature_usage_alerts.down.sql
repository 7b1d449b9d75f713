-- Drops the alerts' outbox (and its archive) and the columns 0030 added: the
-- alerts recorded and their delivery states are lost.
DROP TABLE IF EXISTS feature_usage_alerts_archive;
DROP TABLE IF EXISTS feature_usage_alerts;
ALTER TABLE feature_usage_members DROP COLUMN IF EXISTS alert_rearm;
ALTER TABLE feature_usage_members DROP COLUMN IF EXISTS alert_next;
ALTER TABLE feature_usage_members DROP COLUMN IF EXISTS alert_plan;
ALTER TABLE feature_usage_members DROP COLUMN IF EXISTS alert_thresholds;
ALTER TABLE feature_usage DROP COLUMN IF EXISTS alert_rearm;
ALTER TABLE feature_usage DROP COLUMN IF EXISTS alert_next;
ALTER TABLE feature_usage DROP COLUMN IF EXISTS alert_plan;
ALTER TABLE feature_usage DROP COLUMN IF EXISTS alert_thresholds;
