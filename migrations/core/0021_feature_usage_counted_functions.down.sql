-- Puts back the functions of 0004, 0005 and 0008 as they were (on the keys
-- 0022's rollback restored) and drops the counted key's functions. No data is
-- lost.
DROP FUNCTION IF EXISTS prune_feature_usage_windows();
DROP FUNCTION IF EXISTS feature_usage_reset(feature_usage_user_id, text, text, text, date, integer);
DROP FUNCTION IF EXISTS feature_usage_write_batch(uuid, uuid[], feature_usage_user_id[], text[],
                                                  text[], text[], date[], integer[],
                                                  timestamptz[], feature_usage_user_id[],
                                                  bigint[], bigint[], text[]);
DROP FUNCTION IF EXISTS feature_usage_increment_many(feature_usage_user_id[], text[], text[],
                                                     text[], date[], integer[], timestamptz[],
                                                     feature_usage_user_id[], bigint[], bigint[],
                                                     text[]);
DROP FUNCTION IF EXISTS feature_usage_read(feature_usage_user_id, text, feature_usage_user_id,
                                           text[], text[], date[], integer[], bigint[]);
DROP FUNCTION IF EXISTS feature_usage_consume(feature_usage_user_id, text, text, text, date,
                                              integer, timestamptz, integer, bigint,
                                              feature_usage_user_id, bigint, bigint);

-- Adds p_increment to a user's usage of a feature in a period and returns the
-- new count. p_increment > 1 records several uses in one call. A negative count
-- (possible only in a row of an adopted table from before the constraints) is
-- treated as 0, here and in consume_feature_usage.
CREATE OR REPLACE FUNCTION increment_feature_usage_safe(
    p_user_id feature_usage_user_id,
    p_feature text,
    p_increment integer DEFAULT 1,
    p_period_start date DEFAULT feature_usage_current_period()
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_count bigint;
BEGIN
    -- The checks of every call inline (a call to a function with its own
    -- search_path costs more than the upsert's own work); the checking functions
    -- run only to raise the precise error.
    IF p_user_id IS NULL OR p_period_start IS NULL OR p_feature IS NULL
       OR p_feature !~ '^[a-z][a-z0-9_.:-]{0,63}$' OR p_increment IS NULL OR p_increment < 1 THEN
        PERFORM feature_usage_check_args(p_user_id, p_feature, p_period_start);
        PERFORM feature_usage_check_amount('increment', p_increment);
    END IF;
    INSERT INTO feature_usage AS fu (user_id, feature, period_start, usage_count)
    VALUES (p_user_id, p_feature, p_period_start, p_increment)
    ON CONFLICT (user_id, feature, period_start) DO UPDATE
        SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count,
            updated_at = now()
    RETURNING fu.usage_count::bigint INTO v_count;
    RETURN v_count;
END
$$;

-- Atomic check-and-increment: adds p_amount only if the result stays within
-- p_limit, and returns the new count; returns NULL (and changes nothing) when
-- it would not. One statement: under READ COMMITTED the ON CONFLICT update
-- re-evaluates its WHERE against the latest row version after waiting for the
-- row lock, so concurrent callers never grant more than p_limit in total.
CREATE OR REPLACE FUNCTION consume_feature_usage(
    p_user_id feature_usage_user_id,
    p_feature text,
    p_amount integer,
    p_limit bigint,
    p_period_start date DEFAULT feature_usage_current_period()
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_count bigint;
BEGIN
    -- The checks of every call inline (a call to a function with its own
    -- search_path costs more than the upsert's own work); the checking functions
    -- run only to raise the precise error.
    IF p_user_id IS NULL OR p_period_start IS NULL OR p_feature IS NULL
       OR p_feature !~ '^[a-z][a-z0-9_.:-]{0,63}$' OR p_amount IS NULL OR p_amount < 1 THEN
        PERFORM feature_usage_check_args(p_user_id, p_feature, p_period_start);
        PERFORM feature_usage_check_amount('amount', p_amount);
    END IF;
    IF p_limit IS NULL OR p_limit < 0 THEN
        RAISE EXCEPTION 'limit must be zero or more, got %', coalesce(p_limit::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The insert path has no WHERE: refuse a first use that alone exceeds the limit.
    IF p_amount > p_limit THEN
        RETURN NULL;
    END IF;
    INSERT INTO feature_usage AS fu (user_id, feature, period_start, usage_count)
    VALUES (p_user_id, p_feature, p_period_start, p_amount)
    ON CONFLICT (user_id, feature, period_start) DO UPDATE
        SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count,
            updated_at = now()
        WHERE greatest(fu.usage_count, 0) + excluded.usage_count <= p_limit
    RETURNING fu.usage_count::bigint INTO v_count;
    RETURN v_count;
END
$$;

-- Gives back usage consumed by a request that then failed; never below 0.
-- Returns the new count (0 when there was nothing to give back).
CREATE OR REPLACE FUNCTION refund_feature_usage(
    p_user_id feature_usage_user_id,
    p_feature text,
    p_amount integer,
    p_period_start date DEFAULT feature_usage_current_period()
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_count bigint;
BEGIN
    -- The checks of every call inline (a call to a function with its own
    -- search_path costs more than the upsert's own work); the checking functions
    -- run only to raise the precise error.
    IF p_user_id IS NULL OR p_period_start IS NULL OR p_feature IS NULL
       OR p_feature !~ '^[a-z][a-z0-9_.:-]{0,63}$' OR p_amount IS NULL OR p_amount < 1 THEN
        PERFORM feature_usage_check_args(p_user_id, p_feature, p_period_start);
        PERFORM feature_usage_check_amount('amount', p_amount);
    END IF;
    UPDATE feature_usage
    SET usage_count = greatest(usage_count - p_amount, 0),
        updated_at = now()
    WHERE user_id = p_user_id AND feature = p_feature AND period_start = p_period_start
    RETURNING usage_count INTO v_count;
    RETURN coalesce(v_count, 0);
END
$$;

-- A user's usage of a feature in a period; 0 when nothing was recorded.
CREATE OR REPLACE FUNCTION get_feature_usage(
    p_user_id feature_usage_user_id,
    p_feature text,
    p_period_start date DEFAULT feature_usage_current_period()
) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM feature_usage_check_args(p_user_id, p_feature, p_period_start);
    -- A NULL or negative count (possible only in an adopted table's old rows) reads as 0.
    RETURN coalesce(
        (SELECT greatest(usage_count, 0) FROM feature_usage
         WHERE user_id = p_user_id AND feature = p_feature AND period_start = p_period_start),
        0);
END
$$;

-- Every feature a user used in a period, by feature name.
CREATE OR REPLACE FUNCTION get_user_feature_usage(
    p_user_id feature_usage_user_id,
    p_period_start date DEFAULT feature_usage_current_period()
) RETURNS TABLE (feature text, usage_count bigint, updated_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM feature_usage_check_args(p_user_id, 'x', p_period_start);
    -- Cast to the declared result: an adopted table keeps its own column types.
    RETURN QUERY
        -- A NULL or negative count (an adopted table's old rows) reads as 0.
        SELECT fu.feature::text, greatest(fu.usage_count, 0)::bigint, fu.updated_at::timestamptz
        FROM feature_usage fu
        WHERE fu.user_id = p_user_id AND fu.period_start = p_period_start
        ORDER BY fu.feature;
END
$$;

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

-- Adds p_increments[i] to the usage of p_features[i] by p_user_ids[i] in the
-- period p_period_starts[i], for every i, and returns one row per (user_id,
-- feature, period_start) written: the amount added and the new count. Rows of
-- the same key are added up first. A row with an idempotency key (the
-- optional p_idempotency_keys[i], NULL for none) counts only if that key was
-- not recorded before for its user and feature; the key is recorded in the
-- same transaction. Rows are written in key order, the order of the unique
-- index, so concurrent callers take row locks in one order and never deadlock.
CREATE OR REPLACE FUNCTION increment_feature_usage_safe(
    p_user_ids feature_usage_user_id[],
    p_features text[],
    p_increments bigint[],
    p_period_starts date[],
    p_idempotency_keys text[] DEFAULT NULL
) RETURNS TABLE (
    user_id feature_usage_user_id,
    feature text,
    period_start date,
    increment bigint,
    usage_count bigint
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_rows integer := cardinality(p_user_ids);
    v_bad record;
BEGIN
    IF p_user_ids IS NULL OR p_features IS NULL OR p_increments IS NULL
       OR p_period_starts IS NULL THEN
        RAISE EXCEPTION 'user_ids, features, increments and period_starts must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_features) <> v_rows OR cardinality(p_increments) <> v_rows
       OR cardinality(p_period_starts) <> v_rows
       OR cardinality(coalesce(p_idempotency_keys, p_features)) <> v_rows THEN
        RAISE EXCEPTION 'the arrays must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT u.* INTO v_bad
    FROM unnest(p_user_ids, p_features, p_increments, p_period_starts,
                coalesce(p_idempotency_keys, '{}'))
         WITH ORDINALITY AS u(user_id, feature, increment, period_start, idempotency_key, ord)
    WHERE u.user_id IS NULL OR u.period_start IS NULL OR u.feature IS NULL
       OR u.feature !~ '^[a-z][a-z0-9_.:-]{0,63}$'
       OR u.increment IS NULL OR u.increment < 1
       OR length(u.idempotency_key) NOT BETWEEN 1 AND 255
    ORDER BY u.ord
    LIMIT 1;
    IF FOUND THEN
        PERFORM feature_usage_check_args(v_bad.user_id, v_bad.feature, v_bad.period_start);
        IF v_bad.increment IS NULL OR v_bad.increment < 1 THEN
            RAISE EXCEPTION 'increment must be a positive integer, got %',
                            coalesce(v_bad.increment::text, 'NULL')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RAISE EXCEPTION 'an idempotency key must be 1 to 255 characters, got %',
                        quote_literal(left(v_bad.idempotency_key, 80))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    RETURN QUERY
    WITH input AS (
        SELECT u.*
        FROM unnest(p_user_ids, p_features, p_period_starts, p_increments,
                    coalesce(p_idempotency_keys, '{}'))
             WITH ORDINALITY AS u(user_id, feature, period_start, increment, idempotency_key, ord)
    ), keyed AS (
        -- A key given twice in one call counts once: its first row.
        SELECT DISTINCT ON (i.user_id, i.feature, i.idempotency_key) i.*
        FROM input i
        WHERE i.idempotency_key IS NOT NULL
        ORDER BY i.user_id, i.feature, i.idempotency_key, i.ord
    ), fresh AS (
        INSERT INTO feature_usage_idempotency AS k (user_id, feature, idempotency_key)
        SELECT k.user_id, k.feature, k.idempotency_key FROM keyed k
        ORDER BY k.user_id, k.feature, k.idempotency_key
        ON CONFLICT (user_id, feature, idempotency_key) DO NOTHING
        RETURNING k.user_id, k.feature, k.idempotency_key
    ), counted AS (
        SELECT i.user_id, i.feature, i.period_start, i.increment FROM input i
        WHERE i.idempotency_key IS NULL
        UNION ALL
        SELECT k.user_id, k.feature, k.period_start, k.increment
        FROM keyed k
        JOIN fresh f USING (user_id, feature, idempotency_key)
    ), summed AS (
        SELECT c.user_id, c.feature, c.period_start, sum(c.increment)::bigint AS increment
        FROM counted c
        GROUP BY c.user_id, c.feature, c.period_start
    ), written AS (
        INSERT INTO feature_usage AS fu (user_id, feature, period_start, usage_count)
        SELECT s.user_id, s.feature, s.period_start, s.increment
        FROM summed s
        ORDER BY s.user_id, s.feature, s.period_start
        ON CONFLICT (user_id, feature, period_start) DO UPDATE
            SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count,
                updated_at = now()
        RETURNING fu.user_id, fu.feature, fu.period_start, fu.usage_count::bigint AS usage_count
    )
    -- Cast to the declared result: an adopted table keeps its own column types
    -- (an integer user_id, a varchar feature), which RETURN QUERY would refuse.
    SELECT w.user_id::feature_usage_user_id, w.feature::text, w.period_start, s.increment,
           w.usage_count
    FROM written w
    JOIN summed s USING (user_id, feature, period_start);
END
$$;

-- After the functions that call them.
DROP FUNCTION IF EXISTS feature_usage_refund(feature_usage_user_id, text, text, text, date,
                                             integer, integer, feature_usage_user_id, bigint,
                                             bigint);
DROP FUNCTION IF EXISTS feature_usage_window_add(bigint[], bigint, bigint[], bigint[]);
DROP FUNCTION IF EXISTS feature_usage_period_end_estimate(text, date, integer);
DROP FUNCTION IF EXISTS feature_usage_total(bigint[]);
DROP FUNCTION IF EXISTS feature_usage_window_at(bigint[], bigint, bigint);
DROP FUNCTION IF EXISTS feature_usage_bucket_seconds(text);
DROP FUNCTION IF EXISTS feature_usage_check_key(feature_usage_user_id, text, text, text, date,
                                                integer);
