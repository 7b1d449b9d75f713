"""The request's own state: its subject and the grants its gates hold.

Kept on the ``HttpRequest`` under a private name (a DRF ``Request``'s own
``HttpRequest``), so it lives exactly as long as the request. The outermost
gate of a view settles every grant by the response's status, so the limit
headers are those of the tightest limit, as in the Flask adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

from ..core import Engine
from ..core import Grant
from ..core import Subject
from ._runtime import Runtime

__all__ = ["RequestGates", "of_request", "request_in", "settle"]

_ATTRIBUTE = "_feature_gates"


@dataclass
class RequestGates:
    subject: Subject | None = None
    loaded: bool = False
    #: Gates of the view entered and not yet left.
    depth: int = 0
    grants: list[Grant] = field(default_factory=list)

    def subject_of(self, runtime: Runtime, request: Any) -> Subject | None:
        """The request's subject: loaded once (with the request the view got), then kept."""
        if not self.loaded:
            self.subject = runtime.load_subject(request)
            self.loaded = True
        return self.subject


def _http_request(request: Any) -> Any:
    # A DRF Request wraps Django's HttpRequest as _request.
    return getattr(request, "_request", request)


def of_request(request: Any) -> RequestGates:
    """The gates' state of ``request`` (an HttpRequest or a DRF Request)."""
    http = _http_request(request)
    current: RequestGates | None = getattr(http, _ATTRIBUTE, None)
    if current is None:
        current = RequestGates()
        setattr(http, _ATTRIBUTE, current)
    return current


def request_in(args: tuple[Any, ...]) -> Any:
    """The request among a view's positional arguments: the first (a function view,
    or a handler through ``method_decorator``), or the second (a handler decorated
    directly: ``self`` comes first)."""
    from django.http import HttpRequest

    for arg in args[:2]:
        if isinstance(_http_request(arg), HttpRequest):
            return arg
    raise TypeError(
        "a feature gate found no request among the view's arguments: decorate a view "
        "function, a class-based view's handler (directly or through method_decorator), "
        "or a DRF handler"
    )


def settle(engine: Engine, grants: list[Grant], response: Any) -> None:
    """Settle ``grants`` by the response's status; add the limit headers to a success."""
    succeeded = response.status_code < 400
    for grant in grants:
        engine.settle(grant, succeeded)
    if succeeded:
        for name, value in engine.response_headers(grants).items():
            response[name] = value
