-- Drops the idempotency keys and batch records: a key recorded before the
-- rollback counts again if it is used after.
DROP FUNCTION IF EXISTS prune_feature_usage_idempotency(integer);
DROP FUNCTION IF EXISTS resolve_feature_usage_batch(uuid);
DROP TABLE IF EXISTS feature_usage_batches;
DROP TABLE IF EXISTS feature_usage_idempotency;
