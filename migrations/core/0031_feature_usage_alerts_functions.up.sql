-- Usage alerts, detected where usage moves: triggers on the counted rows
-- (feature_usage and the member shares) compare the count before and after
-- each statement that moves it with the thresholds its last metered check
-- recorded, and insert one row of feature_usage_alerts per threshold crossed,
-- in the same transaction. Every path that moves a count crosses the same way:
-- the metered check, the background writer's batches, a hand-called
-- increment_feature_usage_safe. A row no metered check recorded thresholds on
-- (alert_thresholds NULL) crosses nothing, nor does a row without a limit.
--
-- A period's crossing is unique per period: a refund that takes usage back
-- below and the next use that crosses again record nothing new. A rolling
-- window has no period: a threshold fires when usage reaches it and was not
-- at or above it at any time in the last window, and it is armed again once
-- usage has stayed below it for a whole window (alert_rearm keeps, per
-- threshold, the bucket usage went, or will go, back below it).
--
-- The metered check gains the thresholds and the plan to record; senders claim,
-- settle and replay alerts through the functions at the end.

-- The bucket at which a window's usage falls below p_level when nothing more is
-- used: uses leave with their buckets, the oldest first.
CREATE OR REPLACE FUNCTION feature_usage_window_below(
    p_buckets bigint[], p_head bigint, p_level numeric
) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT p_head + coalesce(min(r.k), 61)
    FROM (SELECT u.k, sum(u.b) OVER (ORDER BY u.k DESC) - u.b AS remaining
          FROM unnest(p_buckets) WITH ORDINALITY AS u(b, k)) AS r
    WHERE r.remaining < p_level
$$;

-- The trigger of the counted rows (TG_ARGV[0] is 'member' on the member
-- shares). A period's row: after an insert, or before an update that raised
-- its count, each threshold t with before < t * limit <= after crosses. A
-- window's row: before an insert or an update, the alert_rearm memory is kept
-- up to date, and each threshold reached while armed crosses (after an insert:
-- a new row was armed).
CREATE OR REPLACE FUNCTION feature_usage_alerts_record()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_subject feature_usage_user_id;
    v_scope text;
    v_member feature_usage_user_id;
    v_before bigint := 0;
    v_level numeric;
    v_rearm bigint[];
    v_fire boolean;
    v_next bigint;
    v_i integer;
BEGIN
    IF TG_ARGV[0] = 'member' THEN
        v_subject := NEW.org_id;
        v_scope := 'org';
        v_member := NEW.user_id;
    ELSE
        v_subject := NEW.user_id;
        v_scope := NEW.scope;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        v_before := greatest(OLD.usage_count, 0);
        IF OLD.alert_thresholds IS NOT DISTINCT FROM NEW.alert_thresholds THEN
            v_rearm := NEW.alert_rearm;
        END IF;
    END IF;
    FOR v_i IN 1 .. coalesce(cardinality(NEW.alert_thresholds), 0) LOOP
        -- The limit in force is the one the last metered check recorded; credits
        -- that raise a level's limit belong in it here.
        v_level := NEW.alert_thresholds[v_i] * NEW.usage_limit;
        IF NEW.window_head IS NULL THEN
            v_fire := v_before < v_level AND NEW.usage_count >= v_level;
            IF NEW.usage_count < v_level THEN
                v_next := least(v_next, ceil(v_level)::bigint);
            END IF;
        ELSIF NEW.usage_count >= v_level THEN
            v_fire := (TG_OP = 'UPDATE' OR TG_WHEN = 'AFTER')
                      AND (v_rearm[v_i] IS NULL OR NEW.window_head >= v_rearm[v_i] + 60);
            v_rearm[v_i] := feature_usage_window_below(NEW.window_buckets, NEW.window_head,
                                                       v_level);
        ELSE
            v_fire := false;
            -- Below now (a refund, or uses that left): it went below by now.
            IF v_rearm[v_i] > NEW.window_head THEN
                v_rearm[v_i] := NEW.window_head;
            END IF;
        END IF;
        IF v_rearm[v_i] + 60 <= NEW.window_head THEN
            v_rearm[v_i] := NULL;
        END IF;
        IF v_fire THEN
            INSERT INTO feature_usage_alerts (user_id, feature, scope, member, period,
                                              period_start, period_offset, crossing, threshold,
                                              used, usage_limit, plan, period_end)
            VALUES (v_subject, NEW.feature, v_scope, v_member, NEW.period, NEW.period_start,
                    NEW.period_offset, coalesce(NEW.window_head, 0), NEW.alert_thresholds[v_i],
                    NEW.usage_count, NEW.usage_limit, NEW.alert_plan, NEW.period_end)
            ON CONFLICT DO NOTHING;
        END IF;
    END LOOP;
    IF NEW.window_head IS NULL THEN
        -- The count at which the next threshold is reached (bigint's largest: none).
        NEW.alert_next := coalesce(v_next, 9223372036854775807);
    ELSIF TG_WHEN = 'BEFORE' THEN
        -- Nothing remembered (every threshold armed) is NULL: the update trigger
        -- then skips the row while it stays below its thresholds.
        NEW.alert_rearm := CASE WHEN EXISTS (SELECT 1 FROM unnest(v_rearm) AS r
                                             WHERE r IS NOT NULL)
                                THEN v_rearm END;
    END IF;
    RETURN NEW;
END
$$;

-- A period's row fires only when its count rose to its next crossing
-- (alert_next), or its limit or thresholds changed; a window's row at or above
-- its lowest threshold, or while it remembers one. Thresholds are ascending,
-- limits positive.
CREATE OR REPLACE TRIGGER feature_usage_alerts_after_insert
    AFTER INSERT ON feature_usage
    FOR EACH ROW
    WHEN (NEW.alert_thresholds IS NOT NULL AND NEW.usage_limit > 0
          AND NEW.usage_count >= NEW.usage_limit * NEW.alert_thresholds[1])
    EXECUTE FUNCTION feature_usage_alerts_record('subject');

CREATE OR REPLACE TRIGGER feature_usage_alerts_before_insert
    BEFORE INSERT ON feature_usage
    FOR EACH ROW
    WHEN (NEW.window_head IS NOT NULL AND NEW.alert_thresholds IS NOT NULL
          AND NEW.usage_limit > 0
          AND NEW.usage_count >= NEW.usage_limit * NEW.alert_thresholds[1])
    EXECUTE FUNCTION feature_usage_alerts_record('subject');

CREATE OR REPLACE TRIGGER feature_usage_alerts_before_update
    BEFORE UPDATE ON feature_usage
    FOR EACH ROW
    WHEN (NEW.alert_thresholds IS NOT NULL AND NEW.usage_limit > 0
          AND CASE WHEN NEW.window_head IS NULL
                   THEN NEW.usage_count > OLD.usage_count
                        AND (NEW.alert_next IS NULL OR NEW.usage_count >= NEW.alert_next
                             OR NEW.usage_limit IS DISTINCT FROM OLD.usage_limit
                             OR NEW.alert_thresholds IS DISTINCT FROM OLD.alert_thresholds)
                   ELSE NEW.usage_count >= NEW.usage_limit * NEW.alert_thresholds[1]
                        OR OLD.alert_rearm IS NOT NULL
              END)
    EXECUTE FUNCTION feature_usage_alerts_record('subject');

CREATE OR REPLACE TRIGGER feature_usage_alerts_after_insert
    AFTER INSERT ON feature_usage_members
    FOR EACH ROW
    WHEN (NEW.alert_thresholds IS NOT NULL AND NEW.usage_limit > 0
          AND NEW.usage_count >= NEW.usage_limit * NEW.alert_thresholds[1])
    EXECUTE FUNCTION feature_usage_alerts_record('member');

CREATE OR REPLACE TRIGGER feature_usage_alerts_before_insert
    BEFORE INSERT ON feature_usage_members
    FOR EACH ROW
    WHEN (NEW.window_head IS NOT NULL AND NEW.alert_thresholds IS NOT NULL
          AND NEW.usage_limit > 0
          AND NEW.usage_count >= NEW.usage_limit * NEW.alert_thresholds[1])
    EXECUTE FUNCTION feature_usage_alerts_record('member');

CREATE OR REPLACE TRIGGER feature_usage_alerts_before_update
    BEFORE UPDATE ON feature_usage_members
    FOR EACH ROW
    WHEN (NEW.alert_thresholds IS NOT NULL AND NEW.usage_limit > 0
          AND CASE WHEN NEW.window_head IS NULL
                   THEN NEW.usage_count > OLD.usage_count
                        AND (NEW.alert_next IS NULL OR NEW.usage_count >= NEW.alert_next
                             OR NEW.usage_limit IS DISTINCT FROM OLD.usage_limit
                             OR NEW.alert_thresholds IS DISTINCT FROM OLD.alert_thresholds)
                   ELSE NEW.usage_count >= NEW.usage_limit * NEW.alert_thresholds[1]
                        OR OLD.alert_rearm IS NOT NULL
              END)
    EXECUTE FUNCTION feature_usage_alerts_record('member');

-- A pool's use that a member's cap then refused never happened: the crossings
-- its move recorded in this transaction go.
CREATE OR REPLACE FUNCTION feature_usage_alerts_undo(
    p_subject feature_usage_user_id,
    p_feature text,
    p_scope text,
    p_period text,
    p_period_start date,
    p_period_offset integer
) RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    DELETE FROM feature_usage_alerts a
    WHERE a.user_id = p_subject AND a.feature = p_feature AND a.scope = p_scope
      AND a.member IS NULL AND a.period = p_period AND a.period_start = p_period_start
      AND a.period_offset = p_period_offset AND a.xmin = pg_current_xact_id()::xid
$$;

-- ---------------------------------------------------------------------------
-- The metered check of 0021, recording besides the limits the thresholds in
-- force (p_thresholds: fractions of the limit, ascending, 0 < t <= 1; NULL for
-- none) and the plan (p_plan) on every level it moves, for the alerts. The
-- form without them stays for callers that record none.
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
    p_member feature_usage_user_id,
    p_member_limit bigint,
    p_bucket bigint,
    p_thresholds numeric[],
    p_plan text,
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
    v_rearm bigint[];
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
                                         period_offset, usage_count, usage_limit, period_end,
                                         alert_thresholds, alert_plan)
        VALUES (p_subject, p_feature, p_scope, p_period, p_period_start, p_period_offset,
                p_amount, p_limit, p_period_end, p_thresholds, p_plan)
        ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
            SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count,
                usage_limit = excluded.usage_limit,
                alert_thresholds = excluded.alert_thresholds,
                alert_plan = excluded.alert_plan,
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
                                                usage_limit, period_end, alert_thresholds,
                                                alert_plan)
        VALUES (p_subject, p_feature, p_period, p_period_start, p_period_offset, p_member,
                p_amount, p_member_limit, p_period_end, p_thresholds, p_plan)
        ON CONFLICT (org_id, feature, period, period_start, period_offset, user_id) DO UPDATE
            SET usage_count = m.usage_count + excluded.usage_count,
                usage_limit = excluded.usage_limit,
                alert_thresholds = excluded.alert_thresholds,
                alert_plan = excluded.alert_plan,
                period_end = excluded.period_end,
                updated_at = now()
            WHERE p_member_limit IS NULL OR m.usage_count + excluded.usage_count <= p_member_limit
        RETURNING m.usage_count INTO member_used;
        IF NOT FOUND THEN
            -- The member's cap refuses: the pool gives back what it took, in
            -- the same transaction (nobody saw it: the pool row is locked).
            refused := 'user';
            PERFORM feature_usage_alerts_undo(p_subject, p_feature, p_scope, p_period,
                                              p_period_start, p_period_offset);
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
        IF p_member IS NOT NULL AND p_thresholds IS NOT NULL THEN
            -- The pool's alert memory as it was (its row locked first, as always):
            -- a use the member's cap refuses puts it back.
            SELECT fu.alert_rearm INTO v_rearm FROM feature_usage fu
            WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
              AND fu.period = p_period AND fu.period_start = p_period_start
              AND fu.period_offset = p_period_offset
            FOR UPDATE;
        END IF;
        INSERT INTO feature_usage AS fu (user_id, feature, scope, period, period_start,
                                         period_offset, usage_count, usage_limit,
                                         window_buckets, window_head, alert_thresholds,
                                         alert_plan)
        VALUES (p_subject, p_feature, p_scope, p_period, p_period_start, p_period_offset,
                p_amount, p_limit, array_fill(0::bigint, ARRAY[60]) || p_amount::bigint, p_bucket,
                p_thresholds, p_plan)
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
                alert_thresholds = excluded.alert_thresholds,
                alert_plan = excluded.alert_plan,
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
                                                    usage_limit, window_buckets, window_head,
                                                    alert_thresholds, alert_plan)
            VALUES (p_subject, p_feature, p_period, p_period_start, p_period_offset, p_member,
                    p_amount, p_member_limit, array_fill(0::bigint, ARRAY[60]) || p_amount::bigint,
                    p_bucket, p_thresholds, p_plan)
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
                    alert_thresholds = excluded.alert_thresholds,
                    alert_plan = excluded.alert_plan,
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
            PERFORM feature_usage_alerts_undo(p_subject, p_feature, p_scope, p_period,
                                              p_period_start, p_period_offset);
            v_slot := CASE WHEN newest_bucket - p_bucket > 60 THEN 61
                           ELSE 61 - (newest_bucket - p_bucket)::integer END;
            UPDATE feature_usage fu
            SET window_buckets[v_slot] = fu.window_buckets[v_slot] - p_amount,
                usage_count = fu.usage_count - p_amount,
                alert_rearm = CASE WHEN p_thresholds IS NULL THEN fu.alert_rearm ELSE v_rearm END
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

-- Claims up to p_batch alerts due for delivery for p_lease seconds, oldest
-- first, counting the attempt. SKIP LOCKED: concurrent senders claim different
-- alerts. An alert is due only when no earlier alert of its subject is pending,
-- so a subject's alerts go out in order (one waiting for its retry holds back
-- the later ones).
CREATE OR REPLACE FUNCTION feature_usage_alerts_claim(p_batch integer, p_lease double precision)
RETURNS SETOF feature_usage_alerts
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    UPDATE feature_usage_alerts a
    SET leased_until = now() + make_interval(secs => p_lease), attempts = a.attempts + 1
    WHERE a.id IN (
        -- all subjects: the senders' queue, not a request's statement.
        SELECT c.id FROM feature_usage_alerts c
        WHERE c.state = 'pending' AND c.next_attempt_at <= now()
          AND (c.leased_until IS NULL OR c.leased_until <= now())
          AND NOT EXISTS (SELECT 1 FROM feature_usage_alerts e
                          WHERE e.state = 'pending' AND e.user_id = c.user_id
                            AND e.scope = c.scope AND e.id < c.id)
        ORDER BY c.id
        LIMIT p_batch
        FOR UPDATE SKIP LOCKED)
    RETURNING a.*
$$;

-- Records how one delivery attempt went: p_state 'sent', 'dead', or 'pending'
-- to try again in p_retry_in seconds (with p_error); p_signalled when the
-- signal was sent. An alert already settled stays as it is.
CREATE OR REPLACE FUNCTION feature_usage_alerts_settle(
    p_id bigint, p_state text, p_signalled boolean, p_retry_in double precision, p_error text
) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    UPDATE feature_usage_alerts a
    SET state = p_state,
        leased_until = NULL,
        signalled_at = CASE WHEN p_signalled THEN coalesce(a.signalled_at, now())
                            ELSE a.signalled_at END,
        sent_at = CASE WHEN p_state = 'sent' THEN now() END,
        next_attempt_at = now() + make_interval(secs => coalesce(p_retry_in, 0)),
        last_error = p_error
    WHERE a.id = p_id AND a.state = 'pending'
    RETURNING true
$$;

-- Delivers again the alerts named by event id, or every alert that occurred
-- at or after p_since (signal and webhook, under the same event id). Returns
-- how many will be sent.
CREATE OR REPLACE FUNCTION feature_usage_alerts_replay(p_event_ids uuid[], p_since timestamptz)
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    WITH replayed AS (
        UPDATE feature_usage_alerts a
        SET state = 'pending', attempts = 0, next_attempt_at = now(), leased_until = NULL,
            signalled_at = NULL, sent_at = NULL, last_error = NULL
        WHERE a.event_id = ANY (coalesce(p_event_ids, '{}'))
           OR (p_since IS NOT NULL AND a.occurred_at >= p_since)
        RETURNING 1
    )
    SELECT count(*) FROM replayed
$$;

-- Moves delivered and dead alerts that occurred before the first day of the
-- month p_keep_months months before the current UTC month into
-- feature_usage_alerts_archive (run by `feature-gates archive`); pending ones
-- stay. Returns how many moved.
CREATE OR REPLACE FUNCTION archive_feature_usage_alerts(p_keep_months integer DEFAULT 6)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_moved bigint;
BEGIN
    IF p_keep_months IS NULL OR p_keep_months NOT BETWEEN 0 AND 12000 THEN
        RAISE EXCEPTION 'keep_months must be between 0 and 12000, got %',
            coalesce(p_keep_months::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- all subjects: a maintenance job, not a request's statement.
    WITH moved AS (
        DELETE FROM feature_usage_alerts a
        WHERE a.state <> 'pending'
          AND a.occurred_at < (feature_usage_current_period()
                               - make_interval(months => p_keep_months))::timestamp
                              AT TIME ZONE 'UTC'
        RETURNING a.*
    )
    INSERT INTO feature_usage_alerts_archive AS r
        (id, event_id, user_id, feature, scope, member, period, period_start, period_offset,
         crossing, threshold, used, usage_limit, plan, period_end, occurred_at, state,
         attempts, signalled_at, sent_at, last_error)
    SELECT id, event_id, user_id, feature, scope, member, period, period_start, period_offset,
           crossing, threshold, used, usage_limit, plan, period_end, occurred_at, state,
           attempts, signalled_at, sent_at, last_error
    FROM moved
    ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    RETURN v_moved;
END
$$;
