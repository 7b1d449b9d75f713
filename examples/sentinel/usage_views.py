"""Usage pages: each user's own ("12 of 50 left") and the admin dashboard.

Both read what feature-gates recorded, through its API: ``gates.get_user_usage``,
``gates.usage_report`` (this month, live) and ``gates.usage_trend`` (this month
live, the months before from the summary view).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from feature_gates import Decision
from feature_gates import Level
from feature_gates.core import month_start
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import refresh
from feature_gates.reports import GatedRoute
from feature_gates.reports import gated_routes

from . import charts
from . import csrf
from .accounts import User
from .auth import COOKIE
from .auth import admin_required
from .auth import current_user
from .auth import load_user
from .auth import login_required
from .auth import safe_next
from .holdings import HOLDINGS
from .holdings import held
from .labels import feature_name
from .labels import plan_name
from .negotiate import wants_html
from .state import accounts
from .state import gates
from .state import itinerary_manager
from .state import sentinel
from .state import thread_manager
from .webhooks import received_alerts

__all__ = ["bp"]

bp = Blueprint("usage", __name__)
# The pages' forms (sign in, sign out) carry a CSRF token; see csrf.py.
bp.before_request(csrf.check)
bp.add_app_template_global(csrf.csrf_token)
bp.add_app_template_filter(feature_name)
bp.add_app_template_filter(plan_name)

#: Usage pages are one person's figures: never kept by a shared cache, nor by the browser.
PRIVATE = {"Cache-Control": "private, no-store"}
#: What a page lists for export, most recent first.
EXPORTS_SHOWN = 10

#: The summary is refreshed by cron in production (`feature-gates refresh`); the
#: demo refreshes it when the dashboard is opened, at most this often (seconds).
SUMMARY_MAX_AGE = 60.0
TREND_MONTHS = 6


def gated_features(app: Flask) -> dict[str, GatedRoute]:
    """Each gated feature of ``app`` with its gate (kind, tier, what each plan
    gets), read from the decorators themselves. Called once, by create_app."""
    features: dict[str, GatedRoute] = {}
    for route in gated_routes(app):
        features.setdefault(route.feature, route)
    return features


@dataclass(frozen=True)
class FeatureUsage:
    feature: str
    kind: str
    allowed: bool
    used: int
    limit: int | None
    remaining: int | None
    summary: str
    #: How a metered feature counts: "user" or "org" (the organisation's pool), and
    #: over which period or window; the levels it is judged at.
    scope: str | None = None
    period: str | None = None
    window: str | None = None
    levels: tuple[Level, ...] = ()

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "feature": self.feature,
            "kind": self.kind,
            "allowed": self.allowed,
            "used": self.used,
            "limit": self.limit,
            "remaining": self.remaining,
            "summary": self.summary,
        }
        if self.scope is not None:
            found.update(
                scope=self.scope,
                period=self.period,
                window=self.window,
                levels=[
                    {
                        "scope": lv.scope,
                        "limit": lv.limit,
                        "used": lv.used,
                        "remaining": lv.remaining,
                    }
                    for lv in self.levels
                ],
            )
        return found


#: A period's count, in words: "3 of 10 left today".
_PERIOD_WORDS = {
    "hour": "this hour",
    "day": "today",
    "week": "this week",
    "month": "this month",
    "year": "this year",
    "lifetime": "in all",
}


def _over(decision: Decision) -> str:
    """What a metered limit counts over, in words."""
    if decision.window is not None:
        return f"in the last {decision.window}"
    words = _PERIOD_WORDS.get(decision.period or "month", "this month")
    renews = decision.reset_at
    if decision.period == "month" and renews is not None and renews.day != 1:
        return f"{words} (renews on the {renews.day}{_ordinal(renews.day)})"
    return words


def _ordinal(day: int) -> str:
    if day in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _metered_summary(decision: Decision) -> str:
    """'2 of 3 left today'; for an organisation pool, the pool's and the member's share."""
    over = _over(decision)
    if decision.scope == "org" and len(decision.levels) == 2:
        pool, share = decision.levels
        team = "unlimited" if pool.limit is None else f"{pool.remaining} of {pool.limit} left"
        yours = (
            f"{share.used} used" if share.limit is None else f"{share.remaining} of {share.limit}"
        )
        return f"team: {team} {over} · yours: {yours}"
    if decision.limit is None:
        return f"unlimited · {decision.used or 0} used {over}"
    return f"{decision.remaining} of {decision.limit} left {over}"


def usage_of(user: User) -> list[FeatureUsage]:
    """One line per gated feature: what the user may do and how much is left.

    Reads every count the user's plan keeps (each as the plan counts it: per day,
    from the subscription's start, in the organisation's pool...) in one call
    (``gates.entitlements``), and what the user holds now; the gates judge the
    latter without another read (``check(..., used=...)``). Usage still in the
    tracker's buffer (about the last second) is not counted yet.
    """
    subject = user.subject()
    decisions = gates.entitlements(subject)
    # Uses of a feature without a limit count as a user's calendar month in UTC.
    recorded = gates.get_user_usage(user.id)
    holdings = held(user.id)
    rows = []
    for feature, route in sorted(sentinel().features.items()):
        kind, tier = route.kind, route.min_tier
        if kind == "tier":
            allowed = route.plans.get(user.plan) is True
            summary = f"included from {tier} up" if allowed else f"needs the {tier} plan"
            rows.append(FeatureUsage(feature, kind, allowed, 0, None, None, summary))
            continue
        if kind == "stock":
            used = holdings[feature]
            decision = gates.check(feature, subject, used=used)
            limit = decision.limit
            summary = f"{used} {HOLDINGS[feature].label}, " + (
                "no limit" if limit is None else f"{decision.remaining} of {limit} left"
            )
        else:
            decision = decisions[feature]
            used, limit = decision.used or 0, decision.limit
            if kind == "metered":
                summary = _metered_summary(decision)
            else:
                used = recorded.get(feature, 0)
                summary = f"included · {used} used this month"
        allowed = decision.reason != "not-entitled"
        if not allowed:
            summary = "not in your plan"
        rows.append(
            FeatureUsage(
                feature,
                kind,
                allowed,
                used,
                limit,
                decision.remaining,
                summary,
                decision.scope,
                decision.period,
                decision.window,
                decision.levels,
            )
        )
    return rows


@dataclass(frozen=True)
class Banner:
    """'80% used' over a page: the highest alert threshold a feature's usage reached."""

    feature: str
    threshold: float
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "threshold": self.threshold, "text": self.text}


def banners_of(user: User, rows: list[FeatureUsage]) -> list[Banner]:
    """A banner per metered feature whose usage reached one of its alert thresholds
    (the plan's ``alerts``, else FEATURE_GATES_ALERT_THRESHOLDS): the same
    thresholds at which feature-gates records an alert."""
    catalogue = current_app.extensions["feature_gates"].catalogue
    found = []
    for row in rows:
        if row.kind != "metered" or not row.allowed or not row.limit:
            continue
        thresholds = catalogue.entitlement(user.plan, row.feature).alerts
        reached = [t for t in thresholds if row.used >= t * row.limit]
        if not reached:
            continue
        top = float(max(reached))
        name = feature_name(row.feature)
        if top >= 1:
            text = f"{name}: limit reached ({row.summary})"
        else:
            text = f"{name}: {top:.0%} used ({row.summary})"
        found.append(Banner(row.feature, top, text))
    return found


def _level(row: FeatureUsage) -> str:
    """The colour class of a row's text: its meter's level when it has a limit."""
    if not row.allowed:
        return "no"
    return charts.level(row.used, row.limit) if row.limit else "ok"


@bp.get("/me/usage")
@login_required(allow_cookie=True)
def my_usage() -> ResponseReturnValue:
    user = current_user()
    rows = usage_of(user)
    banners = banners_of(user, rows)
    # Route legs are bought on top of the plan: what is left of the month and of the top-ups.
    legs = gates.balance("route_legs", subject=user.subject())
    credits = {
        "feature": "route_legs",
        "allowance": legs.allowance,
        "used": legs.used,
        "held": legs.held,
        "granted": legs.granted,
        "available": legs.available,
    }
    if not wants_html():
        body = jsonify(
            user=user.to_json(),
            month=month_start(gates.clock()).isoformat(),
            features=[row.to_json() for row in rows],
            banners=[banner.to_json() for banner in banners],
            credits=credits,
        )
        return body, PRIVATE
    page = render_template(
        "me_usage.html",
        user=user,
        banners=banners,
        credits=credits,
        rows=sorted(rows, key=lambda row: feature_name(row.feature).casefold()),
        meters={
            row.feature: charts.meter(row.used, row.limit)
            for row in rows
            if row.limit and row.allowed
        },
        levels={row.feature: _level(row) for row in rows},
        threads=thread_manager.list_threads(user.id)[-EXPORTS_SHOWN:][::-1],
        itineraries=itinerary_manager.list_itineraries(user.id)[-EXPORTS_SHOWN:][::-1],
    )
    return page, PRIVATE


# -- the admin dashboard --------------------------------------------------------------


def _refresh_summary() -> None:
    app = current_app
    last = app.extensions.get("sentinel_summary_refreshed", 0.0)
    if time.monotonic() - last < SUMMARY_MAX_AGE:
        return
    refresh(app.config["FEATURE_GATES_DATABASE_URL"], MigrationSettings.from_config(app.config))
    app.extensions["sentinel_summary_refreshed"] = time.monotonic()


def dashboard_data() -> dict[str, Any]:
    _refresh_summary()
    features = sentinel().features
    # This month's uses per feature, and every user with a finite limit and some
    # use of it (near_limit=0: at or above 0 % of the limit), closest first; the
    # users' plans come from FEATURE_GATES_USER_PLAN_SQL.
    report = gates.usage_report(top=len(features), near_limit=0)
    # The same month again, live, with the five before it from the summary view.
    trend = gates.usage_trend(TREND_MONTHS).months
    users = {u.id: u for u in accounts.list_users()}

    # Monthly quotas only: a stock limit (tokens held, say) is not a count of this
    # month's uses, so this month's usage says nothing about how close it is.
    metered = {f for f, route in features.items() if route.kind == "metered"}
    near: list[dict[str, Any]] = [
        {
            "user": users[n.user_id],
            "feature": n.feature,
            "used": n.used,
            "limit": n.limit,
            "share": n.percent / 100,
        }
        for n in report.near_limit
        if n.feature in metered and n.user_id in users
    ]

    names = sorted({feature for month in trend for feature in month.features})
    return {
        "month": report.period_start,
        "months": [month.period_start for month in trend],
        "features": [{"feature": f, "uses": uses, "users": n} for f, uses, n in report.top],
        "near": near[:8],
        "users_near": len({r["user"].id for r in near if r["share"] >= 0.8}),
        "totals": [month.uses for month in trend],
        "active": [month.active_users for month in trend],
        "per_feature": {f: [month.features.get(f, 0) for month in trend] for f in names},
        "users": len(users),
        "received_alerts": received_alerts(),
    }


@bp.get("/admin/usage")
@admin_required
def admin_usage() -> ResponseReturnValue:
    data = dashboard_data()
    if not wants_html():
        body = jsonify(
            month=data["month"].isoformat(),
            features=data["features"],
            near_limits=[
                {
                    "user_id": r["user"].id,
                    "email": r["user"].email,
                    "plan": r["user"].plan,
                    "feature": r["feature"],
                    "used": r["used"],
                    "limit": r["limit"],
                }
                for r in data["near"]
            ],
            trend=[
                {"month": m.isoformat(), "uses": t, "active_users": a}
                for m, t, a in zip(data["months"], data["totals"], data["active"], strict=True)
            ],
            received_alerts=[
                {
                    "id": str(r.event_id),
                    "received_at": r.received_at.isoformat(),
                    "deliveries": r.deliveries,
                    "who": r.who,
                    "feature": r.feature,
                    "threshold": float(r.threshold),
                    "used": r.used,
                    "limit": r.usage_limit,
                }
                for r in data["received_alerts"]
            ],
        )
        return body, PRIVATE
    labels = [m.strftime("%b") for m in data["months"]]
    for row in data["near"]:
        row["meter"] = charts.meter(row["used"], row["limit"])
        row["level"] = charts.level(row["used"], row["limit"])
    page = render_template(
        "admin_usage.html",
        data=data,
        usage_chart=charts.bars(
            [
                charts.Bar(feature_name(f["feature"]), f["uses"], f"· {f['users']} users")
                for f in data["features"]
            ]
        ),
        trend_chart=charts.trend(labels, data["totals"], data["active"]),
        sparklines={
            f: charts.sparkline(v)
            for f, v in sorted(
                data["per_feature"].items(), key=lambda fv: feature_name(fv[0]).casefold()
            )
        },
        total_uses=sum(f["uses"] for f in data["features"]),
        labels=labels,
    )
    return page, PRIVATE


# -- signing in from a browser --------------------------------------------------------


@bp.get("/login")
def login_form() -> ResponseReturnValue:
    return render_template("login.html", error=None, next=safe_next(request.args.get("next")))


@bp.post("/login")
def login() -> ResponseReturnValue:
    token = (request.form.get("token") or "").strip()
    target = safe_next(request.form.get("next"))
    user = accounts.user_for_token(token) if token and len(token) <= 200 else None
    if user is None:
        page = render_template("login.html", error="That token is not valid.", next=target)
        return page, 401
    if target is None:
        target = url_for("usage.admin_usage") if user.is_admin else url_for("usage.my_usage")
    response = redirect(target, code=303)
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure, max_age=8 * 3600
    )
    csrf.renew()  # a token seen before signing in is not used after
    return response


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    response = redirect(url_for("usage.login_form"), code=303)
    response.delete_cookie(COOKIE)
    return response


@bp.app_template_global()
def signed_in_user() -> User | None:
    """The browser's user for the page header (None when signed out)."""
    return load_user(allow_cookie=True)
