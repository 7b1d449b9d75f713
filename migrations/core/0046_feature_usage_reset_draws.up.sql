-- A reset starts a period's draws on grants afresh, with its count. Before, a
-- period that had drawn on grants kept `credit_used` when `reset_usage` took
-- its count back to 0, so that many more uses passed as allowance before any
-- grant was drawn on again (and `balance()` showed them as available).
--
-- feature_usage_reset keeps its arguments and result: 0043's body becomes
-- feature_usage_reset_count (renamed, not copied), and the reset is that,
-- then the draws. The draws of live holds stay (the hold's release gives them
-- back to the grants); the rest is written off in one 'refund' ledger row
-- that names no grant: the uses happened, and the grants they drew on stay
-- drawn. The audit's sum of a period's draws (its 'consume' and 'refund' rows)
-- still equals `credit_used`.
-- Functions only: no table is locked beyond the catalogue's own rows.

-- Renamed only once: run again (over 0043 run again, or alone), the file must
-- not rename its own reset onto the count it calls.
DO $$
BEGIN
    IF to_regprocedure(format('%I.feature_usage_reset_count(feature_usage_user_id, text, '
                              'text, text, date, integer)', current_schema())) IS NULL THEN
        ALTER FUNCTION feature_usage_reset(feature_usage_user_id, text, text, text, date,
                                           integer)
            RENAME TO feature_usage_reset_count;
    END IF;
END
$$;

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
    v_used bigint;
    v_credit bigint;
    v_kept bigint;
BEGIN
    -- The count first: it locks the counted row (then the member shares), in
    -- the order every writer keeps.
    v_used := feature_usage_reset_count(p_subject, p_feature, p_scope, p_period,
                                        p_period_start, p_period_offset);
    SELECT fu.credit_used, least(fu.credit_used, greatest(fu.held, 0))
    INTO v_credit, v_kept
    FROM feature_usage fu
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
    IF NOT FOUND OR v_credit <= v_kept THEN
        RETURN v_used;
    END IF;
    UPDATE feature_usage fu SET credit_used = v_kept
    WHERE fu.user_id = p_subject AND fu.feature = p_feature AND fu.scope = p_scope
      AND fu.period = p_period AND fu.period_start = p_period_start
      AND fu.period_offset = p_period_offset;
    INSERT INTO feature_usage_ledger AS l (user_id, feature, scope, grant_id, kind, amount,
                                           period, period_start, period_offset, reason)
    VALUES (p_subject, p_feature, p_scope, NULL, 'refund', v_credit - v_kept, p_period,
            p_period_start, p_period_offset,
            'reset: the period starts its draws afresh, the grants stay drawn');
    RETURN v_used;
END
$$;
