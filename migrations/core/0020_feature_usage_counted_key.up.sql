-- feature-gates: no-transaction
-- The counted key: feature_usage learns who counts (scope 'user', or 'org' for
-- an organisation's pool, whose id is then in user_id) and how (the counting
-- rule in period, the exact start of the period in period_start and
-- period_offset), and records what was in force at the last metered check
-- (period_end, usage_limit); a rolling window keeps its buckets on its row.
-- Existing rows keep their meaning through the defaults: a user's count of the
-- calendar month in UTC. Member shares of organisation pools get tables of
-- their own. Each statement is a short transaction of its own: a table's
-- ACCESS EXCLUSIVE lock (catalog changes only, no rewrite) is never held while
-- the next table's is awaited.

-- Before anything changes: what is already there must be what these steps
-- expect. Columns or tables of these names that are not feature-gates' would
-- be taken for ours.
DO $$
DECLARE
    v_problems text[] := '{}';
    v_row record;
BEGIN
    -- Columns of these names must be absent, or all be the ones an earlier run
    -- of this file added (one statement adds them together).
    FOR v_row IN
        SELECT t.table_name, count(a.attname) AS found,
               count(a.attname) FILTER (WHERE format_type(a.atttypid, a.atttypmod) = t.type
                                          AND pg_get_expr(d.adbin, d.adrelid)
                                              IS NOT DISTINCT FROM t.default_value) AS ours,
               count(*) AS wanted,
               string_agg(format('%s %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ')
                   FILTER (WHERE a.attname IS NOT NULL) AS columns
        FROM (VALUES ('feature_usage', 'scope', 'text', '''user''::text'),
                     ('feature_usage', 'period', 'text', '''month''::text'),
                     ('feature_usage', 'period_offset', 'integer', '0'),
                     ('feature_usage', 'period_end', 'timestamp with time zone', NULL),
                     ('feature_usage', 'usage_limit', 'bigint', NULL),
                     ('feature_usage', 'window_buckets', 'bigint[]', NULL),
                     ('feature_usage', 'window_head', 'bigint', NULL),
                     ('feature_usage_archive', 'scope', 'text', '''user''::text'),
                     ('feature_usage_archive', 'period', 'text', '''month''::text'),
                     ('feature_usage_archive', 'period_offset', 'integer', '0'),
                     ('feature_usage_archive', 'period_end', 'timestamp with time zone', NULL),
                     ('feature_usage_idempotency', 'scope', 'text', '''user''::text'))
             AS t(table_name, column_name, type, default_value)
        LEFT JOIN pg_attribute a
               ON a.attrelid = to_regclass(t.table_name) AND a.attname = t.column_name
                  AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        GROUP BY t.table_name
        ORDER BY t.table_name
    LOOP
        IF v_row.found > 0 AND NOT (v_row.found = v_row.wanted AND v_row.ours = v_row.wanted) THEN
            v_problems := v_problems || format('%s already has column(s) %s, which are not '
                                               'feature-gates''', v_row.table_name, v_row.columns);
        END IF;
    END LOOP;
    FOR v_row IN
        SELECT name FROM unnest(ARRAY['feature_usage_members', 'feature_usage_members_archive'])
                         AS name
        WHERE to_regclass(name) IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                          WHERE a.attrelid = to_regclass(name) AND a.attname = 'org_id'
                            AND a.atttypid = to_regtype('feature_usage_user_id'))
    LOOP
        v_problems := v_problems || format('a table %s exists and is not feature-gates''',
                                           v_row.name);
    END LOOP;
    IF cardinality(v_problems) > 0 THEN
        RAISE EXCEPTION 'feature-gates cannot add the counted key: %',
                        array_to_string(v_problems, '; ')
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'rename what is named, then run migrate again';
    END IF;
END
$$;

-- Catalog-only: each column is NULL or has a constant default, so no row is
-- rewritten; existing rows read as a user's count of the UTC calendar month.
ALTER TABLE feature_usage
    ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT 'user',
    ADD COLUMN IF NOT EXISTS period text NOT NULL DEFAULT 'month',
    ADD COLUMN IF NOT EXISTS period_offset integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS period_end timestamptz,
    ADD COLUMN IF NOT EXISTS usage_limit bigint,
    ADD COLUMN IF NOT EXISTS window_buckets bigint[],
    ADD COLUMN IF NOT EXISTS window_head bigint;

ALTER TABLE feature_usage_archive
    ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT 'user',
    ADD COLUMN IF NOT EXISTS period text NOT NULL DEFAULT 'month',
    ADD COLUMN IF NOT EXISTS period_offset integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS period_end timestamptz;

ALTER TABLE feature_usage_idempotency
    ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT 'user';

-- The shape of the key, NOT VALID (no scan under the lock: existing rows have
-- the defaults); validated below under a lock that lets writes go on. A
-- constraint has no IF NOT EXISTS: the block adds it once. Its pattern has no
-- bounded repeat, the lengths are checked apart: a repeat such as {0,62} costs
-- PostgreSQL's regular expressions tens of microseconds a row, and this check
-- runs on every update of a count.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'feature_usage'::regclass
                     AND conname = 'feature_usage_counted_key_format') THEN
        ALTER TABLE feature_usage ADD CONSTRAINT feature_usage_counted_key_format CHECK (
            scope IN ('user', 'org')
            AND period ~ '^(hour|lifetime|(day|week|month|year)(@[A-Za-z][A-Za-z0-9_+./-]*|\+anchor)?|window:[1-9][0-9]+)$'
            AND length(period) - position('@' IN period) <= 63
            AND (period NOT LIKE 'window:%' OR length(period) <= 16)
            AND period_offset BETWEEN 0 AND 86399
            AND (period LIKE 'window:%') = (window_buckets IS NOT NULL)
            AND (window_buckets IS NULL
                 OR (cardinality(window_buckets) = 61 AND window_head IS NOT NULL))
        ) NOT VALID;
    END IF;
END
$$;

ALTER TABLE feature_usage VALIDATE CONSTRAINT feature_usage_counted_key_format;

-- An organisation's member shares: what each member used of the pool, under
-- the pool's rule. Keyed by the organisation first, as its pool row in
-- feature_usage is (user_id holds the organisation there), so that both live on
-- one shard of a distributed database.
-- The unique keys of an application's own on (user_id, feature, period_start)
-- (or some of those columns) that 0022 replaces, since they would refuse a
-- count of another kind beside another: recorded with their definitions, so
-- that the rollback builds them again.
CREATE TABLE IF NOT EXISTS feature_gates_replaced_keys (
    table_name      text        NOT NULL,
    index_name      text        NOT NULL,
    constraint_name text,
    definition      text        NOT NULL,
    replaced_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_gates_replaced_keys_pkey PRIMARY KEY (table_name, index_name)
);

CREATE TABLE IF NOT EXISTS feature_usage_members (
    org_id         feature_usage_user_id NOT NULL,
    feature        text        NOT NULL,
    period         text        NOT NULL,
    period_start   date        NOT NULL,
    period_offset  integer     NOT NULL DEFAULT 0,
    user_id        feature_usage_user_id NOT NULL,
    usage_count    bigint      NOT NULL DEFAULT 0,
    usage_limit    bigint,
    period_end     timestamptz,
    window_buckets bigint[],
    window_head    bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_usage_members_pkey
        PRIMARY KEY (org_id, feature, period, period_start, period_offset, user_id),
    CONSTRAINT feature_usage_members_usage_count_nonnegative CHECK (usage_count >= 0),
    CONSTRAINT feature_usage_members_counted_key_format CHECK (
        feature ~ '^[a-z][a-z0-9_.:-]*$' AND length(feature) <= 64
        AND period ~ '^(hour|lifetime|(day|week|month|year)(@[A-Za-z][A-Za-z0-9_+./-]*|\+anchor)?|window:[1-9][0-9]+)$'
        AND length(period) - position('@' IN period) <= 63
        AND (period NOT LIKE 'window:%' OR length(period) <= 16)
        AND period_offset BETWEEN 0 AND 86399
        AND (period LIKE 'window:%') = (window_buckets IS NOT NULL)
        AND (window_buckets IS NULL
             OR (cardinality(window_buckets) = 61 AND window_head IS NOT NULL))
    )
)
WITH (fillfactor = 90);

-- The archive job reads member shares by period, as it reads feature_usage.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_feature_usage_members_period_start
    ON feature_usage_members (period_start);

CREATE TABLE IF NOT EXISTS feature_usage_members_archive (
    org_id        feature_usage_user_id NOT NULL,
    feature       text        NOT NULL,
    period        text        NOT NULL,
    period_start  date        NOT NULL,
    period_offset integer     NOT NULL,
    user_id       feature_usage_user_id NOT NULL,
    usage_count   bigint      NOT NULL,
    period_end    timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    archived_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_usage_members_archive_pkey
        PRIMARY KEY (org_id, feature, period, period_start, period_offset, user_id)
);

-- The unique keys of the counted key, built without blocking writes. The
-- functions switch to them in 0021; 0022 drops the keys they replace and gives
-- these the old names.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS feature_usage_counted_key
    ON feature_usage (user_id, feature, scope, period, period_start, period_offset);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS feature_usage_archive_counted_key
    ON feature_usage_archive (user_id, feature, scope, period, period_start, period_offset);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS feature_usage_idempotency_scoped_key
    ON feature_usage_idempotency (user_id, feature, scope, idempotency_key);
