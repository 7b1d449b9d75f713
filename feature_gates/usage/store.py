"""Every SQL statement the runtime sends, in one place.

Each goes through a function installed by the ``core`` migrations, so the
validation and the locking rules live in the database, next to the data.
"""

from __future__ import annotations

#: Run once on each new pooled connection: the feature-gates schema first on the
#: search path, and a statement timeout in milliseconds (0 leaves the server's).
CONFIGURE_SESSION = """
SELECT set_config('search_path', quote_ident(%(schema)s) || ', public', false),
       CASE WHEN %(timeout_ms)s::integer > 0
            THEN set_config('statement_timeout', %(timeout_ms)s::text, false) END
"""

#: Gives back consumed usage (never below 0); returns the new count.
REFUND = "SELECT refund_feature_usage(%s, %s, %s, %s)"

#: Adds to a usage count; returns the new count.
INCREMENT = "SELECT increment_feature_usage_safe(%s, %s, %s, %s)"

#: The background writer's statement: one batch, written at most once under its
#: id (a uuid). Parameters: the id, the ids of batches seen committed (their
#: records are deleted), then user ids (as text, cast to the database's type),
#: features, amounts, periods and idempotency keys (NULL or NULL entries for
#: none). Returns (user_id, feature, period_start, increment, usage_count) per
#: key written; no row when the id was already taken.
WRITE_BATCH = """
SELECT user_id, feature, period_start, increment, usage_count
FROM write_feature_usage_batch(
    %s, %s::uuid[], %s::text[]::feature_usage_user_id[], %s::text[], %s::bigint[],
    %s::date[], %s::text[])
"""

#: Whether a batch whose reply was lost was written; makes sure it never will be
#: if it was not.
RESOLVE_BATCH = "SELECT resolve_feature_usage_batch(%s)"

GET_USAGE = "SELECT get_feature_usage(%s, %s, %s)"

GET_USER_USAGE = "SELECT feature, usage_count, updated_at FROM get_user_feature_usage(%s, %s)"

#: A metered gate's check, in ONE round trip: consumes like CONSUME and, only when
#: the limit refuses, also reads the current count for the denial's ``used``.
#: The CTE holds a volatile call, so PostgreSQL evaluates it exactly once.
CONSUME_OR_USAGE = """
WITH consumed AS (
    SELECT consume_feature_usage(%(user_id)s, %(feature)s, %(amount)s, %(limit)s, %(period)s)
        AS count
)
SELECT count,
       CASE WHEN count IS NULL
            THEN get_feature_usage(%(user_id)s, %(feature)s, %(period)s) END
FROM consumed
"""

#: Sets a usage count outright (test overrides): the count is replaced, not added to.
SET_USAGE = """
INSERT INTO feature_usage AS fu (user_id, feature, period_start, usage_count)
VALUES (%s, %s, %s, %s)
ON CONFLICT (user_id, feature, period_start) DO UPDATE
    SET usage_count = excluded.usage_count, updated_at = now()
"""

#: The features used most in a period: total uses and distinct users.
TOP_FEATURES = """
-- all subjects: a report for operators, not a request's statement.
SELECT feature, sum(usage_count)::bigint AS uses, count(DISTINCT user_id)::bigint AS users
FROM feature_usage
WHERE period_start = %s AND usage_count > 0
GROUP BY feature
ORDER BY uses DESC, feature
LIMIT %s
"""

#: Usage rows at or above a threshold per feature; the caller passes two arrays of
#: equal length: feature names and the smallest count worth reporting for each.
USAGE_AT_LEAST = """
-- all subjects: a report for operators, not a request's statement.
SELECT fu.user_id, fu.feature, fu.usage_count
FROM feature_usage fu
JOIN unnest(%s::text[], %s::bigint[]) AS t(feature, threshold) ON t.feature = fu.feature
WHERE fu.period_start = %s AND fu.usage_count >= t.threshold
ORDER BY fu.feature, fu.usage_count DESC, fu.user_id
"""
