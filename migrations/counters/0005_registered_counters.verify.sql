-- The audit of the counters set from 0005 on, run by `feature-gates verify`
-- (one row per problem: check, detail). It replaces verify.sql, which audited
-- the set's counters by their former triggers: verify now checks their
-- columns, triggers, indexes and values from the counter registry, as it does
-- every counter's. What is left to the set is that both are recorded there.
SELECT 'counter', format('%s is not in feature_gates_counter_registry, so verify and '
                         'repair-counters cannot see it: roll back counters/0005 and migrate '
                         'again', w.counter)
FROM (VALUES ('chat_threads.thread_messages_count'),
             ('travel_itineraries.destinations_count')) AS w (counter)
WHERE NOT EXISTS (SELECT 1 FROM feature_gates_counter_registry r WHERE r.counter = w.counter)
