-- feature-gates: no-transaction
-- Counter columns for the thread and itinerary managers:
--   chat_threads.thread_messages_count  = how many chat_messages the thread has
--   travel_itineraries.destinations_count = how many waypoints data holds
-- kept exact by triggers from the moment they exist, so the backfill (next
-- migration) can run while the application writes.
--
-- A column (and its index) of these names that the application already has,
-- as the original system's counter migration may have left them, is adopted:
-- what it was is recorded in feature_gates_adopted_counters, and the
-- rollbacks give it back instead of dropping it.
--
-- Each statement runs in a short transaction of its own with lock_timeout, so
-- no lock on an application table is held while waiting for another one.

-- The counters this set maintains, by name: where each lives, and its index.
CREATE OR REPLACE FUNCTION feature_gates_counters()
RETURNS TABLE (counter text, table_name text, column_name text, index_name text)
LANGUAGE sql IMMUTABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    VALUES ('chat_threads.thread_messages_count', 'chat_threads', 'thread_messages_count',
            'idx_chat_threads_messages_count'),
           ('travel_itineraries.destinations_count', 'travel_itineraries', 'destinations_count',
            'idx_travel_itineraries_destinations_count')
$$;

-- The counters' indexes of these names that are not what they must be, one
-- row each: CREATE INDEX ... IF NOT EXISTS would accept any relation of the
-- name. An application's own index serves when it leads with (user_id,
-- counter). An INVALID one is left out: the runner drops it and builds it
-- again. Read before the indexes are built, and by verify.
CREATE OR REPLACE FUNCTION feature_gates_counter_index_problems()
RETURNS TABLE (index_name text, problem text)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT w.index_name,
           format('%s (%s) is not an index on %s (user_id, %s, ...), which the "near a limit" '
                  'lookups read; rename it or drop it, then run migrate', w.index_name,
                  CASE WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid)
                       ELSE format('a relation of kind %L, not an index', c.relkind) END,
                  w.table_name, w.column_name)
    FROM feature_gates_counters() w
    -- An index lives in its table's schema.
    JOIN pg_class t ON t.oid = to_regclass(w.table_name)
    JOIN pg_class c ON c.relname = w.index_name AND c.relnamespace = t.relnamespace
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    LEFT JOIN LATERAL (
        SELECT array_agg(a.attname::text ORDER BY k.n) AS columns
        FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
        LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    ) AS k ON true
    WHERE i.indisvalid IS DISTINCT FROM false
      AND NOT coalesce(i.indrelid = t.oid AND k.columns[1:2] = ARRAY['user_id', w.column_name],
                       false)
$$;

-- Raises duplicate_object, naming them, when there are such indexes.
CREATE OR REPLACE FUNCTION feature_gates_counter_check_indexes()
RETURNS void
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_problems text;
BEGIN
    SELECT string_agg(problem, '; ' ORDER BY index_name) INTO v_problems
    FROM feature_gates_counter_index_problems();
    IF v_problems IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problems USING ERRCODE = 'duplicate_object';
    END IF;
END
$$;

-- The application's tables must be there, and a counter column they already
-- have must be an integer (another type would need a rewrite of the table);
-- stop before changing anything.
DO $$
DECLARE
    v_missing text[];
    v_mistyped text;
BEGIN
    SELECT array_agg(format('%s.%s', wanted.tbl, wanted.col) ORDER BY wanted.tbl, wanted.col)
    INTO v_missing
    FROM (VALUES ('chat_threads', 'id'), ('chat_threads', 'user_id'),
                 ('chat_messages', 'thread_id'),
                 ('travel_itineraries', 'id'), ('travel_itineraries', 'user_id'),
                 ('travel_itineraries', 'data')) AS wanted(tbl, col)
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = to_regclass(wanted.tbl) AND a.attname = wanted.col
                        AND NOT a.attisdropped);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'the counters set needs the application tables chat_threads, '
                        'chat_messages and travel_itineraries; missing: %',
                        array_to_string(v_missing, ', ')
            USING ERRCODE = 'undefined_table',
                  HINT = 'create them first (register the migration folder that does, before '
                         '"counters" in FEATURE_GATES_MIGRATION_SETS; docs/migrations.md shows '
                         'the shape), or remove "counters" from the sets';
    END IF;
    SELECT string_agg(format('%s exists as %s, not integer', w.counter,
                             format_type(a.atttypid, a.atttypmod)), '; ')
    INTO v_mistyped
    FROM feature_gates_counters() w
    JOIN pg_attribute a ON a.attrelid = to_regclass(w.table_name) AND a.attname = w.column_name
                       AND NOT a.attisdropped
    WHERE a.atttypid <> 'integer'::regtype;
    IF v_mistyped IS NOT NULL THEN
        RAISE EXCEPTION '%; the counters set adopts an existing counter column only as an '
                        'integer: rename it or drop it, then run migrate', v_mistyped
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    PERFORM feature_gates_counter_check_indexes();
END
$$;

-- What the application had under the counters' names, recorded once, before
-- anything is added: a run of this file again (after an interruption) must
-- not take feature-gates' own column for the application's. One row per
-- counter; had_column false: feature-gates added the column.
CREATE TABLE IF NOT EXISTS feature_gates_adopted_counters (
    counter      text        PRIMARY KEY,
    had_column   boolean     NOT NULL,
    was_nullable boolean,
    old_default  text,
    had_index    boolean     NOT NULL,
    adopted_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO feature_gates_adopted_counters
    (counter, had_column, was_nullable, old_default, had_index)
SELECT w.counter, a.attnum IS NOT NULL, NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       -- An INVALID index is not kept: the runner replaces it.
       EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid = to_regclass(w.table_name) AND c.relname = w.index_name
                 AND i.indisvalid)
FROM feature_gates_counters() w
LEFT JOIN pg_attribute a ON a.attrelid = to_regclass(w.table_name) AND a.attname = w.column_name
                        AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
ON CONFLICT (counter) DO NOTHING;

-- Catalog-only: a constant default rewrites nothing. ACCESS EXCLUSIVE for a
-- few milliseconds, once the lock is granted. An adopted column gets the
-- default 0 as well; its NULLs are backfilled by 0002, which then makes it
-- NOT NULL.
ALTER TABLE chat_threads
    ADD COLUMN IF NOT EXISTS thread_messages_count integer NOT NULL DEFAULT 0,
    ALTER COLUMN thread_messages_count SET DEFAULT 0;

ALTER TABLE travel_itineraries
    ADD COLUMN IF NOT EXISTS destinations_count integer NOT NULL DEFAULT 0,
    ALTER COLUMN destinations_count SET DEFAULT 0;

-- How far each backfill got, so an interrupted one resumes where it stopped.
CREATE TABLE IF NOT EXISTS feature_gates_backfill_progress (
    counter    text        PRIMARY KEY,
    last_key   text,
    done       boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The number of destinations of an itinerary: the length of data->'waypoints'
-- when it is a JSON array, else 0 (data NULL, waypoints missing, JSON null, an
-- object, a scalar). Never fails.
CREATE OR REPLACE FUNCTION feature_gates_destinations_count(p_data jsonb)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT CASE WHEN jsonb_typeof(p_data -> 'waypoints') = 'array'
                THEN jsonb_array_length(p_data -> 'waypoints')
                ELSE 0 END
$$;

-- Every row whose counter differs from the truth (computed in one snapshot).
CREATE OR REPLACE FUNCTION feature_gates_counter_audit()
RETURNS TABLE (counter text, row_id text, stored bigint, actual bigint)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT 'chat_threads.thread_messages_count', t.id::text, t.thread_messages_count::bigint,
           coalesce(m.n, 0)
    FROM chat_threads t
    LEFT JOIN (SELECT thread_id, count(*) AS n FROM chat_messages GROUP BY thread_id) m
           ON m.thread_id = t.id
    WHERE t.thread_messages_count IS DISTINCT FROM coalesce(m.n, 0)
    UNION ALL
    SELECT 'travel_itineraries.destinations_count', i.id::text, i.destinations_count::bigint,
           feature_gates_destinations_count(i.data)
    FROM travel_itineraries i
    WHERE i.destinations_count IS DISTINCT FROM feature_gates_destinations_count(i.data)
$$;

-- Starts a counter's backfill over from the first row.
CREATE OR REPLACE FUNCTION feature_gates_backfill_reset(p_counter text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    DELETE FROM feature_gates_backfill_progress WHERE counter = p_counter
$$;

-- Saves how far a counter's backfill got (in the batch's transaction).
CREATE OR REPLACE FUNCTION feature_gates_backfill_save(p_counter text, p_last_key text,
                                                       p_done boolean)
RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    INSERT INTO feature_gates_backfill_progress (counter, last_key, done)
    VALUES (p_counter, p_last_key, p_done)
    ON CONFLICT (counter) DO UPDATE
        SET last_key = excluded.last_key, done = excluded.done, updated_at = now()
$$;

-- (min() and max() do not exist for every key type, uuid among them: the
-- batch's first and last keys come from ordered arrays.)

-- One batch of the thread_messages_count backfill: the next
-- feature_gates.batch_size threads after the saved position, by primary key.
-- The batch's threads are locked first, so a message inserted meanwhile either
-- committed before (and is counted) or has its trigger wait for this batch (and
-- adds itself after): the counter is exact either way. Only rows whose value
-- differs are written. Returns the threads looked at and the rows changed.
CREATE OR REPLACE FUNCTION feature_gates_backfill_thread_messages_count(
    OUT scanned integer, OUT changed integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_batch integer := coalesce(
        nullif(current_setting('feature_gates.batch_size', true), '')::integer, 1000);
    v_key text;
    v_done boolean;
    v_after chat_threads.id%TYPE;
    v_first chat_threads.id%TYPE;
    v_last chat_threads.id%TYPE;
BEGIN
    scanned := 0;
    changed := 0;
    SELECT last_key, done INTO v_key, v_done
    FROM feature_gates_backfill_progress
    WHERE counter = 'chat_threads.thread_messages_count'
    FOR UPDATE;
    IF v_done THEN
        RETURN;
    END IF;
    v_after := v_key;
    IF v_key IS NULL THEN
        SELECT count(*), (array_agg(b.id ORDER BY b.id))[1],
               (array_agg(b.id ORDER BY b.id DESC))[1]
        INTO scanned, v_first, v_last
        FROM (SELECT id FROM chat_threads ORDER BY id LIMIT v_batch FOR NO KEY UPDATE) b;
    ELSE
        SELECT count(*), (array_agg(b.id ORDER BY b.id))[1],
               (array_agg(b.id ORDER BY b.id DESC))[1]
        INTO scanned, v_first, v_last
        FROM (SELECT id FROM chat_threads WHERE id > v_after ORDER BY id LIMIT v_batch
              FOR NO KEY UPDATE) b;
    END IF;
    IF scanned > 0 THEN
        UPDATE chat_threads t
        SET thread_messages_count = c.n
        FROM (SELECT b.id, (SELECT count(*) FROM chat_messages m WHERE m.thread_id = b.id) AS n
              FROM chat_threads b
              WHERE b.id BETWEEN v_first AND v_last) AS c
        WHERE t.id = c.id AND t.thread_messages_count IS DISTINCT FROM c.n;
        GET DIAGNOSTICS changed = ROW_COUNT;
    END IF;
    PERFORM feature_gates_backfill_save('chat_threads.thread_messages_count', coalesce(v_last::text, v_key),
                                        scanned < v_batch);
END
$$;

-- One batch of the destinations_count backfill; as above. No lock is taken
-- first: an UPDATE that meets a row changed meanwhile recomputes it from the
-- row's latest data.
CREATE OR REPLACE FUNCTION feature_gates_backfill_destinations_count(
    OUT scanned integer, OUT changed integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_batch integer := coalesce(
        nullif(current_setting('feature_gates.batch_size', true), '')::integer, 1000);
    v_key text;
    v_done boolean;
    v_after travel_itineraries.id%TYPE;
    v_first travel_itineraries.id%TYPE;
    v_last travel_itineraries.id%TYPE;
BEGIN
    scanned := 0;
    changed := 0;
    SELECT last_key, done INTO v_key, v_done
    FROM feature_gates_backfill_progress
    WHERE counter = 'travel_itineraries.destinations_count'
    FOR UPDATE;
    IF v_done THEN
        RETURN;
    END IF;
    v_after := v_key;
    IF v_key IS NULL THEN
        SELECT count(*), (array_agg(b.id ORDER BY b.id))[1],
               (array_agg(b.id ORDER BY b.id DESC))[1]
        INTO scanned, v_first, v_last
        FROM (SELECT id FROM travel_itineraries ORDER BY id LIMIT v_batch) b;
    ELSE
        SELECT count(*), (array_agg(b.id ORDER BY b.id))[1],
               (array_agg(b.id ORDER BY b.id DESC))[1]
        INTO scanned, v_first, v_last
        FROM (SELECT id FROM travel_itineraries WHERE id > v_after ORDER BY id LIMIT v_batch) b;
    END IF;
    IF scanned > 0 THEN
        UPDATE travel_itineraries i
        SET destinations_count = feature_gates_destinations_count(i.data)
        WHERE i.id BETWEEN v_first AND v_last
          AND i.destinations_count IS DISTINCT FROM feature_gates_destinations_count(i.data);
        GET DIAGNOSTICS changed = ROW_COUNT;
    END IF;
    PERFORM feature_gates_backfill_save('travel_itineraries.destinations_count', coalesce(v_last::text, v_key),
                                        scanned < v_batch);
END
$$;

-- One batch of the named counter's backfill.
CREATE OR REPLACE FUNCTION feature_gates_backfill_counter(
    p_counter text, OUT scanned integer, OUT changed integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    CASE p_counter
        WHEN 'chat_threads.thread_messages_count' THEN
            SELECT * INTO scanned, changed FROM feature_gates_backfill_thread_messages_count();
        WHEN 'travel_itineraries.destinations_count' THEN
            SELECT * INTO scanned, changed FROM feature_gates_backfill_destinations_count();
        ELSE
            RAISE EXCEPTION 'unknown counter %', quote_literal(p_counter)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'SELECT * FROM feature_gates_counters() lists them';
    END CASE;
END
$$;

-- One step of making an adopted counter column NOT NULL once the backfill
-- has given every row its count (0002), each step in a transaction of its
-- own. SET NOT NULL alone would scan the table under ACCESS EXCLUSIVE; with a
-- validated CHECK (... IS NOT NULL) it only reads the catalog. 'check' adds
-- the check NOT VALID (ACCESS EXCLUSIVE, milliseconds), 'validate' scans
-- under SHARE UPDATE EXCLUSIVE (writes go on), 'set' sets NOT NULL and drops
-- the check (ACCESS EXCLUSIVE, milliseconds). A column that is NOT NULL
-- already (as the ones feature-gates adds) needs none of them.
CREATE OR REPLACE FUNCTION feature_gates_counter_not_null(p_counter text, p_step text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_table text;
    v_column text;
    v_check text;
BEGIN
    SELECT table_name, column_name INTO v_table, v_column
    FROM feature_gates_counters() WHERE counter = p_counter;
    IF NOT FOUND OR p_step IS NULL OR p_step NOT IN ('check', 'validate', 'set') THEN
        RAISE EXCEPTION 'unknown counter % or step %', quote_literal(p_counter),
                        quote_literal(p_step)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT attnotnull FROM pg_attribute
        WHERE attrelid = to_regclass(v_table) AND attname = v_column) THEN
        RETURN;
    END IF;
    v_check := format('feature_gates_%s_not_null', v_column);
    IF p_step = 'check' AND NOT EXISTS (SELECT 1 FROM pg_constraint
                                        WHERE conrelid = to_regclass(v_table)
                                          AND conname = v_check) THEN
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%I IS NOT NULL) NOT VALID',
                       v_table, v_check, v_column);
    ELSIF p_step = 'validate' THEN
        BEGIN
            EXECUTE format('ALTER TABLE %I VALIDATE CONSTRAINT %I', v_table, v_check);
        EXCEPTION WHEN check_violation THEN
            RAISE EXCEPTION '% has rows whose count is NULL', p_counter
                USING ERRCODE = 'not_null_violation',
                      HINT = 'run "feature-gates repair-counters", then migrate again';
        END;
    ELSIF p_step = 'set' THEN
        -- Two statements: in one ALTER TABLE the check would be dropped first,
        -- and SET NOT NULL would scan.
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET NOT NULL', v_table, v_column);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', v_table, v_check);
    END IF;
END
$$;

-- Gives a counter's table back what it had (rollback of this migration):
-- drops the column feature-gates added, or gives an adopted column back its
-- default and its NULLs allowed (its values stay, exact as of now). Without a
-- record (this rollback finished already) it does nothing.
CREATE OR REPLACE FUNCTION feature_gates_counter_give_back(p_counter text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_table text;
    v_column text;
    v_had_column boolean;
    v_was_nullable boolean;
    v_old_default text;
BEGIN
    SELECT table_name, column_name INTO v_table, v_column
    FROM feature_gates_counters() WHERE counter = p_counter;
    IF to_regclass('feature_gates_adopted_counters') IS NOT NULL THEN
        SELECT had_column, was_nullable, old_default
        INTO v_had_column, v_was_nullable, v_old_default
        FROM feature_gates_adopted_counters WHERE counter = p_counter;
    END IF;
    IF v_had_column IS NULL THEN
        RETURN;
    ELSIF NOT v_had_column THEN
        EXECUTE format('ALTER TABLE %I DROP COLUMN IF EXISTS %I', v_table, v_column);
        RETURN;
    END IF;
    -- old_default is the column's own default expression, as the catalog
    -- printed it.
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT IF EXISTS %I, ALTER COLUMN %I %s',
                   v_table, format('feature_gates_%s_not_null', v_column), v_column,
                   CASE WHEN v_old_default IS NULL THEN 'DROP DEFAULT'
                        ELSE 'SET DEFAULT ' || v_old_default END);
    IF v_was_nullable THEN
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I DROP NOT NULL', v_table, v_column);
    END IF;
END
$$;

-- Keeps thread_messages_count equal to the number of the thread's messages:
-- one UPDATE per statement on chat_messages (not per row), with the changes
-- summed per thread.
CREATE OR REPLACE FUNCTION feature_gates_count_thread_messages()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE chat_threads t
        SET thread_messages_count = t.thread_messages_count + d.n
        FROM (SELECT thread_id, count(*)::integer AS n FROM new_rows
              WHERE thread_id IS NOT NULL GROUP BY thread_id) d
        WHERE t.id = d.thread_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE chat_threads t
        SET thread_messages_count = greatest(t.thread_messages_count - d.n, 0)
        FROM (SELECT thread_id, count(*)::integer AS n FROM old_rows
              WHERE thread_id IS NOT NULL GROUP BY thread_id) d
        WHERE t.id = d.thread_id;
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE chat_threads t
        SET thread_messages_count = greatest(t.thread_messages_count + d.n, 0)
        FROM (SELECT thread_id, sum(n)::integer AS n
              FROM (SELECT thread_id, 1 AS n FROM new_rows
                    UNION ALL
                    SELECT thread_id, -1 FROM old_rows) AS moves
              WHERE thread_id IS NOT NULL
              GROUP BY thread_id
              HAVING sum(n) <> 0) d
        WHERE t.id = d.thread_id;
    ELSIF TG_OP = 'TRUNCATE' THEN
        UPDATE chat_threads SET thread_messages_count = 0 WHERE thread_messages_count <> 0;
    END IF;
    RETURN NULL;
END
$$;

-- Keeps destinations_count equal to the waypoints in data, on the row itself.
CREATE OR REPLACE FUNCTION feature_gates_count_destinations()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
BEGIN
    NEW.destinations_count := feature_gates_destinations_count(NEW.data);
    RETURN NEW;
END
$$;

-- CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock (writes wait) for a few
-- milliseconds; one table per statement.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'chat_messages'::regclass
                   AND tgname = 'feature_gates_count_messages_insert') THEN
        CREATE TRIGGER feature_gates_count_messages_insert
            AFTER INSERT ON chat_messages REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_thread_messages();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'chat_messages'::regclass
                   AND tgname = 'feature_gates_count_messages_delete') THEN
        CREATE TRIGGER feature_gates_count_messages_delete
            AFTER DELETE ON chat_messages REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_thread_messages();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'chat_messages'::regclass
                   AND tgname = 'feature_gates_count_messages_update') THEN
        CREATE TRIGGER feature_gates_count_messages_update
            AFTER UPDATE ON chat_messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_thread_messages();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'chat_messages'::regclass
                   AND tgname = 'feature_gates_count_messages_truncate') THEN
        CREATE TRIGGER feature_gates_count_messages_truncate
            AFTER TRUNCATE ON chat_messages
            FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_thread_messages();
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'travel_itineraries'::regclass
                   AND tgname = 'feature_gates_count_destinations') THEN
        CREATE TRIGGER feature_gates_count_destinations
            BEFORE INSERT OR UPDATE OF data, destinations_count ON travel_itineraries
            FOR EACH ROW EXECUTE FUNCTION feature_gates_count_destinations();
    END IF;
END
$$;
