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

#: A metered check of any kind, in ONE round trip: every level the key counts
#: against (a user's own count; an organisation's pool, then the member's share)
#: moves, or none; the answer says which level refused, with the counts (and a
#: window's buckets, for when it frees up). The alert thresholds and the plan are
#: recorded on the rows it moves; a crossing is recorded in the same transaction.
#: Refused, it reclaims the key's holds expired at ``now`` and tries again. A use
#: is also a ledger row (a hold's uses are not, until committed).
CONSUME = sql.SQL("""
SELECT refused, used, member_used, buckets, member_buckets, newest_bucket
FROM {schema}.feature_usage_take(
    %(subject)s, %(feature)s, %(scope)s, %(rule)s, %(start)s, %(offset)s, %(end)s,
    %(amount)s, %(limit)s, %(member)s, %(member_limit)s, %(bucket)s, %(thresholds)s::numeric[],
    %(plan)s, %(now)s, false)
""")

#: A hold, in ONE round trip: the metered check of CONSUME for ``up_to`` uses,
#: and when taken the hold that gives back what is not committed by ``expires``.
RESERVE = sql.SQL("""
SELECT hold_id, refused, used, member_used, buckets, member_buckets, newest_bucket
FROM {schema}.feature_usage_reserve(
    %(subject)s, %(feature)s, %(scope)s, %(rule)s, %(start)s, %(offset)s, %(end)s,
    %(amount)s, %(limit)s, %(member)s, %(member_limit)s, %(bucket)s, %(thresholds)s::numeric[],
    %(plan)s, %(now)s, %(expires)s)
""")

#: Settles a hold in ONE round trip: ``actual`` uses stay counted, the rest
#: come back; 'settled', 'expired' or 'unknown'.
SETTLE_HOLD = sql.SQL("""
SELECT {schema}.feature_usage_hold_settle(
    %(subject)s, %(hold)s, %(actual)s, %(now)s, %(now_bucket)s) AS outcome
""")

#: What a subject's live holds take of one key (and the member's of them).
HELD = sql.SQL("""
SELECT held, member_held
FROM {schema}.feature_usage_held(
    %(subject)s, %(feature)s, %(scope)s, %(rule)s, %(start)s, %(offset)s, %(member)s, %(now)s)
""")

#: Gives back uses to the period (or window bucket) and levels they were taken
#: from, and to the grants the period drew on; returns the subject's (or the
#: pool's) count after.
REFUND = sql.SQL("""
SELECT {schema}.feature_usage_give_back(
    %(subject)s, %(feature)s, %(scope)s, %(rule)s, %(start)s, %(offset)s, %(amount)s,
    %(member)s, %(bucket)s, %(now_bucket)s, %(now)s, 0) AS count
""")

#: Adds a grant to a level, once per idempotency key; its id and whether added.
GRANT = sql.SQL("""
SELECT grant_id, added
FROM {schema}.feature_usage_grant(
    %(subject)s, %(feature)s, %(scope)s, %(amount)s, %(expires)s, %(reason)s, %(key)s,
    %(kind)s, %(now)s)
""")

#: The balance of one counted key: counts, holds, what it drew, the live grants.
BALANCE = sql.SQL("""
SELECT used, credit_used, held, member_used, member_held, grant_ids, amounts, remainings,
       expiries, reasons
FROM {schema}.feature_usage_balance(
    %(subject)s, %(feature)s, %(scope)s, %(rule)s, %(start)s, %(offset)s, %(member)s, %(now)s)
""")

#: The periods ended at ``now`` (within a year) whose rows recorded a plan: what
#: the rollover job carries over from. Anchored periods are carried lazily only.
ENDED_PERIODS = sql.SQL("""
-- all subjects: the rollover job's scan (feature-gates close-periods), for cron.
SELECT user_id AS subject, feature, scope, period, period_start, period_offset,
       period_end, alert_plan AS plan
FROM {schema}.feature_usage
WHERE period_end <= %(now)s AND period_end > %(now)s - interval '366 days'
  AND alert_plan IS NOT NULL AND period NOT LIKE 'window:%%' AND period NOT LIKE '%%+anchor'
ORDER BY user_id, feature, period_start
""")

#: Carries an ended period's unused allowance into a grant, once; what it carried.
ROLLOVER = sql.SQL("""
SELECT {schema}.feature_usage_rollover(
    %(subject)s, %(feature)s, %(scope)s, %(rule)s, %(start)s, %(offset)s, %(allowance)s,
    %(cap)s, %(expires)s, %(now)s) AS carried
""")

#: The counts of one subject (a user; or an organisation, with the member's
#: share), one row per key asked for, in the order asked.
READ = sql.SQL("""
SELECT feature, period, used, member_used, buckets, member_buckets, newest_bucket
FROM {schema}.feature_usage_read(
    %(subject)s, %(scope)s, %(member)s, %(features)s::text[], %(rules)s::text[],
    %(starts)s::date[], %(offsets)s::integer[], %(buckets)s::bigint[])
""")

#: Starts a count afresh (and an organisation pool's member shares); returns the
#: count there was.
RESET = sql.SQL("""
SELECT {schema}.feature_usage_reset(
    %(subject)s, %(feature)s, %(scope)s, %(rule)s, %(start)s, %(offset)s) AS count
""")

#: Adds uses to one key without a limit (they happened: a test's override).
INCREMENT = sql.SQL("""
SELECT count(*) AS rows
FROM {schema}.feature_usage_increment_many(
    ARRAY[%(subject)s]::{schema}.feature_usage_user_id[], ARRAY[%(feature)s]::text[],
    ARRAY[%(scope)s]::text[], ARRAY[%(rule)s]::text[], ARRAY[%(start)s]::date[],
    ARRAY[%(offset)s]::integer[], NULL, ARRAY[%(member)s]::{schema}.feature_usage_user_id[],
    ARRAY[%(bucket)s]::bigint[], ARRAY[%(amount)s]::bigint[])
""")

#: One user's count of one feature in a calendar month in UTC (the default kind).
USAGE = sql.SQL("SELECT {schema}.get_feature_usage(%s, %s, %s) AS count")

#: Every count of one user in a calendar month in UTC (the default kind).
USER_USAGE = sql.SQL("SELECT feature, usage_count FROM {schema}.get_user_feature_usage(%s, %s)")

#: The background writer's statement: one batch, written at most once under its
#: id (a uuid). Parameters: the id, the ids of batches seen committed (their
#: records are deleted), then per use the counted subject (as text, cast to the
#: database's type), feature, scope, rule, period start and offset, member (as
#: text, NULL for none), window bucket (NULL for a period), amount and
#: idempotency key (NULL for none). Returns per row written (a member's share
#: with its member) what it added and the count now; no row when the id was
#: already taken.
WRITE_BATCH = sql.SQL("""
SELECT subject, member, feature, scope, period, period_start, period_offset, increment,
       usage_count
FROM {schema}.feature_usage_write_batch(
    %s, %s::uuid[], %s::text[]::{schema}.feature_usage_user_id[], %s::text[], %s::text[],
    %s::text[], %s::date[], %s::integer[], NULL,
    %s::text[]::{schema}.feature_usage_user_id[], %s::bigint[], %s::bigint[], %s::text[])
""")

#: The same, returning only the sum of the uses written (each counted once: a
#: member's share repeats its pool's): what the writer needs when no receiver of
#: ``usage-recorded`` wants the rows.
WRITE_BATCH_TOTAL = sql.SQL("""
SELECT coalesce(sum(increment) FILTER (WHERE member IS NULL), 0)::bigint AS written
FROM {schema}.feature_usage_write_batch(
    %s, %s::uuid[], %s::text[]::{schema}.feature_usage_user_id[], %s::text[], %s::text[],
    %s::text[], %s::date[], %s::integer[], NULL,
    %s::text[]::{schema}.feature_usage_user_id[], %s::bigint[], %s::bigint[], %s::text[])
""")

#: Whether a batch whose reply was lost was written; makes sure it never will be
#: if it was not.
RESOLVE_BATCH = sql.SQL("SELECT {schema}.resolve_feature_usage_batch(%s) AS applied")

#: Sets a user's count of a calendar month in UTC (the default kind) outright
#: (test overrides): the count is replaced, not added to.
SET_USAGE = sql.SQL("""
INSERT INTO {schema}.feature_usage AS fu (user_id, feature, period_start, usage_count)
VALUES (%s, %s, %s, %s)
ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
    SET usage_count = excluded.usage_count, updated_at = now()
""")

#: The features used most in a month: the uses counted by every period that
#: starts in it (a day's, a week's, an anchored month's...; windows and
#: lifetimes have no month), and the subjects that used them.
TOP_FEATURES = sql.SQL("""
-- all subjects: a report for operators, not a request's statement.
SELECT feature, sum(usage_count)::bigint AS uses, count(DISTINCT user_id)::bigint AS users
FROM {schema}.feature_usage
WHERE period_start >= %(month)s AND period_start < %(month)s::date + interval '1 month'
  AND period NOT LIKE 'window:%%' AND period <> 'lifetime' AND usage_count > 0
GROUP BY feature
ORDER BY uses DESC, feature
LIMIT %(top)s
""")

#: Users' counts at or above a threshold per feature, in the periods that start in
#: a month; the caller passes two arrays of equal length: feature names and the
#: smallest count worth reporting for each.
USAGE_AT_LEAST = sql.SQL("""
-- all subjects: a report for operators, not a request's statement.
SELECT fu.user_id, fu.feature, fu.usage_count
FROM {schema}.feature_usage fu
JOIN unnest(%(features)s::text[], %(thresholds)s::bigint[]) AS t(feature, threshold)
  ON t.feature = fu.feature
WHERE fu.period_start >= %(month)s AND fu.period_start < %(month)s::date + interval '1 month'
  AND fu.scope = 'user' AND fu.period NOT LIKE 'window:%%' AND fu.period <> 'lifetime'
  AND fu.usage_count >= t.threshold
ORDER BY fu.feature, fu.usage_count DESC, fu.user_id
""")

#: Uses and subjects per feature and month (of the periods starting in it): the
#: months before the current one from the summary view (refreshed by
#: `feature-gates refresh`), the current one from feature_usage itself, so that
#: it always agrees with the gates.
MONTHLY_USAGE = sql.SQL("""
-- all subjects: a report for operators, not a request's statement.
SELECT date_trunc('month', period_start)::date AS period_start, feature,
       sum(total_usage)::bigint AS uses, sum(unique_users)::bigint AS users
FROM {schema}.feature_usage_summary
WHERE period_start >= %(since)s AND period_start < %(current)s AND period <> 'lifetime'
GROUP BY 1, 2
UNION ALL
SELECT %(current)s::date, feature, sum(usage_count)::bigint,
       count(*) FILTER (WHERE usage_count > 0)
FROM {schema}.feature_usage
WHERE period_start >= %(current)s AND period_start < %(current)s::date + interval '1 month'
  AND period NOT LIKE 'window:%%' AND period <> 'lifetime'
GROUP BY feature
ORDER BY 1, 2
""")

#: Distinct users with some use, per month: their own counts, and their shares of
#: organisation pools.
ACTIVE_USERS = sql.SQL("""
-- all subjects: a report for operators, not a request's statement.
SELECT date_trunc('month', used.period_start)::date AS period_start,
       count(DISTINCT used.user_id) AS users
FROM (SELECT fu.period_start, fu.user_id FROM {schema}.feature_usage fu
      WHERE fu.period_start >= %(since)s AND fu.scope = 'user' AND fu.usage_count > 0
        AND fu.period NOT LIKE 'window:%%' AND fu.period <> 'lifetime'
      UNION ALL
      SELECT m.period_start, m.user_id FROM {schema}.feature_usage_members m
      WHERE m.period_start >= %(since)s AND m.usage_count > 0
        AND m.period NOT LIKE 'window:%%' AND m.period <> 'lifetime') AS used
GROUP BY 1
ORDER BY 1
""")

#: Claims alerts due for delivery for a lease of seconds, counting the attempt
#: (concurrent senders claim different ones; a subject's go out in order).
CLAIM_ALERTS = sql.SQL("""
SELECT id, event_id, user_id::text AS user_id, feature, scope, member::text AS member, period,
       period_start, period_offset, threshold, used, usage_limit, plan, period_end, occurred_at,
       attempts, signalled_at
FROM {schema}.feature_usage_alerts_claim(%(batch)s, %(lease)s)
ORDER BY id
""")

#: Records how a delivery attempt went: 'sent', 'dead' or 'pending' (retried).
SETTLE_ALERT = sql.SQL("""
SELECT {schema}.feature_usage_alerts_settle(
    %(id)s, %(state)s, %(signalled)s, %(retry_in)s, %(error)s) AS settled
""")

#: The statement timeout of one transaction, sent before an application's own
#: query (FEATURE_GATES_USER_LOOKUP_SQL, ...) in the same round trip.
LOCAL_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"


#: The runtime's statements, by the name a Statements field gives them.
_QUERIES = {
    "consume": CONSUME,
    "reserve": RESERVE,
    "settle_hold": SETTLE_HOLD,
    "held": HELD,
    "refund": REFUND,
    "grant": GRANT,
    "balance": BALANCE,
    "rollover": ROLLOVER,
    "ended_periods": ENDED_PERIODS,
    "read": READ,
    "reset": RESET,
    "increment": INCREMENT,
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
    "claim_alerts": CLAIM_ALERTS,
    "settle_alert": SETTLE_ALERT,
}


@dataclass(frozen=True)
class Statements:
    """The runtime's statements for one schema and statement timeout."""

    consume: str
    reserve: str
    settle_hold: str
    held: str
    refund: str
    grant: str
    balance: str
    rollover: str
    ended_periods: str
    read: str
    reset: str
    increment: str
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
    claim_alerts: str
    settle_alert: str
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
