-- feature-gates: no-transaction
-- DELETES every count that is not a user's count of the calendar month in UTC
-- (organisation pools, hours, days, weeks, years, zones, anchored periods,
-- lifetime counts, rolling windows: live and archived), and every idempotency
-- key of an organisation's uses; then puts back the unique keys on (user_id,
-- feature, period_start), which those counts would break, and the
-- application's own keys the upgrade replaced. Users' monthly counts stay.
-- Roll back the application to a release that counts only those first: a
-- count of another kind written meanwhile stops the rebuild of the key (run
-- the rollback again). The deletes run in batches of
-- FEATURE_GATES_MIGRATION_BATCH_SIZE rows; the keys are built concurrently.

-- feature-gates: batched
WITH doomed AS (
    SELECT ctid FROM feature_usage
    WHERE NOT (scope = 'user' AND period = 'month' AND period_offset = 0)
    LIMIT coalesce(nullif(current_setting('feature_gates.batch_size', true), ''), '1000')::integer
), gone AS (
    DELETE FROM feature_usage WHERE ctid IN (SELECT ctid FROM doomed) RETURNING 1
)
SELECT count(*) AS scanned FROM gone;

-- feature-gates: batched
WITH doomed AS (
    SELECT ctid FROM feature_usage_archive
    WHERE NOT (scope = 'user' AND period = 'month' AND period_offset = 0)
    LIMIT coalesce(nullif(current_setting('feature_gates.batch_size', true), ''), '1000')::integer
), gone AS (
    DELETE FROM feature_usage_archive WHERE ctid IN (SELECT ctid FROM doomed) RETURNING 1
)
SELECT count(*) AS scanned FROM gone;

-- feature-gates: batched
WITH doomed AS (
    SELECT ctid FROM feature_usage_idempotency
    WHERE scope <> 'user'
    LIMIT coalesce(nullif(current_setting('feature_gates.batch_size', true), ''), '1000')::integer
), gone AS (
    DELETE FROM feature_usage_idempotency WHERE ctid IN (SELECT ctid FROM doomed) RETURNING 1
)
SELECT count(*) AS scanned FROM gone;

-- The counted key gives the name back (only while it has it), and the old key
-- is built under it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i
               WHERE i.indexrelid = to_regclass('idx_feature_usage_user_feature_period')
                 AND i.indnkeyatts = 6) THEN
        ALTER INDEX idx_feature_usage_user_feature_period RENAME TO feature_usage_counted_key;
    END IF;
END
$$;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_feature_usage_user_feature_period
    ON feature_usage (user_id, feature, period_start);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS feature_usage_archive_key
    ON feature_usage_archive (user_id, feature, period_start);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'feature_usage_archive'::regclass
                     AND conname = 'feature_usage_archive_key')
       AND NOT EXISTS (SELECT 1 FROM feature_gates_adopted_tables
                       WHERE table_name = 'feature_usage_archive') THEN
        ALTER TABLE feature_usage_archive
            ADD CONSTRAINT feature_usage_archive_key UNIQUE USING INDEX feature_usage_archive_key;
    END IF;
END
$$;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS feature_usage_idempotency_legacy_key
    ON feature_usage_idempotency (user_id, feature, idempotency_key);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i
               WHERE i.indexrelid = to_regclass('feature_usage_idempotency_pkey')
                 AND i.indnkeyatts = 4) THEN
        ALTER TABLE feature_usage_idempotency
            DROP CONSTRAINT feature_usage_idempotency_pkey,
            ADD CONSTRAINT feature_usage_idempotency_pkey
                PRIMARY KEY USING INDEX feature_usage_idempotency_legacy_key;
    END IF;
END
$$;

-- Built again by a run of this file after an interruption, when the key it
-- was for is already in place.
DROP INDEX CONCURRENTLY IF EXISTS feature_usage_idempotency_legacy_key;

-- The application's own unique keys that the upgrade replaced, built again as
-- they were (not concurrently: the definitions are the application's, so the
-- statements are dynamic, and a concurrent build cannot run inside a block;
-- writes to the table wait while one builds).
DO $$
DECLARE
    v_key record;
BEGIN
    FOR v_key IN SELECT * FROM feature_gates_replaced_keys ORDER BY table_name, index_name LOOP
        IF v_key.constraint_name IS NOT NULL THEN
            IF NOT EXISTS (SELECT 1 FROM pg_constraint
                           WHERE conrelid = to_regclass(v_key.table_name)
                             AND conname = v_key.constraint_name) THEN
                EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', v_key.table_name,
                               v_key.constraint_name, v_key.definition);
            END IF;
        ELSIF to_regclass(v_key.index_name) IS NULL THEN
            EXECUTE v_key.definition;
        END IF;
        DELETE FROM feature_gates_replaced_keys
        WHERE table_name = v_key.table_name AND index_name = v_key.index_name;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION feature_usage_index_problems()
RETURNS TABLE (index_name text, problem text)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    WITH wanted (name, is_unique, requirement) AS (
        VALUES ('idx_feature_usage_user_feature_period', true,
                'UNIQUE on exactly (user_id, feature, period_start) of feature_usage, the '
                'key every upsert relies on (ON CONFLICT fails without it)'),
               ('idx_feature_usage_period_start', false,
                'an index on feature_usage (period_start, ...), which the per-period reports '
                'and the archive job read')
    ), found AS (
        SELECT w.*, c.oid, c.relkind, i.indisvalid,
               i.indrelid = to_regclass(format('%I.feature_usage', current_schema()))
                   AND CASE WHEN w.is_unique
                            THEN i.indisunique AND i.indimmediate AND i.indpred IS NULL
                                 AND k.columns = ARRAY['user_id', 'feature', 'period_start']
                            ELSE k.columns[1] = 'period_start' END AS serves
        FROM wanted w
        JOIN pg_class c ON c.relname = w.name AND c.relnamespace = current_schema()::regnamespace
        LEFT JOIN pg_index i ON i.indexrelid = c.oid
        -- Every column of the index, INCLUDE ones too; NULL for an expression.
        LEFT JOIN LATERAL (
            SELECT array_agg(a.attname::text ORDER BY k.n) AS columns
            FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
            LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        ) AS k ON true
    )
    SELECT f.name,
           format('%s (%s) is not %s; rename it or drop it, then run migrate', f.name,
                  CASE WHEN f.relkind IN ('i', 'I') THEN pg_get_indexdef(f.oid)
                       ELSE format('a relation of kind %L, not an index', f.relkind) END,
                  f.requirement)
    FROM found f
    WHERE f.indisvalid IS DISTINCT FROM false AND NOT coalesce(f.serves, false)
$$;
