-- Drops the batch function that audits and repairs the legacy
-- chat_threads.message_count: verify and repair-counters no longer look at it.
-- No data is lost (message_count keeps its values).
DROP FUNCTION IF EXISTS feature_gates_message_count_batch(text, boolean);
