-- Drops the holds: capacity still held stays counted as used until the period
-- ends (a hold's row is what gave it back).
DROP TABLE IF EXISTS feature_usage_holds;
