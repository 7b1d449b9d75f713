-- Nothing to undo: the counter values go with their columns (rollback of
-- 0001). No data is lost.
DELETE FROM feature_gates_backfill_progress;
