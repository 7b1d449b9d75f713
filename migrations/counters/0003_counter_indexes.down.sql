-- feature-gates: no-transaction
-- Drops the two counter indexes feature-gates built (without blocking
-- writes). An index of the same name that the application had before is kept.
-- No data is lost.
DO $$
-- As in core/0002: DROP INDEX CONCURRENTLY cannot be conditional, so the
-- indexes to drop are renamed out of the way (SHARE UPDATE EXCLUSIVE: writes
-- go on), then dropped by their new names.
DECLARE
    v_index record;
BEGIN
    FOR v_index IN
        SELECT c.oid::regclass AS index, c.relname
        FROM feature_gates_counters() w
        JOIN pg_class t ON t.oid = to_regclass(w.table_name)
        JOIN pg_class c ON c.relname = w.index_name AND c.relnamespace = t.relnamespace
        WHERE NOT EXISTS (SELECT 1 FROM feature_gates_adopted_counters a
                          WHERE a.counter = w.counter AND a.had_index)
    LOOP
        EXECUTE format('ALTER INDEX %s RENAME TO %I', v_index.index, 'fg_drop_' || v_index.relname);
    END LOOP;
END
$$;
DROP INDEX CONCURRENTLY IF EXISTS fg_drop_idx_travel_itineraries_destinations_count;
DROP INDEX CONCURRENTLY IF EXISTS fg_drop_idx_chat_threads_messages_count;
