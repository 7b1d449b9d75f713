-- Puts back feature_usage_increment_many as 0021 wrote it (same arguments and
-- results). No data is lost.

-- Adds uses to counts without a limit (they happened: the background writer's
-- record of tracked uses, or a hand-called increment), many in one call. Row i
-- adds p_increments[i] to the key (p_subjects[i], p_features[i], p_scopes[i],
-- p_periods[i], p_period_starts[i], p_period_offsets[i]), and to member
-- p_members[i]'s share when it is given (organisation pools); a window's row
-- counts it in bucket p_buckets[i], and a bucket that has left the window
-- counts nothing. p_period_ends[i] is recorded on a new row. A row with an
-- idempotency key (p_idempotency_keys[i], NULL for none) counts only if that
-- key was not recorded before for its subject, scope and feature; the key is
-- recorded in the same transaction. Rows of the same key are added up first.
--
-- Rows are locked in one order that every function keeps: the periods'
-- feature_usage rows in key order, then their member rows, then each window's
-- row followed by its members' (a metered check locks a pool, then its
-- member): concurrent callers never deadlock.
--
-- Returns one row per row written: member NULL for a feature_usage row (a
-- user's, or a pool's), the member for a member share; the amount added
-- (counted, whether or not its window bucket was still in the window) and the
-- new count.
CREATE OR REPLACE FUNCTION feature_usage_increment_many(
    p_subjects feature_usage_user_id[],
    p_features text[],
    p_scopes text[],
    p_periods text[],
    p_period_starts date[],
    p_period_offsets integer[],
    p_period_ends timestamptz[],
    p_members feature_usage_user_id[],
    p_buckets bigint[],
    p_increments bigint[],
    p_idempotency_keys text[] DEFAULT NULL
) RETURNS TABLE (
    subject feature_usage_user_id,
    member feature_usage_user_id,
    feature text,
    scope text,
    period text,
    period_start date,
    period_offset integer,
    increment bigint,
    usage_count bigint
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_rows integer := cardinality(p_subjects);
    v_bad record;
    v_taken bigint[];
    v_pool record;
    v_member record;
    v_ring bigint[];
    v_head bigint;
    v_count bigint;
BEGIN
    IF p_subjects IS NULL OR p_features IS NULL OR p_scopes IS NULL OR p_periods IS NULL
       OR p_period_starts IS NULL OR p_period_offsets IS NULL OR p_increments IS NULL THEN
        RAISE EXCEPTION 'subjects, features, scopes, periods, period_starts, period_offsets and '
                        'increments must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_features) <> v_rows OR cardinality(p_scopes) <> v_rows
       OR cardinality(p_periods) <> v_rows OR cardinality(p_period_starts) <> v_rows
       OR cardinality(p_period_offsets) <> v_rows OR cardinality(p_increments) <> v_rows
       OR coalesce(cardinality(p_period_ends), v_rows) <> v_rows
       OR coalesce(cardinality(p_members), v_rows) <> v_rows
       OR coalesce(cardinality(p_buckets), v_rows) <> v_rows
       OR coalesce(cardinality(p_idempotency_keys), v_rows) <> v_rows THEN
        RAISE EXCEPTION 'the arrays must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT u.* INTO v_bad
    FROM unnest(p_subjects, p_features, p_scopes, p_periods, p_period_starts, p_period_offsets,
                p_increments, coalesce(p_members, '{}'), coalesce(p_buckets, '{}'),
                coalesce(p_idempotency_keys, '{}'))
         WITH ORDINALITY AS u(subject, feature, scope, period, period_start, period_offset,
                              increment, member, bucket, idempotency_key, ord)
    WHERE u.subject IS NULL OR u.feature IS NULL OR u.feature !~ '^[a-z][a-z0-9_.:-]*$' OR length(u.feature) > 64
       OR u.scope IS NULL OR u.scope NOT IN ('user', 'org') OR u.period IS NULL
       OR u.period !~ '^(hour|lifetime|(day|week|month|year)(@[A-Za-z][A-Za-z0-9_+./-]*|\+anchor)?|window:[1-9][0-9]+)$'
       OR length(u.period) - position('@' IN u.period) > 63
       OR (u.period LIKE 'window:%' AND length(u.period) > 16)
       OR u.period_start IS NULL OR u.period_offset IS NULL
       OR u.period_offset NOT BETWEEN 0 AND 86399
       OR u.increment IS NULL OR u.increment < 1
       OR (u.member IS NOT NULL AND u.scope <> 'org')
       OR (u.bucket IS NULL) = (u.period LIKE 'window:%')
       OR length(u.idempotency_key) NOT BETWEEN 1 AND 255
    ORDER BY u.ord
    LIMIT 1;
    IF FOUND THEN
        PERFORM feature_usage_check_key(v_bad.subject, v_bad.feature, v_bad.scope, v_bad.period,
                                        v_bad.period_start, v_bad.period_offset);
        IF v_bad.increment IS NULL OR v_bad.increment < 1 THEN
            RAISE EXCEPTION 'increment must be a positive integer, got %',
                            coalesce(v_bad.increment::text, 'NULL')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_bad.member IS NOT NULL AND v_bad.scope <> 'org' THEN
            RAISE EXCEPTION 'a member share belongs to an organisation pool (scope ''org'')'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF (v_bad.bucket IS NULL) = (v_bad.period LIKE 'window:%') THEN
            RAISE EXCEPTION 'a window''s use needs its bucket, and only a window''s has one'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RAISE EXCEPTION 'an idempotency key must be 1 to 255 characters, got %',
                        quote_literal(left(v_bad.idempotency_key, 80))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Which rows count: those without a key, and the first row of each key not
    -- recorded before (recorded now, in key order).
    WITH input AS (
        SELECT u.*
        FROM unnest(p_subjects, p_features, p_scopes, coalesce(p_idempotency_keys, '{}'))
             WITH ORDINALITY AS u(subject, feature, scope, idempotency_key, ord)
    ), keyed AS (
        SELECT DISTINCT ON (i.subject, i.feature, i.scope, i.idempotency_key) i.*
        FROM input i
        WHERE i.idempotency_key IS NOT NULL
        ORDER BY i.subject, i.feature, i.scope, i.idempotency_key, i.ord
    ), fresh AS (
        INSERT INTO feature_usage_idempotency AS k (user_id, feature, scope, idempotency_key)
        SELECT k.subject, k.feature, k.scope, k.idempotency_key FROM keyed k
        ORDER BY k.subject, k.feature, k.scope, k.idempotency_key
        ON CONFLICT (user_id, feature, scope, idempotency_key) DO NOTHING
        RETURNING k.user_id, k.feature, k.scope, k.idempotency_key
    )
    SELECT array_agg(i.ord) INTO v_taken
    FROM input i
    WHERE i.idempotency_key IS NULL
       OR i.ord IN (SELECT k.ord FROM keyed k
                    JOIN fresh f ON f.user_id = k.subject AND f.feature = k.feature
                                AND f.scope = k.scope AND f.idempotency_key = k.idempotency_key);

    -- The periods: one upsert of every pool's and user's row, in key order...
    RETURN QUERY
    WITH counted AS (
        SELECT u.*
        FROM unnest(p_subjects, p_features, p_scopes, p_periods, p_period_starts,
                    p_period_offsets, coalesce(p_period_ends, '{}'), p_increments,
                    coalesce(p_buckets, '{}'))
             WITH ORDINALITY AS u(subject, feature, scope, period, period_start, period_offset,
                                  period_end, increment, bucket, ord)
        WHERE u.ord = ANY (v_taken) AND u.bucket IS NULL
    ), summed AS (
        SELECT c.subject, c.feature, c.scope, c.period, c.period_start, c.period_offset,
               max(c.period_end) AS period_end, sum(c.increment)::bigint AS increment
        FROM counted c
        GROUP BY c.subject, c.feature, c.scope, c.period, c.period_start, c.period_offset
    ), written AS (
        INSERT INTO feature_usage AS fu (user_id, feature, scope, period, period_start,
                                         period_offset, usage_count, period_end)
        SELECT s.subject, s.feature, s.scope, s.period, s.period_start, s.period_offset,
               s.increment, s.period_end
        FROM summed s
        ORDER BY s.subject, s.feature, s.scope, s.period, s.period_start, s.period_offset
        ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
            SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count,
                period_end = coalesce(fu.period_end, excluded.period_end),
                updated_at = now()
        RETURNING fu.user_id, fu.feature, fu.scope, fu.period, fu.period_start,
                  fu.period_offset, fu.usage_count::bigint AS usage_count
    )
    -- Cast to the declared result: an adopted table keeps its own column types.
    SELECT w.user_id::feature_usage_user_id, NULL::feature_usage_user_id, w.feature::text,
           w.scope, w.period, w.period_start, w.period_offset, s.increment, w.usage_count
    FROM written w
    JOIN summed s ON s.subject = w.user_id AND s.feature = w.feature AND s.scope = w.scope
                 AND s.period = w.period AND s.period_start = w.period_start
                 AND s.period_offset = w.period_offset;

    -- ... then the member shares of the pools, in key order...
    RETURN QUERY
    WITH counted AS (
        SELECT u.*
        FROM unnest(p_subjects, p_features, p_periods, p_period_starts, p_period_offsets,
                    coalesce(p_period_ends, '{}'), p_increments, coalesce(p_members, '{}'),
                    coalesce(p_buckets, '{}'))
             WITH ORDINALITY AS u(subject, feature, period, period_start, period_offset,
                                  period_end, increment, member, bucket, ord)
        WHERE u.ord = ANY (v_taken) AND u.bucket IS NULL AND u.member IS NOT NULL
    ), summed AS (
        SELECT c.subject, c.feature, c.period, c.period_start, c.period_offset, c.member,
               max(c.period_end) AS period_end, sum(c.increment)::bigint AS increment
        FROM counted c
        GROUP BY c.subject, c.feature, c.period, c.period_start, c.period_offset, c.member
    ), written AS (
        INSERT INTO feature_usage_members AS m (org_id, feature, period, period_start,
                                                period_offset, user_id, usage_count, period_end)
        SELECT s.subject, s.feature, s.period, s.period_start, s.period_offset, s.member,
               s.increment, s.period_end
        FROM summed s
        ORDER BY s.subject, s.feature, s.period, s.period_start, s.period_offset, s.member
        ON CONFLICT (org_id, feature, period, period_start, period_offset, user_id) DO UPDATE
            SET usage_count = m.usage_count + excluded.usage_count,
                period_end = coalesce(m.period_end, excluded.period_end),
                updated_at = now()
        RETURNING m.org_id, m.user_id, m.feature, m.period, m.period_start, m.period_offset,
                  m.usage_count
    )
    SELECT w.org_id, w.user_id, w.feature, 'org'::text, w.period, w.period_start,
           w.period_offset, s.increment, w.usage_count
    FROM written w
    JOIN summed s ON s.subject = w.org_id AND s.feature = w.feature AND s.period = w.period
                 AND s.period_start = w.period_start AND s.period_offset = w.period_offset
                 AND s.member = w.user_id;

    -- ... then each window's row, followed by its members' shares.
    FOR v_pool IN
        SELECT u.subject, u.feature, u.scope, u.period, u.period_start, u.period_offset,
               array_agg(u.bucket) AS buckets, array_agg(u.increment) AS increments,
               sum(u.increment)::bigint AS total
        FROM unnest(p_subjects, p_features, p_scopes, p_periods, p_period_starts,
                    p_period_offsets, p_increments, coalesce(p_buckets, '{}'))
             WITH ORDINALITY AS u(subject, feature, scope, period, period_start, period_offset,
                                  increment, bucket, ord)
        WHERE u.ord = ANY (v_taken) AND u.bucket IS NOT NULL
        GROUP BY u.subject, u.feature, u.scope, u.period, u.period_start, u.period_offset
        ORDER BY u.subject, u.feature, u.scope, u.period, u.period_start, u.period_offset
    LOOP
        INSERT INTO feature_usage AS fu (user_id, feature, scope, period, period_start,
                                         period_offset, usage_count, window_buckets, window_head)
        VALUES (v_pool.subject, v_pool.feature, v_pool.scope, v_pool.period, v_pool.period_start,
                v_pool.period_offset, 0, array_fill(0::bigint, ARRAY[61]),
                (SELECT max(b) FROM unnest(v_pool.buckets) AS b))
        ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO NOTHING;
        SELECT fu.window_buckets, fu.window_head INTO v_ring, v_head FROM feature_usage fu
        WHERE fu.user_id = v_pool.subject AND fu.feature = v_pool.feature
          AND fu.scope = v_pool.scope AND fu.period = v_pool.period
          AND fu.period_start = v_pool.period_start AND fu.period_offset = v_pool.period_offset
        FOR UPDATE;
        SELECT a.buckets, a.head INTO v_ring, v_head
        FROM feature_usage_window_add(v_ring, v_head, v_pool.buckets, v_pool.increments) AS a;
        v_count := feature_usage_total(v_ring);
        UPDATE feature_usage fu
        SET window_buckets = v_ring, window_head = v_head, usage_count = v_count,
            updated_at = now()
        WHERE fu.user_id = v_pool.subject AND fu.feature = v_pool.feature
          AND fu.scope = v_pool.scope AND fu.period = v_pool.period
          AND fu.period_start = v_pool.period_start AND fu.period_offset = v_pool.period_offset;
        subject := v_pool.subject;
        member := NULL;
        feature := v_pool.feature;
        scope := v_pool.scope;
        period := v_pool.period;
        period_start := v_pool.period_start;
        period_offset := v_pool.period_offset;
        increment := v_pool.total;
        usage_count := v_count;
        RETURN NEXT;
        FOR v_member IN
            SELECT u.member, array_agg(u.bucket) AS buckets, array_agg(u.increment) AS increments,
                   sum(u.increment)::bigint AS total
            FROM unnest(p_subjects, p_features, p_scopes, p_periods, p_period_starts,
                        p_period_offsets, p_increments, coalesce(p_buckets, '{}'),
                        coalesce(p_members, '{}'))
                 WITH ORDINALITY AS u(subject, feature, scope, period, period_start,
                                      period_offset, increment, bucket, member, ord)
            WHERE u.ord = ANY (v_taken) AND u.bucket IS NOT NULL AND u.member IS NOT NULL
              AND u.subject = v_pool.subject AND u.feature = v_pool.feature
              AND u.scope = v_pool.scope AND u.period = v_pool.period
              AND u.period_start = v_pool.period_start
              AND u.period_offset = v_pool.period_offset
            GROUP BY u.member
            ORDER BY u.member
        LOOP
            INSERT INTO feature_usage_members AS m (org_id, feature, period, period_start,
                                                    period_offset, user_id, usage_count,
                                                    window_buckets, window_head)
            VALUES (v_pool.subject, v_pool.feature, v_pool.period, v_pool.period_start,
                    v_pool.period_offset, v_member.member, 0, array_fill(0::bigint, ARRAY[61]),
                    v_head)
            ON CONFLICT (org_id, feature, period, period_start, period_offset, user_id)
            DO NOTHING;
            SELECT m.window_buckets, m.window_head INTO v_ring, v_head
            FROM feature_usage_members m
            WHERE m.org_id = v_pool.subject AND m.feature = v_pool.feature
              AND m.period = v_pool.period AND m.period_start = v_pool.period_start
              AND m.period_offset = v_pool.period_offset AND m.user_id = v_member.member
            FOR UPDATE;
            SELECT a.buckets, a.head INTO v_ring, v_head
            FROM feature_usage_window_add(v_ring, v_head, v_member.buckets, v_member.increments)
                 AS a;
            v_count := feature_usage_total(v_ring);
            UPDATE feature_usage_members m
            SET window_buckets = v_ring, window_head = v_head, usage_count = v_count,
                updated_at = now()
            WHERE m.org_id = v_pool.subject AND m.feature = v_pool.feature
              AND m.period = v_pool.period AND m.period_start = v_pool.period_start
              AND m.period_offset = v_pool.period_offset AND m.user_id = v_member.member;
            member := v_member.member;
            scope := 'org';
            increment := v_member.total;
            usage_count := v_count;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
