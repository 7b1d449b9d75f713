-- The usage alerts Sentinel receives from feature-gates as webhooks (its own:
-- FEATURE_GATES_WEBHOOK_URL points at /hooks/feature-gates), one row per event
-- id however many times it was delivered (delivery is at least once).
CREATE TABLE IF NOT EXISTS webhook_events (
    event_id    uuid        PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    deliveries  integer     NOT NULL DEFAULT 1,
    feature     text        NOT NULL,
    user_id     bigint,
    org_id      bigint,
    threshold   numeric     NOT NULL,
    used        bigint      NOT NULL,
    usage_limit bigint      NOT NULL,
    event       jsonb       NOT NULL
);
