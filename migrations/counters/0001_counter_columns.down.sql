-- feature-gates: no-transaction
-- Drops the triggers, the functions and the columns chat_threads.thread_messages_count
-- and travel_itineraries.destinations_count: their values are lost (a later
-- migrate recomputes them). The rows of chat_threads, chat_messages and
-- travel_itineraries and every other column, message_count included, are kept.
DROP TRIGGER IF EXISTS feature_gates_count_messages_insert ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_messages_delete ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_messages_update ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_messages_truncate ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_destinations ON travel_itineraries;
DROP FUNCTION IF EXISTS feature_gates_count_thread_messages();
DROP FUNCTION IF EXISTS feature_gates_count_destinations();
DROP FUNCTION IF EXISTS feature_gates_backfill_counter(text);
DROP FUNCTION IF EXISTS feature_gates_backfill_thread_messages_count();
DROP FUNCTION IF EXISTS feature_gates_backfill_destinations_count();
DROP FUNCTION IF EXISTS feature_gates_backfill_reset(text);
DROP FUNCTION IF EXISTS feature_gates_counter_audit();
DROP FUNCTION IF EXISTS feature_gates_counters();
DROP FUNCTION IF EXISTS feature_gates_destinations_count(jsonb);
DROP TABLE IF EXISTS feature_gates_backfill_progress;
ALTER TABLE chat_threads DROP COLUMN IF EXISTS thread_messages_count;
ALTER TABLE travel_itineraries DROP COLUMN IF EXISTS destinations_count;
