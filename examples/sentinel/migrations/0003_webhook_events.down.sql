-- Drops the received webhook events.
DROP TABLE IF EXISTS webhook_events;
