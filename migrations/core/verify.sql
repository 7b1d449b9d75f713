-- The audit of the core set, run by `feature-gates verify`: one row per
-- problem (check, detail); no row when all is well.
WITH expected_functions(name) AS (
    VALUES ('increment_feature_usage_safe'), ('consume_feature_usage'),
           ('refund_feature_usage'), ('get_feature_usage'), ('get_user_feature_usage'),
           ('archive_old_feature_usage'), ('refresh_feature_usage_summary'),
           ('resolve_feature_usage_batch'), ('prune_feature_usage_idempotency'),
           ('write_feature_usage_batch')
), expected_indexes(name) AS (
    VALUES ('idx_feature_usage_user_feature_period'), ('idx_feature_usage_period_start'),
           ('feature_usage_summary_feature_period')
), unvalidated AS (
    SELECT conname, pg_get_constraintdef(oid) AS definition
    FROM pg_constraint
    WHERE conrelid = to_regclass('feature_usage') AND NOT convalidated
      AND conname IN ('feature_usage_usage_count_nonnegative', 'feature_usage_feature_format',
                      'feature_usage_not_null')
), breaking AS (
    SELECT u.conname, u.definition, count(fu.*) AS n,
           string_agg(format('(user_id %s, feature %L, period %s, usage_count %s)',
                             coalesce(fu.user_id::text, 'NULL'), fu.feature,
                             coalesce(fu.period_start::text, 'NULL'),
                             coalesce(fu.usage_count::text, 'NULL')), ', ')
               FILTER (WHERE fu.rn <= 5) AS examples
    FROM unvalidated u
    LEFT JOIN LATERAL (
        SELECT user_id, feature, period_start, usage_count,
               row_number() OVER (ORDER BY user_id, feature, period_start) AS rn
        FROM feature_usage
        WHERE CASE u.conname
                  WHEN 'feature_usage_usage_count_nonnegative' THEN NOT (usage_count >= 0)
                  WHEN 'feature_usage_not_null'
                      THEN user_id IS NULL OR feature IS NULL OR period_start IS NULL
                           OR usage_count IS NULL
                  ELSE NOT (feature ~ '^[a-z][a-z0-9_.:-]{0,63}$')
              END
    ) AS fu ON true
    GROUP BY u.conname, u.definition
)
SELECT 'function', format('%s() is missing; run migrate', f.name)
FROM expected_functions f
WHERE NOT EXISTS (SELECT 1 FROM pg_proc p
                  WHERE p.proname = f.name AND p.pronamespace = current_schema()::regnamespace)
UNION ALL
SELECT 'function', format('%s(%s) does not pin its search_path; run migrate',
                          p.proname, pg_get_function_identity_arguments(p.oid))
FROM pg_proc p
JOIN expected_functions f ON f.name = p.proname
WHERE p.pronamespace = current_schema()::regnamespace
  AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
UNION ALL
SELECT 'function', format('%s(%s) runs with its owner''s rights (SECURITY DEFINER); '
                          'feature-gates functions run as the caller: run migrate',
                          p.proname, pg_get_function_identity_arguments(p.oid))
FROM pg_proc p
JOIN expected_functions f ON f.name = p.proname
WHERE p.pronamespace = current_schema()::regnamespace AND p.prosecdef
UNION ALL
SELECT 'index', format('%s is missing; run migrate', i.name)
FROM expected_indexes i
WHERE to_regclass(i.name) IS NULL
UNION ALL
SELECT 'index', p.problem
FROM feature_usage_index_problems() p
UNION ALL
SELECT 'constraint',
       CASE WHEN b.n > 0 THEN
           format('%s (%s) is not validated: %s rows of feature_usage break it, for example '
                  '%s; fix them (docs/operations.md), then run: ALTER TABLE feature_usage '
                  'VALIDATE CONSTRAINT %s', b.conname, b.definition, b.n, b.examples, b.conname)
       ELSE
           format('%s is not validated, and no row breaks it; run: ALTER TABLE feature_usage '
                  'VALIDATE CONSTRAINT %s', b.conname, b.conname)
       END
FROM breaking b
