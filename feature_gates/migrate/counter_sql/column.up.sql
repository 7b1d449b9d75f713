-- feature-gates: no-transaction
{header}
--
-- This migration adds the column (or adopts an integer column of that name the
-- table has), records the counter in feature_gates_counter_registry and
-- installs what keeps it exact for every writer; the next one backfills it.
-- Each statement runs in a short transaction of its own, with the runner's
-- lock timeout.

-- The registry comes with feature-gates' core set: list "core" before this
-- set in FEATURE_GATES_MIGRATION_SETS.
DO $$
BEGIN
    IF to_regclass('feature_gates_counter_registry') IS NULL THEN
        RAISE EXCEPTION 'a counter set needs the counter registry of feature-gates'' core '
                        'set (core/0009), which this database does not have'
            USING ERRCODE = 'undefined_table',
                  HINT = 'list "core" before this set in FEATURE_GATES_MIGRATION_SETS and '
                         'run migrate';
    END IF;
END
$$;

-- First, before anything changes: stops, naming them, if a table or column
-- is missing or the column exists with another type than integer, and records
-- what the table had under the counter's names (a rollback gives it back).
SELECT feature_gates_counter_register(
{register_args});

-- Catalog-only (a constant default rewrites nothing): ACCESS EXCLUSIVE on the
-- table for milliseconds once granted. An adopted column gets the default too;
-- the backfill gives its NULLs their count, then makes it NOT NULL.
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} integer NOT NULL DEFAULT 0;

ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT 0;
