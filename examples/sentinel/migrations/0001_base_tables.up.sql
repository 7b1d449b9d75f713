-- Sentinel's own tables. Applied before feature-gates' `core` and `counters`
-- sets (FEATURE_GATES_MIGRATION_SETS = ["sentinel", "core", "counters"]): the
-- `counters` set adds chat_threads.thread_messages_count and
-- travel_itineraries.destinations_count to the tables made here.

CREATE TABLE users (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text        NOT NULL UNIQUE,
    name       text        NOT NULL,
    plan       text        NOT NULL DEFAULT 'free',
    is_admin   boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only a digest of each token is kept: a stolen database holds no usable token.
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    token_sha256 bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

-- message_count is the legacy counter; `counters` adds thread_messages_count,
-- which the limit check reads. Both move together (see threads.py).
CREATE TABLE chat_threads (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title         text        NOT NULL,
    message_count integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_threads_user_id ON chat_threads (user_id);

CREATE TABLE chat_messages (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    thread_id  bigint      NOT NULL REFERENCES chat_threads (id) ON DELETE CASCADE,
    role       text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'assistant')),
    content    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_messages_thread_id ON chat_messages (thread_id);

-- data holds the title and the waypoints (data->'waypoints', an array);
-- `counters` adds destinations_count, the number of waypoints.
CREATE TABLE travel_itineraries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    data          jsonb       NOT NULL DEFAULT '{}',
    alerts_config jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX travel_itineraries_user_id ON travel_itineraries (user_id);

-- The number of destinations in an itinerary's data: the length of
-- data->'waypoints' when it is an array, 0 for anything else. The same rule as
-- the `counters` backfill, so the audit agrees with what the app writes.
--
-- Its search_path is pinned, like every function of the migrations: to
-- pg_catalog, all it needs, with pg_temp last, so that no object of another
-- schema can stand in for what it calls. A SET clause keeps PostgreSQL from inlining the
-- function, which costs nothing here: the app calls it once per written row, on
-- a parameter (itineraries.py), and the `counters` trigger, backfill and audit
-- use an expression of their own (feature_gates_destinations_count).
CREATE FUNCTION waypoint_count(data jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN jsonb_typeof(data -> 'waypoints') = 'array'
            THEN jsonb_array_length(data -> 'waypoints') ELSE 0 END;

CREATE TABLE team_invites (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, email)
);

CREATE TABLE saved_searches (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    query      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX saved_searches_user_id ON saved_searches (user_id);
