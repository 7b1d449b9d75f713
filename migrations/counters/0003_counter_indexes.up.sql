-- feature-gates: no-transaction
-- Indexes for "which of this user's threads / itineraries are near a limit",
-- built after the backfill (so the backfill's writes do not maintain them) and
-- concurrently (writes go on while they are built).
-- IF NOT EXISTS accepts any relation of the name: one that is not what it
-- must be (feature_gates_counter_index_problems) stops the build. An index
-- the application had serves as it is.
SELECT feature_gates_counter_check_indexes();

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_chat_threads_messages_count
    ON chat_threads (user_id, thread_messages_count);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_travel_itineraries_destinations_count
    ON travel_itineraries (user_id, destinations_count);
