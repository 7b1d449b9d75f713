"""Every SQL statement the runtime sends, in one place.

Each goes through a function installed by the ``core`` migrations, so the
validation and the locking rules live in the database, next to the data. Names
are qualified with the schema of FEATURE_GATES_SCHEMA (nothing is set on the
session, so a transaction pooler may use any server connection), and each
statement starts with ``SET LOCAL statement_timeout``: one message, one round
trip, one transaction. Built once per application with :mod:`psycopg.sql`.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

__all__ = ["Statements"]

#: A metered gate's check, in ONE round trip: consumes and, only when the limit
#: refuses, also reads the current count for the denial's ``used``. The CTE holds
#: a volatile call, so PostgreSQL evaluates it exactly once.
CONSUME = sql.SQL("""
WITH consumed AS (
    SELECT {schema}.consume_feature_usage(
        %(user_id)s, %(feature)s, %(amount)s, %(limit)s, %(period)s) AS count
)
SELECT count,
       CASE WHEN count IS NULL
            THEN {schema}.get_feature_usage(%(user_id)s, %(feature)s, %(period)s) END
           AS current
FROM consumed
""")

#: Gives back consumed usage (never below 0); returns the new count.
REFUND = sql.SQL("SELECT {schema}.refund_feature_usage(%s, %s, %s, %s) AS count")

#: One user's count of one feature in a period.
USAGE = sql.SQL("SELECT {schema}.get_feature_usage(%s, %s, %s) AS count")

#: Every count of one user in a period.
USER_USAGE = sql.SQL("SELECT feature, usage_count FROM {schema}.get_user_feature_usage(%s, %s)")

#: The background writer's statement: one batch, written at most once under its
#: id (a uuid). Parameters: the id, the ids of batches seen committed (their
#: records are deleted), then user ids (as text, cast to the database's type),
#: features, amounts, periods and idempotency keys (NULL or NULL entries for
#: none). Returns (user_id, feature, period_start, increment, usage_count) per
#: key written; no row when the id was already taken.
WRITE_BATCH = sql.SQL("""
SELECT user_id, feature, period_start, increment, usage_count
FROM {schema}.write_feature_usage_batch(
    %s, %s::uuid[], %s::text[]::{schema}.feature_usage_user_id[], %s::text[], %s::bigint[],
    %s::date[], %s::text[])
""")

#: The same, returning only the sum of the amounts written: what the writer needs
#: when no receiver of ``usage-recorded`` wants the rows.
WRITE_BATCH_TOTAL = sql.SQL("""
SELECT coalesce(sum(increment), 0)::bigint AS written
FROM {schema}.write_feature_usage_batch(
    %s, %s::uuid[], %s::text[]::{schema}.feature_usage_user_id[], %s::text[], %s::bigint[],
    %s::date[], %s::text[])
""")

#: Whether a batch whose reply was lost was written; makes sure it never will be
#: if it was not.
RESOLVE_BATCH = sql.SQL("SELECT {schema}.resolve_feature_usage_batch(%s) AS applied")

#: Sets a usage count outright (test overrides): the count is replaced, not added to.
SET_USAGE = sql.SQL("""
INSERT INTO {schema}.feature_usage AS fu (user_id, feature, period_start, usage_count)
VALUES (%s, %s, %s, %s)
ON CONFLICT (user_id, feature, period_start) DO UPDATE
    SET usage_count = excluded.usage_count, updated_at = now()
""")

#: The features used most in a period: total uses and distinct users.
TOP_FEATURES = sql.SQL("""
SELECT feature, sum(usage_count)::bigint AS uses, count(DISTINCT user_id)::bigint AS users
FROM {schema}.feature_usage
WHERE period_start = %s AND usage_count > 0
GROUP BY feature
ORDER BY uses DESC, feature
LIMIT %s
""")

#: Usage rows at or above a threshold per feature; the caller passes two arrays of
#: equal length: feature names and the smallest count worth reporting for each.
USAGE_AT_LEAST = sql.SQL("""
SELECT fu.user_id, fu.feature, fu.usage_count
FROM {schema}.feature_usage fu
JOIN unnest(%s::text[], %s::bigint[]) AS t(feature, threshold) ON t.feature = fu.feature
WHERE fu.period_start = %s AND fu.usage_count >= t.threshold
ORDER BY fu.feature, fu.usage_count DESC, fu.user_id
""")

#: Uses and users per feature and month: the months before the current one from
#: the summary view (refreshed by `feature-gates refresh`), the current one from
#: feature_usage itself, so that it always agrees with the gates.
MONTHLY_USAGE = sql.SQL("""
SELECT period_start, feature, total_usage AS uses, unique_users AS users
FROM {schema}.feature_usage_summary
WHERE period_start >= %(since)s AND period_start < %(current)s
UNION ALL
SELECT period_start, feature, sum(usage_count)::bigint, count(*) FILTER (WHERE usage_count > 0)
FROM {schema}.feature_usage
WHERE period_start = %(current)s
GROUP BY period_start, feature
ORDER BY period_start, feature
""")

#: Distinct users with some use, per month.
ACTIVE_USERS = sql.SQL("""
SELECT period_start, count(DISTINCT user_id) AS users
FROM {schema}.feature_usage
WHERE period_start >= %s AND usage_count > 0
GROUP BY period_start
ORDER BY period_start
""")

#: The statement timeout of one transaction, sent before an application's own
#: query (FEATURE_GATES_USER_LOOKUP_SQL, ...) in the same round trip.
LOCAL_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"


#: The runtime's statements, by the name a Statements field gives them.
_QUERIES = {
    "consume": CONSUME,
    "refund": REFUND,
    "usage": USAGE,
    "user_usage": USER_USAGE,
    "write_batch": WRITE_BATCH,
    "write_batch_total": WRITE_BATCH_TOTAL,
    "resolve_batch": RESOLVE_BATCH,
    "set_usage": SET_USAGE,
    "top_features": TOP_FEATURES,
    "usage_at_least": USAGE_AT_LEAST,
    "monthly_usage": MONTHLY_USAGE,
    "active_users": ACTIVE_USERS,
}


@dataclass(frozen=True)
class Statements:
    """The runtime's statements for one schema and statement timeout."""

    consume: str
    refund: str
    usage: str
    user_usage: str
    write_batch: str
    write_batch_total: str
    resolve_batch: str
    set_usage: str
    top_features: str
    usage_at_least: str
    monthly_usage: str
    active_users: str
    #: The schema of the package's objects.
    schema: str
    #: Sets the statement timeout of the transaction, before an application's own query.
    local_timeout: str
    #: The statement timeout in milliseconds, as set_config takes it; None for the
    #: server's own.
    timeout_ms: str | None

    @classmethod
    def build(cls, schema: str, statement_timeout: float) -> Statements:
        """The statements with ``schema`` in their names and ``statement_timeout``
        (seconds; 0 leaves the server's setting) set in their transaction."""
        ms = round(statement_timeout * 1000)
        timeout_ms = str(ms) if ms > 0 else None
        rendered = {name: _render(query, schema, timeout_ms) for name, query in _QUERIES.items()}
        return cls(**rendered, schema=schema, local_timeout=LOCAL_TIMEOUT, timeout_ms=timeout_ms)

    def render(self, template: sql.SQL) -> str:
        """``template`` (with ``{schema}`` where the schema goes) as these statements
        are sent: in the schema, with the statement timeout."""
        return _render(template, self.schema, self.timeout_ms)


def _render(template: sql.SQL, schema: str, timeout_ms: str | None) -> str:
    query: sql.Composable = template.format(schema=sql.Identifier(schema))
    if timeout_ms is not None:
        timeout = sql.SQL("SET LOCAL statement_timeout = {}; ").format(sql.Literal(int(timeout_ms)))
        query = sql.Composed([timeout, query])
    return query.as_string(None)
