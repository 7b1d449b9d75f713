-- Drops the credits: every grant, its remaining balance and the ledger are lost;
-- uses drawn on grants stay counted.
DROP TABLE IF EXISTS feature_usage_ledger;
DROP TABLE IF EXISTS feature_usage_grants;
ALTER TABLE feature_usage DROP COLUMN IF EXISTS credit_used;
