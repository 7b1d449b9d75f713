-- Usage alerts: the outbox of threshold crossings, and what a counted row
-- records for them at its last metered check.
--
-- A crossing is a row of feature_usage_alerts, inserted by the statement that
-- moved the count past a threshold, in its transaction (0031's triggers), and
-- delivered afterwards by the applications' senders. Each row says what
-- crossed (the counted subject and level, the feature, the rule, the period or
-- for a rolling window the bucket of the crossing, the threshold), the usage
-- and limit at that moment, and how its delivery stands.

-- What the last metered check of a row knew besides its limit: the thresholds
-- in force (fractions of the limit, ascending; NULL for none) and the plan.
-- alert_next is a period's next crossing: the count at which its next threshold
-- is reached (NULL: not computed yet), so that a use that crosses nothing costs
-- no function call. alert_rearm is a rolling window's memory: per threshold,
-- the bucket its usage went (or will go) back below it, NULL once it is armed
-- again.
ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS alert_thresholds numeric[];
ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS alert_plan text;
ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS alert_next bigint;
ALTER TABLE feature_usage ADD COLUMN IF NOT EXISTS alert_rearm bigint[];
ALTER TABLE feature_usage_members ADD COLUMN IF NOT EXISTS alert_thresholds numeric[];
ALTER TABLE feature_usage_members ADD COLUMN IF NOT EXISTS alert_plan text;
ALTER TABLE feature_usage_members ADD COLUMN IF NOT EXISTS alert_next bigint;
ALTER TABLE feature_usage_members ADD COLUMN IF NOT EXISTS alert_rearm bigint[];

-- The outbox. user_id is the counted subject (a user, or an organisation for
-- its pool and its members' shares), first, like every usage table. member is
-- the member whose share (capped by per_user) crossed; NULL for the subject's
-- own count or the pool. crossing is 0 for a period; for a rolling window,
-- which has no period, the bucket in which usage crossed from below.
-- period_end is when the period ends (NULL for a window or a lifetime).
--
-- Delivery: state is 'pending' until a sender delivered it ('sent') or gave
-- up after its retries ('dead'). A sender leases the rows it delivers
-- (leased_until) and counts the attempt; a failed one waits until
-- next_attempt_at. signalled_at: when the process's signal was sent.
CREATE TABLE IF NOT EXISTS feature_usage_alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    event_id        uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id         feature_usage_user_id NOT NULL,
    feature         text        NOT NULL,
    scope           text        NOT NULL,
    member          feature_usage_user_id,
    period          text        NOT NULL,
    period_start    date        NOT NULL,
    period_offset   integer     NOT NULL,
    crossing        bigint      NOT NULL DEFAULT 0,
    threshold       numeric     NOT NULL,
    used            bigint      NOT NULL,
    usage_limit     bigint      NOT NULL,
    plan            text,
    period_end      timestamptz,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    state           text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    signalled_at    timestamptz,
    sent_at         timestamptz,
    last_error      text,
    CONSTRAINT feature_usage_alerts_pkey PRIMARY KEY (id),
    CONSTRAINT feature_usage_alerts_event_id_key UNIQUE (event_id),
    CONSTRAINT feature_usage_alerts_state_check CHECK (state IN ('pending', 'sent', 'dead')),
    CONSTRAINT feature_usage_alerts_threshold_check CHECK (threshold > 0 AND threshold <= 1),
    CONSTRAINT feature_usage_alerts_scope_check CHECK (scope IN ('user', 'org')
                                                       AND (member IS NULL OR scope = 'org'))
);

-- A crossing is recorded once per counted subject and level, feature, rule,
-- period (or window crossing) and threshold.
CREATE UNIQUE INDEX IF NOT EXISTS feature_usage_alerts_once
    ON feature_usage_alerts (user_id, feature, scope, period, period_start, period_offset,
                             threshold, crossing)
    WHERE member IS NULL;

CREATE UNIQUE INDEX IF NOT EXISTS feature_usage_alerts_member_once
    ON feature_usage_alerts (user_id, feature, period, period_start, period_offset, member,
                             threshold, crossing)
    WHERE member IS NOT NULL;

-- What the senders look for: pending alerts in order, and per subject the
-- earliest pending one (alerts of a subject go out in order).
CREATE INDEX IF NOT EXISTS feature_usage_alerts_pending
    ON feature_usage_alerts (user_id, scope, id)
    WHERE state = 'pending';

CREATE INDEX IF NOT EXISTS feature_usage_alerts_occurred_at
    ON feature_usage_alerts (occurred_at);

-- Delivered and dead alerts moved out by `feature-gates archive`.
CREATE TABLE IF NOT EXISTS feature_usage_alerts_archive (
    id              bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    user_id         feature_usage_user_id NOT NULL,
    feature         text        NOT NULL,
    scope           text        NOT NULL,
    member          feature_usage_user_id,
    period          text        NOT NULL,
    period_start    date        NOT NULL,
    period_offset   integer     NOT NULL,
    crossing        bigint      NOT NULL,
    threshold       numeric     NOT NULL,
    used            bigint      NOT NULL,
    usage_limit     bigint      NOT NULL,
    plan            text,
    period_end      timestamptz,
    occurred_at     timestamptz NOT NULL,
    state           text        NOT NULL,
    attempts        integer     NOT NULL,
    signalled_at    timestamptz,
    sent_at         timestamptz,
    last_error      text,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_usage_alerts_archive_pkey PRIMARY KEY (id)
);
