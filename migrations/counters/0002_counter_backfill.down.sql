-- Nothing to undo: the counter values go with their columns (rollback of
-- 0001). A counter column the application had before stays NOT NULL until
-- the rollback of 0001 gives it back as it was. No data is lost.
DELETE FROM feature_gates_backfill_progress;
