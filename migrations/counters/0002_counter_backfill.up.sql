-- feature-gates: no-transaction
-- Backfill of the counter columns, in batches by primary key: one short
-- transaction per batch (FEATURE_GATES_MIGRATION_BATCH_SIZE rows), writing only
-- the rows whose value differs. An interrupted backfill resumes at the last
-- committed batch. Then an audit compares every counter with the truth and
-- fails the migration, naming the rows, if any differs.

-- feature-gates: batched
SELECT scanned, changed FROM feature_gates_backfill_counter('chat_threads.thread_messages_count');

-- feature-gates: batched
SELECT scanned, changed FROM feature_gates_backfill_counter('travel_itineraries.destinations_count');

DO $$
DECLARE
    v_count bigint;
    v_rows text;
BEGIN
    SELECT count(*),
           string_agg(format('%s id=%s has %s, truth %s', counter, row_id, stored, actual), '; ')
               FILTER (WHERE rn <= 20)
    INTO v_count, v_rows
    FROM (SELECT a.*, row_number() OVER (ORDER BY a.counter, a.row_id) AS rn
          FROM feature_gates_counter_audit() a) AS audit;
    IF v_count > 0 THEN
        RAISE EXCEPTION 'counter audit failed: % rows differ from the truth: %', v_count, v_rows
            USING ERRCODE = 'data_exception',
                  HINT = 'run "feature-gates repair-counters", then migrate again';
    END IF;
END
$$;

-- Every row has its count now: an adopted column that allowed NULL becomes
-- NOT NULL, in three steps that each hold their lock briefly (see
-- feature_gates_counter_not_null); one table at a time.
SELECT feature_gates_counter_not_null('chat_threads.thread_messages_count', 'check');
SELECT feature_gates_counter_not_null('chat_threads.thread_messages_count', 'validate');
SELECT feature_gates_counter_not_null('chat_threads.thread_messages_count', 'set');
SELECT feature_gates_counter_not_null('travel_itineraries.destinations_count', 'check');
SELECT feature_gates_counter_not_null('travel_itineraries.destinations_count', 'validate');
SELECT feature_gates_counter_not_null('travel_itineraries.destinations_count', 'set');

DELETE FROM feature_gates_backfill_progress
WHERE counter IN ('chat_threads.thread_messages_count', 'travel_itineraries.destinations_count');
