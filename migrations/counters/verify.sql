-- The audit of the counters set, run by `feature-gates verify`: one row per
-- problem (check, detail); no row when all is well.
WITH expected_indexes(name) AS (
    VALUES ('idx_chat_threads_messages_count'), ('idx_travel_itineraries_destinations_count')
), expected_triggers(tbl, name) AS (
    VALUES ('chat_messages', 'feature_gates_count_messages_insert'),
           ('chat_messages', 'feature_gates_count_messages_delete'),
           ('chat_messages', 'feature_gates_count_messages_update'),
           ('chat_messages', 'feature_gates_count_messages_truncate'),
           ('travel_itineraries', 'feature_gates_count_destinations')
), drift AS (
    SELECT a.*, count(*) OVER (PARTITION BY a.counter) AS n,
           row_number() OVER (PARTITION BY a.counter ORDER BY a.row_id) AS rn
    FROM feature_gates_counter_audit() a
)
SELECT 'index', format('%s is missing; run migrate', i.name)
FROM expected_indexes i
WHERE to_regclass(i.name) IS NULL
UNION ALL
SELECT 'index', p.problem
FROM feature_gates_counter_index_problems() p
UNION ALL
SELECT 'column', format('%s.%s is %s%s DEFAULT %s; the counter must be integer NOT NULL '
                        'DEFAULT 0: ALTER TABLE %s ALTER COLUMN %s %s', w.table_name,
                        w.column_name, format_type(a.atttypid, a.atttypmod),
                        CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END,
                        coalesce(pg_get_expr(d.adbin, d.adrelid), 'none'), w.table_name,
                        w.column_name,
                        CASE WHEN a.attnotnull THEN 'SET DEFAULT 0' ELSE 'SET NOT NULL' END)
FROM feature_gates_counters() w
JOIN pg_attribute a ON a.attrelid = to_regclass(w.table_name) AND a.attname = w.column_name
                   AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE NOT (a.atttypid = 'integer'::regtype AND a.attnotnull
           AND pg_get_expr(d.adbin, d.adrelid) IS NOT DISTINCT FROM '0')
UNION ALL
SELECT 'trigger', format('trigger %s on %s is missing or disabled; the counters drift without '
                         'it: run migrate, then repair-counters', t.name, t.tbl)
FROM expected_triggers t
WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g
                  WHERE g.tgrelid = to_regclass(t.tbl) AND g.tgname = t.name
                    AND g.tgenabled <> 'D')
UNION ALL
SELECT 'counter', format('%s id=%s has %s, truth %s (%s rows of %s differ; '
                         'run repair-counters)', d.counter, d.row_id, d.stored, d.actual, d.n,
                         split_part(d.counter, '.', 1))
FROM drift d
WHERE d.rn <= 20
