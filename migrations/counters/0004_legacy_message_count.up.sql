-- The legacy chat_threads.message_count, which the application keeps up itself
-- (feature-gates' triggers keep thread_messages_count): `verify` compares it
-- with the truth and `repair-counters` sets it right, in batches by primary
-- key, each in a short transaction of its own. A chat_threads without a
-- message_count column has nothing to check.

-- One batch of threads after p_after (by primary key; NULL: from the first),
-- feature_gates.batch_size of them: how many were looked at, the last key,
-- and the threads whose message_count differs from the number of their
-- messages (how many, and up to 20 as 'id=7 has 3, truth 4'). With p_repair
-- those threads are set right, and the batch's threads are locked first: a
-- message the application adds meanwhile, with its message_count update in
-- the same transaction, is counted exactly once.
CREATE OR REPLACE FUNCTION feature_gates_message_count_batch(
    p_after text, p_repair boolean,
    OUT scanned integer, OUT last_key text, OUT differing integer, OUT examples text[])
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
DECLARE
    v_batch integer := coalesce(
        nullif(current_setting('feature_gates.batch_size', true), '')::integer, 1000);
    v_after chat_threads.id%TYPE := p_after;
    v_first chat_threads.id%TYPE;
    v_last chat_threads.id%TYPE;
BEGIN
    scanned := 0;
    differing := 0;
    examples := '{}';
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'chat_threads'::regclass AND attname = 'message_count'
                     AND NOT attisdropped) THEN
        RETURN;
    END IF;
    -- From the first thread, or the one after p_after; one index range scan
    -- either way. (min() and max() do not exist for every key type: the
    -- batch's first and last keys come from ordered arrays.)
    IF p_after IS NULL THEN
        SELECT id INTO v_after FROM chat_threads ORDER BY id LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    IF p_repair THEN
        SELECT count(*), (array_agg(b.id ORDER BY b.id))[1], (array_agg(b.id ORDER BY b.id DESC))[1]
        INTO scanned, v_first, v_last
        FROM (SELECT id FROM chat_threads
              WHERE id >= v_after AND (p_after IS NULL OR id <> v_after)
              ORDER BY id LIMIT v_batch FOR NO KEY UPDATE) b;
    ELSE
        SELECT count(*), (array_agg(b.id ORDER BY b.id))[1], (array_agg(b.id ORDER BY b.id DESC))[1]
        INTO scanned, v_first, v_last
        FROM (SELECT id FROM chat_threads
              WHERE id >= v_after AND (p_after IS NULL OR id <> v_after)
              ORDER BY id LIMIT v_batch) b;
    END IF;
    last_key := v_last::text;
    IF scanned = 0 THEN
        RETURN;
    END IF;
    IF p_repair THEN
        UPDATE chat_threads t
        SET message_count = c.n
        FROM (SELECT b.id, (SELECT count(*) FROM chat_messages m WHERE m.thread_id = b.id) AS n
              FROM chat_threads b
              WHERE b.id BETWEEN v_first AND v_last) AS c
        WHERE t.id = c.id AND t.message_count IS DISTINCT FROM c.n;
        GET DIAGNOSTICS differing = ROW_COUNT;
    ELSE
        SELECT count(*),
               coalesce((array_agg(format('id=%s has %s, truth %s', c.id,
                                          coalesce(c.stored::text, 'NULL'), c.n)
                                   ORDER BY c.id))[1:20], '{}')
        INTO differing, examples
        FROM (SELECT b.id, b.message_count AS stored,
                     (SELECT count(*) FROM chat_messages m WHERE m.thread_id = b.id) AS n
              FROM chat_threads b
              WHERE b.id BETWEEN v_first AND v_last) AS c
        WHERE c.stored IS DISTINCT FROM c.n;
    END IF;
END
$$;
