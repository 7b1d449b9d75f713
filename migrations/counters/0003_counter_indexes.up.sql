-- feature-gates: no-transaction
-- Indexes for "which of this user's threads / itineraries are near a limit",
-- built after the backfill (so the backfill's writes do not maintain them) and
-- concurrently (writes go on while they are built).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_chat_threads_messages_count
    ON chat_threads (user_id, thread_messages_count);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_travel_itineraries_destinations_count
    ON travel_itineraries (user_id, destinations_count);
