-- Retention: rows older than the kept months move to feature_usage_archive.
-- Nothing is deleted without being archived.
--
-- An application's own feature_usage_archive (an earlier version kept one) is
-- adopted when the archive job can write it: the columns it inserts, and a
-- unique key on exactly (user_id, feature, period_start) for its ON CONFLICT;
-- archived_at is added when missing. Otherwise the migration stops, naming
-- what is missing, before anything changes. An adopted table is recorded in
-- feature_gates_adopted_tables, and the rollback keeps it and its rows.
DO $$
DECLARE
    v_table regclass := to_regclass(format('%I.feature_usage_archive', current_schema()));
    v_missing text[];
BEGIN
    IF v_table IS NULL OR EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = v_table AND a.attname = 'user_id'
          AND a.atttypid = to_regtype(format('%I.feature_usage_user_id', current_schema())))
    THEN
        RETURN;  -- absent, or created by an earlier run of this file
    END IF;
    SELECT array_agg(c ORDER BY c) INTO v_missing
    FROM unnest(ARRAY['user_id', 'feature', 'period_start', 'usage_count', 'created_at',
                      'updated_at']) AS c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = v_table AND a.attname = c AND NOT a.attisdropped);
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i
        -- Not deferrable: ON CONFLICT refuses a deferrable arbiter.
        WHERE i.indrelid = v_table AND i.indisunique AND i.indimmediate AND i.indisvalid
          AND i.indpred IS NULL
          AND i.indexprs IS NULL AND i.indnkeyatts = 3
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
               FROM pg_attribute a
               WHERE a.attrelid = v_table AND a.attnum = ANY (i.indkey::int2[]))
              = ARRAY['feature', 'period_start', 'user_id']) THEN
        v_missing := coalesce(v_missing, '{}')
                     || 'a unique key on exactly (user_id, feature, period_start)'::text;
    END IF;
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION 'the existing table feature_usage_archive cannot take archived '
                        'usage: it lacks %', array_to_string(v_missing, ', ')
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'add what it lacks, or rename it, then run migrate again';
    END IF;
    INSERT INTO feature_gates_adopted_tables (table_name, added_columns)
    SELECT 'feature_usage_archive',
           ARRAY(SELECT 'archived_at' WHERE NOT EXISTS (
                     SELECT 1 FROM pg_attribute a
                     WHERE a.attrelid = v_table AND a.attname = 'archived_at'
                       AND NOT a.attisdropped))
    ON CONFLICT (table_name) DO NOTHING;
    ALTER TABLE feature_usage_archive ADD COLUMN IF NOT EXISTS archived_at timestamptz DEFAULT now();
END
$$;

CREATE TABLE IF NOT EXISTS feature_usage_archive (
    user_id      feature_usage_user_id NOT NULL,
    feature      text        NOT NULL,
    period_start date        NOT NULL,
    usage_count  bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    archived_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_usage_archive_key UNIQUE (user_id, feature, period_start)
);

-- Moves every row whose period starts before the first day of the month
-- p_keep_months months before the current UTC month, in one transaction, and
-- returns how many rows moved. With the default 6, during November 2026 the
-- rows from May 2026 onward stay. A late write for an archived period is
-- added to its archived row on the next run. At most 12,000 months (1,000
-- years) are kept: far more and the cutoff would fall before the calendar.
-- An adopted table may hold rows that break feature_usage_not_null (verify
-- lists them) and must not fail the job: a row without a user or a feature
-- stays where it is (it has no key to archive under), and a NULL count is
-- archived as 0, and so is a negative one: the upserts count on from 0 over
-- both.
CREATE OR REPLACE FUNCTION archive_old_feature_usage(p_keep_months integer DEFAULT 6)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_cutoff date;
    v_moved integer;
BEGIN
    IF p_keep_months IS NULL OR p_keep_months NOT BETWEEN 0 AND 12000 THEN
        RAISE EXCEPTION 'keep_months must be between 0 and 12000, got %',
            coalesce(p_keep_months::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_cutoff := (feature_usage_current_period() - make_interval(months => p_keep_months))::date;
    WITH moved AS (
        DELETE FROM feature_usage
        WHERE period_start < v_cutoff AND user_id IS NOT NULL AND feature IS NOT NULL
        RETURNING user_id, feature, period_start, usage_count, created_at, updated_at
    )
    INSERT INTO feature_usage_archive AS a
        (user_id, feature, period_start, usage_count, created_at, updated_at)
    -- An adopted table's old rows may lack timestamps.
    SELECT user_id, feature, period_start, greatest(usage_count, 0), coalesce(created_at, now()),
           coalesce(updated_at, created_at, now())
    FROM moved
    ON CONFLICT (user_id, feature, period_start) DO UPDATE
        SET usage_count = a.usage_count + excluded.usage_count,
            updated_at = greatest(a.updated_at, excluded.updated_at),
            archived_at = now();
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    RETURN v_moved;
END
$$;
