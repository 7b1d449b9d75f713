"""What the gates do and how much they are used: ``flask feature-gates routes`` and ``usage``.

Each command is a thin wrapper over a function that returns plain data:
:func:`gated_routes` and :func:`usage_report`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING
from typing import Any

import click
import psycopg
from flask import Flask
from flask import current_app
from flask import has_app_context

from .core import month_start
from .core import utc_now
from .errors import one_line
from .gate import Gate
from .gate import gates_of
from .usage import store

if TYPE_CHECKING:
    from .cli import CommandContext
    from .extension import GatesState

__all__ = [
    "GatedRoute",
    "NearLimit",
    "UsageReport",
    "gated_routes",
    "routes_command",
    "usage_command",
    "usage_report",
]

#: What a plan gets from a gate: True/False (feature, tier), or a limit: an int,
#: None for unlimited, or "dynamic" when the decorator computes it per request.
PlanValue = Any


@dataclass(frozen=True)
class GatedRoute:
    """One gate on one endpoint, with what each plan gets from it."""

    endpoint: str
    rule: str
    methods: tuple[str, ...]
    kind: str
    feature: str
    min_tier: str | None
    plans: dict[str, PlanValue]


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
    period_start: date
    top: list[tuple[str, int, int]]
    near_limit: list[NearLimit]


def _state(app: Flask) -> GatesState:
    state: GatesState | None = app.extensions.get("feature_gates")
    if state is None:
        raise click.ClickException(
            "feature-gates is not initialised on this application: call FeatureGates(app)"
        )
    return state


def gated_routes(app: Flask) -> list[GatedRoute]:
    """Every gate of every endpoint of ``app``, sorted by URL rule."""
    state = _state(app)
    found = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        view = app.view_functions.get(rule.endpoint)
        if view is None:
            continue
        methods = tuple(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
        for gate in gates_of(view):
            found.append(
                GatedRoute(
                    rule.endpoint,
                    rule.rule,
                    methods,
                    gate.kind,
                    gate.feature,
                    gate.min_tier,
                    {plan: _plan_value(state, gate, plan) for plan in state.catalogue.tiers},
                )
            )
    return found


def _plan_value(state: GatesState, gate: Gate, plan: str) -> PlanValue:
    catalogue = state.catalogue
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
    state: GatesState | None = None,
    top: int = 10,
    near_limit: float | None = None,
    period: date | None = None,
    schema: str | None = None,
) -> UsageReport:
    """This month's most used features and, with ``near_limit`` (a percentage), the users
    at or above that share of their plan's limit.

    The near-limit part needs an application's ``state``: its plan catalogue, and
    ``FEATURE_GATES_USER_PLAN_SQL`` for the users' plans. Stock limits are left out
    of it: their counts are the application's, not monthly counts. ``schema`` holds
    feature_usage: by default the application's FEATURE_GATES_SCHEMA, else public.
    """
    if near_limit is not None and state is None:
        raise ValueError("the near-limit report needs the application's plan catalogue")
    if period is None:
        period = month_start(state.extension.clock() if state is not None else utc_now())
    if schema is None:
        schema = state.settings.schema if state is not None else "public"
    with psycopg.connect(conninfo, autocommit=True, application_name="feature-gates usage") as conn:
        conn.execute(store.CONFIGURE_SESSION, {"schema": schema, "timeout_ms": 0})
        top_rows = conn.execute(store.TOP_FEATURES, (period, top)).fetchall()
        near: list[NearLimit] = []
        if near_limit is not None:
            assert state is not None
            state.check_views()
            near = _near_limit(state, conn, period, near_limit)
    return UsageReport(
        period, [(str(f), int(uses), int(users)) for f, uses, users in top_rows], near
    )


def _near_limit(
    state: GatesState, conn: psycopg.Connection[Any], period: date, percent: float
) -> list[NearLimit]:
    catalogue = state.catalogue
    # The smallest count that can matter for each feature: the share of its
    # lowest finite limit. Users under it are not near any plan's limit.
    thresholds: dict[str, int] = {}
    for feature, kind in catalogue.kinds.items():
        if feature in state.stock_features:
            continue
        limits = [
            limit
            for plan in catalogue.tiers
            if (limit := catalogue.entitlement(plan, feature).limit)
        ]
        if kind == "limit" and limits:
            thresholds[feature] = max(math.ceil(min(limits) * percent / 100), 1)
    if not thresholds:
        return []
    rows = conn.execute(
        store.USAGE_AT_LEAST, (list(thresholds), list(thresholds.values()), period)
    ).fetchall()
    if not rows:
        return []
    plans = _plans_of(state, conn, sorted({row[0] for row in rows}, key=str))
    near = []
    for user_id, feature, used in rows:
        plan = plans.get(user_id)
        if plan is None:
            continue
        limit = catalogue.entitlement(plan, feature).limit
        if limit and used * 100 >= percent * limit:
            near.append(NearLimit(user_id, plan, feature, int(used), limit, used * 100 / limit))
    near.sort(key=lambda n: (-n.percent, n.feature, str(n.user_id)))
    return near


def _plans_of(
    state: GatesState, conn: psycopg.Connection[Any], user_ids: list[Any]
) -> dict[Any, str]:
    query: Any = state.settings.user_plan_sql
    try:
        rows = conn.execute(query, (user_ids,)).fetchall()
    except psycopg.DatabaseError as exc:
        raise click.ClickException(
            f"FEATURE_GATES_USER_PLAN_SQL failed: {one_line(exc)}; set it to a query taking an "
            "array of user ids and returning (user id, plan name) rows"
        ) from None
    return {row[0]: str(row[1]) for row in rows}


# -- commands ------------------------------------------------------------------------------


def _show(value: PlanValue) -> str:
    if value is True:
        return "yes"
    if value is False or value == 0:
        return "no"
    return "unlimited" if value is None else str(value)


def _table(header: list[str], rows: list[list[str]], echo: Callable[[str], None]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _app_state() -> tuple[Flask, GatesState]:
    """The application the command runs in, and its feature-gates state."""
    if not has_app_context():
        raise click.ClickException(
            "this command reads a Flask application's gates: run it as "
            "'flask --app yourapp feature-gates ...'"
        )
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app, _state(app)


@click.command("routes")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def routes_command(as_json: bool) -> None:
    """List every gated endpoint with its feature, kind and limit per plan."""
    app, _ = _app_state()
    found = gated_routes(app)
    if as_json:
        click.echo(json.dumps([asdict(route) for route in found], indent=2))
        return
    if not found:
        click.echo("no gated endpoints")
        return
    plans = list(found[0].plans)
    rows = [
        [
            route.rule,
            ",".join(route.methods),
            route.endpoint,
            route.kind if route.min_tier is None else f"tier>={route.min_tier}",
            route.feature,
            *(_show(route.plans[plan]) for plan in plans),
        ]
        for route in found
    ]
    _table(["rule", "methods", "endpoint", "kind", "feature", *plans], rows, click.echo)


@click.command("usage")
@click.option(
    "--top",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="How many features to list.",
)
@click.option(
    "--near-limit",
    "near_limit",
    type=click.FloatRange(0, min_open=True),
    metavar="PCT",
    help="Also list users at or above PCT% of their plan's limit of a feature.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_obj
def usage_command(obj: CommandContext, top: int, near_limit: float | None, as_json: bool) -> None:
    """Show this month's most used features, and users near their limits.

    --near-limit needs the plans: run it as 'flask feature-gates usage'.
    """
    state: GatesState | None = (
        current_app.extensions.get("feature_gates") if has_app_context() else None
    )
    if near_limit is not None and state is None:
        raise click.ClickException(
            "--near-limit needs the plans of an application that uses FeatureGates: run "
            "it as 'flask --app yourapp feature-gates usage --near-limit PCT'"
        )
    with obj.errors():
        report = usage_report(
            obj.require_url(),
            state=state,
            top=top,
            near_limit=near_limit,
            schema=obj.settings.schema,
        )
    if as_json:
        data = {
            "period_start": report.period_start.isoformat(),
            "top": [{"feature": f, "uses": u, "users": n} for f, u, n in report.top],
            "near_limit": [asdict(n) for n in report.near_limit],
        }
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"usage since {report.period_start.isoformat()}")
    if report.top:
        _table(
            ["feature", "uses", "users"],
            [[f, str(u), str(n)] for f, u, n in report.top],
            click.echo,
        )
    else:
        click.echo("no usage recorded this month")
    if near_limit is not None:
        click.echo("")
        click.echo(f"users at or above {near_limit:g}% of their limit")
        rows = [
            [str(n.user_id), n.plan, n.feature, str(n.used), str(n.limit), f"{n.percent:.0f}%"]
            for n in report.near_limit
        ]
        if rows:
            _table(["user", "plan", "feature", "used", "limit", "share"], rows, click.echo)
        else:
            click.echo("none")
