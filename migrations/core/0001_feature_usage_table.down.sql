-- Drops feature_usage and every usage count recorded in it, when feature-gates
-- created the table. An application's own table that was adopted is kept with
-- all its rows: only the columns and constraints feature-gates added to it
-- (updated_at, created_at when it had none, the checks it did not have) are
-- removed.
DO $$
DECLARE
    v_added text[];
    v_kept text[];
    v_name text;
BEGIN
    IF to_regclass('feature_gates_adopted_tables') IS NOT NULL THEN
        SELECT added_columns, kept_objects INTO v_added, v_kept
        FROM feature_gates_adopted_tables WHERE table_name = 'feature_usage';
    END IF;
    IF v_added IS NULL THEN
        DROP TABLE IF EXISTS feature_usage;
    ELSE
        FOREACH v_name IN ARRAY ARRAY['feature_usage_usage_count_nonnegative',
                                      'feature_usage_feature_format',
                                      'feature_usage_not_null'] LOOP
            IF NOT v_name = ANY (v_kept) THEN
                EXECUTE format('ALTER TABLE feature_usage DROP CONSTRAINT IF EXISTS %I', v_name);
            END IF;
        END LOOP;
        FOREACH v_name IN ARRAY v_added LOOP
            EXECUTE format('ALTER TABLE feature_usage DROP COLUMN IF EXISTS %I', v_name);
        END LOOP;
    END IF;
END
$$;
DROP TABLE IF EXISTS feature_gates_adopted_tables;
DROP FUNCTION IF EXISTS feature_usage_check_indexes();
DROP FUNCTION IF EXISTS feature_usage_index_problems();
DROP DOMAIN IF EXISTS feature_usage_user_id;
