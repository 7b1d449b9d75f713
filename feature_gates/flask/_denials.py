"""Denials in their HTTP form: werkzeug HTTP exceptions over the core's denials.

Because they are :class:`~werkzeug.exceptions.HTTPException` subclasses, an
application's own ``@app.errorhandler(403)`` (or ``429``, or the class) sees them
first; without one they answer with their problem document
(``application/problem+json``), which the core builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from typing import ClassVar

from werkzeug.exceptions import Forbidden
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.exceptions import TooManyRequests
from werkzeug.exceptions import Unauthorized

from ..core import KINDS
from ..core import PROBLEM_CONTENT_TYPE
from ..core import Denial
from ..core import Subject

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "FeatureCheckFailed",
    "FeatureCheckUnavailable",
    "FeatureDenied",
    "FeatureLimitExceeded",
    "FeatureNotEntitled",
    "NotAuthenticated",
    "TierTooLow",
    "http_denial",
]


#: The attributes a denial reads from the core's: what its problem document says.
_FROM_DENIAL = frozenset(
    {
        "feature",
        "subject",
        "detail",
        "message",
        "headers",
        "plan",
        "type",
        "required_tier",
        "limit",
        "used",
        "cost",
        "reset_at",
        "remaining",
        "scope",
        "period",
        "window",
    }
)


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
    :param detail: one sentence for the developer calling: what happened and what to do.
    :param headers: extra response headers (``Retry-After``, the limit headers).
    :param message: one short sentence for the end user (``message`` in the problem
        document); the default template's when not given.
    :param response: a response to send instead of the problem document (what an
        ``on_denied`` hook returned).
    """

    #: Why the gate refused: ``anonymous``, ``not-entitled``, ``tier``, ``limit``,
    #: ``unavailable`` or ``error`` (the same word as the ``access-denied`` signal's
    #: ``reason``).
    reason: ClassVar[str] = "denied"
    #: The problem type's short, fixed summary.
    title: ClassVar[str] = KINDS["denied"][0]
    #: The anchor of this denial in docs/errors.md, ending the problem ``type``.
    slug: ClassVar[str] = KINDS["denied"][1]

    def __init__(
        self,
        *,
        feature: str,
        subject: Subject | None,
        detail: str,
        headers: Mapping[str, str] | None = None,
        response: Any = None,
        **members: Any,
    ) -> None:
        super().__init__(detail, response)
        #: The denial as the core describes it: what the problem document says.
        self.denial = Denial(
            self.reason,
            status=self.code,
            feature=feature,
            subject=subject,
            detail=detail,
            headers=headers,
            **members,
        )

    # Read from the core's denial (see __getattr__).
    feature: str
    subject: Subject | None
    detail: str
    message: str
    headers: dict[str, str]
    plan: str | None
    type: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.title, cls.slug = KINDS[cls.reason]

    def __getattr__(self, name: str) -> Any:
        # What the problem document says is the core denial's, read from it.
        if name in _FROM_DENIAL:
            return getattr(self.denial, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document, as a dict."""
        return self.denial.problem()

    def get_body(self, environ: Any = None, scope: dict[str, Any] | None = None) -> str:
        return self.denial.body()

    def get_headers(
        self, environ: Any = None, scope: dict[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        return [("Content-Type", PROBLEM_CONTENT_TYPE), *self.denial.headers.items()]


class NotAuthenticated(FeatureDenied, Unauthorized):
    """*401*: the endpoint is gated and the subject loader found no caller."""

    reason = "anonymous"
    code = 401


class FeatureNotEntitled(FeatureDenied, Forbidden):
    """*403*: the caller's plan does not include the feature (or grants it 0 uses)."""

    reason = "not-entitled"
    code = 403


class TierTooLow(FeatureDenied, Forbidden):
    """*403*: the caller's plan ranks below the endpoint's minimum tier."""

    reason = "tier"
    code = 403
    required_tier: str

    def __init__(self, *, required_tier: str, **kwargs: Any) -> None:
        super().__init__(required_tier=required_tier, **kwargs)


class FeatureLimitExceeded(FeatureDenied):
    """*429* (or ``FEATURE_GATES_LIMIT_STATUS``): the request would go over the plan's limit.

    ``reset_at`` is when a metered limit's period ends (None for a stock limit,
    which never resets by itself); the response then carries ``Retry-After``.
    Build one with :meth:`for_status` to get the configured status; built
    directly, it is a 429. Each status is a subclass that also derives from
    werkzeug's class for it (:class:`~werkzeug.exceptions.TooManyRequests`, ...).
    """

    reason = "limit"
    limit: int
    used: int | None
    cost: int
    reset_at: datetime | None
    remaining: int | None

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
        super().__init__(limit=limit, used=used, cost=cost, reset_at=reset_at, **kwargs)

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
    code = 503


class FeatureCheckFailed(FeatureDenied, ServiceUnavailable):
    """*503*: the database answered a metered check with an error that is not an
    outage (a deadlock retried in vain, a statement timeout, too many connections, a
    missing function...). Whatever the fail mode: an error never lets a request past
    its limit."""

    reason = "error"
    code = 503


_CLASSES: dict[str, type[FeatureDenied]] = {
    cls.reason: cls
    for cls in (
        NotAuthenticated,
        FeatureNotEntitled,
        TierTooLow,
        FeatureCheckUnavailable,
        FeatureCheckFailed,
    )
}


def http_denial(denial: Denial) -> FeatureDenied:
    """The HTTP form of the core's ``denial``."""
    if denial.reason == "limit":
        assert denial.status is not None
        cls: type[FeatureDenied] = _LIMIT_CLASSES[denial.status]
    else:
        cls = _CLASSES[denial.reason]
    error = cls.__new__(cls)
    HTTPException.__init__(error, denial.detail)
    error.denial = denial
    return error
