-- Drops the counter registry and the functions counter sets run. Refused
-- while a counter is registered: roll back the sets that installed them first
-- (`rollback --to` a version before them). No data is lost.
DO $$
DECLARE
    v_counters text;
BEGIN
    IF to_regclass('feature_gates_counter_registry') IS NOT NULL THEN
        SELECT string_agg(counter, ', ' ORDER BY counter) INTO v_counters
        FROM feature_gates_counter_registry;
    END IF;
    IF v_counters IS NOT NULL THEN
        RAISE EXCEPTION 'the counters % are registered; roll back the migration sets that '
                        'installed them first', v_counters
            USING ERRCODE = 'dependent_objects_still_exist';
    END IF;
END
$$;
DROP FUNCTION IF EXISTS feature_gates_counter_problems();
DROP FUNCTION IF EXISTS feature_gates_counter_release(text);
DROP FUNCTION IF EXISTS feature_gates_counter_index_to_drop(text, text);
DROP FUNCTION IF EXISTS feature_gates_counter_positions_clear(text);
DROP FUNCTION IF EXISTS feature_gates_counter_audit_step(text);
DROP FUNCTION IF EXISTS feature_gates_counter_backfill_step(text);
DROP FUNCTION IF EXISTS feature_gates_counter_position_save(text, text, text, integer);
DROP FUNCTION IF EXISTS feature_gates_counter_position(text, text);
DROP FUNCTION IF EXISTS feature_gates_counter_batch(text, text, boolean);
DROP FUNCTION IF EXISTS feature_gates_counter_truth(feature_gates_counter_registry);
DROP FUNCTION IF EXISTS feature_gates_counter_check_index(text);
DROP FUNCTION IF EXISTS feature_gates_counter_register(text, text, text, text, text, text, text,
                                                       text, text, text, text, text[], text,
                                                       text[], text[], text[]);
DROP FUNCTION IF EXISTS feature_gates_counter_index_problem(text);
DROP FUNCTION IF EXISTS feature_gates_counter(text);
DROP FUNCTION IF EXISTS feature_gates_counter_relation(text, text);
DROP FUNCTION IF EXISTS feature_gates_jsonb_array_length(jsonb, text[]);
DROP TABLE IF EXISTS feature_gates_counter_positions;
DROP TABLE IF EXISTS feature_gates_counter_registry;
