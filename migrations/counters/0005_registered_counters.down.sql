-- Gives the two counters back the triggers of 0001 and takes them out of the
-- counter registry: verify checks them through the set's verify.sql again, and
-- repair-counters no longer sees them. Their values stay. No data is lost.
DROP TRIGGER IF EXISTS feature_gates_count_chat_threads_thread_messages_count_insert
    ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_chat_threads_thread_messages_count_delete
    ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_chat_threads_thread_messages_count_update
    ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_chat_threads_thread_messages_count_truncate
    ON chat_messages;
DROP TRIGGER IF EXISTS feature_gates_count_chat_threads_thread_messages_count_recount
    ON chat_threads;
DROP TRIGGER IF EXISTS feature_gates_count_travel_itineraries_destinations_count
    ON travel_itineraries;

CREATE OR REPLACE TRIGGER feature_gates_count_messages_insert
    AFTER INSERT ON chat_messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_thread_messages();
CREATE OR REPLACE TRIGGER feature_gates_count_messages_delete
    AFTER DELETE ON chat_messages REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_thread_messages();
CREATE OR REPLACE TRIGGER feature_gates_count_messages_update
    AFTER UPDATE ON chat_messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_thread_messages();
CREATE OR REPLACE TRIGGER feature_gates_count_messages_truncate
    AFTER TRUNCATE ON chat_messages
    FOR EACH STATEMENT EXECUTE FUNCTION feature_gates_count_thread_messages();
CREATE OR REPLACE TRIGGER feature_gates_count_destinations
    BEFORE INSERT OR UPDATE OF data, destinations_count ON travel_itineraries
    FOR EACH ROW EXECUTE FUNCTION feature_gates_count_destinations();

DROP FUNCTION IF EXISTS feature_gates_count_chat_threads_thread_messages_count();
DROP FUNCTION IF EXISTS feature_gates_count_chat_threads_thread_messages_count_recount();
DROP FUNCTION IF EXISTS feature_gates_count_chat_threads_thread_messages_count_move(anyarray,
                                                                                     integer[]);
DROP FUNCTION IF EXISTS feature_gates_count_travel_itineraries_destinations_count();

DELETE FROM feature_gates_counter_positions
WHERE counter IN ('chat_threads.thread_messages_count', 'travel_itineraries.destinations_count');
DELETE FROM feature_gates_counter_registry
WHERE counter IN ('chat_threads.thread_messages_count', 'travel_itineraries.destinations_count');
