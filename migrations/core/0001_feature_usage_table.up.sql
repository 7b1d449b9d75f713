-- The feature_usage table: one row per (user, feature, calendar month).
--
-- Created when absent. An application's existing feature_usage table (for
-- example an earlier version with an integer usage_count and no updated_at)
-- is upgraded in place: missing columns are added, nothing is rewritten or
-- dropped. Adding a column with a constant default only touches the catalog.

-- The type of user ids, fixed at the first install. The runner sets
-- feature_gates.user_id_type from FEATURE_GATES_USER_ID_TYPE; an existing
-- table's user_id column wins over it, so its rows keep their type.
DO $$
DECLARE
    v_existing text;
    v_type text;
BEGIN
    IF to_regtype('feature_usage_user_id') IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT format_type(a.atttypid, NULL) INTO v_existing
    FROM pg_attribute a
    WHERE a.attrelid = to_regclass('feature_usage') AND a.attname = 'user_id'
      AND NOT a.attisdropped;
    v_type := coalesce(v_existing, current_setting('feature_gates.user_id_type', true), 'bigint');
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
);

ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();

-- NOT VALID: existing rows are not scanned while the lock is held; a later
-- migration validates them under a weaker lock.
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
END
$$;
