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
