-- Holds: capacity reserved for work whose cost is known only when it ends.
--
-- A hold is taken by the metered check itself (feature_usage_consume, through
-- 0041's feature_usage_reserve): its uses are on the counted rows like any use,
-- at every level the feature counts against, so that everyone else's capacity
-- is limit - used - live holds with no other check. A hold's row says what to
-- give back when it is committed for less, released, or expired: the counted
-- key (the subject first, like every usage table), the member whose share it
-- also took, and for a rolling window the bucket it went into.
CREATE TABLE IF NOT EXISTS feature_usage_holds (
    user_id       feature_usage_user_id NOT NULL,
    hold_id       uuid        NOT NULL DEFAULT gen_random_uuid(),
    feature       text        NOT NULL,
    scope         text        NOT NULL,
    period        text        NOT NULL,
    period_start  date        NOT NULL,
    period_offset integer     NOT NULL,
    member        feature_usage_user_id,
    bucket        bigint,
    amount        integer     NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_usage_holds_pkey PRIMARY KEY (user_id, hold_id),
    CONSTRAINT feature_usage_holds_amount_check CHECK (amount > 0),
    CONSTRAINT feature_usage_holds_scope_check CHECK (scope IN ('user', 'org')
                                                      AND (member IS NULL OR scope = 'org'))
);

-- The holds of one counted key by expiry: what a statement that needs room
-- reclaims, and what a balance reads as held.
CREATE INDEX IF NOT EXISTS feature_usage_holds_key_expiry
    ON feature_usage_holds (user_id, feature, scope, period, period_start, period_offset,
                            expires_at);
