-- Drops Sentinel's tables and everything in them.
DROP TABLE IF EXISTS saved_searches;
DROP TABLE IF EXISTS team_invites;
DROP FUNCTION IF EXISTS waypoint_count(jsonb);
DROP TABLE IF EXISTS travel_itineraries;
DROP TABLE IF EXISTS chat_messages;
DROP TABLE IF EXISTS chat_threads;
DROP TABLE IF EXISTS api_tokens;
DROP TABLE IF EXISTS users;
