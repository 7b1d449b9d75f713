-- Credits: grants that add to a level's allowance, and the append-only ledger
-- that explains every balance line by line.
--
-- A grant belongs to the level it is given to (the counted subject: a user, or
-- an organisation for its pool; the scope; the feature), not to a period: it is
-- drawn on by whichever period runs past its allowance, until it expires.
-- credit_used on a counted row is what that row drew from grants: its usage is
-- always within its allowance plus credit_used.

ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS credit_used bigint NOT NULL DEFAULT 0;

-- expires_at NULL: never. idempotency_key: a grant with the same key (for the
-- same subject, scope and feature) is added once. A rollover's key is
-- 'rollover:<rule>:<period start>:<offset>' of the period it carries from.
CREATE TABLE IF NOT EXISTS feature_usage_grants (
    user_id         feature_usage_user_id NOT NULL,
    grant_id        bigint      GENERATED ALWAYS AS IDENTITY,
    feature         text        NOT NULL,
    scope           text        NOT NULL,
    amount          bigint      NOT NULL,
    remaining       bigint      NOT NULL,
    expires_at      timestamptz,
    granted_at      timestamptz NOT NULL DEFAULT now(),
    reason          text        NOT NULL DEFAULT '',
    idempotency_key text,
    CONSTRAINT feature_usage_grants_pkey PRIMARY KEY (user_id, grant_id),
    CONSTRAINT feature_usage_grants_once UNIQUE (user_id, feature, scope, idempotency_key),
    CONSTRAINT feature_usage_grants_amount_check CHECK (amount > 0 AND remaining >= 0
                                                        AND remaining <= amount),
    CONSTRAINT feature_usage_grants_scope_check CHECK (scope IN ('user', 'org'))
);

-- The grants of one level in the order they are drawn on.
CREATE INDEX IF NOT EXISTS feature_usage_grants_order
    ON feature_usage_grants (user_id, feature, scope, expires_at, granted_at, grant_id);

-- The ledger: one row per grant ('grant', 'rollover': +amount), draw on a grant
-- ('consume': -amount, with the counted key that drew), give-back ('refund':
-- +amount; grant_id NULL when every grant it came from had expired, which is
-- lost) and expiry ('expire': -remaining). A grant's remaining is the sum of
-- its rows; a counted row's credit_used is minus the sum of its draws and
-- give-backs. Never updated, never deleted.
CREATE TABLE IF NOT EXISTS feature_usage_ledger (
    user_id       feature_usage_user_id NOT NULL,
    entry_id      bigint      GENERATED ALWAYS AS IDENTITY,
    feature       text        NOT NULL,
    scope         text        NOT NULL,
    grant_id      bigint,
    kind          text        NOT NULL,
    amount        bigint      NOT NULL,
    period        text,
    period_start  date,
    period_offset integer,
    reason        text        NOT NULL DEFAULT '',
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_usage_ledger_pkey PRIMARY KEY (user_id, entry_id),
    CONSTRAINT feature_usage_ledger_kind_check CHECK (
        kind IN ('grant', 'rollover', 'consume', 'refund', 'expire'))
);

CREATE INDEX IF NOT EXISTS feature_usage_ledger_feature
    ON feature_usage_ledger (user_id, feature, scope, entry_id);
