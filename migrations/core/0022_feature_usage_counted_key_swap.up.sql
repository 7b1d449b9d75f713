-- feature-gates: no-transaction
-- The old unique keys go, now that every function uses the counted key: a
-- user's count of a day, and of the month that starts on it, can then live
-- side by side. The counted key of feature_usage takes the old key's name
-- (idx_feature_usage_user_feature_period), the one verify and the adopted-table
-- checks know. Renames take SHARE UPDATE EXCLUSIVE (writes go on); dropping a
-- plain index is concurrent; the archive's and the idempotency table's keys are
-- constraints, replaced in one statement each (ACCESS EXCLUSIVE, milliseconds).

-- Only the old three-column index is renamed out of the way: after this file
-- has run once, the name belongs to the counted key (no static form of DDL
-- says "rename it only if it is still the old one").
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i
               WHERE i.indexrelid = to_regclass('idx_feature_usage_user_feature_period')
                 AND i.indnkeyatts = 3) THEN
        ALTER INDEX idx_feature_usage_user_feature_period
            RENAME TO fg_drop_idx_feature_usage_user_feature_period;
    END IF;
END
$$;

DROP INDEX CONCURRENTLY IF EXISTS fg_drop_idx_feature_usage_user_feature_period;

-- The counted key takes the name; a second copy of it (built when 0020 ran
-- again after this file had renamed the first) is set aside to be dropped.
DO $$
BEGIN
    IF to_regclass('feature_usage_counted_key') IS NULL THEN
        RETURN;
    ELSIF to_regclass('idx_feature_usage_user_feature_period') IS NULL THEN
        ALTER INDEX feature_usage_counted_key RENAME TO idx_feature_usage_user_feature_period;
    ELSE
        ALTER INDEX feature_usage_counted_key RENAME TO fg_drop_feature_usage_counted_key;
    END IF;
END
$$;

DROP INDEX CONCURRENTLY IF EXISTS fg_drop_feature_usage_counted_key;

-- An application's own unique key of some of (user_id, feature, period_start)
-- on an adopted table would refuse a day's count beside the month's: it is
-- recorded in feature_gates_replaced_keys (the rollback builds it again) and
-- dropped (ACCESS EXCLUSIVE for the catalog change: milliseconds). Its names
-- are the application's: no static form.
DO $$
DECLARE
    v_adopted_archive boolean := EXISTS (
        SELECT 1 FROM feature_gates_adopted_tables WHERE table_name = 'feature_usage_archive');
    v_key record;
BEGIN
    FOR v_key IN
        SELECT c.relname::text AS index_name, i.indrelid::regclass::text AS table_name,
               k.conname::text AS constraint_name,
               CASE WHEN k.conname IS NULL THEN pg_get_indexdef(i.indexrelid)
                    ELSE pg_get_constraintdef(k.oid) END AS definition
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
        WHERE i.indrelid IN (to_regclass('feature_usage'), to_regclass('feature_usage_archive'))
          AND i.indisunique AND i.indisvalid AND i.indexprs IS NULL AND i.indpred IS NULL
          -- feature-gates' own keys: replaced above and below
          AND c.relname NOT IN ('idx_feature_usage_user_feature_period',
                                'feature_usage_archive_counted_key')
          AND c.relname NOT LIKE 'fg\_drop\_%'
          AND NOT (c.relname = 'feature_usage_archive_key' AND NOT v_adopted_archive)
          -- Only a key of columns that two counts of the same user, feature and
          -- first day share refuses one beside the other (an id does not).
          AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                          WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
                            AND a.attname NOT IN ('user_id', 'feature', 'period_start'))
        ORDER BY 2, 1
    LOOP
        INSERT INTO feature_gates_replaced_keys (table_name, index_name, constraint_name,
                                                 definition)
        VALUES (v_key.table_name, v_key.index_name, v_key.constraint_name, v_key.definition)
        ON CONFLICT (table_name, index_name) DO NOTHING;
        IF v_key.constraint_name IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', v_key.table_name,
                           v_key.constraint_name);
        ELSE
            EXECUTE format('DROP INDEX %I', v_key.index_name);
        END IF;
        RAISE NOTICE '% of %, a unique key of the application''s own, is replaced by '
                     'feature-gates'' counted key; a rollback builds it again',
                     v_key.index_name, v_key.table_name;
    END LOOP;
END
$$;

-- feature_usage_archive_counted_key stays a plain unique index (the archive's
-- ON CONFLICT needs no more); the old constraint goes.
ALTER TABLE feature_usage_archive DROP CONSTRAINT IF EXISTS feature_usage_archive_key;

-- The primary key of the idempotency records becomes the scoped one, in one
-- statement so that the table is never without it; only while it is the old one.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i
               WHERE i.indexrelid = to_regclass('feature_usage_idempotency_pkey')
                 AND i.indnkeyatts = 3) THEN
        ALTER TABLE feature_usage_idempotency
            DROP CONSTRAINT feature_usage_idempotency_pkey,
            ADD CONSTRAINT feature_usage_idempotency_pkey
                PRIMARY KEY USING INDEX feature_usage_idempotency_scoped_key;
    END IF;
END
$$;

-- A second copy of the scoped key (0020 run again after the swap) goes.
DO $$
BEGIN
    IF to_regclass('feature_usage_idempotency_scoped_key') IS NOT NULL
       AND EXISTS (SELECT 1 FROM pg_index i
                   WHERE i.indexrelid = to_regclass('feature_usage_idempotency_pkey')
                     AND i.indnkeyatts = 4) THEN
        ALTER INDEX feature_usage_idempotency_scoped_key
            RENAME TO fg_drop_feature_usage_idempotency_scoped_key;
    END IF;
END
$$;

DROP INDEX CONCURRENTLY IF EXISTS fg_drop_feature_usage_idempotency_scoped_key;

-- What idx_feature_usage_user_feature_period must be from now on (verify, and
-- an adopted table's checks, read it here).
CREATE OR REPLACE FUNCTION feature_usage_index_problems()
RETURNS TABLE (index_name text, problem text)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    WITH wanted (name, is_unique, requirement) AS (
        VALUES ('idx_feature_usage_user_feature_period', true,
                'UNIQUE on exactly (user_id, feature, scope, period, period_start, '
                'period_offset) of feature_usage, the counted key every upsert relies on '
                '(ON CONFLICT fails without it)'),
               ('idx_feature_usage_period_start', false,
                'an index on feature_usage (period_start, ...), which the per-period reports '
                'and the archive job read')
    ), found AS (
        SELECT w.*, c.oid, c.relkind, i.indisvalid,
               i.indrelid = to_regclass(format('%I.feature_usage', current_schema()))
                   AND CASE WHEN w.is_unique
                            THEN i.indisunique AND i.indimmediate AND i.indpred IS NULL
                                 AND k.columns = ARRAY['user_id', 'feature', 'scope', 'period',
                                                       'period_start', 'period_offset']
                            ELSE k.columns[1] = 'period_start' END AS serves
        FROM wanted w
        JOIN pg_class c ON c.relname = w.name AND c.relnamespace = current_schema()::regnamespace
        LEFT JOIN pg_index i ON i.indexrelid = c.oid
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
