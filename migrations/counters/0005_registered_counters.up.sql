-- The set's two counters in the form `feature-gates counter add` writes for
-- them (docs/counters.md): recorded in feature_gates_counter_registry (core/0009),
-- so that verify, repair-counters and the counters' Python API treat them as
-- any application's counter, and kept by the triggers it writes. They count as
-- the triggers of 0001 did, and also: the threads a statement moves are locked
-- in key order (two statements that move the same threads never deadlock); a
-- thread inserted, or whose id changes, is given the count of the messages that
-- already point at it; a count is no longer held at 0 when a drift would take
-- it below (verify shows the drift).
--
-- One transaction: 0001's triggers are dropped and these created together, so
-- no message is counted twice or missed. ACCESS EXCLUSIVE on chat_messages and
-- travel_itineraries (DROP TRIGGER) and SHARE ROW EXCLUSIVE on chat_threads
-- (CREATE TRIGGER), for milliseconds once granted; the runner's lock timeout
-- and retries apply to the whole. The counters' values are not touched: 0001's
-- triggers kept them exact, and `verify` compares them with the truth.

-- The registry comes with core/0009: the sets are applied in order, core first.
DO $$
BEGIN
    IF to_regclass('feature_gates_counter_registry') IS NULL THEN
        RAISE EXCEPTION 'counters/0005 needs the counter registry of feature-gates'' core '
                        'set (core/0009), which this database does not have'
            USING ERRCODE = 'undefined_table',
                  HINT = 'list "core" before "counters" in FEATURE_GATES_MIGRATION_SETS and '
                         'run migrate';
    END IF;
END
$$;

-- Both counters recorded as `counter add` records them.
SELECT feature_gates_counter_register(
    counter => 'chat_threads.thread_messages_count',
    table_name => 'chat_threads',
    column_name => 'thread_messages_count',
    key_column => 'id',
    child_table => 'chat_messages',
    child_column => 'thread_id',
    parent_column => 'id',
    table_triggers => ARRAY['feature_gates_count_chat_threads_thread_messages_count_recount'],
    child_triggers => ARRAY['feature_gates_count_chat_threads_thread_messages_count_insert',
        'feature_gates_count_chat_threads_thread_messages_count_delete',
        'feature_gates_count_chat_threads_thread_messages_count_update',
        'feature_gates_count_chat_threads_thread_messages_count_truncate'],
    index_name => 'idx_chat_threads_messages_count',
    index_columns => ARRAY['user_id', 'thread_messages_count']);

SELECT feature_gates_counter_register(
    counter => 'travel_itineraries.destinations_count',
    table_name => 'travel_itineraries',
    column_name => 'destinations_count',
    key_column => 'id',
    jsonb_column => 'data',
    jsonb_path => ARRAY['waypoints'],
    table_triggers => ARRAY['feature_gates_count_travel_itineraries_destinations_count'],
    index_name => 'idx_travel_itineraries_destinations_count',
    index_columns => ARRAY['user_id', 'destinations_count']);

-- What the application had under the counters' names, as 0001 recorded it
-- before it added anything: the columns are there now, and the registry would
-- take them for the application's.
UPDATE feature_gates_counter_registry AS r
SET had_column = a.had_column, was_nullable = a.was_nullable, old_default = a.old_default,
    had_index = a.had_index
FROM feature_gates_adopted_counters AS a
WHERE a.counter = r.counter
  AND r.counter IN ('chat_threads.thread_messages_count', 'travel_itineraries.destinations_count');

-- The triggers' functions, as `counter add` writes them.

-- Adds p_moves[i] to the counter of the parent row whose key is p_keys[i]
-- (each key once). The rows are locked in key order first, so that statements
-- that move several of them at once never deadlock each other. The keys are
-- of the child column's type: anyarray.
CREATE OR REPLACE FUNCTION feature_gates_count_chat_threads_thread_messages_count_move(p_keys anyarray, p_moves integer[])
RETURNS void
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $function$
BEGIN
    PERFORM 1 FROM chat_threads WHERE id = ANY (p_keys)
    ORDER BY id FOR NO KEY UPDATE;
    UPDATE chat_threads AS p SET thread_messages_count = p.thread_messages_count + m.n
    FROM unnest(p_keys, p_moves) AS m (key, n)
    WHERE p.id = m.key;
END
$function$;

-- Moves the counter by what each statement on the child table changes: the
-- rows it inserts or deletes, moves from one parent row to another, or lets
-- into and out of the counted ones. One move per statement, not per row, with
-- the changes summed per parent row. A child row that points nowhere (NULL)
-- counts nowhere; TRUNCATE sets every count to 0.
CREATE OR REPLACE FUNCTION feature_gates_count_chat_threads_thread_messages_count()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $function$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE chat_threads SET thread_messages_count = 0 WHERE thread_messages_count <> 0;
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM feature_gates_count_chat_threads_thread_messages_count_move(array_agg(m.key), array_agg(m.n))
        FROM (SELECT chat_messages.thread_id, count(*)::integer
              FROM new_rows AS chat_messages
              WHERE chat_messages.thread_id IS NOT NULL
              GROUP BY 1) AS m (key, n)
        HAVING count(*) > 0;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM feature_gates_count_chat_threads_thread_messages_count_move(array_agg(m.key), array_agg(m.n))
        FROM (SELECT chat_messages.thread_id, -count(*)::integer
              FROM old_rows AS chat_messages
              WHERE chat_messages.thread_id IS NOT NULL
              GROUP BY 1) AS m (key, n)
        HAVING count(*) > 0;
    ELSE
        PERFORM feature_gates_count_chat_threads_thread_messages_count_move(array_agg(m.key), array_agg(m.n))
        FROM (SELECT c.key, sum(c.n)::integer
              FROM (SELECT chat_messages.thread_id, 1
                    FROM new_rows AS chat_messages
                    WHERE chat_messages.thread_id IS NOT NULL
                    UNION ALL
                    SELECT chat_messages.thread_id, -1
                    FROM old_rows AS chat_messages
                    WHERE chat_messages.thread_id IS NOT NULL) AS c (key, n)
              GROUP BY c.key
              HAVING sum(c.n) <> 0) AS m (key, n)
        HAVING count(*) > 0;
    END IF;
    RETURN NULL;
END
$function$;

-- Gives a new parent row, or one whose key changes, the count of the child
-- rows that already point at it (usually none), whatever the writer put in the
-- counter.
CREATE OR REPLACE FUNCTION feature_gates_count_chat_threads_thread_messages_count_recount()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $function$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.id IS DISTINCT FROM OLD.id THEN
        NEW.thread_messages_count := (
            SELECT count(*) FROM chat_messages
            WHERE chat_messages.thread_id = NEW.id);
    END IF;
    RETURN NEW;
END
$function$;

-- Sets the counter of each row written to the length of the JSON array at the
-- path, and to 0 when that is not an array (NULL, no such key, JSON null, an
-- object, a scalar), whatever the writer put in it.
CREATE OR REPLACE FUNCTION feature_gates_count_travel_itineraries_destinations_count()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $function$
BEGIN
    NEW.destinations_count := feature_gates_jsonb_array_length(NEW.data, ARRAY['waypoints']);
    RETURN NEW;
END
$function$;

-- 0001's triggers out, these in, in this transaction.
DROP TRIGGER IF EXISTS feature_gates_count_messages_insert ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_messages_delete ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_messages_update ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_messages_truncate ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_destinations ON travel_itineraries;

CREATE OR REPLACE TRIGGER feature_gates_count_chat_threads_thread_messages_count_insert
    AFTER INSERT ON chat_messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_chat_threads_thread_messages_count();

CREATE OR REPLACE TRIGGER feature_gates_count_chat_threads_thread_messages_count_delete
    AFTER DELETE ON chat_messages REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_chat_threads_thread_messages_count();

CREATE OR REPLACE TRIGGER feature_gates_count_chat_threads_thread_messages_count_update
    AFTER UPDATE ON chat_messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_chat_threads_thread_messages_count();

CREATE OR REPLACE TRIGGER feature_gates_count_chat_threads_thread_messages_count_truncate
    AFTER TRUNCATE ON chat_messages
    FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_chat_threads_thread_messages_count();

CREATE OR REPLACE TRIGGER feature_gates_count_chat_threads_thread_messages_count_recount
    BEFORE INSERT OR UPDATE OF id ON chat_threads
    FOR EACH ROW EXECUTE FUNCTION feature_gates_count_chat_threads_thread_messages_count_recount();

CREATE OR REPLACE TRIGGER feature_gates_count_travel_itineraries_destinations_count
    BEFORE INSERT OR UPDATE OF data, destinations_count ON travel_itineraries
    FOR EACH ROW EXECUTE FUNCTION feature_gates_count_travel_itineraries_destinations_count();
