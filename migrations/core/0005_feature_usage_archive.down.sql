-- Drops feature_usage_archive and every archived usage count in it; an
-- application's own archive table (adopted) is kept with its rows.
DROP FUNCTION IF EXISTS archive_old_feature_usage(integer);
DO $$
DECLARE
    v_added text[];
    v_name text;
BEGIN
    IF to_regclass('feature_gates_adopted_tables') IS NOT NULL THEN
        DELETE FROM feature_gates_adopted_tables WHERE table_name = 'feature_usage_archive'
        RETURNING added_columns INTO v_added;
    END IF;
    IF v_added IS NULL THEN
        DROP TABLE IF EXISTS feature_usage_archive;
    ELSE
        FOREACH v_name IN ARRAY v_added LOOP
            EXECUTE format('ALTER TABLE feature_usage_archive DROP COLUMN IF EXISTS %I', v_name);
        END LOOP;
    END IF;
END
$$;
