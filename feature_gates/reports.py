"""What the gates do and how much they are used: the data of ``feature-gates routes``
and ``usage``, as plain values.

:func:`gated_routes` reads an application's views; :func:`usage_report` reads a
database (for the console script, where there is no application; in an
application, ``gates.usage_report()`` does the same through its pool). Errors are
the library's (:class:`~feature_gates.ConfigError`,
:class:`~feature_gates.StorageError`); the commands turn them into one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace
from datetime import date
from typing import Any

from flask import Flask

from .core import Catalogue
from .core import ConfigError
from .core import Gate
from .core import NearLimit
from .core import Settings
from .core import Storage
from .core import UsageReport
from .core import month_start
from .core import usage_report as _usage_report
from .core import utc_now
from .flask import EXTENSION_KEY
from .flask import AppGates
from .flask import gates_of

__all__ = ["GatedRoute", "NearLimit", "UsageReport", "gated_routes", "usage_report"]

#: What a plan gets from a gate: True/False (feature, tier), or a limit: an int,
#: None for unlimited, or "dynamic" when the decorator computes it per request.
PlanValue = Any


@dataclass(frozen=True)
class GatedRoute:
    """One gate on one endpoint, with what each plan gets from it. ``methods`` are
    the rule's methods the gate checks (HEAD and OPTIONS left out)."""

    endpoint: str
    rule: str
    methods: tuple[str, ...]
    kind: str
    feature: str
    min_tier: str | None
    plans: dict[str, PlanValue]


def _state(app: Flask) -> AppGates:
    state: AppGates | None = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise ConfigError(
            "feature-gates is not initialised on this application: call FeatureGates(app)"
        )
    return state


def gated_routes(app: Flask) -> list[GatedRoute]:
    """Every gate of every endpoint of ``app``, sorted by URL rule."""
    catalogue = _state(app).catalogue
    found = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        view = app.view_functions.get(rule.endpoint)
        if view is None:
            continue
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        for gate in gates_of(view):
            gated = methods if gate.methods is None else methods & gate.methods
            if not gated:
                continue
            found.append(
                GatedRoute(
                    rule.endpoint,
                    rule.rule,
                    tuple(sorted(gated)),
                    gate.kind,
                    gate.feature,
                    gate.min_tier,
                    {plan: _plan_value(catalogue, gate, plan) for plan in catalogue.tiers},
                )
            )
    return found


def _plan_value(catalogue: Catalogue, gate: Gate, plan: str) -> PlanValue:
    if gate.kind == "tier":
        assert gate.min_tier is not None
        required = catalogue.rank(gate.min_tier)
        rank = catalogue.rank(plan)
        return required is not None and rank is not None and rank >= required
    if gate.limit is not None:
        return "dynamic" if callable(gate.limit) else gate.limit
    if gate.feature not in catalogue:
        return "undefined"
    limit = catalogue.entitlement(plan, gate.feature).limit
    if gate.kind == "feature":
        return limit != 0
    return limit


def usage_report(
    conninfo: str,
    *,
    state: AppGates | None = None,
    top: int = 10,
    near_limit: float | None = None,
    period: date | None = None,
    schema: str | None = None,
) -> UsageReport:
    """This month's most used features and, with ``near_limit`` (a percentage), the users
    at or above that share of their plan's limit, read from the database at ``conninfo``
    on a connection of its own.

    The near-limit part needs an application's ``state``
    (``app.extensions["feature_gates"]``): its plan catalogue, and
    ``FEATURE_GATES_USER_PLAN_SQL`` for the users' plans. Stock limits are left out
    of it: their counts are the application's, not monthly counts. ``schema`` holds
    feature_usage: by default the application's FEATURE_GATES_SCHEMA, else public.
    """
    if near_limit is not None and state is None:
        raise ValueError("the near-limit report needs the application's plan catalogue")
    base = Settings() if state is None else state.settings
    # A report may read a big table: no statement timeout, as for the runner.
    settings = replace(
        base, database_url=conninfo, schema=schema or base.schema, statement_timeout=0
    )
    clock = utc_now if state is None else state.engine.clock
    storage = Storage(settings, emit=lambda name, **data: None)
    if state is not None:
        state.check_views()
    return _usage_report(
        storage,
        Catalogue({}, {}) if state is None else state.catalogue,
        frozenset() if state is None else state.engine.stock_features,
        settings.user_plan_sql,
        top=top,
        near_limit=near_limit,
        period=period or month_start(clock()),
        direct=True,
    )
