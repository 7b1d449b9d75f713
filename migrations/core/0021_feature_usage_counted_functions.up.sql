-- The functions of the counted key. Every count, of whatever kind, is a row of
-- feature_usage keyed by (user_id, feature, scope, period, period_start,
-- period_offset): the subject (a user, or an organisation's pool), the feature,
-- the counting rule and the instant its period starts. An organisation's member
-- shares are rows of feature_usage_members keyed by the organisation first.
-- Each metered operation is one call that moves every level it touches, pool
-- before member, so concurrent callers lock rows in one order.
--
-- The seed's functions keep their contract for the default kind (a user's
-- count of the calendar month in UTC) and now use the new key; the general
-- functions take the key whole.
--
-- The counting rule (period) is one of:
--   hour                      a UTC hour
--   day | week | month | year the calendar's, in UTC ('month' is the default kind)
--   <kind>@<IANA zone>        the calendar's, in that zone
--   <kind>+anchor             counted from a subject's anchor, in its zone
--   lifetime                  one count for ever (period_start 1970-01-01)
--   window:<seconds>          a rolling window (period_start 1970-01-01): the row
--                             holds 61 buckets of 1/60 of the window each, the
--                             oldest first, ending at bucket window_head (bucket
--                             k covers the seconds [k * b, (k + 1) * b) after
--                             1970-01-01 UTC, b = seconds / 60)
-- Periods are computed by the application, which passes them in; the database
-- stores and compares them.

-- Raises invalid_parameter_value (22023) naming what is wrong with a key.
CREATE OR REPLACE FUNCTION feature_usage_check_key(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer
) RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM feature_usage_check_args(p_subject, p_feature, p_period_start);
    IF p_scope IS NULL OR p_scope NOT IN ('user', 'org') THEN
        RAISE EXCEPTION 'scope must be ''user'' or ''org'', got %', coalesce(quote_literal(p_scope), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_period IS NULL
       OR p_period !~ '^(hour|lifetime|(day|week|month|year)(@[A-Za-z][A-Za-z0-9_+./-]*|\+anchor)?|window:[1-9][0-9]+)$'
       OR length(p_period) - position('@' IN p_period) > 63
       OR (p_period LIKE 'window:%' AND length(p_period) > 16)
       OR (p_period LIKE 'window:%' AND split_part(p_period, ':', 2)::bigint % 60 <> 0) THEN
        RAISE EXCEPTION 'invalid counting rule %', coalesce(quote_literal(left(p_period, 80)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A rule is hour, day, week, month, year or lifetime, a calendar period '
                         'in a zone (day@Europe/Paris), an anchored one (month+anchor), or '
                         'window:<seconds> (a whole number of minutes).';
    END IF;
    IF p_period_offset IS NULL OR p_period_offset NOT BETWEEN 0 AND 86399 THEN
        RAISE EXCEPTION 'period_offset must be 0 to 86399 seconds, got %',
                        coalesce(p_period_offset::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The bucket size of a window rule in seconds; NULL for a period.
CREATE OR REPLACE FUNCTION feature_usage_bucket_seconds(p_period text)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT CASE WHEN p_period LIKE 'window:%' THEN split_part(p_period, ':', 2)::bigint / 60 END
$$;

-- A window's 61 buckets moved on to end at bucket p_now: those that left the
-- window are dropped, new empty ones added. A clock behind the newest bucket
-- (another process's) moves nothing. NULL (no row yet) is an empty window.
CREATE OR REPLACE FUNCTION feature_usage_window_at(
    p_buckets bigint[], p_head bigint, p_now bigint
) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT CASE
        WHEN p_buckets IS NULL OR p_now - p_head >= 61 THEN array_fill(0::bigint, ARRAY[61])
        WHEN p_now > p_head
            THEN p_buckets[(p_now - p_head + 1)::integer:61]
                 || array_fill(0::bigint, ARRAY[(p_now - p_head)::integer])
        ELSE p_buckets
    END
$$;

-- The sum of an array of counts.
CREATE OR REPLACE FUNCTION feature_usage_total(p_counts bigint[])
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT coalesce(sum(c), 0)::bigint FROM unnest(p_counts) AS c
$$;

-- When a period of a rule ends, for a row that recorded no end (one written
-- by hand or by the writer before any metered check): its start plus one hour,
-- day, week, month or year, in UTC (a zone's DST moves it by an hour at most,
-- which the archive's months of margin absorb). NULL for lifetime and windows.
CREATE OR REPLACE FUNCTION feature_usage_period_end_estimate(
    p_period text, p_period_start date, p_period_offset integer
) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT (p_period_start::timestamp + make_interval(secs => p_period_offset)
            + CASE split_part(split_part(p_period, '@', 1), '+', 1)
                  WHEN 'hour' THEN interval '1 hour'
                  WHEN 'day' THEN interval '1 day'
                  WHEN 'week' THEN interval '7 days'
                  WHEN 'month' THEN interval '1 month'
                  WHEN 'year' THEN interval '1 year'
              END) AT TIME ZONE 'UTC'
$$;

-- A window's buckets with p_amounts[i] added in bucket p_at[i] for every i,
-- moved on to end at the newest of p_head and the p_at: a bucket that has left
-- the window by then counts nothing.
CREATE OR REPLACE FUNCTION feature_usage_window_add(
    p_buckets bigint[], p_head bigint, p_at bigint[], p_amounts bigint[],
    OUT buckets bigint[], OUT head bigint
)
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_at bigint;
    v_i integer := 0;
BEGIN
    head := p_head;
    FOREACH v_at IN ARRAY p_at LOOP
        head := greatest(head, v_at);
    END LOOP;
    buckets := feature_usage_window_at(p_buckets, coalesce(p_head, head), head);
    FOREACH v_at IN ARRAY p_at LOOP
        v_i := v_i + 1;
        IF head - v_at <= 60 THEN
            buckets[61 - (head - v_at)::integer] := buckets[61 - (head - v_at)::integer]
                                                    + p_amounts[v_i];
        END IF;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- The metered check: p_amount uses of p_feature by p_subject, counted under the
-- rule p_period in the period starting at (p_period_start, p_period_offset),
-- taken only if every level stays within its limit; all or nothing.
--
-- Levels: the subject's own row (scope 'user'), or the organisation's pool
-- (scope 'org', p_subject the organisation) and, when p_member is given, that
-- member's share, capped by p_member_limit. A NULL limit is no limit at that
-- level. The pool's row is locked first, then the member's: concurrent callers
-- never deadlock. p_period_end and the limits are recorded on the rows taken
-- from, for the work that has no subject at hand (archive, alerts).
--
-- For a window (p_period 'window:<seconds>'), p_bucket is the bucket of now;
-- the use is counted in it, and the window is what its 61 buckets hold.
--
-- Returns refused (NULL when taken, else the level that refused: 'user' for the
-- subject's own row or a member's share, 'org' for the pool), used and
-- member_used (after the use when taken; the current counts when refused, NULL
-- where not read), and for a window its buckets and the member's, oldest first,
-- ending at bucket newest_bucket: what the caller needs to say when enough of
-- the window frees up.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION feature_usage_consume(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer,
    p_period_end timestamptz,
    p_amount integer,
    p_limit bigint,
    p_member feature_usage_user_id DEFAULT NULL,
    p_member_limit bigint DEFAULT NULL,
    p_bucket bigint DEFAULT NULL,
    OUT refused text,
    OUT used bigint,
    OUT member_used bigint,
    OUT buckets bigint[],
    OUT member_buckets bigint[],
    OUT newest_bucket bigint
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_window boolean := p_period LIKE 'window:%';
    v_slot integer;
BEGIN
    -- The checks of every call inline; the checking functions run only to
    -- raise the precise error.
    -- (A plain rule skips the pattern: the common case costs no regular expression.)
    IF p_subject IS NULL OR p_feature IS NULL OR p_feature !~ '^[a-z][a-z0-9_.:-]*$' OR length(p_feature) > 64
       OR p_scope IS NULL OR p_scope NOT IN ('user', 'org') OR p_period IS NULL
       OR p_period_start IS NULL OR p_period_offset IS NULL
       OR p_period_offset NOT BETWEEN 0 AND 86399
       OR (p_period NOT IN ('month', 'day', 'week', 'year', 'hour', 'lifetime')
           AND (p_period !~ '^((day|week|month|year)(@[A-Za-z][A-Za-z0-9_+./-]*|\+anchor)|window:[1-9][0-9]+)$'
                OR length(p_period) - position('@' IN p_period) > 63
                OR (v_window AND length(p_period) > 16)
                OR (v_window AND split_part(p_period, ':', 2)::bigint % 60 <> 0)))
       OR p_amount IS NULL OR p_amount < 1 THEN
        PERFORM feature_usage_check_key(p_subject, p_feature, p_scope, p_period, p_period_start,
                                        p_period_offset);
        PERFORM feature_usage_check_amount('amount', p_amount);
    END IF;
    IF p_limit < 0 OR p_member_limit < 0 THEN
        RAISE EXCEPTION 'a limit must be zero or more, got %', least(p_limit, p_member_limit)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_member IS NOT NULL AND p_scope <> 'org' THEN
        RAISE EXCEPTION 'a member share belongs to an organisation pool (scope ''org'')'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_window AND p_bucket IS NULL THEN
        RAISE EXCEPTION 'a window''s use needs the bucket of now'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF NOT v_window THEN
        -- A first use more than a limit allows is refused before any row is
        -- made: the insert path has no WHERE.
        IF p_amount > p_limit THEN
            refused := CASE p_scope WHEN 'org' THEN 'org' ELSE 'user' END;
            used := coalesce((SELECT greatest(fu.usage_count, 0) FROM feature_usage fu
                              WHERE fu.user_id = p_subject AND fu.feature = p_feature
                                AND fu.scope = p_scope AND fu.period = p_period
                                AND fu.period_start = p_period_start
                                AND fu.period_offset = p_period_offset), 0);
            RETURN;
        END IF;
        IF p_member IS NOT NULL AND p_amount > p_member_limit THEN
            refused := 'user';
            member_used := coalesce((SELECT m.usage_count FROM feature_usage_members m
                                     WHERE m.org_id = p_subject AND m.feature = p_feature
                                       AND m.period = p_period AND m.period_start = p_period_start
                                       AND m.period_offset = p_period_offset
                                       AND m.user_id = p_member), 0);
            RETURN;
        END IF;
        -- One conditional upsert: under READ COMMITTED the ON CONFLICT update
        -- re-evaluates its WHERE on the latest row version after waiting for
        -- the row lock, so concurrent callers never take more than the limit.
        INSERT INTO feature_usage AS fu (user_id, feature, scope, period, period_start,
                                         period_offset, usage_count, usage_limit, period_end)
        VALUES (p_subject, p_feature, p_scope, p_period, p_period_start, p_period_offset,
                p_amount, p_limit, p_period_end)
        ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
            SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count,
                usage_limit = excluded.usage_limit,
                period_end = excluded.period_end,
                updated_at = now()
            WHERE p_limit IS NULL OR greatest(fu.usage_count, 0) + excluded.usage_count <= p_limit
        RETURNING fu.usage_count INTO used;
        IF NOT FOUND THEN
            -- The row is locked by the refused update: this read is its count.
            refused := CASE p_scope WHEN 'org' THEN 'org' ELSE 'user' END;
            SELECT greatest(fu.usage_count, 0) INTO used FROM feature_usage fu
            WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
              AND fu.period = p_period AND fu.period_start = p_period_start
              AND fu.period_offset = p_period_offset;
            RETURN;
        END IF;
        IF p_member IS NULL THEN
            RETURN;
        END IF;
        INSERT INTO feature_usage_members AS m (org_id, feature, period, period_start,
                                                period_offset, user_id, usage_count,
                                                usage_limit, period_end)
        VALUES (p_subject, p_feature, p_period, p_period_start, p_period_offset, p_member,
                p_amount, p_member_limit, p_period_end)
        ON CONFLICT (org_id, feature, period, period_start, period_offset, user_id) DO UPDATE
            SET usage_count = m.usage_count + excluded.usage_count,
                usage_limit = excluded.usage_limit,
                period_end = excluded.period_end,
                updated_at = now()
            WHERE p_member_limit IS NULL OR m.usage_count + excluded.usage_count <= p_member_limit
        RETURNING m.usage_count INTO member_used;
        IF NOT FOUND THEN
            -- The member's cap refuses: the pool gives back what it took, in
            -- the same transaction (nobody saw it: the pool row is locked).
            refused := 'user';
            UPDATE feature_usage fu SET usage_count = fu.usage_count - p_amount
            WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
              AND fu.period = p_period AND fu.period_start = p_period_start
              AND fu.period_offset = p_period_offset
            RETURNING fu.usage_count INTO used;
            SELECT m.usage_count INTO member_used FROM feature_usage_members m
            WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
              AND m.period_start = p_period_start AND m.period_offset = p_period_offset
              AND m.user_id = p_member;
        END IF;
        RETURN;
    END IF;

    -- A window: one conditional upsert per level, as for a period. The row's
    -- buckets move on to end at the bucket of now (those that left the window
    -- are dropped from the count, which always equals the buckets' sum), and
    -- the use goes into the bucket of now. A clock behind the newest bucket
    -- (another process's) counts it in its own bucket, or in the newest when
    -- more than a window behind.
    IF p_amount > p_limit THEN
        refused := CASE p_scope WHEN 'org' THEN 'org' ELSE 'user' END;
    ELSE
        INSERT INTO feature_usage AS fu (user_id, feature, scope, period, period_start,
                                         period_offset, usage_count, usage_limit,
                                         window_buckets, window_head)
        VALUES (p_subject, p_feature, p_scope, p_period, p_period_start, p_period_offset,
                p_amount, p_limit, array_fill(0::bigint, ARRAY[60]) || p_amount::bigint, p_bucket)
        ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
            SET window_buckets = CASE
                    WHEN p_bucket - fu.window_head >= 61 THEN excluded.window_buckets
                    WHEN p_bucket > fu.window_head
                        THEN fu.window_buckets[(p_bucket - fu.window_head + 1)::integer:61]
                             || array_fill(0::bigint,
                                           ARRAY[(p_bucket - fu.window_head - 1)::integer])
                             || p_amount::bigint
                    WHEN fu.window_head - p_bucket > 60
                        THEN fu.window_buckets[1:60] || fu.window_buckets[61] + p_amount
                    ELSE fu.window_buckets[1:(60 - fu.window_head + p_bucket)::integer]
                         || fu.window_buckets[(61 - fu.window_head + p_bucket)::integer] + p_amount
                         || fu.window_buckets[(62 - fu.window_head + p_bucket)::integer:61]
                END,
                window_head = greatest(fu.window_head, p_bucket),
                usage_count = fu.usage_count + p_amount - CASE
                    WHEN p_bucket - fu.window_head >= 61 THEN fu.usage_count
                    WHEN p_bucket > fu.window_head
                        THEN (SELECT coalesce(sum(b), 0)::bigint
                              FROM unnest(fu.window_buckets[1:(p_bucket - fu.window_head)::integer])
                                   AS b)
                    ELSE 0 END,
                usage_limit = excluded.usage_limit,
                updated_at = now()
            WHERE p_limit IS NULL OR fu.usage_count + p_amount - CASE
                    WHEN p_bucket - fu.window_head >= 61 THEN fu.usage_count
                    WHEN p_bucket > fu.window_head
                        THEN (SELECT coalesce(sum(b), 0)::bigint
                              FROM unnest(fu.window_buckets[1:(p_bucket - fu.window_head)::integer])
                                   AS b)
                    ELSE 0 END <= p_limit
        RETURNING fu.usage_count, fu.window_buckets, fu.window_head
        INTO used, buckets, newest_bucket;
        IF NOT FOUND THEN
            refused := CASE p_scope WHEN 'org' THEN 'org' ELSE 'user' END;
        END IF;
    END IF;
    IF refused IS NULL AND p_member IS NOT NULL THEN
        IF p_amount > p_member_limit THEN
            refused := 'user';
        ELSE
            INSERT INTO feature_usage_members AS m (org_id, feature, period, period_start,
                                                    period_offset, user_id, usage_count,
                                                    usage_limit, window_buckets, window_head)
            VALUES (p_subject, p_feature, p_period, p_period_start, p_period_offset, p_member,
                    p_amount, p_member_limit, array_fill(0::bigint, ARRAY[60]) || p_amount::bigint,
                    p_bucket)
            ON CONFLICT (org_id, feature, period, period_start, period_offset, user_id) DO UPDATE
                SET window_buckets = CASE
                        WHEN p_bucket - m.window_head >= 61 THEN excluded.window_buckets
                        WHEN p_bucket > m.window_head
                            THEN m.window_buckets[(p_bucket - m.window_head + 1)::integer:61]
                                 || array_fill(0::bigint,
                                               ARRAY[(p_bucket - m.window_head - 1)::integer])
                                 || p_amount::bigint
                        WHEN m.window_head - p_bucket > 60
                            THEN m.window_buckets[1:60] || m.window_buckets[61] + p_amount
                        ELSE m.window_buckets[1:(60 - m.window_head + p_bucket)::integer]
                             || m.window_buckets[(61 - m.window_head + p_bucket)::integer] + p_amount
                             || m.window_buckets[(62 - m.window_head + p_bucket)::integer:61]
                    END,
                    window_head = greatest(m.window_head, p_bucket),
                    usage_count = m.usage_count + p_amount - CASE
                        WHEN p_bucket - m.window_head >= 61 THEN m.usage_count
                        WHEN p_bucket > m.window_head
                            THEN (SELECT coalesce(sum(b), 0)::bigint
                                  FROM unnest(m.window_buckets[1:(p_bucket - m.window_head)::integer])
                                       AS b)
                        ELSE 0 END,
                    usage_limit = excluded.usage_limit,
                    updated_at = now()
                WHERE p_member_limit IS NULL OR m.usage_count + p_amount - CASE
                        WHEN p_bucket - m.window_head >= 61 THEN m.usage_count
                        WHEN p_bucket > m.window_head
                            THEN (SELECT coalesce(sum(b), 0)::bigint
                                  FROM unnest(m.window_buckets[1:(p_bucket - m.window_head)::integer])
                                       AS b)
                        ELSE 0 END <= p_member_limit
            RETURNING m.usage_count, m.window_buckets INTO member_used, member_buckets;
            IF NOT FOUND THEN
                refused := 'user';
            END IF;
        END IF;
        IF refused IS NOT NULL THEN
            -- The member's cap refuses: the pool gives back what it took, from the
            -- bucket it went into, in the same transaction (its row is locked).
            v_slot := CASE WHEN newest_bucket - p_bucket > 60 THEN 61
                           ELSE 61 - (newest_bucket - p_bucket)::integer END;
            UPDATE feature_usage fu
            SET window_buckets[v_slot] = fu.window_buckets[v_slot] - p_amount,
                usage_count = fu.usage_count - p_amount
            WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
              AND fu.period = p_period AND fu.period_start = p_period_start
              AND fu.period_offset = p_period_offset;
        END IF;
    END IF;
    IF refused IS NULL THEN
        RETURN;
    END IF;
    -- Refused: the counts as they stand now, for the caller to say when enough
    -- of the window frees up.
    SELECT feature_usage_window_at(fu.window_buckets, fu.window_head,
                                   greatest(fu.window_head, p_bucket)),
           greatest(fu.window_head, p_bucket)
    INTO buckets, newest_bucket
    FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
    newest_bucket := coalesce(newest_bucket, p_bucket);
    buckets := coalesce(buckets, array_fill(0::bigint, ARRAY[61]));
    used := feature_usage_total(buckets);
    IF p_member IS NOT NULL THEN
        SELECT feature_usage_window_at(m.window_buckets, m.window_head, newest_bucket)
        INTO member_buckets
        FROM feature_usage_members m
        WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
          AND m.period_start = p_period_start AND m.period_offset = p_period_offset
          AND m.user_id = p_member;
        member_buckets := coalesce(member_buckets, array_fill(0::bigint, ARRAY[61]));
        member_used := feature_usage_total(member_buckets);
    END IF;
END
$$;

-- Gives back p_amount uses taken by a metered check that then failed, to the
-- period (or window bucket) and levels they were taken from, even after the
-- period ended; never below 0. For a window, p_bucket is the bucket the use
-- was counted in and p_now_bucket the bucket of now: a use whose bucket has
-- left the window has nothing to give back. Returns the subject's (or the
-- pool's) count after; 0 when there was nothing.
CREATE OR REPLACE FUNCTION feature_usage_refund(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer,
    p_amount integer,
    p_member feature_usage_user_id DEFAULT NULL,
    p_bucket bigint DEFAULT NULL,
    p_now_bucket bigint DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_used bigint;
    v_ring bigint[];
    v_head bigint;
    v_member_ring bigint[];
    v_member_head bigint;
    v_newest bigint;
    v_slot integer;
    v_back bigint;
BEGIN
    IF p_amount IS NULL OR p_amount < 1 OR p_period_offset IS NULL THEN
        PERFORM feature_usage_check_amount('amount', p_amount);
    END IF;
    PERFORM feature_usage_check_key(p_subject, p_feature, p_scope, p_period, p_period_start,
                                    p_period_offset);
    IF p_period NOT LIKE 'window:%' THEN
        UPDATE feature_usage fu
        SET usage_count = greatest(fu.usage_count - p_amount, 0), updated_at = now()
        WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
          AND fu.period = p_period AND fu.period_start = p_period_start
          AND fu.period_offset = p_period_offset
        RETURNING fu.usage_count INTO v_used;
        IF p_member IS NOT NULL THEN
            UPDATE feature_usage_members m
            SET usage_count = greatest(m.usage_count - p_amount, 0), updated_at = now()
            WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
              AND m.period_start = p_period_start AND m.period_offset = p_period_offset
              AND m.user_id = p_member;
        END IF;
        RETURN coalesce(v_used, 0);
    END IF;
    IF p_bucket IS NULL OR p_now_bucket IS NULL THEN
        RAISE EXCEPTION 'a window''s refund needs the bucket of the use and the bucket of now'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT fu.window_buckets, fu.window_head INTO v_ring, v_head FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    v_newest := greatest(v_head, p_now_bucket);
    IF p_member IS NOT NULL THEN
        SELECT m.window_buckets, m.window_head INTO v_member_ring, v_member_head
        FROM feature_usage_members m
        WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
          AND m.period_start = p_period_start AND m.period_offset = p_period_offset
          AND m.user_id = p_member
        FOR UPDATE;
        v_newest := greatest(v_newest, v_member_head);
    END IF;
    v_ring := feature_usage_window_at(v_ring, v_head, v_newest);
    IF v_newest - p_bucket <= 60 THEN
        v_slot := 61 - (v_newest - p_bucket)::integer;
        v_back := least(v_ring[v_slot], p_amount);
        v_ring[v_slot] := v_ring[v_slot] - v_back;
    END IF;
    v_used := feature_usage_total(v_ring);
    UPDATE feature_usage fu
    SET window_buckets = v_ring, window_head = v_newest, usage_count = v_used,
        updated_at = now()
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
    IF v_member_ring IS NOT NULL THEN
        v_member_ring := feature_usage_window_at(v_member_ring, v_member_head, v_newest);
        IF v_slot IS NOT NULL THEN
            v_member_ring[v_slot] := v_member_ring[v_slot] - least(v_member_ring[v_slot], p_amount);
        END IF;
        UPDATE feature_usage_members m
        SET window_buckets = v_member_ring, window_head = v_newest,
            usage_count = feature_usage_total(v_member_ring), updated_at = now()
        WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
          AND m.period_start = p_period_start AND m.period_offset = p_period_offset
          AND m.user_id = p_member;
    END IF;
    RETURN v_used;
END
$$;

-- Starts a count afresh: the subject's count under this key becomes 0 (a
-- window's buckets too), and for an organisation's pool so does every member's
-- share of it. For teams whose policy is to reset usage when a plan changes.
-- Returns the count there was (0 when there was none).
CREATE OR REPLACE FUNCTION feature_usage_reset(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_before bigint;
BEGIN
    PERFORM feature_usage_check_key(p_subject, p_feature, p_scope, p_period, p_period_start,
                                    p_period_offset);
    -- The pool's row first, then its members' (the order every function keeps).
    SELECT greatest(fu.usage_count, 0) INTO v_before FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset
    FOR UPDATE;
    UPDATE feature_usage fu
    SET usage_count = 0, updated_at = now(),
        window_buckets = CASE WHEN fu.window_buckets IS NOT NULL
                              THEN array_fill(0::bigint, ARRAY[61]) END
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
    IF p_scope = 'org' THEN
        UPDATE feature_usage_members m
        SET usage_count = 0, updated_at = now(),
            window_buckets = CASE WHEN m.window_buckets IS NOT NULL
                                  THEN array_fill(0::bigint, ARRAY[61]) END
        WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
          AND m.period_start = p_period_start AND m.period_offset = p_period_offset;
    END IF;
    RETURN coalesce(v_before, 0);
END
$$;

-- The counts of a subject (a user, or an organisation's pool with p_member's
-- share), one row per key asked for, in the order asked: the features, rules and
-- period starts in p_features, p_periods, p_period_starts and p_period_offsets,
-- and for a window the bucket of now in p_now_buckets (NULL for a period).
-- used and member_used are 0 where nothing was counted (member_used NULL
-- without p_member); a window also returns its buckets and the member's, oldest
-- first, ending at bucket newest_bucket. usage_limit and period_end are what
-- the last metered check recorded.
CREATE OR REPLACE FUNCTION feature_usage_read(
    p_subject feature_usage_user_id,
    p_scope text,
    p_member feature_usage_user_id,
    p_features text[],
    p_periods text[],
    p_period_starts date[],
    p_period_offsets integer[],
    p_now_buckets bigint[]
) RETURNS TABLE (
    feature text,
    period text,
    period_start date,
    period_offset integer,
    used bigint,
    member_used bigint,
    buckets bigint[],
    member_buckets bigint[],
    newest_bucket bigint,
    usage_limit bigint,
    period_end timestamptz
)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    IF p_subject IS NULL OR p_scope IS NULL OR p_scope NOT IN ('user', 'org') THEN
        PERFORM feature_usage_check_key(p_subject, 'x', p_scope, 'month', '1970-01-01', 0);
    END IF;
    IF cardinality(p_periods) <> cardinality(p_features)
       OR cardinality(p_period_starts) <> cardinality(p_features)
       OR cardinality(p_period_offsets) <> cardinality(p_features)
       OR cardinality(p_now_buckets) <> cardinality(p_features) THEN
        RAISE EXCEPTION 'the arrays must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT k.feature, k.period, k.period_start, k.period_offset,
           CASE WHEN k.now_bucket IS NULL THEN coalesce(greatest(fu.usage_count, 0), 0)
                ELSE feature_usage_total(w.buckets) END,
           CASE WHEN p_member IS NULL THEN NULL
                WHEN k.now_bucket IS NULL THEN coalesce(m.usage_count, 0)
                ELSE feature_usage_total(w.member_buckets) END,
           w.buckets, w.member_buckets, w.newest,
           fu.usage_limit, fu.period_end
    FROM unnest(p_features, p_periods, p_period_starts, p_period_offsets, p_now_buckets)
         WITH ORDINALITY AS k(feature, period, period_start, period_offset, now_bucket, ord)
    LEFT JOIN feature_usage fu
           ON fu.user_id = p_subject AND fu.feature = k.feature AND fu.scope = p_scope
              AND fu.period = k.period AND fu.period_start = k.period_start
              AND fu.period_offset = k.period_offset
    LEFT JOIN feature_usage_members m
           ON p_member IS NOT NULL AND m.org_id = p_subject AND m.feature = k.feature
              AND m.period = k.period AND m.period_start = k.period_start
              AND m.period_offset = k.period_offset AND m.user_id = p_member
    LEFT JOIN LATERAL (
        SELECT n.newest,
               feature_usage_window_at(fu.window_buckets, fu.window_head, n.newest) AS buckets,
               CASE WHEN p_member IS NOT NULL THEN
                   feature_usage_window_at(m.window_buckets, m.window_head, n.newest) END
                   AS member_buckets
        FROM (SELECT greatest(k.now_bucket, fu.window_head, m.window_head) AS newest) AS n
        WHERE k.now_bucket IS NOT NULL
    ) AS w ON true
    ORDER BY k.ord;
END
$$;

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

-- The background writer's statement: one batch of feature_usage_increment_many
-- rows, written at most once under its id (recorded in the same transaction;
-- a batch whose id is taken, written before or settled by
-- resolve_feature_usage_batch, writes nothing and returns no row). p_forget
-- lists earlier batches the writer saw committed: their records are deleted.
CREATE OR REPLACE FUNCTION feature_usage_write_batch(
    p_batch_id uuid,
    p_forget uuid[],
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
    SELECT * FROM feature_usage_increment_many(p_subjects, p_features, p_scopes, p_periods,
                                               p_period_starts, p_period_offsets, p_period_ends,
                                               p_members, p_buckets, p_increments,
                                               p_idempotency_keys);
END
$$;

-- Windows whose every bucket has left them count nothing: their rows go (by
-- the database's clock), from feature_usage and the member shares alike.
-- Returns how many rows went. Run by `feature-gates prune`.
CREATE OR REPLACE FUNCTION prune_feature_usage_windows()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_now numeric := extract(epoch FROM now());
    v_rows bigint;
    v_members bigint;
BEGIN
    -- all subjects: a maintenance job, not a request's statement.
    DELETE FROM feature_usage fu
    WHERE fu.period LIKE 'window:%'
      AND fu.window_head < floor(v_now / feature_usage_bucket_seconds(fu.period)) - 60;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    -- all subjects: as above.
    DELETE FROM feature_usage_members m
    WHERE m.period LIKE 'window:%'
      AND m.window_head < floor(v_now / feature_usage_bucket_seconds(m.period)) - 60;
    GET DIAGNOSTICS v_members = ROW_COUNT;
    RETURN v_rows + v_members;
END
$$;

-- ---------------------------------------------------------------------------
-- The seed's functions, for the default kind (scope 'user', period 'month',
-- offset 0: a user's count of the calendar month in UTC), on the new key.
-- ---------------------------------------------------------------------------

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
    IF p_user_id IS NULL OR p_period_start IS NULL OR p_feature IS NULL
       OR p_feature !~ '^[a-z][a-z0-9_.:-]*$' OR length(p_feature) > 64 OR p_increment IS NULL OR p_increment < 1 THEN
        PERFORM feature_usage_check_args(p_user_id, p_feature, p_period_start);
        PERFORM feature_usage_check_amount('increment', p_increment);
    END IF;
    INSERT INTO feature_usage AS fu (user_id, feature, period_start, usage_count)
    VALUES (p_user_id, p_feature, p_period_start, p_increment)
    ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
        SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count,
            updated_at = now()
    RETURNING fu.usage_count::bigint INTO v_count;
    RETURN v_count;
END
$$;

-- The default kind's metered check; it records the limit and the month's end
-- as the general one does.
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
    IF p_user_id IS NULL OR p_period_start IS NULL OR p_feature IS NULL
       OR p_feature !~ '^[a-z][a-z0-9_.:-]*$' OR length(p_feature) > 64 OR p_amount IS NULL OR p_amount < 1 THEN
        PERFORM feature_usage_check_args(p_user_id, p_feature, p_period_start);
        PERFORM feature_usage_check_amount('amount', p_amount);
    END IF;
    IF p_limit IS NULL OR p_limit < 0 THEN
        RAISE EXCEPTION 'limit must be zero or more, got %', coalesce(p_limit::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_amount > p_limit THEN
        RETURN NULL;
    END IF;
    INSERT INTO feature_usage AS fu (user_id, feature, period_start, usage_count, usage_limit,
                                     period_end)
    VALUES (p_user_id, p_feature, p_period_start, p_amount, p_limit,
            (p_period_start + interval '1 month')::timestamp AT TIME ZONE 'UTC')
    ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
        SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count,
            usage_limit = excluded.usage_limit,
            period_end = excluded.period_end,
            updated_at = now()
        WHERE greatest(fu.usage_count, 0) + excluded.usage_count <= p_limit
    RETURNING fu.usage_count::bigint INTO v_count;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION refund_feature_usage(
    p_user_id feature_usage_user_id,
    p_feature text,
    p_amount integer,
    p_period_start date DEFAULT feature_usage_current_period()
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    RETURN feature_usage_refund(p_user_id, p_feature, 'user', 'month', p_period_start, 0,
                                p_amount);
END
$$;

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
    RETURN coalesce(
        (SELECT greatest(usage_count, 0) FROM feature_usage
         WHERE user_id = p_user_id AND feature = p_feature AND scope = 'user'
           AND period = 'month' AND period_start = p_period_start AND period_offset = 0),
        0);
END
$$;

CREATE OR REPLACE FUNCTION get_user_feature_usage(
    p_user_id feature_usage_user_id,
    p_period_start date DEFAULT feature_usage_current_period()
) RETURNS TABLE (feature text, usage_count bigint, updated_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM feature_usage_check_args(p_user_id, 'x', p_period_start);
    RETURN QUERY
        SELECT fu.feature::text, greatest(fu.usage_count, 0)::bigint, fu.updated_at::timestamptz
        FROM feature_usage fu
        WHERE fu.user_id = p_user_id AND fu.scope = 'user' AND fu.period = 'month'
          AND fu.period_start = p_period_start AND fu.period_offset = 0
        ORDER BY fu.feature;
END
$$;

-- The many-row form, for the default kind: feature_usage_increment_many's
-- rows for users' calendar months in UTC.
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
DECLARE
    v_rows integer := coalesce(cardinality(p_user_ids), 0);
BEGIN
    RETURN QUERY
    SELECT w.subject, w.feature, w.period_start, w.increment, w.usage_count
    FROM feature_usage_increment_many(
        p_user_ids, p_features, array_fill('user'::text, ARRAY[v_rows]),
        array_fill('month'::text, ARRAY[v_rows]), p_period_starts,
        array_fill(0, ARRAY[v_rows]), NULL, NULL, NULL, p_increments, p_idempotency_keys) AS w;
END
$$;

-- The archive, per kind: a row moves once its period ended before the first
-- day of the month p_keep_months months before the current UTC month (the
-- end it recorded, or the length of its rule after its start); a lifetime
-- count is never archived, and a window has no period (prune_feature_usage_windows
-- drops what has left it). Member shares move with their pools. Returns the
-- rows of feature_usage moved.
CREATE OR REPLACE FUNCTION archive_old_feature_usage(p_keep_months integer DEFAULT 6)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_cutoff date;
    v_instant timestamptz;
    v_moved integer;
BEGIN
    IF p_keep_months IS NULL OR p_keep_months NOT BETWEEN 0 AND 12000 THEN
        RAISE EXCEPTION 'keep_months must be between 0 and 12000, got %',
            coalesce(p_keep_months::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_cutoff := (feature_usage_current_period() - make_interval(months => p_keep_months))::date;
    v_instant := v_cutoff::timestamp AT TIME ZONE 'UTC';
    -- all subjects: a maintenance job, not a request's statement.
    WITH moved AS (
        DELETE FROM feature_usage fu
        WHERE fu.period_start < v_cutoff AND fu.user_id IS NOT NULL AND fu.feature IS NOT NULL
          AND fu.period <> 'lifetime' AND fu.period NOT LIKE 'window:%'
          AND coalesce(fu.period_end, feature_usage_period_end_estimate(
                  fu.period, fu.period_start, fu.period_offset)) <= v_instant
        RETURNING fu.user_id, fu.feature, fu.scope, fu.period, fu.period_start, fu.period_offset,
                  fu.period_end, fu.usage_count, fu.created_at, fu.updated_at
    )
    INSERT INTO feature_usage_archive AS a
        (user_id, feature, scope, period, period_start, period_offset, period_end, usage_count,
         created_at, updated_at)
    SELECT user_id, feature, scope, period, period_start, period_offset, period_end,
           greatest(usage_count, 0), coalesce(created_at, now()),
           coalesce(updated_at, created_at, now())
    FROM moved
    ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
        SET usage_count = a.usage_count + excluded.usage_count,
            updated_at = greatest(a.updated_at, excluded.updated_at),
            period_end = coalesce(excluded.period_end, a.period_end),
            archived_at = now();
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    -- all subjects: as above.
    WITH moved AS (
        DELETE FROM feature_usage_members m
        WHERE m.period_start < v_cutoff AND m.period <> 'lifetime' AND m.period NOT LIKE 'window:%'
          AND coalesce(m.period_end, feature_usage_period_end_estimate(
                  m.period, m.period_start, m.period_offset)) <= v_instant
        RETURNING m.*
    )
    INSERT INTO feature_usage_members_archive AS a
        (org_id, feature, period, period_start, period_offset, user_id, usage_count, period_end,
         created_at, updated_at)
    SELECT org_id, feature, period, period_start, period_offset, user_id, usage_count,
           period_end, created_at, updated_at
    FROM moved
    ON CONFLICT (org_id, feature, period, period_start, period_offset, user_id) DO UPDATE
        SET usage_count = a.usage_count + excluded.usage_count,
            updated_at = greatest(a.updated_at, excluded.updated_at),
            period_end = coalesce(excluded.period_end, a.period_end),
            archived_at = now();
    RETURN v_moved;
END
$$;
