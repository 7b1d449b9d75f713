-- Every use in the ledger, and holds apart from uses.
--
-- A hold's uses stay on the counted rows (everyone else's capacity is still
-- limit - used - live holds, with no other check), and now also in `held`:
-- what the rows have used is usage_count - held. Threshold crossings (0031's
-- trigger) compare what is used, so a reserve crosses nothing and the commit
-- that takes the used count across a threshold records it.
--
-- The ledger gains the uses: a metered check, a hold's commit, the writer's
-- and every hand-called increment ('use', +n), a refund ('give_back', -n), a
-- reset ('reset', -n), with the member whose share the use also counts on and
-- a window's bucket. A count is then its ledger rows plus its holds, which
-- `feature-gates audit` recomputes (feature_usage_credits_audit). Counts made
-- before the ledger get an 'opening' row from 0044, in batches;
-- ledger_since is NULL on them until then (a new row records when it began).
--
-- The functions that move a count are redefined with the same arguments and
-- results; a reserve and a settle take a `p_hold` / `p_held` form.

ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS held bigint NOT NULL DEFAULT 0;
ALTER TABLE feature_usage_members ADD COLUMN IF NOT EXISTS held bigint NOT NULL DEFAULT 0;
-- NULL on the rows that exist now (0044 opens them), now() on every new one.
ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS ledger_since timestamptz;
ALTER TABLE feature_usage ALTER COLUMN ledger_since SET DEFAULT now();
ALTER TABLE feature_usage_members ADD COLUMN IF NOT EXISTS ledger_since timestamptz;
ALTER TABLE feature_usage_members ALTER COLUMN ledger_since SET DEFAULT now();

ALTER TABLE feature_usage_ledger ADD COLUMN IF NOT EXISTS member feature_usage_user_id;
ALTER TABLE feature_usage_ledger ADD COLUMN IF NOT EXISTS bucket bigint;
-- The new kinds (0045 validates the rows already there). Only kinds are added: every
-- row the old rule allowed, the new one allows.
ALTER TABLE feature_usage_ledger DROP CONSTRAINT IF EXISTS feature_usage_ledger_kind_check;
ALTER TABLE feature_usage_ledger ADD CONSTRAINT feature_usage_ledger_kind_check CHECK (
    kind IN ('grant', 'rollover', 'consume', 'refund', 'expire', 'use', 'give_back', 'reset',
             'opening')) NOT VALID;

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
    v_used bigint;
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
        v_before := greatest(greatest(OLD.usage_count, 0) - OLD.held, 0);
        IF OLD.alert_thresholds IS NOT DISTINCT FROM NEW.alert_thresholds THEN
            v_rearm := NEW.alert_rearm;
        END IF;
    END IF;
    -- What is used: the count less the uses holds have taken and not committed.
    v_used := greatest(greatest(NEW.usage_count, 0) - NEW.held, 0);
    FOR v_i IN 1 .. coalesce(cardinality(NEW.alert_thresholds), 0) LOOP
        -- The limit in force is the one the last metered check recorded; credits
        -- that raise a level's limit belong in it here.
        v_level := NEW.alert_thresholds[v_i] * NEW.usage_limit;
        IF NEW.window_head IS NULL THEN
            v_fire := v_before < v_level AND v_used >= v_level;
            IF v_used < v_level THEN
                v_next := least(v_next, ceil(v_level)::bigint);
            END IF;
        ELSIF v_used >= v_level THEN
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
                    v_used, NEW.usage_limit, NEW.alert_plan, NEW.period_end)
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
          AND (NEW.usage_count - NEW.held) >= NEW.usage_limit * NEW.alert_thresholds[1])
    EXECUTE FUNCTION feature_usage_alerts_record('subject');

CREATE OR REPLACE TRIGGER feature_usage_alerts_before_insert
    BEFORE INSERT ON feature_usage
    FOR EACH ROW
    WHEN (NEW.window_head IS NOT NULL AND NEW.alert_thresholds IS NOT NULL
          AND NEW.usage_limit > 0
          AND (NEW.usage_count - NEW.held) >= NEW.usage_limit * NEW.alert_thresholds[1])
    EXECUTE FUNCTION feature_usage_alerts_record('subject');

CREATE OR REPLACE TRIGGER feature_usage_alerts_before_update
    BEFORE UPDATE ON feature_usage
    FOR EACH ROW
    WHEN (NEW.alert_thresholds IS NOT NULL AND NEW.usage_limit > 0
          AND CASE WHEN NEW.window_head IS NULL
                   THEN (NEW.usage_count - NEW.held) > (OLD.usage_count - OLD.held)
                        AND (NEW.alert_next IS NULL OR (NEW.usage_count - NEW.held) >= NEW.alert_next
                             OR NEW.usage_limit IS DISTINCT FROM OLD.usage_limit
                             OR NEW.alert_thresholds IS DISTINCT FROM OLD.alert_thresholds)
                   ELSE (NEW.usage_count - NEW.held) >= NEW.usage_limit * NEW.alert_thresholds[1]
                        OR OLD.alert_rearm IS NOT NULL
              END)
    EXECUTE FUNCTION feature_usage_alerts_record('subject');

CREATE OR REPLACE TRIGGER feature_usage_alerts_after_insert
    AFTER INSERT ON feature_usage_members
    FOR EACH ROW
    WHEN (NEW.alert_thresholds IS NOT NULL AND NEW.usage_limit > 0
          AND (NEW.usage_count - NEW.held) >= NEW.usage_limit * NEW.alert_thresholds[1])
    EXECUTE FUNCTION feature_usage_alerts_record('member');

CREATE OR REPLACE TRIGGER feature_usage_alerts_before_insert
    BEFORE INSERT ON feature_usage_members
    FOR EACH ROW
    WHEN (NEW.window_head IS NOT NULL AND NEW.alert_thresholds IS NOT NULL
          AND NEW.usage_limit > 0
          AND (NEW.usage_count - NEW.held) >= NEW.usage_limit * NEW.alert_thresholds[1])
    EXECUTE FUNCTION feature_usage_alerts_record('member');

CREATE OR REPLACE TRIGGER feature_usage_alerts_before_update
    BEFORE UPDATE ON feature_usage_members
    FOR EACH ROW
    WHEN (NEW.alert_thresholds IS NOT NULL AND NEW.usage_limit > 0
          AND CASE WHEN NEW.window_head IS NULL
                   THEN (NEW.usage_count - NEW.held) > (OLD.usage_count - OLD.held)
                        AND (NEW.alert_next IS NULL OR (NEW.usage_count - NEW.held) >= NEW.alert_next
                             OR NEW.usage_limit IS DISTINCT FROM OLD.usage_limit
                             OR NEW.alert_thresholds IS DISTINCT FROM OLD.alert_thresholds)
                   ELSE (NEW.usage_count - NEW.held) >= NEW.usage_limit * NEW.alert_thresholds[1]
                        OR OLD.alert_rearm IS NOT NULL
              END)
    EXECUTE FUNCTION feature_usage_alerts_record('member');

-- The metered check of 0031 (the same answer), with p_hold: a hold's uses are
-- counted and held (`held`), and only a use that is not a hold writes its
-- ledger row ('use', with the member and a window's bucket it went into).
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
    p_hold boolean,
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
    -- A hold's uses are counted and held: they are not used until committed.
    v_held bigint := CASE WHEN p_hold THEN p_amount ELSE 0 END;
BEGIN
    IF p_hold IS NULL THEN
        RAISE EXCEPTION 'p_hold is true for a hold and false for a use, not NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
                                         alert_thresholds, alert_plan, held)
        VALUES (p_subject, p_feature, p_scope, p_period, p_period_start, p_period_offset,
                p_amount, p_limit, p_period_end, p_thresholds, p_plan, v_held)
        ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
            SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count,
                held = fu.held + excluded.held,
                usage_limit = excluded.usage_limit,
                -- A caller that names no plan (0021's forms) keeps what a metered check recorded.
                alert_thresholds = CASE WHEN p_plan IS NULL THEN fu.alert_thresholds
                                        ELSE excluded.alert_thresholds END,
                alert_plan = coalesce(excluded.alert_plan, fu.alert_plan),
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
            IF NOT p_hold THEN
                INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount,
                                                       period, period_start, period_offset,
                                                       member)
                VALUES (p_subject, p_feature, p_scope, 'use', p_amount, p_period, p_period_start,
                        p_period_offset, p_member);
            END IF;
            RETURN;
        END IF;
        INSERT INTO feature_usage_members AS m (org_id, feature, period, period_start,
                                                period_offset, user_id, usage_count,
                                                usage_limit, period_end, alert_thresholds,
                                                alert_plan, held)
        VALUES (p_subject, p_feature, p_period, p_period_start, p_period_offset, p_member,
                p_amount, p_member_limit, p_period_end, p_thresholds, p_plan, v_held)
        ON CONFLICT (org_id, feature, period, period_start, period_offset, user_id) DO UPDATE
            SET usage_count = m.usage_count + excluded.usage_count,
                held = m.held + excluded.held,
                usage_limit = excluded.usage_limit,
                -- A caller that names no plan (0021's forms) keeps what a metered check recorded.
                alert_thresholds = CASE WHEN p_plan IS NULL THEN m.alert_thresholds
                                        ELSE excluded.alert_thresholds END,
                alert_plan = coalesce(excluded.alert_plan, m.alert_plan),
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
            UPDATE feature_usage fu
            SET usage_count = fu.usage_count - p_amount, held = fu.held - v_held
            WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
              AND fu.period = p_period AND fu.period_start = p_period_start
              AND fu.period_offset = p_period_offset
            RETURNING fu.usage_count INTO used;
            SELECT m.usage_count INTO member_used FROM feature_usage_members m
            WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
              AND m.period_start = p_period_start AND m.period_offset = p_period_offset
              AND m.user_id = p_member;
        ELSIF NOT p_hold THEN
            INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount, period,
                                                   period_start, period_offset, member)
            VALUES (p_subject, p_feature, p_scope, 'use', p_amount, p_period, p_period_start,
                    p_period_offset, p_member);
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
                                         alert_plan, held)
        VALUES (p_subject, p_feature, p_scope, p_period, p_period_start, p_period_offset,
                p_amount, p_limit, array_fill(0::bigint, ARRAY[60]) || p_amount::bigint, p_bucket,
                p_thresholds, p_plan, v_held)
        ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
            SET held = fu.held + excluded.held,
                window_buckets = CASE
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
                -- A caller that names no plan (0021's forms) keeps what a metered check recorded.
                alert_thresholds = CASE WHEN p_plan IS NULL THEN fu.alert_thresholds
                                        ELSE excluded.alert_thresholds END,
                alert_plan = coalesce(excluded.alert_plan, fu.alert_plan),
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
                                                    alert_thresholds, alert_plan, held)
            VALUES (p_subject, p_feature, p_period, p_period_start, p_period_offset, p_member,
                    p_amount, p_member_limit, array_fill(0::bigint, ARRAY[60]) || p_amount::bigint,
                    p_bucket, p_thresholds, p_plan, v_held)
            ON CONFLICT (org_id, feature, period, period_start, period_offset, user_id) DO UPDATE
                SET held = m.held + excluded.held,
                    window_buckets = CASE
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
                    -- A caller that names no plan (0021's forms) keeps what a metered check recorded.
                    alert_thresholds = CASE WHEN p_plan IS NULL THEN m.alert_thresholds
                                            ELSE excluded.alert_thresholds END,
                    alert_plan = coalesce(excluded.alert_plan, m.alert_plan),
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
                held = fu.held - v_held,
                alert_rearm = CASE WHEN p_thresholds IS NULL THEN fu.alert_rearm ELSE v_rearm END
            WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
              AND fu.period = p_period AND fu.period_start = p_period_start
              AND fu.period_offset = p_period_offset;
        END IF;
    END IF;
    IF refused IS NULL THEN
        IF NOT p_hold THEN
            -- The bucket the use went into: its own, or the newest when more than a
            -- window behind.
            INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount, period,
                                                   period_start, period_offset, member, bucket)
            VALUES (p_subject, p_feature, p_scope, 'use', p_amount, p_period, p_period_start,
                    p_period_offset, p_member,
                    CASE WHEN newest_bucket - p_bucket > 60 THEN newest_bucket ELSE p_bucket END);
        END IF;
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


-- The metered check as 0031 and 0021 called it: through the one above, a use
-- (not a hold). Callers of 0021's form record no thresholds.
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
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT c.refused, c.used, c.member_used, c.buckets, c.member_buckets, c.newest_bucket
    FROM feature_usage_consume(p_subject, p_feature, p_scope, p_period, p_period_start,
                               p_period_offset, p_period_end, p_amount, p_limit, p_member,
                               p_member_limit, p_bucket, p_thresholds, p_plan, false) AS c
$$;

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
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT c.refused, c.used, c.member_used, c.buckets, c.member_buckets, c.newest_bucket
    FROM feature_usage_consume(p_subject, p_feature, p_scope, p_period, p_period_start,
                               p_period_offset, p_period_end, p_amount, p_limit, p_member,
                               p_member_limit, p_bucket, NULL, NULL, false) AS c
$$;

-- The seed's metered check of a calendar month in UTC, through the one above
-- (its ledger row included): the same arguments and result (NULL: refused).
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
    SELECT CASE WHEN c.refused IS NULL THEN c.used END INTO v_count
    FROM feature_usage_consume(p_user_id, p_feature, 'user', 'month', p_period_start, 0,
                               (p_period_start + interval '1 month')::timestamp
                                   AT TIME ZONE 'UTC',
                               p_amount, p_limit, NULL, NULL, NULL, NULL, NULL, false) AS c;
    RETURN v_count;
END
$$;

-- Gives back p_amount uses (0 or more) of a counted key to the period, or the
-- window bucket p_bucket, and the levels they were taken from (feature_usage_refund
-- of 0021, the same rules), and takes p_held off the uses held on those rows in
-- the same update. A give-back of held uses (a hold settled, released or
-- expired: p_held > 0) writes no ledger row, since they were never used; any
-- other writes a 'give_back' row of what came off the count. Returns the
-- subject's (or the pool's) count after.
CREATE OR REPLACE FUNCTION feature_usage_take_back(
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
    p_held bigint
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_used bigint;
    v_before bigint;
    v_ring bigint[];
    v_head bigint;
    v_member_ring bigint[];
    v_member_head bigint;
    v_newest bigint;
    v_slot integer;
    v_back bigint := 0;
BEGIN
    IF p_amount IS NULL OR p_amount < 0 OR (p_amount = 0 AND coalesce(p_held, 0) = 0)
       OR p_period_offset IS NULL THEN
        PERFORM feature_usage_check_amount('amount', p_amount);
    END IF;
    IF p_held IS NULL OR p_held < 0 THEN
        RAISE EXCEPTION 'held uses given back are zero or more, got %', p_held
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM feature_usage_check_key(p_subject, p_feature, p_scope, p_period, p_period_start,
                                    p_period_offset);
    IF p_period NOT LIKE 'window:%' THEN
        IF p_held = 0 THEN
            -- What comes off the count, for the ledger (a count never goes below 0).
            SELECT greatest(fu.usage_count, 0) INTO v_before FROM feature_usage fu
            WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
              AND fu.period = p_period AND fu.period_start = p_period_start
              AND fu.period_offset = p_period_offset
            FOR UPDATE;
        END IF;
        UPDATE feature_usage fu
        SET usage_count = greatest(fu.usage_count - p_amount, 0),
            held = greatest(fu.held - p_held, 0), updated_at = now()
        WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
          AND fu.period = p_period AND fu.period_start = p_period_start
          AND fu.period_offset = p_period_offset
        RETURNING fu.usage_count INTO v_used;
        IF p_member IS NOT NULL THEN
            UPDATE feature_usage_members m
            SET usage_count = greatest(m.usage_count - p_amount, 0),
                held = greatest(m.held - p_held, 0), updated_at = now()
            WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
              AND m.period_start = p_period_start AND m.period_offset = p_period_offset
              AND m.user_id = p_member;
        END IF;
        v_back := coalesce(v_before - v_used, 0);
    ELSE
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
            held = greatest(fu.held - p_held, 0), updated_at = now()
        WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
          AND fu.period = p_period AND fu.period_start = p_period_start
          AND fu.period_offset = p_period_offset;
        IF v_member_ring IS NOT NULL THEN
            v_member_ring := feature_usage_window_at(v_member_ring, v_member_head, v_newest);
            IF v_slot IS NOT NULL THEN
                v_member_ring[v_slot] := v_member_ring[v_slot]
                                         - least(v_member_ring[v_slot], p_amount);
            END IF;
            UPDATE feature_usage_members m
            SET window_buckets = v_member_ring, window_head = v_newest,
                usage_count = feature_usage_total(v_member_ring),
                held = greatest(m.held - p_held, 0), updated_at = now()
            WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
              AND m.period_start = p_period_start AND m.period_offset = p_period_offset
              AND m.user_id = p_member;
        END IF;
    END IF;
    IF p_held = 0 AND v_back > 0 THEN
        INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount, period,
                                               period_start, period_offset, member, bucket)
        VALUES (p_subject, p_feature, p_scope, 'give_back', -v_back, p_period, p_period_start,
                p_period_offset, p_member, p_bucket);
    END IF;
    RETURN coalesce(v_used, 0);
END
$$;

-- 0021's refund of used uses, through feature_usage_take_back (with its ledger
-- row): the same arguments and result.
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
BEGIN
    IF p_amount IS NULL OR p_amount < 1 THEN
        PERFORM feature_usage_check_amount('amount', p_amount);
    END IF;
    RETURN feature_usage_take_back(p_subject, p_feature, p_scope, p_period, p_period_start,
                                   p_period_offset, p_amount, p_member, p_bucket, p_now_bucket,
                                   0);
END
$$;

-- 0042's give-back, with p_held: the uses of a hold given back are held ones.
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
    p_now timestamptz,
    p_held bigint
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
    v_used := feature_usage_take_back(p_subject, p_feature, p_scope, p_period, p_period_start,
                                      p_period_offset, p_amount, p_member, p_bucket,
                                      p_now_bucket, p_held);
    IF p_period LIKE 'window:%' OR p_amount = 0 THEN
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


-- 0042's give-back of used uses, through the one above: the same arguments.
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
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT feature_usage_give_back(p_subject, p_feature, p_scope, p_period, p_period_start,
                                   p_period_offset, p_amount, p_member, p_bucket, p_now_bucket,
                                   p_now, 0)
$$;

-- 0042's feature_usage_take (the same answer), with p_hold passed to the
-- metered check: a reserve's uses are held, not used. A draw on grants by the
-- first uses of a period no longer reads a row that is not there yet.
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
    p_hold boolean,
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
                               p_member_limit, p_bucket, p_thresholds, p_plan, p_hold) c;
    IF refused IS NULL OR p_now IS NULL THEN
        RETURN;
    END IF;
    -- The counted row before its holds, as every writer locks them (a check
    -- refused at once locked none).
    PERFORM 1 FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset
    FOR UPDATE;
    IF feature_usage_holds_reclaim(p_subject, p_feature, p_scope, p_period, p_period_start,
                                   p_period_offset, p_now, p_bucket) > 0 THEN
        SELECT c.refused, c.used, c.member_used, c.buckets, c.member_buckets, c.newest_bucket
        INTO refused, used, member_used, buckets, member_buckets, newest_bucket
        FROM feature_usage_consume(p_subject, p_feature, p_scope, p_period, p_period_start,
                                   p_period_offset, p_period_end, p_amount, p_limit, p_member,
                                   p_member_limit, p_bucket, p_thresholds, p_plan, p_hold) c;
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
    IF NOT FOUND THEN
        -- A first use above the allowance was refused before any row was made:
        -- the row is made now (empty), so that concurrent first draws wait for
        -- each other on its lock instead of each reading no row, and one being
        -- refused.
        INSERT INTO feature_usage AS fu (user_id, feature, scope, period, period_start,
                                         period_offset, usage_count, usage_limit, period_end,
                                         alert_thresholds, alert_plan)
        VALUES (p_subject, p_feature, p_scope, p_period, p_period_start, p_period_offset, 0,
                p_limit, p_period_end, p_thresholds, p_plan)
        ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO NOTHING;
        SELECT greatest(fu.usage_count, 0), fu.credit_used INTO v_used, v_credit
        FROM feature_usage fu
        WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
          AND fu.period = p_period AND fu.period_start = p_period_start
          AND fu.period_offset = p_period_offset
        FOR UPDATE;
    END IF;
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
                               p_member_limit, p_bucket, p_thresholds, p_plan, p_hold) c;
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


-- 0042's metered check with holds and grants, through the one above: a use.
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
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT t.refused, t.used, t.member_used, t.buckets, t.member_buckets, t.newest_bucket
    FROM feature_usage_take(p_subject, p_feature, p_scope, p_period, p_period_start,
                            p_period_offset, p_period_end, p_amount, p_limit, p_member,
                            p_member_limit, p_bucket, p_thresholds, p_plan, p_now, false) AS t
$$;

-- 0042's reclaim: a hold's uses come back as held ones.
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
                                        v_hold.member, v_hold.bucket, p_now_bucket, p_now,
                                        v_hold.amount);
        v_back := v_back + v_hold.amount;
    END LOOP;
    RETURN v_back;
END
$$;


-- 0042's reserve: its metered check holds.
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
                            p_member_limit, p_bucket, p_thresholds, p_plan, p_now, true) t;
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


-- 0042's settle: one give-back of the hold, and what is committed used.
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
    -- One update of each row: what is not committed comes off the count, and
    -- the whole hold off what is held; what is committed is used from now.
    PERFORM feature_usage_give_back(p_subject, v_hold.feature, v_hold.scope, v_hold.period,
                                    v_hold.period_start, v_hold.period_offset, v_back,
                                    v_hold.member, v_hold.bucket, p_now_bucket, p_now,
                                    v_hold.amount);
    IF v_back < v_hold.amount THEN
        INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount, period,
                                               period_start, period_offset, member, bucket)
        VALUES (p_subject, v_hold.feature, v_hold.scope, 'use', v_hold.amount - v_back,
                v_hold.period, v_hold.period_start, v_hold.period_offset, v_hold.member,
                v_hold.bucket);
    END IF;
    RETURN CASE WHEN v_hold.expires_at <= p_now THEN 'expired' ELSE 'settled' END;
END
$$;


-- Starts a count afresh (0021's reset, the same arguments): what the key used
-- becomes 0 (a window's buckets too), for an organisation's pool every member's
-- share with it, while the uses of its holds stay held. One 'reset' ledger row
-- per member share (and per bucket of a window) and one for the rest of the
-- pool. Returns what the key had used.
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
    v_row feature_usage;
    v_share feature_usage_members;
    v_ring bigint[];
    v_kept bigint[];
    v_rest bigint[];
    v_hold record;
    v_slot integer;
    v_used bigint;
BEGIN
    PERFORM feature_usage_check_key(p_subject, p_feature, p_scope, p_period, p_period_start,
                                    p_period_offset);
    -- The pool's row first, then its members' (the order every function keeps).
    SELECT * INTO v_row FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF v_row.window_head IS NULL THEN
        v_used := greatest(greatest(v_row.usage_count, 0) - v_row.held, 0);
        v_rest := ARRAY[v_used];
        FOR v_share IN
            SELECT * FROM feature_usage_members m
            WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
              AND m.period_start = p_period_start AND m.period_offset = p_period_offset
              AND p_scope = 'org'
            ORDER BY m.user_id
            FOR UPDATE
        LOOP
            UPDATE feature_usage_members m SET usage_count = m.held, updated_at = now()
            WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
              AND m.period_start = p_period_start AND m.period_offset = p_period_offset
              AND m.user_id = v_share.user_id;
            IF v_share.usage_count - v_share.held > 0 THEN
                INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount,
                                                       period, period_start, period_offset,
                                                       member)
                VALUES (p_subject, p_feature, p_scope, 'reset',
                        -(v_share.usage_count - v_share.held), p_period, p_period_start,
                        p_period_offset, v_share.user_id);
                v_rest[1] := v_rest[1] - (v_share.usage_count - v_share.held);
            END IF;
        END LOOP;
        UPDATE feature_usage fu SET usage_count = fu.held, updated_at = now()
        WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
          AND fu.period = p_period AND fu.period_start = p_period_start
          AND fu.period_offset = p_period_offset;
        IF v_rest[1] <> 0 THEN
            INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount, period,
                                                   period_start, period_offset)
            VALUES (p_subject, p_feature, p_scope, 'reset', -v_rest[1], p_period,
                    p_period_start, p_period_offset);
        END IF;
        RETURN v_used;
    END IF;

    -- A window: each bucket keeps only what live holds put in it; what leaves a
    -- bucket is a ledger row of that bucket.
    v_ring := v_row.window_buckets;
    v_rest := v_ring;
    FOR v_share IN
        SELECT * FROM feature_usage_members m
        WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
          AND m.period_start = p_period_start AND m.period_offset = p_period_offset
          AND p_scope = 'org'
        ORDER BY m.user_id
        FOR UPDATE
    LOOP
        v_share.window_buckets := feature_usage_window_at(v_share.window_buckets,
                                                          v_share.window_head,
                                                          v_row.window_head);
        v_kept := array_fill(0::bigint, ARRAY[61]);
        FOR v_hold IN
            SELECT h.bucket, sum(h.amount) AS amount FROM feature_usage_holds h
            WHERE h.user_id = p_subject AND h.feature = p_feature AND h.scope = p_scope
              AND h.period = p_period AND h.period_start = p_period_start
              AND h.period_offset = p_period_offset AND h.member = v_share.user_id
              AND v_row.window_head - h.bucket BETWEEN 0 AND 60
            GROUP BY h.bucket
        LOOP
            v_slot := 61 - (v_row.window_head - v_hold.bucket)::integer;
            v_kept[v_slot] := least(v_hold.amount, v_share.window_buckets[v_slot]);
        END LOOP;
        FOR v_slot IN 1 .. 61 LOOP
            IF v_share.window_buckets[v_slot] - v_kept[v_slot] <> 0 THEN
                INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount,
                                                       period, period_start, period_offset,
                                                       member, bucket)
                VALUES (p_subject, p_feature, p_scope, 'reset',
                        -(v_share.window_buckets[v_slot] - v_kept[v_slot]), p_period,
                        p_period_start, p_period_offset, v_share.user_id,
                        v_row.window_head - (61 - v_slot));
                v_rest[v_slot] := v_rest[v_slot]
                                  - (v_share.window_buckets[v_slot] - v_kept[v_slot]);
            END IF;
        END LOOP;
        UPDATE feature_usage_members m
        SET window_buckets = v_kept, window_head = v_row.window_head,
            usage_count = feature_usage_total(v_kept), updated_at = now()
        WHERE m.org_id = p_subject AND m.feature = p_feature AND m.period = p_period
          AND m.period_start = p_period_start AND m.period_offset = p_period_offset
          AND m.user_id = v_share.user_id;
    END LOOP;
    v_kept := array_fill(0::bigint, ARRAY[61]);
    FOR v_hold IN
        SELECT h.bucket, sum(h.amount) AS amount FROM feature_usage_holds h
        WHERE h.user_id = p_subject AND h.feature = p_feature AND h.scope = p_scope
          AND h.period = p_period AND h.period_start = p_period_start
          AND h.period_offset = p_period_offset
          AND v_row.window_head - h.bucket BETWEEN 0 AND 60
        GROUP BY h.bucket
    LOOP
        v_slot := 61 - (v_row.window_head - v_hold.bucket)::integer;
        v_kept[v_slot] := least(v_hold.amount, v_ring[v_slot]);
    END LOOP;
    FOR v_slot IN 1 .. 61 LOOP
        -- v_rest: what the pool's bucket had beyond its members' shares.
        IF v_rest[v_slot] - v_kept[v_slot] <> 0 THEN
            INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount, period,
                                                   period_start, period_offset, bucket)
            VALUES (p_subject, p_feature, p_scope, 'reset', -(v_rest[v_slot] - v_kept[v_slot]),
                    p_period, p_period_start, p_period_offset,
                    v_row.window_head - (61 - v_slot));
        END IF;
    END LOOP;
    UPDATE feature_usage fu
    SET window_buckets = v_kept, usage_count = feature_usage_total(v_kept), updated_at = now()
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
    RETURN feature_usage_total(v_ring) - feature_usage_total(v_kept);
END
$$;

-- 0025's feature_usage_increment_many (the same arguments and results), with a
-- ledger row per key, member and bucket of the uses that count.
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
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    v_rows integer := cardinality(p_subjects);
    v_bad record;
    -- Whether row i counts (v_taken[i]): NULL when every row does (no idempotency key).
    v_taken boolean[];
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
       OR (u.period NOT IN ('month', 'day', 'week', 'year', 'hour', 'lifetime')
           AND (u.period !~ '^((day|week|month|year)(@[A-Za-z][A-Za-z0-9_+./-]*|\+anchor)|window:[1-9][0-9]+)$'
                OR length(u.period) - position('@' IN u.period) > 63
                OR (u.period LIKE 'window:%' AND length(u.period) > 16)))
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
    -- recorded before (recorded now, in key order). Without a key, every row.
    IF coalesce(cardinality(array_remove(p_idempotency_keys, NULL)), 0) > 0 THEN
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
    SELECT array_agg(i.idempotency_key IS NULL
                     OR i.ord IN (SELECT k.ord FROM keyed k
                                  JOIN fresh f ON f.user_id = k.subject AND f.feature = k.feature
                                              AND f.scope = k.scope
                                              AND f.idempotency_key = k.idempotency_key)
                     ORDER BY i.ord) INTO v_taken
    FROM input i;
    END IF;

    -- Every use that counts is a ledger row: one per key, member and bucket (a
    -- bucket that has left its window counts nothing, and is never audited).
    INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount, period,
                                           period_start, period_offset, member, bucket)
    SELECT u.subject, u.feature, u.scope, 'use', sum(u.increment), u.period, u.period_start,
           u.period_offset, u.member, u.bucket
    FROM unnest(p_subjects, p_features, p_scopes, p_periods, p_period_starts, p_period_offsets,
                p_increments, coalesce(p_members, '{}'), coalesce(p_buckets, '{}'))
         WITH ORDINALITY AS u(subject, feature, scope, period, period_start, period_offset,
                              increment, member, bucket, ord)
    WHERE v_taken IS NULL OR v_taken[u.ord]
    GROUP BY u.subject, u.feature, u.scope, u.period, u.period_start, u.period_offset, u.member,
             u.bucket;

    -- The periods: one upsert of every pool's and user's row, in key order...
    RETURN QUERY
    WITH counted AS (
        SELECT u.*
        FROM unnest(p_subjects, p_features, p_scopes, p_periods, p_period_starts,
                    p_period_offsets, coalesce(p_period_ends, '{}'), p_increments,
                    coalesce(p_buckets, '{}'))
             WITH ORDINALITY AS u(subject, feature, scope, period, period_start, period_offset,
                                  period_end, increment, bucket, ord)
        WHERE (v_taken IS NULL OR v_taken[u.ord]) AND u.bucket IS NULL
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

    -- ... then the member shares of the pools, in key order (when a row has a member)...
    IF coalesce(cardinality(array_remove(p_members, NULL)), 0) > 0 THEN
    RETURN QUERY
    WITH counted AS (
        SELECT u.*
        FROM unnest(p_subjects, p_features, p_periods, p_period_starts, p_period_offsets,
                    coalesce(p_period_ends, '{}'), p_increments, coalesce(p_members, '{}'),
                    coalesce(p_buckets, '{}'))
             WITH ORDINALITY AS u(subject, feature, period, period_start, period_offset,
                                  period_end, increment, member, bucket, ord)
        WHERE (v_taken IS NULL OR v_taken[u.ord]) AND u.bucket IS NULL AND u.member IS NOT NULL
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
    END IF;

    -- ... then each window's row, followed by its members' shares (when a row has
    -- a bucket).
    IF coalesce(cardinality(array_remove(p_buckets, NULL)), 0) = 0 THEN
        RETURN;
    END IF;
    FOR v_pool IN
        SELECT u.subject, u.feature, u.scope, u.period, u.period_start, u.period_offset,
               array_agg(u.bucket) AS buckets, array_agg(u.increment) AS increments,
               sum(u.increment)::bigint AS total
        FROM unnest(p_subjects, p_features, p_scopes, p_periods, p_period_starts,
                    p_period_offsets, p_increments, coalesce(p_buckets, '{}'))
             WITH ORDINALITY AS u(subject, feature, scope, period, period_start, period_offset,
                                  increment, bucket, ord)
        WHERE (v_taken IS NULL OR v_taken[u.ord]) AND u.bucket IS NOT NULL
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
            WHERE (v_taken IS NULL OR v_taken[u.ord]) AND u.bucket IS NOT NULL AND u.member IS NOT NULL
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


-- Opens one member share (feature_usage_ledger_open): an 'opening' row for
-- the member (per bucket of a window) of what the ledger does not explain;
-- with p_apart, a row of the pool's rest takes each back out of the pool's sum.
CREATE OR REPLACE FUNCTION feature_usage_ledger_open_share(
    p_share feature_usage_members,
    p_apart boolean
) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_slot integer;
    v_bucket bigint;
    v_amount bigint;
BEGIN
    FOR v_slot IN 1 .. CASE WHEN p_share.window_head IS NULL THEN 1 ELSE 61 END LOOP
        v_bucket := p_share.window_head - (61 - v_slot);
        v_amount := CASE WHEN p_share.window_head IS NULL THEN p_share.usage_count
                         ELSE p_share.window_buckets[v_slot] END
            - (SELECT coalesce(sum(h.amount), 0) FROM feature_usage_holds h
               WHERE h.user_id = p_share.org_id AND h.feature = p_share.feature
                 AND h.scope = 'org' AND h.period = p_share.period
                 AND h.period_start = p_share.period_start
                 AND h.period_offset = p_share.period_offset AND h.member = p_share.user_id
                 AND h.bucket IS NOT DISTINCT FROM v_bucket)
            - (SELECT coalesce(sum(l.amount), 0) FROM feature_usage_ledger l
               WHERE l.user_id = p_share.org_id AND l.feature = p_share.feature
                 AND l.scope = 'org' AND l.period = p_share.period
                 AND l.period_start = p_share.period_start
                 AND l.period_offset = p_share.period_offset AND l.member = p_share.user_id
                 AND l.kind IN ('use', 'give_back', 'reset', 'opening')
                 AND l.bucket IS NOT DISTINCT FROM v_bucket);
        IF v_amount <> 0 THEN
            INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount, period,
                                                   period_start, period_offset, member, bucket,
                                                   reason)
            VALUES (p_share.org_id, p_share.feature, 'org', 'opening', v_amount, p_share.period,
                    p_share.period_start, p_share.period_offset, p_share.user_id, v_bucket,
                    'counted before the ledger');
            IF p_apart THEN
                INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount,
                                                       period, period_start, period_offset,
                                                       bucket, reason)
                VALUES (p_share.org_id, p_share.feature, 'org', 'opening', -v_amount,
                        p_share.period, p_share.period_start, p_share.period_offset, v_bucket,
                        'counted before the ledger: a member share opened apart');
            END IF;
        END IF;
    END LOOP;
    UPDATE feature_usage_members m SET ledger_since = now()
    WHERE m.org_id = p_share.org_id AND m.feature = p_share.feature
      AND m.period = p_share.period AND m.period_start = p_share.period_start
      AND m.period_offset = p_share.period_offset AND m.user_id = p_share.user_id;
END
$$;

-- The seed's one-row increment (0021), through feature_usage_increment_many and
-- so its ledger row: the same arguments and result.
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
    SELECT w.usage_count INTO v_count
    FROM feature_usage_increment_many(ARRAY[p_user_id], ARRAY[p_feature], ARRAY['user'],
                                      ARRAY['month'], ARRAY[p_period_start], ARRAY[0], NULL,
                                      NULL, NULL, ARRAY[p_increment::bigint]) AS w;
    RETURN v_count;
END
$$;

-- The ledger's first rows for counts that existed before it (0044 runs it in
-- batches): an 'opening' row per counted row (per member share, and per bucket
-- of a window) of what it had used that the ledger did not explain yet; a
-- row's uses recorded since 0043 are in the ledger already. Opens up to
-- p_batch rows of feature_usage with their member shares, then member shares
-- left over; returns how many rows it opened (0: none was left). Rows that
-- break 0001's rules stay unopened, and the audit passes them by.
CREATE OR REPLACE FUNCTION feature_usage_ledger_open(p_batch integer, OUT opened integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_row feature_usage;
    v_share feature_usage_members;
    v_amount bigint;
    v_slot integer;
    v_ring bigint[];
BEGIN
    opened := 0;
    -- all subjects: the upgrade's batches, not a request's statement.
    FOR v_row IN
        SELECT * FROM feature_usage fu
        WHERE fu.ledger_since IS NULL
          -- A row that breaks 0001's rules can be neither updated nor audited
          -- (`feature-gates verify` lists it).
          AND fu.user_id IS NOT NULL AND fu.feature ~ '^[a-z][a-z0-9_.:-]{0,63}$'
          AND fu.period_start IS NOT NULL AND fu.usage_count >= 0
        ORDER BY fu.user_id
        LIMIT p_batch
        FOR UPDATE SKIP LOCKED
    LOOP
        FOR v_share IN
            SELECT * FROM feature_usage_members m
            WHERE m.org_id = v_row.user_id AND m.feature = v_row.feature
              AND m.period = v_row.period AND m.period_start = v_row.period_start
              AND m.period_offset = v_row.period_offset AND v_row.scope = 'org'
              AND m.ledger_since IS NULL
            ORDER BY m.user_id
            FOR UPDATE
        LOOP
            PERFORM feature_usage_ledger_open_share(v_share, false);
            opened := opened + 1;
        END LOOP;
        IF v_row.window_head IS NULL THEN
            v_amount := greatest(v_row.usage_count, 0)
                - (SELECT coalesce(sum(h.amount), 0) FROM feature_usage_holds h
                   WHERE h.user_id = v_row.user_id AND h.feature = v_row.feature
                     AND h.scope = v_row.scope AND h.period = v_row.period
                     AND h.period_start = v_row.period_start
                     AND h.period_offset = v_row.period_offset)
                - (SELECT coalesce(sum(l.amount), 0) FROM feature_usage_ledger l
                   WHERE l.user_id = v_row.user_id AND l.feature = v_row.feature
                     AND l.scope = v_row.scope AND l.period = v_row.period
                     AND l.period_start = v_row.period_start
                     AND l.period_offset = v_row.period_offset
                     AND l.kind IN ('use', 'give_back', 'reset', 'opening'));
            IF v_amount <> 0 THEN
                INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount,
                                                       period, period_start, period_offset,
                                                       reason)
                VALUES (v_row.user_id, v_row.feature, v_row.scope, 'opening', v_amount,
                        v_row.period, v_row.period_start, v_row.period_offset,
                        'counted before the ledger');
            END IF;
        ELSE
            v_ring := v_row.window_buckets;
            FOR v_slot IN 1 .. 61 LOOP
                v_amount := v_ring[v_slot]
                    - (SELECT coalesce(sum(h.amount), 0) FROM feature_usage_holds h
                       WHERE h.user_id = v_row.user_id AND h.feature = v_row.feature
                         AND h.scope = v_row.scope AND h.period = v_row.period
                         AND h.period_start = v_row.period_start
                         AND h.period_offset = v_row.period_offset
                         AND h.bucket = v_row.window_head - (61 - v_slot))
                    - (SELECT coalesce(sum(l.amount), 0) FROM feature_usage_ledger l
                       WHERE l.user_id = v_row.user_id AND l.feature = v_row.feature
                         AND l.scope = v_row.scope AND l.period = v_row.period
                         AND l.period_start = v_row.period_start
                         AND l.period_offset = v_row.period_offset
                         AND l.kind IN ('use', 'give_back', 'reset', 'opening')
                         AND l.bucket = v_row.window_head - (61 - v_slot));
                IF v_amount <> 0 THEN
                    INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, kind, amount,
                                                           period, period_start, period_offset,
                                                           bucket, reason)
                    VALUES (v_row.user_id, v_row.feature, v_row.scope, 'opening', v_amount,
                            v_row.period, v_row.period_start, v_row.period_offset,
                            v_row.window_head - (61 - v_slot), 'counted before the ledger');
                END IF;
            END LOOP;
        END IF;
        UPDATE feature_usage fu SET ledger_since = now()
        WHERE fu.user_id = v_row.user_id AND fu.feature = v_row.feature
          AND fu.scope = v_row.scope AND fu.period = v_row.period
          AND fu.period_start = v_row.period_start AND fu.period_offset = v_row.period_offset;
        opened := opened + 1;
    END LOOP;
    IF opened > 0 THEN
        RETURN;
    END IF;
    -- Member shares whose pool was opened without them: their opening rows are
    -- the share's alone (a row for the rest of the pool takes them back out).
    -- all subjects: as above.
    FOR v_share IN
        SELECT * FROM feature_usage_members m WHERE m.ledger_since IS NULL
        ORDER BY m.org_id
        LIMIT p_batch
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM feature_usage_ledger_open_share(v_share, true);
        opened := opened + 1;
    END LOOP;
END
$$;

-- 0042's audit, which also recomputes every count from the ledger.
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

    -- Every count from the ledger: a period's count is its uses, give-backs,
    -- resets and opening (a member share: those naming the member) plus the uses
    -- its holds take; what it holds is its holds'.
    RETURN QUERY
    -- all subjects: the audit, for operators, not a request's statement.
    SELECT format('the count of %s (%s, %s, %s from %s +%ss) is %s with %s held; the ledger '
                  'says %s used (%s rows, entries %s to %s) and its holds %s',
                  c.user_id, c.feature, c.scope, c.period, c.period_start, c.period_offset,
                  c.usage_count, c.held, coalesce(l.total, 0), coalesce(l.rows, 0),
                  coalesce(l.first_entry::text, '-'), coalesce(l.last_entry::text, '-'),
                  coalesce(h.held, 0))
    FROM feature_usage c
    LEFT JOIN (SELECT e.user_id, e.feature, e.scope, e.period, e.period_start, e.period_offset,
                      sum(e.amount) AS total, count(*) AS rows, min(e.entry_id) AS first_entry,
                      max(e.entry_id) AS last_entry
               FROM feature_usage_ledger e
               WHERE e.kind IN ('use', 'give_back', 'reset', 'opening') AND e.bucket IS NULL
               GROUP BY e.user_id, e.feature, e.scope, e.period, e.period_start,
                        e.period_offset) AS l
      ON l.user_id = c.user_id AND l.feature = c.feature AND l.scope = c.scope
     AND l.period = c.period AND l.period_start = c.period_start
     AND l.period_offset = c.period_offset
    LEFT JOIN (SELECT k.user_id, k.feature, k.scope, k.period, k.period_start,
                      k.period_offset, sum(k.amount) AS held
               FROM feature_usage_holds k
               GROUP BY k.user_id, k.feature, k.scope, k.period, k.period_start,
                        k.period_offset) AS h
      ON h.user_id = c.user_id AND h.feature = c.feature AND h.scope = c.scope
     AND h.period = c.period AND h.period_start = c.period_start
     AND h.period_offset = c.period_offset
    WHERE c.window_head IS NULL AND c.ledger_since IS NOT NULL
      AND (greatest(c.usage_count, 0) <> coalesce(l.total, 0) + coalesce(h.held, 0)
           OR c.held <> coalesce(h.held, 0));

    RETURN QUERY
    -- all subjects: the audit, for operators, not a request's statement.
    SELECT format('the share of member %s in the count of %s (%s, org, %s from %s +%ss) is %s '
                  'with %s held; the ledger says %s used (%s rows, entries %s to %s) and its '
                  'holds %s', m.user_id, m.org_id, m.feature, m.period, m.period_start,
                  m.period_offset, m.usage_count, m.held, coalesce(l.total, 0),
                  coalesce(l.rows, 0), coalesce(l.first_entry::text, '-'),
                  coalesce(l.last_entry::text, '-'), coalesce(h.held, 0))
    FROM feature_usage_members m
    LEFT JOIN (SELECT e.user_id, e.member, e.feature, e.period, e.period_start,
                      e.period_offset, sum(e.amount) AS total, count(*) AS rows,
                      min(e.entry_id) AS first_entry, max(e.entry_id) AS last_entry
               FROM feature_usage_ledger e
               WHERE e.kind IN ('use', 'give_back', 'reset', 'opening') AND e.bucket IS NULL
                 AND e.member IS NOT NULL AND e.scope = 'org'
               GROUP BY e.user_id, e.member, e.feature, e.period, e.period_start,
                        e.period_offset) AS l
      ON l.user_id = m.org_id AND l.member = m.user_id AND l.feature = m.feature
     AND l.period = m.period AND l.period_start = m.period_start
     AND l.period_offset = m.period_offset
    LEFT JOIN (SELECT k.user_id, k.member, k.feature, k.period, k.period_start,
                      k.period_offset, sum(k.amount) AS held
               FROM feature_usage_holds k
               WHERE k.member IS NOT NULL
               GROUP BY k.user_id, k.member, k.feature, k.period, k.period_start,
                        k.period_offset) AS h
      ON h.user_id = m.org_id AND h.member = m.user_id AND h.feature = m.feature
     AND h.period = m.period AND h.period_start = m.period_start
     AND h.period_offset = m.period_offset
    WHERE m.window_head IS NULL AND m.ledger_since IS NOT NULL
      AND (m.usage_count <> coalesce(l.total, 0) + coalesce(h.held, 0)
           OR m.held <> coalesce(h.held, 0));

    -- A rolling window bucket by bucket: each bucket still in the row is the
    -- uses of that bucket in the ledger plus its holds'.
    RETURN QUERY
    -- all subjects: the audit, for operators, not a request's statement.
    SELECT format('bucket %s of the count of %s (%s, %s, %s%s) is %s; the ledger says %s (%s '
                  'rows, entries %s to %s) and its holds %s', w.bucket, w.subject, w.feature,
                  w.scope, w.period, coalesce(', member ' || w.member, ''), w.value,
                  coalesce(l.total, 0), coalesce(l.rows, 0), coalesce(l.first_entry::text, '-'),
                  coalesce(l.last_entry::text, '-'), coalesce(h.held, 0))
    FROM (SELECT c.user_id AS subject, NULL::text AS member, c.feature, c.scope, c.period,
                 c.period_start, c.period_offset, c.window_head - (61 - b.slot) AS bucket,
                 b.value
          FROM feature_usage c,
               unnest(c.window_buckets) WITH ORDINALITY AS b(value, slot)
          WHERE c.window_head IS NOT NULL AND c.ledger_since IS NOT NULL
          UNION ALL
          SELECT s.org_id, s.user_id::text, s.feature, 'org', s.period, s.period_start,
                 s.period_offset, s.window_head - (61 - b.slot), b.value
          FROM feature_usage_members s,
               unnest(s.window_buckets) WITH ORDINALITY AS b(value, slot)
          WHERE s.window_head IS NOT NULL AND s.ledger_since IS NOT NULL) AS w
    LEFT JOIN LATERAL (
        SELECT sum(e.amount) AS total, count(*) AS rows, min(e.entry_id) AS first_entry,
               max(e.entry_id) AS last_entry
        FROM feature_usage_ledger e
        WHERE e.user_id = w.subject AND e.feature = w.feature AND e.scope = w.scope
          AND e.period = w.period AND e.period_start = w.period_start
          AND e.period_offset = w.period_offset AND e.bucket = w.bucket
          AND e.kind IN ('use', 'give_back', 'reset', 'opening')
          AND (w.member IS NULL OR e.member::text = w.member)) AS l ON true
    LEFT JOIN LATERAL (
        SELECT sum(k.amount) AS held
        FROM feature_usage_holds k
        WHERE k.user_id = w.subject AND k.feature = w.feature AND k.scope = w.scope
          AND k.period = w.period AND k.period_start = w.period_start
          AND k.period_offset = w.period_offset AND k.bucket = w.bucket
          AND (w.member IS NULL OR k.member::text = w.member)) AS h ON true
    WHERE w.value <> coalesce(l.total, 0) + coalesce(h.held, 0);

    -- Counts the upgrade's batches (0044, SKIP LOCKED) have not opened yet: not
    -- audited until they are.
    RETURN QUERY
    -- all subjects: the audit, for operators, not a request's statement.
    SELECT format('%s counts are not in the ledger yet (made before it, and locked when 0044 '
                  'opened the others): run SELECT feature_usage_ledger_open(1000) until it '
                  'returns 0', n.total)
    FROM (SELECT (SELECT count(*) FROM feature_usage fu
                  WHERE fu.ledger_since IS NULL AND fu.user_id IS NOT NULL
                    AND fu.feature ~ '^[a-z][a-z0-9_.:-]{0,63}$'
                    AND fu.period_start IS NOT NULL AND fu.usage_count >= 0)
               + (SELECT count(*) FROM feature_usage_members m
                  WHERE m.ledger_since IS NULL) AS total) AS n
    WHERE n.total > 0;

    -- Uses in the ledger of a period's count that no longer exists, and was not
    -- archived (a window's idle row is pruned: its uses have left it).
    RETURN QUERY
    -- all subjects: the audit, for operators, not a request's statement.
    SELECT format('the ledger says %s (%s, %s, %s from %s +%ss) used %s (entries %s to %s), '
                  'but there is no such count', e.user_id, e.feature, e.scope, e.period,
                  e.period_start, e.period_offset, sum(e.amount), min(e.entry_id),
                  max(e.entry_id))
    FROM feature_usage_ledger e
    WHERE e.kind IN ('use', 'give_back', 'reset', 'opening') AND e.period NOT LIKE 'window:%'
      AND NOT EXISTS (SELECT 1 FROM feature_usage c
                      WHERE c.user_id = e.user_id AND c.feature = e.feature
                        AND c.scope = e.scope AND c.period = e.period
                        AND c.period_start = e.period_start
                        AND c.period_offset = e.period_offset)
      AND NOT EXISTS (SELECT 1 FROM feature_usage_archive a
                      WHERE a.user_id = e.user_id AND a.feature = e.feature
                        AND a.scope = e.scope AND a.period = e.period
                        AND a.period_start = e.period_start
                        AND a.period_offset = e.period_offset)
    GROUP BY e.user_id, e.feature, e.scope, e.period, e.period_start, e.period_offset
    HAVING sum(e.amount) <> 0;
END
$$;

-- What the live holds hold now, on their rows (the trigger above sees no use
-- move: usage_count does not change).
UPDATE feature_usage fu SET held = h.amount
FROM (SELECT k.user_id, k.feature, k.scope, k.period, k.period_start, k.period_offset,
             sum(k.amount) AS amount
      FROM feature_usage_holds k
      GROUP BY k.user_id, k.feature, k.scope, k.period, k.period_start, k.period_offset) AS h
WHERE fu.user_id = h.user_id AND fu.feature = h.feature AND fu.scope = h.scope
  AND fu.period = h.period AND fu.period_start = h.period_start
  AND fu.period_offset = h.period_offset;
UPDATE feature_usage_members m SET held = h.amount
FROM (SELECT k.user_id, k.member, k.feature, k.period, k.period_start, k.period_offset,
             sum(k.amount) AS amount
      FROM feature_usage_holds k
      WHERE k.member IS NOT NULL
      GROUP BY k.user_id, k.member, k.feature, k.period, k.period_start, k.period_offset) AS h
WHERE m.org_id = h.user_id AND m.user_id = h.member AND m.feature = h.feature
  AND m.period = h.period AND m.period_start = h.period_start
  AND m.period_offset = h.period_offset;
