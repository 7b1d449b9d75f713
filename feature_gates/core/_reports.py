"""Usage reports: the most used features, the users near their limits, the monthly
trend. The data of ``feature-gates usage``, ``gates.usage_report()`` and
``gates.usage_trend()``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from typing import Any

from psycopg.rows import class_row
from psycopg.rows import tuple_row

from ._config import ConfigError
from ._plans import Catalogue
from ._storage import Storage
from ._storage import StorageError
from ._storage import StorageUnavailable
from ._storage.rows import FeatureMonth
from ._storage.rows import KeyCount
from ._storage.rows import MonthUsers
from ._storage.rows import TopFeature

__all__ = ["MonthUsage", "NearLimit", "UsageReport", "UsageTrend", "usage_report", "usage_trend"]


@dataclass(frozen=True)
class NearLimit:
    """A user whose usage of a feature is at or above the asked share of the plan's limit."""

    user_id: Any
    plan: str
    feature: str
    used: int
    limit: int
    percent: float


@dataclass(frozen=True)
class UsageReport:
    """A period's most used features, as (feature, uses, users), and the users near
    their limits, closest first."""

    period_start: date
    top: list[tuple[str, int, int]]
    near_limit: list[NearLimit]


@dataclass(frozen=True)
class MonthUsage:
    """One month: its uses in all, the users with some use, the uses per feature."""

    period_start: date
    uses: int
    active_users: int
    features: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UsageTrend:
    """The last months, oldest first; the current month is read live from
    ``feature_usage``, so it agrees with the gates, the months before from the
    ``feature_usage_summary`` view."""

    months: list[MonthUsage]


def usage_report(
    storage: Storage,
    catalogue: Catalogue,
    stock_features: frozenset[str],
    user_plan_sql: str,
    *,
    top: int,
    near_limit: float | None,
    period: date,
    direct: bool = False,
) -> UsageReport:
    """``period``'s ``top`` most used features and, with ``near_limit`` (a percentage),
    the users at or above that share of their plan's limit. Stock limits are left
    out of the latter: their counts are the application's, not monthly counts."""
    rows = storage.run(
        storage.statements.top_features,
        {"month": period, "top": top},
        row=class_row(TopFeature),
        what="the usage report",
        idempotent=True,
        direct=direct,
    )
    near: list[NearLimit] = []
    if near_limit is not None:
        thresholds = _thresholds(catalogue, stock_features, near_limit)
        near = _near_limit(
            storage, catalogue, user_plan_sql, thresholds, near_limit, period, direct
        )
    return UsageReport(period, [(r.feature, r.uses, r.users) for r in rows], near)


def _thresholds(
    catalogue: Catalogue, stock_features: frozenset[str], percent: float
) -> dict[str, int]:
    """The smallest count that can matter for each feature: the share of its lowest
    finite limit. Users under it are not near any plan's limit."""
    thresholds: dict[str, int] = {}
    for feature, kind in catalogue.kinds.items():
        if kind != "limit" or feature in stock_features:
            continue
        limits = [
            limit
            for plan in catalogue.tiers
            if (limit := catalogue.entitlement(plan, feature).limit)
        ]
        if limits:
            thresholds[feature] = max(math.ceil(min(limits) * percent / 100), 1)
    return thresholds


def _near_limit(
    storage: Storage,
    catalogue: Catalogue,
    user_plan_sql: str,
    thresholds: dict[str, int],
    percent: float,
    period: date,
    direct: bool,
) -> list[NearLimit]:
    if not thresholds:
        return []
    rows = storage.run(
        storage.statements.usage_at_least,
        {"features": list(thresholds), "thresholds": list(thresholds.values()), "month": period},
        row=class_row(KeyCount),
        what="the near-limit report",
        idempotent=True,
        direct=direct,
    )
    plans = _plans_of(storage, user_plan_sql, {row.user_id for row in rows}, direct)
    near = []
    for row in rows:
        plan = plans.get(row.user_id)
        if plan is None:
            continue
        limit = catalogue.entitlement(plan, row.feature).limit
        if limit and row.usage_count * 100 >= percent * limit:
            share = row.usage_count * 100 / limit
            near.append(NearLimit(row.user_id, plan, row.feature, row.usage_count, limit, share))
    near.sort(key=lambda n: (-n.percent, n.feature, str(n.user_id)))
    return near


def _plans_of(
    storage: Storage, user_plan_sql: str, user_ids: Iterable[Any], direct: bool
) -> dict[Any, str]:
    ids = sorted(user_ids, key=str)
    if not ids:
        return {}
    try:
        rows = storage.run(
            user_plan_sql,
            (ids,),
            row=tuple_row,
            what="the users' plans (FEATURE_GATES_USER_PLAN_SQL)",
            idempotent=True,
            configured=True,
            direct=direct,
        )
    except StorageUnavailable:
        raise
    except StorageError as exc:
        raise ConfigError(
            f"FEATURE_GATES_USER_PLAN_SQL failed: {exc.error or exc}; set it to a query taking "
            "an array of user ids and returning (user id, plan name) rows"
        ) from exc
    return {row[0]: str(row[1]) for row in rows}


def _months_before(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 - count
    return date(index // 12, index % 12 + 1, 1)


def usage_trend(storage: Storage, *, months: int, current: date) -> UsageTrend:
    """Uses and active users per month, the ``months`` months up to ``current``."""
    starts = [_months_before(current, months - 1 - n) for n in range(months)]
    since = starts[0]
    rows = storage.run(
        storage.statements.monthly_usage,
        {"since": since, "current": current},
        row=class_row(FeatureMonth),
        what="the usage trend",
        idempotent=True,
    )
    users = storage.run(
        storage.statements.active_users,
        {"since": since},
        row=class_row(MonthUsers),
        what="the usage trend",
        idempotent=True,
    )
    features: dict[date, dict[str, int]] = {start: {} for start in starts}
    for row in rows:
        features.setdefault(row.period_start, {})[row.feature] = row.uses
    active = {row.period_start: row.users for row in users}
    return UsageTrend(
        [
            MonthUsage(start, sum(features[start].values()), active.get(start, 0), features[start])
            for start in starts
        ]
    )
