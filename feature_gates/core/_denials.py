"""Denials: why a gate refused a request, with everything its answer needs.

A :class:`Denial` carries the status, the problem type and title, the detail for
the caller, the members its kind adds and the headers. The RFC 9457 problem
document is built here, once, for every adapter; each adapter raises the denial
in its own HTTP form:

.. code-block:: json

    {"type": "https://github.com/feature-gates/feature-gates/blob/main/docs/errors.md#feature-limit-exceeded",
     "title": "Feature limit reached", "status": 429,
     "detail": "plan 'free' allows 50 uses of 'chat_messages_monthly' per month and 50 are used; it resets at 2026-12-01T00:00:00Z.",
     "message": "You've used all 50 chat messages this month; they renew on 1 December.",
     "feature": "chat_messages_monthly", "plan": "free",
     "limit": 50, "used": 50, "remaining": 0, "cost": 1, "reset_at": "2026-12-01T00:00:00Z"}
"""  # noqa: E501

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from datetime import timezone
from typing import Any

from ._counting import Rule
from ._decision import Level
from ._messages import Messages
from ._subject import Subject

__all__ = [
    "DOCS_URL",
    "KINDS",
    "PROBLEM_CONTENT_TYPE",
    "Denial",
    "iso_utc",
    "limit_detail",
    "limit_headers",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"

#: Each denial's ``type`` is this page's section that describes it.
DOCS_URL = "https://github.com/feature-gates/feature-gates/blob/main/docs/errors.md"

#: Each reason: the problem's title, and its anchor in docs/errors.md.
KINDS: Mapping[str, tuple[str, str]] = {
    "denied": ("Feature denied", "feature-denied"),
    "anonymous": ("Authentication required", "not-authenticated"),
    "not-entitled": ("Feature not in plan", "feature-not-entitled"),
    "tier": ("Plan tier too low", "tier-too-low"),
    "limit": ("Feature limit reached", "feature-limit-exceeded"),
    "unavailable": ("Feature check unavailable", "feature-check-unavailable"),
    "error": ("Feature check failed", "feature-check-failed"),
}


def iso_utc(moment: datetime) -> str:
    """``moment`` as ISO 8601 in UTC with a ``Z``: ``2026-12-01T00:00:00Z``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def limit_headers(
    limit: int, remaining: int, reset_at: datetime | None, now: datetime
) -> dict[str, str]:
    """``X-Feature-Limit``, ``X-Feature-Remaining`` and (for a limit that resets)
    ``X-Feature-Reset``, in seconds."""
    headers = {"X-Feature-Limit": str(limit), "X-Feature-Remaining": str(max(remaining, 0))}
    if reset_at is not None:
        seconds = (reset_at - now).total_seconds()
        headers["X-Feature-Reset"] = str(max(math.ceil(seconds), 0))
    return headers


#: The messages of a denial made without an engine's settings: the defaults.
_DEFAULT_MESSAGES = Messages()


def _counted_over(rule: Rule) -> str:
    """What a limit counts over, in words: " per month", " in any 5h window"..."""
    if rule.window is not None:
        return f" in any {rule.window.label} window"
    if rule.period == "lifetime":
        return " in all"
    if rule.anchored:
        return f" per {rule.period} of the subscription"
    return f" per {rule.period}"


def limit_detail(
    subject: Subject,
    feature: str,
    rule: Rule | None,
    refused: Level | None,
    limit: int,
    used: int | None,
    cost: int,
) -> str:
    """The sentence of a limit denial: what the plan allows at the level that
    refused, what is used, and when it starts again. A stock limit (``rule``
    None) counts what the application holds."""
    asked = "" if cost == 1 else f", and this request needs {cost}"
    count = "all" if used is None else str(used)
    if rule is None or refused is None:
        return f"plan {subject.plan!r} allows {limit} {feature!r} and {count} are used{asked}."
    over = _counted_over(rule)
    if rule.scope == "org" and refused.scope == "org":
        allows = f"allows {limit} uses of {feature!r}{over} to your organisation"
    elif rule.scope == "org":
        allows = f"allows each member {limit} uses of {feature!r}{over}"
        count = "all" if used is None else f"{used} of yours"
    else:
        allows = f"allows {limit} uses of {feature!r}{over}"
    resets = ""
    if refused.reset_at is not None:
        when = iso_utc(refused.reset_at)
        resets = f"; enough frees up at {when}" if rule.window else f"; it resets at {when}"
    return f"plan {subject.plan!r} {allows} and {count} are used{asked}{resets}."


class Denial(Exception):
    """A gate refused the request: what to answer, in no framework's terms.

    :param reason: ``anonymous``, ``not-entitled``, ``tier``, ``limit``,
        ``unavailable`` (the database cannot be reached and the fail mode is
        closed) or ``error`` (the database failed the check); ``denied`` for none
        of them.
    :param status: the HTTP status (None for a denial of no particular status).
    :param feature: the feature the gate checks.
    :param subject: the caller, None when anonymous.
    :param detail: one sentence for the developer calling: what happened and what to do.
    :param message: one short sentence for the end user (see
        :mod:`~feature_gates.core._messages`); the default template's when not given.
    :param headers: response headers (``Retry-After``, the limit headers).
    :param required_tier: a tier denial's lowest plan that passes.
    :param limit: a limit denial's limit; ``used`` the count now (None when it is
        not known), ``cost`` what the request needed, ``reset_at`` when the count
        starts again (None for a stock limit; for a rolling window, when enough of
        it frees up for ``cost``), all of the level that refused: ``scope``
        ``"org"`` for an organisation's pool, ``"user"`` for the user's own count
        or a member's share of a pool (None for a stock limit); ``period`` or
        ``window`` say what the metered limit counts over.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None,
        feature: str,
        subject: Subject | None,
        detail: str,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        required_tier: str | None = None,
        limit: int | None = None,
        used: int | None = None,
        cost: int | None = None,
        reset_at: datetime | None = None,
        scope: str | None = None,
        period: str | None = None,
        window: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status
        self.feature = feature
        self.subject = subject
        self.detail = detail
        self._message = message
        self.headers = dict(headers or {})
        self.required_tier = required_tier
        self.limit = limit
        self.used = used
        self.cost = cost
        self.reset_at = reset_at
        self.scope = scope
        self.period = period
        self.window = window

    @property
    def title(self) -> str:
        return KINDS[self.reason][0]

    @property
    def type(self) -> str:
        return f"{DOCS_URL}#{KINDS[self.reason][1]}"

    @property
    def message(self) -> str:
        """The sentence for the end user: "You've used all 50 chat messages this month; ..."."""
        if self._message is None:
            self._message = _DEFAULT_MESSAGES.of(self)
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self._message = value

    @property
    def plan(self) -> str | None:
        return None if self.subject is None else self.subject.plan

    @property
    def remaining(self) -> int | None:
        if self.limit is None or self.used is None:
            return None
        return max(self.limit - self.used, 0)

    def members(self) -> dict[str, Any]:
        """The members this kind of denial adds to the problem document."""
        if self.reason == "tier":
            return {"required_tier": self.required_tier}
        if self.reason == "limit":
            members: dict[str, Any] = {
                "limit": self.limit,
                "used": self.used,
                "remaining": self.remaining,
                "cost": self.cost,
                "reset_at": None if self.reset_at is None else iso_utc(self.reset_at),
            }
            if self.scope is not None:
                members["scope"] = self.scope
                if self.window is not None:
                    members["window"] = self.window
                else:
                    members["period"] = self.period
            return members
        return {}

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document, as a dict."""
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "message": self.message,
            "feature": self.feature,
            "plan": self.plan,
            **self.members(),
        }

    def body(self) -> str:
        """The problem document as ``application/problem+json`` text."""
        return json.dumps(self.problem())
