-- Before core/0007, on a database that has not applied it: its names must be
-- free, or hold what core/0007 itself makes (a run whose history row was lost).
-- Its CREATE TABLE IF NOT EXISTS would take an application's own
-- feature_usage_idempotency or feature_usage_batches for the tables it makes
-- (and write batch records into it), CREATE OR REPLACE would overwrite a
-- function of the same signature, and its rollback would drop them. (A check
-- of its own: core/0007 itself never changes.)
DO $$
DECLARE
    v_keys regclass := to_regclass(format('%I.feature_usage_idempotency', current_schema()));
    v_batches regclass := to_regclass(format('%I.feature_usage_batches', current_schema()));
    v_keys_ours boolean;
    v_batches_ours boolean;
    v_found text;
BEGIN
    -- Its user ids are of the domain core/0001 made: no older table has them.
    v_keys_ours := EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = v_keys AND a.attname = 'user_id' AND NOT a.attisdropped
          AND a.atttypid = to_regtype(format('%I.feature_usage_user_id', current_schema())));
    v_batches_ours := (
        SELECT array_agg(format('%s %s', a.attname, format_type(a.atttypid, NULL))
                         ORDER BY a.attnum)
               = ARRAY['batch_id uuid', 'applied boolean', 'recorded_at timestamp with time zone']
        FROM pg_attribute a
        WHERE a.attrelid = v_batches AND a.attnum > 0 AND NOT a.attisdropped);
    SELECT string_agg(pg_describe_object(o.classid, o.objid, 0), ', ' ORDER BY o.objid)
    INTO v_found
    FROM (
        SELECT 'pg_class'::regclass, v_keys::oid, v_keys_ours
        UNION ALL
        SELECT 'pg_class'::regclass, v_batches::oid, coalesce(v_batches_ours, false)
        UNION ALL
        SELECT 'pg_class'::regclass, i.indexrelid,
               (i.indrelid = v_keys AND v_keys_ours)
               OR (i.indrelid = v_batches AND coalesce(v_batches_ours, false))
        FROM pg_index i
        WHERE i.indexrelid IN (
            SELECT to_regclass(format('%I.%I', current_schema(), n))
            FROM unnest(ARRAY['feature_usage_idempotency_pkey',
                              'idx_feature_usage_idempotency_recorded_at',
                              'feature_usage_batches_pkey']) AS n)
        UNION ALL
        SELECT 'pg_proc'::regclass, p.oid, p.prosrc LIKE '%feature_usage_batches%'
        FROM pg_proc p
        WHERE p.oid IN (
            SELECT to_regprocedure(format('%I.%s', current_schema(), f))
            FROM unnest(ARRAY['resolve_feature_usage_batch(uuid)',
                              'prune_feature_usage_idempotency(integer)']) AS f)
    ) AS o (classid, objid, ours)
    WHERE o.objid IS NOT NULL AND NOT o.ours;
    IF v_found IS NOT NULL THEN
        RAISE EXCEPTION 'the application already has %: core/0007 would take it for the '
                        'idempotency records it keeps, and its rollback would drop it', v_found
            USING ERRCODE = 'duplicate_object',
                  HINT = 'rename it, or set FEATURE_GATES_SCHEMA to install feature-gates '
                         'in a schema of its own';
    END IF;
END
$$;
