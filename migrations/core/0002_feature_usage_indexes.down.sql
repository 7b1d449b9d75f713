-- feature-gates: no-transaction
-- Drops the two indexes feature-gates built (without blocking writes). An
-- index of the same name that an adopted table had before is kept. No data is
-- lost.
DO $$
-- DROP INDEX CONCURRENTLY runs outside any transaction, so it cannot be made
-- conditional in a DO block: the indexes feature-gates built are first renamed
-- out of the way (ALTER INDEX ... RENAME takes SHARE UPDATE EXCLUSIVE: writes
-- go on), then dropped by their new names. A rollback interrupted between the
-- two finishes when it runs again.
DECLARE
    v_kept text[];
    v_name text;
BEGIN
    IF to_regclass('feature_gates_adopted_tables') IS NOT NULL THEN
        SELECT kept_objects INTO v_kept
        FROM feature_gates_adopted_tables WHERE table_name = 'feature_usage';
    END IF;
    FOREACH v_name IN ARRAY ARRAY['idx_feature_usage_period_start',
                                  'idx_feature_usage_user_feature_period'] LOOP
        IF to_regclass(format('%I.%I', current_schema(), v_name)) IS NOT NULL
           AND NOT v_name = ANY (coalesce(v_kept, '{}')) THEN
            EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', current_schema(), v_name,
                           'fg_drop_' || v_name);
        END IF;
    END LOOP;
END
$$;
DROP INDEX CONCURRENTLY IF EXISTS fg_drop_idx_feature_usage_period_start;
DROP INDEX CONCURRENTLY IF EXISTS fg_drop_idx_feature_usage_user_feature_period;
