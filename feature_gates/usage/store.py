"""Every SQL statement the runtime sends, in one place.

Each goes through a function installed by the ``core`` migrations, so the
validation and the locking rules live in the database, next to the data.
"""

from __future__ import annotations

#: Run once on each new pooled connection: the feature-gates schema first.
SET_SEARCH_PATH = "SELECT set_config('search_path', quote_ident(%s) || ', public', false)"

#: Atomic check-and-increment; returns the new count or NULL when over the limit.
CONSUME = "SELECT consume_feature_usage(%s, %s, %s, %s, %s)"

#: Gives back consumed usage (never below 0); returns the new count.
REFUND = "SELECT refund_feature_usage(%s, %s, %s, %s)"

#: Adds to a usage count; returns the new count.
INCREMENT = "SELECT increment_feature_usage_safe(%s, %s, %s, %s)"

#: Many increments in one statement. The caller passes four arrays of equal
#: length, sorted by (user_id, feature, period_start) so that concurrent writers
#: take row locks in the same order and never deadlock.
INCREMENT_BATCH = """
SELECT increment_feature_usage_safe(u.user_id, u.feature, u.amount, u.period_start)
FROM unnest(%s::feature_usage_user_id[], %s::text[], %s::integer[], %s::date[])
     WITH ORDINALITY AS u(user_id, feature, amount, period_start, ord)
ORDER BY u.ord
"""

GET_USAGE = "SELECT get_feature_usage(%s, %s, %s)"

GET_USER_USAGE = "SELECT feature, usage_count, updated_at FROM get_user_feature_usage(%s, %s)"
