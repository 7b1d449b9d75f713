-- Validate the constraints added NOT VALID by 0001. VALIDATE CONSTRAINT takes
-- a SHARE UPDATE EXCLUSIVE lock: writes go on while the rows are checked.
-- Rows of an upgraded table that break a rule leave that constraint not
-- validated (new rows are still checked); `feature-gates verify` lists them.
-- (feature_usage_not_null exists only where a column allows NULL.)
DO $$
DECLARE
    v_name text;
BEGIN
    FOR v_name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'feature_usage'::regclass AND NOT convalidated
          AND conname IN ('feature_usage_usage_count_nonnegative', 'feature_usage_feature_format',
                          'feature_usage_not_null')
        ORDER BY conname
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE feature_usage VALIDATE CONSTRAINT %I', v_name);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'feature_usage has rows that break constraint %; '
                          'run "feature-gates verify" to list them', v_name;
        END;
    END LOOP;
END
$$;
