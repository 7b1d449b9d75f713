-- Before core/0006, on a database that has not applied it: its names must be
-- free, or hold what core/0006 itself makes (a run whose history row was lost).
-- Its CREATE ... IF NOT EXISTS would take an application's own
-- feature_usage_summary (a table, a view...) for the view it builds, CREATE OR
-- REPLACE would overwrite a function of the same signature, and its rollback
-- would drop them. (A check of its own: core/0006 itself never changes.)
DO $$
DECLARE
    v_view regclass := to_regclass(format('%I.feature_usage_summary', current_schema()));
    v_ours boolean;
    v_found text;
BEGIN
    -- The view core/0006 builds: materialized, with exactly its columns.
    v_ours := (SELECT c.relkind = 'm' AND array_agg(a.attname::text ORDER BY a.attnum)
                      = ARRAY['feature', 'period_start', 'total_usage', 'unique_users',
                              'last_used_at']
               FROM pg_class c
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               WHERE c.oid = v_view
               GROUP BY c.relkind);
    SELECT string_agg(pg_describe_object(o.classid, o.objid, 0), ', ' ORDER BY o.objid)
    INTO v_found
    FROM (
        SELECT 'pg_class'::regclass, v_view::oid, coalesce(v_ours, false)
        UNION ALL
        SELECT 'pg_class'::regclass, i.indexrelid, i.indrelid = v_view AND coalesce(v_ours, false)
        FROM pg_index i
        WHERE i.indexrelid = to_regclass(format('%I.feature_usage_summary_feature_period',
                                                current_schema()))
        UNION ALL
        SELECT 'pg_proc'::regclass, p.oid,
               p.prosrc LIKE '%REFRESH MATERIALIZED VIEW CONCURRENTLY feature_usage_summary%'
        FROM pg_proc p
        WHERE p.oid = to_regprocedure(format('%I.refresh_feature_usage_summary()',
                                             current_schema()))
    ) AS o (classid, objid, ours)
    WHERE o.objid IS NOT NULL AND NOT o.ours;
    IF v_found IS NOT NULL THEN
        RAISE EXCEPTION 'the application already has %: core/0006 would take it for its '
                        'summary view, and its rollback would drop it', v_found
            USING ERRCODE = 'duplicate_object',
                  HINT = 'rename it, or set FEATURE_GATES_SCHEMA to install feature-gates '
                         'in a schema of its own';
    END IF;
END
$$;
