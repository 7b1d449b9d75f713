-- feature-gates: no-transaction
-- Drops the triggers, the functions and the columns chat_threads.thread_messages_count
-- and travel_itineraries.destinations_count: their values are lost (a later
-- migrate recomputes them). A counter column the application had before is
-- kept, with its values as the triggers left them and its own default and
-- NULLs allowed again. The rows of chat_threads, chat_messages and
-- travel_itineraries and every other column, message_count included, are kept.
DROP TRIGGER IF EXISTS feature_gates_count_messages_insert ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_messages_delete ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_messages_update ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_messages_truncate ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_destinations ON travel_itineraries;
-- One table at a time.
SELECT feature_gates_counter_give_back('chat_threads.thread_messages_count');
SELECT feature_gates_counter_give_back('travel_itineraries.destinations_count');
DROP FUNCTION IF EXISTS feature_gates_count_thread_messages();
DROP FUNCTION IF EXISTS feature_gates_count_destinations();
DROP FUNCTION IF EXISTS feature_gates_backfill_counter(text);
DROP FUNCTION IF EXISTS feature_gates_backfill_thread_messages_count();
DROP FUNCTION IF EXISTS feature_gates_backfill_destinations_count();
DROP FUNCTION IF EXISTS feature_gates_backfill_reset(text);
DROP FUNCTION IF EXISTS feature_gates_backfill_save(text, text, boolean);
DROP FUNCTION IF EXISTS feature_gates_counter_audit();
DROP FUNCTION IF EXISTS feature_gates_counter_not_null(text, text);
DROP FUNCTION IF EXISTS feature_gates_counter_check_indexes();
DROP FUNCTION IF EXISTS feature_gates_counter_index_problems();
DROP FUNCTION IF EXISTS feature_gates_destinations_count(jsonb);
DROP TABLE IF EXISTS feature_gates_backfill_progress;
-- Last: until the record is gone, running this rollback again gives back the
-- same; after, it does nothing.
DROP TABLE IF EXISTS feature_gates_adopted_counters;
DROP FUNCTION IF EXISTS feature_gates_counter_give_back(text);
DROP FUNCTION IF EXISTS feature_gates_counters();
