-- feature-gates: no-transaction
{header}
--
-- Backfills the counter in batches of FEATURE_GATES_MIGRATION_BATCH_SIZE rows by
-- primary key, one short transaction each, writing only the rows whose count
-- differs; an interrupted backfill resumes after the last batch it committed.
-- Then compares every row with the truth, in batches too, and stops the
-- migration, naming the rows, if any differs. Then makes the column NOT NULL
-- without a long exclusive lock.

-- feature-gates: batched
SELECT scanned, changed FROM feature_gates_counter_backfill_step({counter});

-- feature-gates: batched
SELECT scanned FROM feature_gates_counter_audit_step({counter});

-- NOT NULL through a validated check: the check is added NOT VALID (ACCESS
-- EXCLUSIVE, milliseconds), validated by a scan that lets writes go on (SHARE
-- UPDATE EXCLUSIVE), and SET NOT NULL finds it and scans nothing (ACCESS
-- EXCLUSIVE, milliseconds); then it is dropped. A plain SET NOT NULL would scan
-- the whole table under ACCESS EXCLUSIVE. A column this set added is NOT NULL
-- already: only an adopted column that allowed NULL needs it.
ALTER TABLE {table}
    DROP CONSTRAINT IF EXISTS {not_null_check},
    ADD CONSTRAINT {not_null_check} CHECK ({column} IS NOT NULL) NOT VALID;

ALTER TABLE {table} VALIDATE CONSTRAINT {not_null_check};

ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL;

ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {not_null_check};

SELECT feature_gates_counter_positions_clear({counter});
