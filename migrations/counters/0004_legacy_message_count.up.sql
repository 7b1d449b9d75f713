-- The legacy chat_threads.message_count, which the application keeps up itself
-- (feature-gates' triggers keep thread_messages_count): `verify` compares it
-- with the truth and `repair-counters` sets it right, in batches by primary
-- key, each in a short transaction of its own. A chat_threads without a
-- message_count column has nothing to check.

-- One batch of threads after p_after (by primary key; NULL: from the first),
-- feature_gates.batch_size of them: how many were looked at, the last key,
-- and the threads whose message_count differs from the number of their
-- messages (how many, and up to 20 as 'id=7 has 3, truth 4'). With p_repair
-- those threads are set right (differing then counts the rows written).
CREATE OR REPLACE FUNCTION feature_gates_message_count_batch(
    p_after text, p_repair boolean,
    OUT scanned integer, OUT last_key text, OUT differing integer, OUT examples text[])
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_batch integer := coalesce(
        nullif(current_setting('feature_gates.batch_size', true), '')::integer, 1000);
    v_from chat_threads.id%TYPE := p_after;
BEGIN
    scanned := 0;
    differing := 0;
    examples := '{}';
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'chat_threads'::regclass AND attname = 'message_count'
                     AND NOT attisdropped) THEN
        RETURN;
    END IF;
    -- From the first thread, or the one after p_after: one index range scan
    -- either way.
    IF p_after IS NULL THEN
        SELECT id INTO v_from FROM chat_threads ORDER BY id LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    -- A repair locks the batch's threads before it counts (in the next
    -- statement, which sees what committed meanwhile): a message the
    -- application adds, with its message_count update in the same transaction,
    -- is then counted exactly once.
    IF p_repair THEN
        PERFORM 1 FROM chat_threads
        WHERE id >= v_from AND (p_after IS NULL OR id <> v_from)
        ORDER BY id LIMIT v_batch
        FOR NO KEY UPDATE;
    END IF;
    WITH batch AS (
        SELECT t.id, t.message_count AS stored,
               (SELECT count(*) FROM chat_messages m WHERE m.thread_id = t.id) AS actual
        FROM chat_threads t
        WHERE t.id >= v_from AND (p_after IS NULL OR t.id <> v_from)
        ORDER BY t.id LIMIT v_batch
    ), off AS (
        SELECT * FROM batch WHERE stored IS DISTINCT FROM actual
    ), fixed AS (
        UPDATE chat_threads t SET message_count = off.actual
        FROM off
        WHERE p_repair AND t.id = off.id
        RETURNING t.id
    )
    SELECT (SELECT count(*) FROM batch),
           (SELECT b.id::text FROM batch b ORDER BY b.id DESC LIMIT 1),
           CASE WHEN p_repair THEN (SELECT count(*) FROM fixed) ELSE (SELECT count(*) FROM off) END,
           coalesce((SELECT array_agg(format('id=%s has %s, truth %s', o.id,
                                             coalesce(o.stored::text, 'NULL'), o.actual)
                                      ORDER BY o.id)
                     FROM (SELECT * FROM off ORDER BY id LIMIT 20) AS o), '{}')
    INTO scanned, last_key, differing, examples;
END
$$;
