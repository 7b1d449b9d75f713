-- The statements of holds and credits: reserve (one call), settle (one call),
-- the reclaiming of expired holds inside the statements that need their room,
-- grants, the drawing on them when a period's allowance is used up, give-backs,
-- expiry, rollover and the balance.
--
-- Locks are taken in the order of every other writer: the counted row (the
-- pool, then the member's share), then the holds of its key, then the grants of
-- its level in the order they are drawn on (earliest expiry, then oldest). A
-- reserve's metered check locks the row before its hold is written; a settle
-- locks the row before it deletes its hold; a reclaim runs after the refused
-- check that locked the row; a draw or a give-back locks the row, then every
-- grant of the level in that order.

-- Gives back p_amount uses of a counted key (feature_usage_refund: to the
-- period or bucket and levels they were taken from) and, when the row drew on
-- grants, gives them back to its level's live grants first, in the reverse of
-- the order they are drawn on; what no live grant can take back (its grants
-- expired) is lost, and the ledger says so. Returns the count after.
CREATE OR REPLACE FUNCTION feature_usage_give_back(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer,
    p_amount integer,
    p_member feature_usage_user_id,
    p_bucket bigint,
    p_now_bucket bigint,
    p_now timestamptz
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_used bigint;
    v_credit bigint;
    v_left bigint;
    v_back bigint;
    v_grant record;
BEGIN
    v_used := feature_usage_refund(p_subject, p_feature, p_scope, p_period, p_period_start,
                                   p_period_offset, p_amount, p_member, p_bucket, p_now_bucket);
    IF p_period LIKE 'window:%' THEN
        RETURN v_used;
    END IF;
    -- The row is locked by the refund's update.
    SELECT fu.credit_used INTO v_credit FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
    IF coalesce(v_credit, 0) = 0 THEN
        RETURN v_used;
    END IF;
    v_left := least(v_credit, p_amount);
    UPDATE feature_usage fu SET credit_used = fu.credit_used - v_left
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
    -- Every grant of the level locked in the drawing order, then given back to in
    -- the reverse one.
    PERFORM 1 FROM (SELECT g.grant_id FROM feature_usage_grants g
                    WHERE g.user_id = p_subject AND g.feature = p_feature AND g.scope = p_scope
                    ORDER BY g.expires_at, g.granted_at, g.grant_id
                    FOR UPDATE) AS locked;
    FOR v_grant IN
        SELECT g.grant_id, g.amount - g.remaining AS room FROM feature_usage_grants g
        WHERE g.user_id = p_subject AND g.feature = p_feature AND g.scope = p_scope
          AND g.remaining < g.amount AND (g.expires_at IS NULL OR g.expires_at > p_now)
        ORDER BY g.expires_at DESC NULLS FIRST, g.granted_at DESC, g.grant_id DESC
    LOOP
        EXIT WHEN v_left = 0;
        v_back := least(v_left, v_grant.room);
        UPDATE feature_usage_grants g SET remaining = g.remaining + v_back
        WHERE g.user_id = p_subject AND g.grant_id = v_grant.grant_id;
        INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, grant_id, kind, amount,
                                               period, period_start, period_offset)
        VALUES (p_subject, p_feature, p_scope, v_grant.grant_id, 'refund', v_back, p_period,
                p_period_start, p_period_offset);
        v_left := v_left - v_back;
    END LOOP;
    IF v_left > 0 THEN
        INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, grant_id, kind, amount,
                                               period, period_start, period_offset, reason)
        VALUES (p_subject, p_feature, p_scope, NULL, 'refund', v_left, p_period, p_period_start,
                p_period_offset, 'the grants it was drawn on expired: lost');
    END IF;
    RETURN v_used;
END
$$;

-- Expires the level's grants whose expiry passed at p_now: their remainder is
-- gone, one ledger row each. Locks them in the drawing order. Returns how many
-- expired.
CREATE OR REPLACE FUNCTION feature_usage_grants_expire(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_now timestamptz
) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_grant record;
    v_count integer := 0;
BEGIN
    FOR v_grant IN
        SELECT g.grant_id, g.remaining FROM feature_usage_grants g
        WHERE g.user_id = p_subject AND g.feature = p_feature AND g.scope = p_scope
          AND g.remaining > 0 AND g.expires_at <= p_now
        ORDER BY g.expires_at, g.granted_at, g.grant_id
        FOR UPDATE
    LOOP
        UPDATE feature_usage_grants g SET remaining = 0
        WHERE g.user_id = p_subject AND g.grant_id = v_grant.grant_id;
        INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, grant_id, kind, amount)
        VALUES (p_subject, p_feature, p_scope, v_grant.grant_id, 'expire', -v_grant.remaining);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

-- Adds a grant of p_amount to a level (p_subject, p_scope, p_feature), until
-- p_expires_at (NULL: never); with p_idempotency_key, once for that level and
-- key, also between concurrent callers. p_kind is 'grant' or 'rollover'.
-- Returns the grant's id and whether this call added it.
CREATE OR REPLACE FUNCTION feature_usage_grant(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_amount bigint,
    p_expires_at timestamptz,
    p_reason text,
    p_idempotency_key text,
    p_kind text,
    p_now timestamptz,
    OUT grant_id bigint,
    OUT added boolean
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM feature_usage_check_key(p_subject, p_feature, p_scope, 'lifetime', '1970-01-01', 0);
    IF p_amount IS NULL OR p_amount < 1 THEN
        RAISE EXCEPTION 'a grant adds 1 or more, got %', p_amount
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_kind IS NULL OR p_kind NOT IN ('grant', 'rollover') THEN
        RAISE EXCEPTION 'a grant''s kind is ''grant'' or ''rollover'', got %', p_kind
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO feature_usage_grants AS g (user_id, feature, scope, amount, remaining,
                                           expires_at, granted_at, reason, idempotency_key)
    VALUES (p_subject, p_feature, p_scope, p_amount, p_amount, p_expires_at,
            coalesce(p_now, now()), coalesce(p_reason, ''), p_idempotency_key)
    ON CONFLICT (user_id, feature, scope, idempotency_key) DO NOTHING
    RETURNING g.grant_id INTO grant_id;
    added := grant_id IS NOT NULL;
    IF added THEN
        INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, grant_id, kind, amount,
                                               reason)
        VALUES (p_subject, p_feature, p_scope, grant_id, p_kind, p_amount,
                coalesce(p_reason, ''));
        RETURN;
    END IF;
    SELECT g.grant_id INTO grant_id FROM feature_usage_grants g
    WHERE g.user_id = p_subject AND g.feature = p_feature AND g.scope = p_scope
      AND g.idempotency_key = p_idempotency_key;
END
$$;

-- Carries the unused allowance of an ended period (p_period, p_period_start,
-- p_period_offset: its key; p_allowance: its allowance) into a grant of at most
-- p_cap (NULL: no cap) expiring at p_expires_at (the end of the next period),
-- once per period and level: its idempotency key names the period. Unused is
-- the allowance less what the period counted beyond its grants. Returns what
-- was carried by this call (0 when nothing was unused, or it was carried before).
CREATE OR REPLACE FUNCTION feature_usage_rollover(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer,
    p_allowance bigint,
    p_cap bigint,
    p_expires_at timestamptz,
    p_now timestamptz
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_unused bigint;
    v_added boolean;
BEGIN
    SELECT p_allowance - coalesce(greatest(fu.usage_count, 0) - fu.credit_used, 0)
    INTO v_unused
    FROM (SELECT 1) AS one
    LEFT JOIN feature_usage fu
      ON fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
     AND fu.period = p_period AND fu.period_start = p_period_start
     AND fu.period_offset = p_period_offset;
    v_unused := least(greatest(v_unused, 0), coalesce(p_cap, v_unused));
    IF v_unused <= 0 THEN
        RETURN 0;
    END IF;
    SELECT r.added INTO v_added
    FROM feature_usage_grant(p_subject, p_feature, p_scope, v_unused, p_expires_at,
                             format('unused allowance of the %s period from %s', p_period,
                                    p_period_start),
                             format('rollover:%s:%s:%s', p_period, p_period_start,
                                    p_period_offset),
                             'rollover', p_now) AS r;
    RETURN CASE WHEN v_added THEN v_unused ELSE 0 END;
END
$$;

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
        PERFORM feature_usage_give_back(p_subject, p_feature, p_scope, p_period,
                                        p_period_start, p_period_offset, v_hold.amount,
                                        v_hold.member, v_hold.bucket, p_now_bucket, p_now);
        v_back := v_back + v_hold.amount;
    END LOOP;
    RETURN v_back;
END
$$;

-- The metered check of 0031 (the same parameters, and the same answer), with
-- what the room of a period's level can come from when the check is refused:
-- the key's expired holds, reclaimed (capacity held past its ttl comes back
-- with no job), then the level's live grants, drawn on in order of earliest
-- expiry, then oldest (one ledger row per grant), for the uses beyond the
-- allowance p_limit and what the row drew before (credit_used). Grants raise
-- the level they were given to, never a member's per_user cap, and a rolling
-- window draws on none. A check that is taken from the allowance costs nothing
-- more. p_now is the instant holds and grants expire against (NULL: neither is
-- looked at).
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
DECLARE
    v_used bigint;
    v_credit bigint;
    v_need bigint;
    v_available bigint := 0;
    v_left bigint;
    v_take bigint;
    v_grant record;
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
        IF refused IS NULL THEN
            RETURN;
        END IF;
    END IF;
    -- Grants: a period's own level only (a member's cap refused: no grant lifts it).
    IF p_period LIKE 'window:%' OR p_limit IS NULL
       OR (p_member IS NOT NULL AND refused = 'user') THEN
        RETURN;
    END IF;
    SELECT greatest(fu.usage_count, 0), fu.credit_used INTO v_used, v_credit
    FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset
    FOR UPDATE;
    v_used := coalesce(v_used, 0);
    v_credit := coalesce(v_credit, 0);
    v_need := v_used + p_amount - (p_limit + v_credit);
    IF v_need > 0 THEN
        -- Every grant of the level locked in the drawing order; the expired
        -- ones' remainders go, the live ones' are what can be drawn.
        FOR v_grant IN
            SELECT g.grant_id, g.remaining, g.expires_at FROM feature_usage_grants g
            WHERE g.user_id = p_subject AND g.feature = p_feature AND g.scope = p_scope
            ORDER BY g.expires_at, g.granted_at, g.grant_id
            FOR UPDATE
        LOOP
            IF v_grant.remaining > 0 AND v_grant.expires_at <= p_now THEN
                UPDATE feature_usage_grants g SET remaining = 0
                WHERE g.user_id = p_subject AND g.grant_id = v_grant.grant_id;
                INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, grant_id, kind,
                                                       amount)
                VALUES (p_subject, p_feature, p_scope, v_grant.grant_id, 'expire',
                        -v_grant.remaining);
            ELSE
                v_available := v_available + v_grant.remaining;
            END IF;
        END LOOP;
        IF v_available < v_need THEN
            RETURN;
        END IF;
    END IF;
    SELECT c.refused, c.used, c.member_used, c.buckets, c.member_buckets, c.newest_bucket
    INTO refused, used, member_used, buckets, member_buckets, newest_bucket
    FROM feature_usage_consume(p_subject, p_feature, p_scope, p_period, p_period_start,
                               p_period_offset, p_period_end, p_amount,
                               p_limit + v_credit + greatest(v_need, 0), p_member,
                               p_member_limit, p_bucket, p_thresholds, p_plan) c;
    IF refused IS NOT NULL OR v_need <= 0 THEN
        RETURN;
    END IF;
    v_left := v_need;
    FOR v_grant IN
        SELECT g.grant_id, g.remaining FROM feature_usage_grants g
        WHERE g.user_id = p_subject AND g.feature = p_feature AND g.scope = p_scope
          AND g.remaining > 0 AND (g.expires_at IS NULL OR g.expires_at > p_now)
        ORDER BY g.expires_at, g.granted_at, g.grant_id
    LOOP
        EXIT WHEN v_left = 0;
        v_take := least(v_left, v_grant.remaining);
        UPDATE feature_usage_grants g SET remaining = g.remaining - v_take
        WHERE g.user_id = p_subject AND g.grant_id = v_grant.grant_id;
        INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, grant_id, kind, amount,
                                               period, period_start, period_offset)
        VALUES (p_subject, p_feature, p_scope, v_grant.grant_id, 'consume', -v_take, p_period,
                p_period_start, p_period_offset);
        v_left := v_left - v_take;
    END LOOP;
    UPDATE feature_usage fu SET credit_used = fu.credit_used + v_need
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
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
        PERFORM feature_usage_give_back(p_subject, v_hold.feature, v_hold.scope, v_hold.period,
                                        v_hold.period_start, v_hold.period_offset, v_back,
                                        v_hold.member, v_hold.bucket, p_now_bucket, p_now);
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

-- The balance of one counted key at p_now: the row's count (holds included)
-- and what it drew on grants, the live holds (and p_member's share of both),
-- and the level's live grants in the order they are drawn on. The key's
-- expired holds are reclaimed first, so that the count is what is used.
CREATE OR REPLACE FUNCTION feature_usage_balance(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer,
    p_member feature_usage_user_id,
    p_now timestamptz,
    OUT used bigint,
    OUT credit_used bigint,
    OUT held bigint,
    OUT member_used bigint,
    OUT member_held bigint,
    OUT grant_ids bigint[],
    OUT amounts bigint[],
    OUT remainings bigint[],
    OUT expiries timestamptz[],
    OUT reasons text[]
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    IF p_period NOT LIKE 'window:%' THEN
        -- The counted row first, as every writer locks it before the holds.
        PERFORM 1 FROM feature_usage fu
        WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
          AND fu.period = p_period AND fu.period_start = p_period_start
          AND fu.period_offset = p_period_offset
        FOR UPDATE;
        PERFORM feature_usage_holds_reclaim(p_subject, p_feature, p_scope, p_period,
                                            p_period_start, p_period_offset, p_now, NULL);
    END IF;
    SELECT greatest(fu.usage_count, 0), fu.credit_used INTO used, credit_used
    FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
    used := coalesce(used, 0);
    credit_used := coalesce(credit_used, 0);
    IF p_member IS NOT NULL THEN
        SELECT m.usage_count INTO member_used FROM feature_usage_members m
        WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
          AND m.period_start = p_period_start AND m.period_offset = p_period_offset
          AND m.user_id = p_member;
        member_used := coalesce(member_used, 0);
    END IF;
    SELECT h.held, h.member_held INTO held, member_held
    FROM feature_usage_held(p_subject, p_feature, p_scope, p_period, p_period_start,
                            p_period_offset, p_member, p_now) h;
    SELECT coalesce(array_agg(g.grant_id ORDER BY g.expires_at, g.granted_at, g.grant_id), '{}'),
           coalesce(array_agg(g.amount ORDER BY g.expires_at, g.granted_at, g.grant_id), '{}'),
           coalesce(array_agg(g.remaining ORDER BY g.expires_at, g.granted_at, g.grant_id), '{}'),
           coalesce(array_agg(g.expires_at ORDER BY g.expires_at, g.granted_at, g.grant_id), '{}'),
           coalesce(array_agg(g.reason ORDER BY g.expires_at, g.granted_at, g.grant_id), '{}')
    INTO grant_ids, amounts, remainings, expiries, reasons
    FROM feature_usage_grants g
    WHERE g.user_id = p_subject AND g.feature = p_feature AND g.scope = p_scope
      AND g.remaining > 0 AND (g.expires_at IS NULL OR g.expires_at > p_now);
END
$$;

-- The audit of credits (`feature-gates audit`): recomputes from the ledger what
-- every grant has left and what every counted row drew on grants, and checks
-- every count against what its holds and draws need. One row per difference,
-- naming the rows; none when all agree. A counted row that was archived keeps
-- its ledger rows and is not compared (the archive keeps no draws).
CREATE OR REPLACE FUNCTION feature_usage_credits_audit()
RETURNS TABLE (problem text)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    RETURN QUERY
    -- all subjects: the audit, for operators, not a request's statement.
    SELECT format('grant %s of %s (%s, %s): remaining %s of %s, the ledger says %s and %s '
                  '(entries %s)', g.grant_id, g.user_id, g.feature, g.scope, g.remaining,
                  g.amount, coalesce(l.total, 0), coalesce(l.added, 0),
                  coalesce(l.entries, 'none'))
    FROM feature_usage_grants g
    LEFT JOIN (SELECT e.user_id, e.grant_id, sum(e.amount) AS total,
                      sum(e.amount) FILTER (WHERE e.kind IN ('grant', 'rollover')) AS added,
                      string_agg(e.entry_id::text, ', ' ORDER BY e.entry_id) AS entries
               FROM feature_usage_ledger e
               WHERE e.grant_id IS NOT NULL
               GROUP BY e.user_id, e.grant_id) AS l
      ON l.user_id = g.user_id AND l.grant_id = g.grant_id
    WHERE g.remaining IS DISTINCT FROM coalesce(l.total, 0)
       OR g.amount IS DISTINCT FROM l.added;

    RETURN QUERY
    -- all subjects: the audit, for operators, not a request's statement.
    SELECT format('ledger entry %s of %s names grant %s, which does not exist', e.entry_id,
                  e.user_id, e.grant_id)
    FROM feature_usage_ledger e
    WHERE e.grant_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM feature_usage_grants g
                      WHERE g.user_id = e.user_id AND g.grant_id = e.grant_id);

    RETURN QUERY
    -- all subjects: the audit, for operators, not a request's statement.
    SELECT format('the count of %s (%s, %s, %s from %s +%ss): drew %s on grants, the ledger '
                  'says %s (entries %s)', coalesce(fu.user_id, l.user_id),
                  coalesce(fu.feature, l.feature), coalesce(fu.scope, l.scope),
                  coalesce(fu.period, l.period), coalesce(fu.period_start, l.period_start),
                  coalesce(fu.period_offset, l.period_offset), coalesce(fu.credit_used, 0),
                  -coalesce(l.total, 0), coalesce(l.entries, 'none'))
    FROM (SELECT c.user_id, c.feature, c.scope, c.period, c.period_start, c.period_offset,
                 c.credit_used
          FROM feature_usage c
          WHERE c.credit_used <> 0) AS fu
    FULL JOIN (SELECT e.user_id, e.feature, e.scope, e.period, e.period_start, e.period_offset,
                      sum(e.amount) AS total,
                      string_agg(e.entry_id::text, ', ' ORDER BY e.entry_id) AS entries
               FROM feature_usage_ledger e
               WHERE e.kind IN ('consume', 'refund')
               GROUP BY e.user_id, e.feature, e.scope, e.period, e.period_start,
                        e.period_offset) AS l
      ON l.user_id = fu.user_id AND l.feature = fu.feature AND l.scope = fu.scope
     AND l.period = fu.period AND l.period_start = fu.period_start
     AND l.period_offset = fu.period_offset
    WHERE coalesce(fu.credit_used, 0) <> -coalesce(l.total, 0)
      AND NOT (fu.user_id IS NULL AND EXISTS (
          SELECT 1 FROM feature_usage_archive a
          WHERE a.user_id = l.user_id AND a.feature = l.feature AND a.scope = l.scope
            AND a.period = l.period AND a.period_start = l.period_start
            AND a.period_offset = l.period_offset));

    RETURN QUERY
    -- all subjects: the audit, for operators, not a request's statement.
    SELECT format('the count of %s (%s, %s, %s from %s +%ss) is %s, less than its draws on '
                  'grants (%s) and live holds (%s) need', c.user_id, c.feature, c.scope,
                  c.period, c.period_start, c.period_offset, c.usage_count, c.credit_used,
                  coalesce(h.held, 0))
    FROM feature_usage c
    LEFT JOIN (SELECT k.user_id, k.feature, k.scope, k.period, k.period_start,
                      k.period_offset, sum(k.amount) AS held
               FROM feature_usage_holds k
               GROUP BY k.user_id, k.feature, k.scope, k.period, k.period_start,
                        k.period_offset) AS h
      ON h.user_id = c.user_id AND h.feature = c.feature AND h.scope = c.scope
     AND h.period = c.period AND h.period_start = c.period_start
     AND h.period_offset = c.period_offset
    WHERE c.usage_count < greatest(c.credit_used, coalesce(h.held, 0));
END
$$;
