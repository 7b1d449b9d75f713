"""Errors as pages, for browsers: what happened and what to do, in words.

API clients get the same errors as problem+json (problems.py decides which);
these pages are for a person, so a denial names the feature as people call it
and says which plan has it, not the plan keys.
"""

from __future__ import annotations

from flask import Response
from flask import make_response
from flask import render_template

from feature_gates import FeatureCheckUnavailable
from feature_gates import FeatureDenied
from feature_gates import FeatureLimitExceeded
from feature_gates import NotAuthenticated
from feature_gates import TierTooLow

from .labels import feature_name
from .labels import plan_name
from .state import sentinel

__all__ = ["denial_page", "error_page"]

#: A heading for each status when the error brings none of its own.
HEADINGS = {
    400: "That request was not understood",
    401: "Sign in first",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed here",
    413: "Too large",
    500: "Something went wrong",
    503: "Try again in a moment",
}


def error_page(
    status: int, message: str, *, heading: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The error page: ``heading`` (by status unless given) and ``message``.

    Pages of a server error show no account: reading it needs the database,
    which may be what failed.
    """
    text = message[:1].upper() + message[1:]
    body = render_template(
        "error.html",
        status=status,
        heading=heading or HEADINGS.get(status, "Something is not right"),
        message=text if text.endswith(".") else text + ".",
        show_account=status < 500,
    )
    return make_response(body, status, headers or {})


def _plans_with(feature: str) -> list[str]:
    route = sentinel().features.get(feature)
    if route is None:
        return []
    return [plan_name(plan) for plan, value in route.plans.items() if value not in (False, 0)]


def _words(names: list[str]) -> str:
    """``["Pro", "Team", "Enterprise"]`` -> ``Pro, Team and Enterprise``."""
    return f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else "".join(names)


#: What a limit counts over, in words.
_PER = {
    "hour": "an hour",
    "day": "a day",
    "week": "a week",
    "month": "a month",
    "year": "a year",
    "lifetime": "in all",
}


def _allowance(denial: FeatureLimitExceeded, plan: str) -> str:
    """What the plan allows at the level that refused, and what is used there."""
    per = f"in any {denial.window}" if denial.window else _PER.get(denial.period or "", "a month")
    if denial.scope == "org":
        return f"your team's {plan} plan allows {denial.limit} {per} and {denial.used} are used"
    return f"your {plan} plan allows {denial.limit} {per} and {denial.used} are used"


def _when(denial: FeatureLimitExceeded) -> str:
    """When more are available, or nothing when never."""
    reset_at = denial.reset_at
    if reset_at is None:
        return ""
    if denial.window:
        return f"more are available from {reset_at:%H:%M} UTC, "
    return f"more are available from {reset_at.day} {reset_at:%B %Y}, "


def denial_page(denial: FeatureDenied, headers: dict[str, str]) -> Response:
    """A gate's refusal, told to the person who clicked."""
    name = feature_name(denial.feature)
    plan = plan_name(denial.plan or "")
    status = denial.code or 403
    if isinstance(denial, NotAuthenticated):
        return error_page(status, f"{name} is for signed-in users: sign in first", headers=headers)
    if isinstance(denial, FeatureCheckUnavailable):
        message = "we cannot check your plan right now; nothing was used, try again in a moment"
        return error_page(status, message, headers=headers)
    if isinstance(denial, FeatureLimitExceeded):
        heading = f"{name}: limit reached"
        if denial.scope is not None:
            message = f"{_allowance(denial, plan)}; {_when(denial)}or upgrade for a higher limit"
        else:
            message = (
                f"your {plan} plan allows {denial.limit} and you have {denial.used}; "
                "remove one to make room, or upgrade for a higher limit"
            )
        return error_page(status, message, heading=heading, headers=headers)
    heading = f"{name} is not in your plan"
    if isinstance(denial, TierTooLow):
        tier = plan_name(denial.required_tier)
        message = f"{name} comes with the {tier} plan and above; you are on {plan}"
    else:
        others = _plans_with(denial.feature)
        message = f"{name} is not included in the {plan} plan"
        if others:
            plans = "plan" if len(others) == 1 else "plans"
            message += f"; the {_words(others)} {plans} include it"
    return error_page(status, message + ". Upgrade to use it", heading=heading, headers=headers)
