-- The feature_usage table: one row per (user, feature, calendar month).
--
-- Created when absent. An application's existing feature_usage table (for
-- example an earlier version with an integer usage_count, no updated_at, an
-- id serial primary key) is adopted and upgraded in place: missing columns are
-- added, nothing is rewritten or dropped, and the columns added are recorded
-- in feature_gates_adopted_tables so that the rollback removes only those.
-- So are the indexes and constraints of feature-gates' names that the table
-- already had: they serve as they are, and the rollbacks keep them.
-- Adding a column with a constant (or now()) default only touches the catalog.

CREATE TABLE IF NOT EXISTS feature_gates_adopted_tables (
    table_name    text        PRIMARY KEY,
    added_columns text[]      NOT NULL DEFAULT '{}',
    kept_objects  text[]      NOT NULL DEFAULT '{}',
    adopted_at    timestamptz NOT NULL DEFAULT now()
);

-- The indexes of feature-gates' names that are not what the functions need,
-- one row each: CREATE INDEX ... IF NOT EXISTS would accept any relation of
-- the name. The upsert index must be exactly the unique key, or every
-- ON CONFLICT fails; the period index may be the application's own partial
-- one, as long as it leads with period_start. An INVALID index is left out:
-- the runner drops it and builds it again. Read before the indexes are
-- built, and by verify.
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

-- Raises duplicate_object, naming them, when there are such indexes.
CREATE OR REPLACE FUNCTION feature_usage_check_indexes()
RETURNS void
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_problems text;
BEGIN
    SELECT string_agg(problem, '; ' ORDER BY index_name) INTO v_problems
    FROM feature_usage_index_problems();
    IF v_problems IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problems USING ERRCODE = 'duplicate_object';
    END IF;
END
$$;

-- Before anything changes: an adopted table's indexes are recorded below as
-- the application's, so they must be right first.
SELECT feature_usage_check_indexes();

-- An existing table must have the columns the functions use, with types they
-- can work with; otherwise stop before anything changes.
DO $$
DECLARE
    v_table regclass := to_regclass(format('%I.feature_usage', current_schema()));
    v_problems text[] := '{}';
    v_column record;
BEGIN
    -- Absent, or created by an earlier run of this file (its user_id is our domain).
    IF v_table IS NULL OR EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = v_table AND a.attname = 'user_id'
          AND a.atttypid = to_regtype(format('%I.feature_usage_user_id', current_schema()))) THEN
        RETURN;
    END IF;
    FOR v_column IN
        SELECT wanted.name, wanted.types, format_type(a.atttypid, NULL) AS actual
        FROM (VALUES ('user_id', ARRAY['bigint', 'integer', 'uuid']),
                     ('feature', ARRAY['text', 'character varying']),
                     ('period_start', ARRAY['date']),
                     ('usage_count', ARRAY['bigint', 'integer'])) AS wanted(name, types)
        LEFT JOIN pg_attribute a
               ON a.attrelid = v_table AND a.attname = wanted.name AND NOT a.attisdropped
        ORDER BY wanted.name
    LOOP
        IF v_column.actual IS NULL THEN
            v_problems := v_problems || format('no column %s', v_column.name);
        ELSIF NOT v_column.actual = ANY (v_column.types) THEN
            v_problems := v_problems || format('%s is %s, not %s', v_column.name,
                                               v_column.actual,
                                               array_to_string(v_column.types, ' or '));
        END IF;
    END LOOP;
    IF cardinality(v_problems) > 0 THEN
        RAISE EXCEPTION 'the existing table % cannot be upgraded: %', v_table,
                        array_to_string(v_problems, '; ')
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'rename it, or set FEATURE_GATES_SCHEMA to install feature-gates '
                         'in a schema of its own';
    END IF;
    -- Recorded once, before anything is added: a run of this file again (after
    -- an interruption) must not take feature-gates' own objects for the table's.
    INSERT INTO feature_gates_adopted_tables (table_name, added_columns, kept_objects)
    SELECT 'feature_usage',
           ARRAY(SELECT c FROM unnest(ARRAY['created_at', 'updated_at']) AS c
                 WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                                   WHERE a.attrelid = v_table AND a.attname = c
                                     AND NOT a.attisdropped)),
           -- An INVALID index is not kept: the runner replaces it.
           ARRAY(SELECT c.relname::text
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = v_table AND i.indisvalid
                   AND c.relname IN ('idx_feature_usage_user_feature_period',
                                     'idx_feature_usage_period_start')
                 UNION
                 SELECT conname::text FROM pg_constraint
                 WHERE conrelid = v_table
                   AND conname IN ('feature_usage_usage_count_nonnegative',
                                   'feature_usage_feature_format', 'feature_usage_not_null')
                 ORDER BY 1)
    ON CONFLICT (table_name) DO NOTHING;
END
$$;

-- The type of user ids, fixed at the first install. The runner sets
-- feature_gates.user_id_type from FEATURE_GATES_USER_ID_TYPE; an existing
-- table's user_id column wins over it, so its rows keep their type.
DO $$
DECLARE
    v_existing text;
    v_type text;
BEGIN
    IF to_regtype(format('%I.feature_usage_user_id', current_schema())) IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT format_type(a.atttypid, NULL) INTO v_existing
    FROM pg_attribute a
    WHERE a.attrelid = to_regclass(format('%I.feature_usage', current_schema())) AND a.attname = 'user_id'
      AND NOT a.attisdropped;
    v_type := coalesce(v_existing, nullif(current_setting('feature_gates.user_id_type', true), ''),
                       'bigint');
    IF v_type NOT IN ('bigint', 'integer', 'uuid') THEN
        RAISE EXCEPTION 'feature_usage.user_id must be bigint, integer or uuid, not %', v_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- v_type is one of three fixed names checked above.
    EXECUTE format('CREATE DOMAIN feature_usage_user_id AS %s', v_type);
END
$$;

CREATE TABLE IF NOT EXISTS feature_usage (
    user_id      feature_usage_user_id NOT NULL,
    feature      text        NOT NULL,
    period_start date        NOT NULL,
    usage_count  bigint      NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
)
-- Room on each page for the updated version of a row: counters are updated in
-- place (HOT) instead of moving to another page and touching every index.
WITH (fillfactor = 90);

ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();

-- (Objects are looked up in the feature-gates schema, the first of the
-- search_path, never in another schema the search_path also holds.)

-- NOT VALID: existing rows are not scanned while the lock is held; a later
-- migration validates them under a lock that lets writes go on.
-- feature_usage_not_null stands in for NOT NULL on an adopted table whose
-- key or count columns allow NULL (SET NOT NULL would scan the table under an
-- exclusive lock, and change the application's column): a row without a user,
-- feature, period or count can be neither upserted nor archived.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'feature_usage'::regclass
                     AND conname = 'feature_usage_usage_count_nonnegative') THEN
        ALTER TABLE feature_usage ADD CONSTRAINT feature_usage_usage_count_nonnegative
            CHECK (usage_count >= 0) NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'feature_usage'::regclass
                     AND conname = 'feature_usage_feature_format') THEN
        ALTER TABLE feature_usage ADD CONSTRAINT feature_usage_feature_format
            CHECK (feature ~ '^[a-z][a-z0-9_.:-]{0,63}$') NOT VALID;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'feature_usage'::regclass
                     AND conname = 'feature_usage_not_null')
       AND EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'feature_usage'::regclass AND NOT attnotnull
                     AND attname IN ('user_id', 'feature', 'period_start', 'usage_count')) THEN
        ALTER TABLE feature_usage ADD CONSTRAINT feature_usage_not_null
            CHECK (user_id IS NOT NULL AND feature IS NOT NULL AND period_start IS NOT NULL
                   AND usage_count IS NOT NULL) NOT VALID;
    END IF;
END
$$;
