"""The counted key at run time: what a subject's use counts against, the
parameters of the statements that move and read it, and what their answers
mean, level by level. No I/O: the engine sends the statements.

A key (:class:`~._counting.Key`) is fixed when the use happens. A metered check
sends it whole; a refund gives back under the same key (the period, or the
window's bucket, the use was taken from); a read asks for many keys of one
subject at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import timezone
from datetime import tzinfo
from typing import Any

from ._config import ConfigError
from ._counting import Key
from ._decision import Level
from ._decision import level
from ._periods import join_start
from ._plans import Entitlement
from ._subject import Subject

__all__ = [
    "Usage",
    "consume_params",
    "counted_key",
    "default_key",
    "increment_params",
    "key_params",
    "levels_of",
    "read_params",
    "refund_params",
    "reset_params",
    "usage_of",
]

#: The default kind's rule: a user's count of the calendar month in UTC.
DEFAULT_RULE_TEXT = "month"


@dataclass(frozen=True)
class Usage:
    """What a subject has used of a feature, as it counts on the subject's plan.

    ``used`` is the user's own count, or the organisation pool's (``scope`` is
    ``"org"``), whose member's share is ``member_used``. ``period_start`` is when
    the current period began (None for a lifetime count or a rolling window),
    ``reset_at`` when it ends (for a window, when its oldest use leaves).
    """

    feature: str
    scope: str
    period: str | None
    window: str | None
    used: int
    member_used: int | None
    period_start: datetime | None
    reset_at: datetime | None


def counted_key(entitlement: Entitlement, subject: Subject, now: datetime, zone: tzinfo) -> Key:
    """What ``subject``'s use of the entitlement's feature at ``now`` counts against.

    ``zone`` is the application's (FEATURE_GATES_TIMEZONE), for a subject without
    a time zone of its own.

    :raises ConfigError: naming the feature, when the rule needs what the subject
        lacks (an organisation, an anchor).
    """
    rule, feature = entitlement.rule, entitlement.feature
    if rule.scope == "org" and subject.org_id is None:
        raise ConfigError(
            f"feature {feature!r} counts per organisation on plan {subject.plan!r} "
            "(scope = 'org') and the subject has no org_id: return Subject(..., org_id=...) "
            "from the subject loader"
        )
    if rule.anchored and subject.period_anchor is None:
        raise ConfigError(
            f"feature {feature!r} counts from the subscription's anchor on plan "
            f"{subject.plan!r} (anchor = 'subscription') and the subject has no "
            "period_anchor: return Subject(..., period_anchor=<an aware datetime>) from the "
            "subject loader"
        )
    return rule.key(
        feature,
        now,
        user_id=subject.user_id,
        org_id=subject.org_id,
        anchor=subject.period_anchor,
        zone=subject.zone or zone,
    )


def default_key(user_id: Any, feature: str, period: date) -> Key:
    """The key of a user's use in the calendar month (UTC) starting on ``period``."""
    return Key("user", user_id, None, feature, DEFAULT_RULE_TEXT, period, 0, None, None)


def key_params(key: Key) -> dict[str, Any]:
    """The parameters that name ``key``'s counted row, shared by every statement on it."""
    return {
        "subject": key.subject,
        "feature": key.feature,
        "scope": key.scope,
        "rule": key.rule,
        "start": key.period_start,
        "offset": key.period_offset,
    }


def consume_params(
    key: Key, cost: int, entitlement: Entitlement, plan: str, now: datetime
) -> dict[str, Any]:
    """A metered check's (or a reserve's) parameters; ``now`` is what holds expire at."""
    return {
        **key_params(key),
        "end": key.period_end,
        "amount": cost,
        "limit": entitlement.limit,
        "member": key.member,
        "member_limit": entitlement.per_user if key.member is not None else None,
        "bucket": key.bucket,
        "thresholds": list(entitlement.alerts) or None,
        "plan": plan,
        # In UTC: PostgreSQL reads no offset finer than a second.
        "now": now.astimezone(timezone.utc),
    }


def refund_params(
    key: Key, amount: int, now_bucket: int | None, now: datetime | None
) -> dict[str, Any]:
    """A give-back's parameters; ``now`` is what grants expire at."""
    return {
        **key_params(key),
        "amount": amount,
        "member": key.member,
        "bucket": key.bucket,
        "now_bucket": now_bucket,
        "now": None if now is None else now.astimezone(timezone.utc),
    }


def increment_params(key: Key, amount: int) -> dict[str, Any]:
    return {
        **key_params(key),
        "member": key.member,
        "bucket": key.bucket,
        "amount": amount,
    }


def reset_params(key: Key) -> dict[str, Any]:
    return key_params(key)


def read_params(keys: list[Key]) -> dict[str, Any]:
    """The parameters of one read: the keys of one subject (one scope, one member)."""
    first = keys[0]
    return {
        "subject": first.subject,
        "scope": first.scope,
        "member": first.member,
        "features": [key.feature for key in keys],
        "rules": [key.rule for key in keys],
        "starts": [key.period_start for key in keys],
        "offsets": [key.period_offset for key in keys],
        "buckets": [key.bucket for key in keys],
    }


def _reset_at(
    entitlement: Entitlement,
    key: Key,
    limit: int | None,
    used: int,
    buckets: list[int] | None,
    newest: int | None,
    cost: int,
) -> datetime | None:
    """When a level's count starts again: its period's end; for a window, when
    enough of it frees up for ``cost`` (when it refuses) or when its oldest use
    leaves (when it allows)."""
    window = entitlement.rule.window
    if window is None:
        return key.period_end
    if buckets is None or newest is None:
        return None
    over = used + cost - limit if limit is not None else 0
    return window.frees_at(buckets, newest, over if over > 0 else 1)


def levels_of(
    entitlement: Entitlement,
    key: Key,
    cost: int,
    *,
    used: int | None,
    member_used: int | None = None,
    buckets: list[int] | None = None,
    member_buckets: list[int] | None = None,
    newest: int | None = None,
) -> tuple[Level, ...]:
    """The levels of ``key``: the subject's own count, or the pool then the member's
    share, with what the database counted for each (None read as 0)."""
    counted = used or 0
    pool = level(
        key.scope,
        entitlement.limit,
        counted,
        _reset_at(entitlement, key, entitlement.limit, counted, buckets, newest, cost),
    )
    if key.member is None:
        return (pool,)
    share = member_used or 0
    per_user = entitlement.per_user
    member = level(
        "user",
        per_user,
        share,
        _reset_at(entitlement, key, per_user, share, member_buckets, newest, cost),
    )
    return (pool, member)


def usage_of(
    entitlement: Entitlement,
    key: Key,
    *,
    used: int | None,
    member_used: int | None,
    buckets: list[int] | None,
    newest: int | None,
) -> Usage:
    """A subject's :class:`Usage` of a feature, from a read of its key."""
    window = entitlement.rule.window is not None
    lifetime = entitlement.rule.period == "lifetime"
    start = None if window or lifetime else join_start(key.period_start, key.period_offset)
    reset_at = (
        _reset_at(entitlement, key, None, used or 0, buckets, newest, 0)
        if window
        else key.period_end
    )
    return Usage(
        entitlement.feature,
        key.scope,
        entitlement.period,
        entitlement.window,
        used or 0,
        None if key.member is None else (member_used or 0),
        start,
        reset_at,
    )
