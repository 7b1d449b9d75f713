"""The request's own state: its subject and the grants it holds, on ``flask.g``.

Kept under a private name and cleared when the request ends, so that an outer
application context (as pytest-flask pushes) does not carry one request's
subject into the next. The grants are settled by the response's status in
``after_request``, or refunded in ``teardown_request`` when no response got out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

from flask import Response
from flask import g
from flask import has_request_context
from flask.ctx import _AppCtxGlobals

from ..core import Engine
from ..core import Grant
from ..core import Subject

__all__ = ["current_subject", "end_request", "finish_response", "hold"]

_REQUEST_KEY = "_feature_gates"


@dataclass
class _RequestGates:
    subject: Subject | None = None
    loaded: bool = False
    grants: list[tuple[Engine, Grant]] = field(default_factory=list)


def _namespace() -> _AppCtxGlobals:
    """The real ``flask.g`` of the current context: each use of the ``g`` proxy costs a
    lookup, and a request through a gate uses it several times."""
    return g._get_current_object()  # type: ignore[no-any-return]


def _request_gates() -> _RequestGates:
    namespace = _namespace()
    current: _RequestGates | None = namespace.get(_REQUEST_KEY)
    if current is None:
        current = _RequestGates()
        setattr(namespace, _REQUEST_KEY, current)
    return current


def current_subject(load: Callable[[], Subject | None]) -> Subject | None:
    """The subject of the current request: loaded once per request (by ``load``),
    then reused."""
    if not has_request_context():
        return None
    current = _request_gates()
    if not current.loaded:
        current.subject = load()
        current.loaded = True
    return current.subject


def hold(engine: Engine, grant: Grant) -> None:
    """Keep ``grant`` until the response's status is known (:func:`finish_response`)."""
    if grant.held:
        _request_gates().grants.append((engine, grant))


def finish_response(response: Response) -> Response:
    """``after_request``: settle the request's grants by status; add the limit headers."""
    current: _RequestGates | None = _namespace().get(_REQUEST_KEY)
    if current is None or not current.grants:
        return response
    grants, current.grants = current.grants, []
    succeeded = response.status_code < 400
    for engine, grant in grants:
        engine.settle(grant, succeeded)
    if succeeded:
        engine = grants[0][0]
        response.headers.update(engine.response_headers([grant for _, grant in grants]))
    return response


def end_request(error: BaseException | None = None) -> None:
    """``teardown_request``: a grant still held means the response never got out: refund."""
    current: _RequestGates | None = _namespace().pop(_REQUEST_KEY, None)
    if current is not None:
        for engine, grant in current.grants:
            engine.settle(grant, succeeded=False)
