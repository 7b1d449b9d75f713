-- feature-gates: no-transaction
-- Drops the two counter indexes (without blocking writes). No data is lost.
DROP INDEX CONCURRENTLY IF EXISTS idx_travel_itineraries_destinations_count;
DROP INDEX CONCURRENTLY IF EXISTS idx_chat_threads_messages_count;
