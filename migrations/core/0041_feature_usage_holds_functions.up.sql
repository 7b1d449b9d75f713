-- The statements of holds: reserve (one call), settle (one call), and the
-- reclaiming of expired holds inside the statements that need their room.
--
-- Locks are taken in the order of every other writer: the counted row (the
-- pool, then the member's share), then the holds of its key. A reserve's
-- metered check locks the row before its hold is written; a settle locks the
-- row before it deletes its hold; a reclaim runs after the refused check that
-- locked the row.

-- Deletes the holds of one counted key that expired at p_now and gives their
-- uses back (to the member's share too, and for a window to the bucket each
-- went into, p_now_bucket being the bucket of now). Returns how many uses came
-- back.
CREATE OR REPLACE FUNCTION feature_usage_holds_reclaim(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer,
    p_now timestamptz,
    p_now_bucket bigint
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_hold record;
    v_back bigint := 0;
BEGIN
    FOR v_hold IN
        DELETE FROM feature_usage_holds h
        WHERE h.user_id = p_subject AND h.feature = p_feature AND h.scope = p_scope
          AND h.period = p_period AND h.period_start = p_period_start
          AND h.period_offset = p_period_offset AND h.expires_at <= p_now
        RETURNING h.amount, h.member, h.bucket
    LOOP
        PERFORM feature_usage_refund(p_subject, p_feature, p_scope, p_period, p_period_start,
                                     p_period_offset, v_hold.amount, v_hold.member,
                                     v_hold.bucket, p_now_bucket);
        v_back := v_back + v_hold.amount;
    END LOOP;
    RETURN v_back;
END
$$;

-- The metered check of 0031 (the same parameters, and the same answer), which
-- reclaims the key's expired holds when it is refused and tries once more:
-- capacity held past its ttl comes back with no job. A check that is taken
-- costs nothing more. p_now is the instant holds expire against.
CREATE OR REPLACE FUNCTION feature_usage_take(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer,
    p_period_end timestamptz,
    p_amount integer,
    p_limit bigint,
    p_member feature_usage_user_id,
    p_member_limit bigint,
    p_bucket bigint,
    p_thresholds numeric[],
    p_plan text,
    p_now timestamptz,
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
BEGIN
    SELECT c.refused, c.used, c.member_used, c.buckets, c.member_buckets, c.newest_bucket
    INTO refused, used, member_used, buckets, member_buckets, newest_bucket
    FROM feature_usage_consume(p_subject, p_feature, p_scope, p_period, p_period_start,
                               p_period_offset, p_period_end, p_amount, p_limit, p_member,
                               p_member_limit, p_bucket, p_thresholds, p_plan) c;
    IF refused IS NULL OR p_now IS NULL THEN
        RETURN;
    END IF;
    IF feature_usage_holds_reclaim(p_subject, p_feature, p_scope, p_period, p_period_start,
                                   p_period_offset, p_now, p_bucket) > 0 THEN
        SELECT c.refused, c.used, c.member_used, c.buckets, c.member_buckets, c.newest_bucket
        INTO refused, used, member_used, buckets, member_buckets, newest_bucket
        FROM feature_usage_consume(p_subject, p_feature, p_scope, p_period, p_period_start,
                                   p_period_offset, p_period_end, p_amount, p_limit, p_member,
                                   p_member_limit, p_bucket, p_thresholds, p_plan) c;
    END IF;
END
$$;

-- Reserves p_amount uses until p_expires_at: the metered check of
-- feature_usage_take, and when it is taken a hold that remembers what to give
-- back. hold_id is NULL when refused; the other columns are the check's.
CREATE OR REPLACE FUNCTION feature_usage_reserve(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer,
    p_period_end timestamptz,
    p_amount integer,
    p_limit bigint,
    p_member feature_usage_user_id,
    p_member_limit bigint,
    p_bucket bigint,
    p_thresholds numeric[],
    p_plan text,
    p_now timestamptz,
    p_expires_at timestamptz,
    OUT hold_id uuid,
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
BEGIN
    IF p_now IS NULL OR p_expires_at IS NULL OR p_expires_at <= p_now THEN
        RAISE EXCEPTION 'a hold needs an expiry after now, got % at %', p_expires_at, p_now
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.refused, t.used, t.member_used, t.buckets, t.member_buckets, t.newest_bucket
    INTO refused, used, member_used, buckets, member_buckets, newest_bucket
    FROM feature_usage_take(p_subject, p_feature, p_scope, p_period, p_period_start,
                            p_period_offset, p_period_end, p_amount, p_limit, p_member,
                            p_member_limit, p_bucket, p_thresholds, p_plan, p_now) t;
    IF refused IS NOT NULL THEN
        RETURN;
    END IF;
    INSERT INTO feature_usage_holds AS h (user_id, feature, scope, period, period_start,
                                          period_offset, member, bucket, amount, expires_at)
    VALUES (p_subject, p_feature, p_scope, p_period, p_period_start, p_period_offset,
            p_member, p_bucket, p_amount, p_expires_at)
    RETURNING h.hold_id INTO hold_id;
END
$$;

-- Settles a hold: p_actual of its uses stay counted (0 for a release), the
-- rest are given back. Returns 'settled'; 'expired' when the hold's expiry
-- passed at p_now (its uses are all given back, if a statement that needed the
-- room has not already); 'unknown' when there is no such hold (settled
-- before, or reclaimed).
CREATE OR REPLACE FUNCTION feature_usage_hold_settle(
    p_subject feature_usage_user_id,
    p_hold_id uuid,
    p_actual integer,
    p_now timestamptz,
    p_now_bucket bigint
) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_hold feature_usage_holds;
    v_back integer;
BEGIN
    SELECT * INTO v_hold FROM feature_usage_holds h
    WHERE h.user_id = p_subject AND h.hold_id = p_hold_id;
    IF NOT FOUND THEN
        RETURN 'unknown';
    END IF;
    IF p_actual IS NULL OR p_actual < 0 OR p_actual > v_hold.amount THEN
        RAISE EXCEPTION 'a hold of % commits between 0 and %, got %', v_hold.amount,
            v_hold.amount, p_actual
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The counted row first, as every writer locks it before the holds.
    PERFORM 1 FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = v_hold.feature AND fu.scope = v_hold.scope
      AND fu.period = v_hold.period AND fu.period_start = v_hold.period_start
      AND fu.period_offset = v_hold.period_offset
    FOR UPDATE;
    DELETE FROM feature_usage_holds h
    WHERE h.user_id = p_subject AND h.hold_id = p_hold_id
    RETURNING * INTO v_hold;
    IF NOT FOUND THEN
        RETURN 'unknown';
    END IF;
    v_back := CASE WHEN v_hold.expires_at <= p_now THEN v_hold.amount
                   ELSE v_hold.amount - p_actual END;
    IF v_back > 0 THEN
        PERFORM feature_usage_refund(p_subject, v_hold.feature, v_hold.scope, v_hold.period,
                                     v_hold.period_start, v_hold.period_offset, v_back,
                                     v_hold.member, v_hold.bucket, p_now_bucket);
    END IF;
    RETURN CASE WHEN v_hold.expires_at <= p_now THEN 'expired' ELSE 'settled' END;
END
$$;

-- What one subject holds of each key asked for, live at p_now: the uses its
-- holds take (on the subject's row; p_member's share of them apart).
CREATE OR REPLACE FUNCTION feature_usage_held(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer,
    p_member feature_usage_user_id,
    p_now timestamptz,
    OUT held bigint,
    OUT member_held bigint
)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT coalesce(sum(h.amount), 0)::bigint,
           coalesce(sum(h.amount) FILTER (WHERE h.member = p_member), 0)::bigint
    FROM feature_usage_holds h
    WHERE h.user_id = p_subject AND h.feature = p_feature AND h.scope = p_scope
      AND h.period = p_period AND h.period_start = p_period_start
      AND h.period_offset = p_period_offset AND h.expires_at > p_now
$$;
