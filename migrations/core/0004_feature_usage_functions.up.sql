-- The functions applications and feature-gates call. Each runs with the
-- caller's rights (SECURITY INVOKER) and a search_path pinned to the schema
-- they were installed in (SET search_path FROM CURRENT: the runner sets it to
-- "<schema>, pg_temp" before applying), so a caller's search_path cannot
-- redirect the tables they use.

-- The first day of the current calendar month in UTC: the default period.
CREATE OR REPLACE FUNCTION feature_usage_current_period()
RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date
$$;

-- Raises invalid_parameter_value (22023) with a message saying what is wrong.
CREATE OR REPLACE FUNCTION feature_usage_check_args(
    p_user_id feature_usage_user_id,
    p_feature text,
    p_period_start date
) RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    IF p_user_id IS NULL THEN
        RAISE EXCEPTION 'user_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_feature IS NULL THEN
        RAISE EXCEPTION 'feature must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_feature !~ '^[a-z][a-z0-9_.:-]{0,63}$' THEN
        RAISE EXCEPTION 'invalid feature name %', quote_literal(left(p_feature, 80))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A feature name is 1 to 64 characters of a-z, 0-9, _ . : - '
                         'starting with a letter.';
    END IF;
    IF p_period_start IS NULL THEN
        RAISE EXCEPTION 'period_start must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION feature_usage_check_amount(p_name text, p_amount integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    IF p_amount IS NULL OR p_amount < 1 THEN
        RAISE EXCEPTION '% must be a positive integer, got %', p_name, coalesce(p_amount::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

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
