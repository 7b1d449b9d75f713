"""Denials: werkzeug HTTP exceptions that render RFC 9457 ``application/problem+json``.

Because they are :class:`~werkzeug.exceptions.HTTPException` subclasses, an
application's own ``@app.errorhandler(403)`` (or ``429``, or the class) sees them
first; without one they answer with their problem document:

.. code-block:: json

    {"type": "https://github.com/feature-gates/feature-gates/blob/main/docs/errors.md#feature-limit-exceeded",
     "title": "Feature limit reached", "status": 429,
     "detail": "plan 'free' allows 50 uses of 'chat_messages_monthly' per month and 50 are used; it resets at 2026-12-01T00:00:00Z.",
     "feature": "chat_messages_monthly", "plan": "free",
     "limit": 50, "used": 50, "remaining": 0, "cost": 1, "reset_at": "2026-12-01T00:00:00Z"}
"""  # noqa: E501

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import ClassVar

from werkzeug.exceptions import Forbidden
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.exceptions import TooManyRequests
from werkzeug.exceptions import Unauthorized

from .core import Subject

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "FeatureCheckUnavailable",
    "FeatureDenied",
    "FeatureLimitExceeded",
    "FeatureNotEntitled",
    "NotAuthenticated",
    "TierTooLow",
    "iso_utc",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"

#: Each denial's ``type`` is this page's section that describes it.
DOCS_URL = "https://github.com/feature-gates/feature-gates/blob/main/docs/errors.md"


def one_line(error: BaseException) -> str:
    """An error as one line for logs and command output: its first line (libpq puts
    the host, port and reason there), or its class name when it has no text."""
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def iso_utc(moment: datetime) -> str:
    """``moment`` as ISO 8601 in UTC with a ``Z``: ``2026-12-01T00:00:00Z``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class FeatureDenied(HTTPException):
    """A gate refused the request. The base of every denial.

    Each denial also derives from werkzeug's exception for its status
    (:class:`~werkzeug.exceptions.Forbidden` for a 403, ...), because Flask finds a
    handler registered with ``@app.errorhandler(403)`` through that class. This
    base and :class:`FeatureLimitExceeded` have no status of their own, so that a
    handler registered for them (``@app.errorhandler(FeatureDenied)``) sees every
    denial they cover, whatever its status.

    :param feature: the feature the gate checks.
    :param subject: the caller, None when anonymous.
    :param detail: one sentence for the caller: what happened and what to do.
    :param headers: extra response headers (``Retry-After``, the limit headers).
    :param response: a response to send instead of the problem document (what an
        ``on_denied`` hook returned).
    """

    #: Why the gate refused: ``anonymous``, ``not-entitled``, ``tier``, ``limit``
    #: or ``unavailable`` (the same word as the ``access-denied`` signal's ``reason``).
    reason: ClassVar[str] = "denied"
    #: The problem type's short, fixed summary.
    title: ClassVar[str] = "Feature denied"
    #: The anchor of this denial in docs/errors.md, ending the problem ``type``.
    slug: ClassVar[str] = "feature-denied"

    def __init__(
        self,
        *,
        feature: str,
        subject: Subject | None,
        detail: str,
        headers: Mapping[str, str] | None = None,
        response: Any = None,
    ) -> None:
        super().__init__(detail, response)
        self.feature = feature
        self.subject = subject
        self.detail = detail
        self.headers = dict(headers or {})

    @property
    def plan(self) -> str | None:
        return None if self.subject is None else self.subject.plan

    @property
    def type(self) -> str:
        return f"{DOCS_URL}#{self.slug}"

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document, as a dict."""
        return {
            "type": self.type,
            "title": self.title,
            "status": self.code,
            "detail": self.detail,
            "feature": self.feature,
            "plan": self.plan,
            **self.extensions(),
        }

    def extensions(self) -> dict[str, Any]:
        """The members this kind of denial adds to the problem document."""
        return {}

    def get_body(
        self,
        environ: Any = None,
        scope: dict[str, Any] | None = None,
    ) -> str:
        return json.dumps(self.problem())

    def get_headers(
        self,
        environ: Any = None,
        scope: dict[str, Any] | None = None,
    ) -> list[tuple[str, str]]:
        return [("Content-Type", PROBLEM_CONTENT_TYPE), *self.headers.items()]


class NotAuthenticated(FeatureDenied, Unauthorized):
    """*401*: the endpoint is gated and the subject loader found no caller."""

    reason = "anonymous"
    title = "Authentication required"
    slug = "not-authenticated"
    code = 401


class FeatureNotEntitled(FeatureDenied, Forbidden):
    """*403*: the caller's plan does not include the feature (or grants it 0 uses)."""

    reason = "not-entitled"
    title = "Feature not in plan"
    slug = "feature-not-entitled"
    code = 403


class TierTooLow(FeatureDenied, Forbidden):
    """*403*: the caller's plan ranks below the endpoint's minimum tier."""

    reason = "tier"
    title = "Plan tier too low"
    slug = "tier-too-low"
    code = 403

    def __init__(self, *, required_tier: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.required_tier = required_tier

    def extensions(self) -> dict[str, Any]:
        return {"required_tier": self.required_tier}


class FeatureLimitExceeded(FeatureDenied):
    """*429* (or ``FEATURE_GATES_LIMIT_STATUS``): the request would go over the plan's limit.

    ``reset_at`` is when a metered limit's period ends (None for a stock limit,
    which never resets by itself); the response then carries ``Retry-After``.
    Build one with :meth:`for_status` to get the configured status; built
    directly, it is a 429. Each status is a subclass that also derives from
    werkzeug's class for it (:class:`~werkzeug.exceptions.TooManyRequests`, ...).
    """

    reason = "limit"
    title = "Feature limit reached"
    slug = "feature-limit-exceeded"

    def __new__(cls, *args: Any, **kwargs: Any) -> FeatureLimitExceeded:
        if cls is FeatureLimitExceeded:
            cls = _LIMIT_CLASSES[429]
        return super().__new__(cls, *args, **kwargs)

    def __init__(
        self,
        *,
        limit: int,
        used: int | None,
        cost: int,
        reset_at: datetime | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.limit = limit
        self.used = used
        self.cost = cost
        self.reset_at = reset_at

    @property
    def remaining(self) -> int | None:
        return None if self.used is None else max(self.limit - self.used, 0)

    def extensions(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "used": self.used,
            "remaining": self.remaining,
            "cost": self.cost,
            "reset_at": None if self.reset_at is None else iso_utc(self.reset_at),
        }

    @staticmethod
    def for_status(status: int, **kwargs: Any) -> FeatureLimitExceeded:
        """A limit denial answering with ``status``: 429, 402 or 403."""
        return _LIMIT_CLASSES[status](**kwargs)


class _LimitExceededTooManyRequests(FeatureLimitExceeded, TooManyRequests):
    code = 429


class _LimitExceededForbidden(FeatureLimitExceeded, Forbidden):
    code = 403


class _LimitExceededPaymentRequired(FeatureLimitExceeded):
    # werkzeug has no 402 class: a handler for it is registered with the class.
    code = 402


_LIMIT_CLASSES: dict[int, type[FeatureLimitExceeded]] = {
    429: _LimitExceededTooManyRequests,
    403: _LimitExceededForbidden,
    402: _LimitExceededPaymentRequired,
}


class FeatureCheckUnavailable(FeatureDenied, ServiceUnavailable):
    """*503*: a metered limit could not reach the database and its fail mode is ``closed``."""

    reason = "unavailable"
    title = "Feature check unavailable"
    slug = "feature-check-unavailable"
    code = 503
