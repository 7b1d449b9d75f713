-- Drops feature_usage and every usage count recorded in it, when feature-gates
-- created the table. An application's own table that was adopted is kept with
-- all its rows: only the columns and constraints feature-gates added to it
-- (updated_at, and created_at when it had none) are removed.
DO $$
DECLARE
    v_added text[];
    v_column text;
BEGIN
    IF to_regclass('feature_gates_adopted_tables') IS NOT NULL THEN
        SELECT added_columns INTO v_added
        FROM feature_gates_adopted_tables WHERE table_name = 'feature_usage';
    END IF;
    IF v_added IS NULL THEN
        DROP TABLE IF EXISTS feature_usage;
    ELSE
        ALTER TABLE feature_usage DROP CONSTRAINT IF EXISTS feature_usage_usage_count_nonnegative;
        ALTER TABLE feature_usage DROP CONSTRAINT IF EXISTS feature_usage_feature_format;
        FOREACH v_column IN ARRAY v_added LOOP
            EXECUTE format('ALTER TABLE feature_usage DROP COLUMN IF EXISTS %I', v_column);
        END LOOP;
    END IF;
END
$$;
DROP TABLE IF EXISTS feature_gates_adopted_tables;
DROP DOMAIN IF EXISTS feature_usage_user_id;
