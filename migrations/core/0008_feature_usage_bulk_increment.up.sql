-- Many increments in one call: the form of increment_feature_usage_safe that
-- the background writer uses. Called once per row inside a statement, the
-- one-row form writes at 0.4 to 0.5 times the rate of a plain batched upsert;
-- this form checks, adds up and writes the whole batch as one set, at about
-- 0.7 times (benchmarks/tracking.py).

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

-- The background writer's statement: writes one batch under its id, once.
-- The id is recorded in the same transaction as the increments; a batch whose
-- id is already taken (written before, or settled by
-- resolve_feature_usage_batch) writes nothing and returns no row. p_forget
-- lists earlier batches the writer saw committed: their records are deleted.
CREATE OR REPLACE FUNCTION write_feature_usage_batch(
    p_batch_id uuid,
    p_forget uuid[],
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
BEGIN
    IF p_batch_id IS NULL THEN
        RAISE EXCEPTION 'batch_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_forget) > 0 THEN
        DELETE FROM feature_usage_batches b WHERE b.batch_id = ANY (p_forget) AND b.applied;
    END IF;
    INSERT INTO feature_usage_batches (batch_id, applied) VALUES (p_batch_id, true)
    ON CONFLICT (batch_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT * FROM increment_feature_usage_safe(p_user_ids, p_features, p_increments,
                                               p_period_starts, p_idempotency_keys);
END
$$;
