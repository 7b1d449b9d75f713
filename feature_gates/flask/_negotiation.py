"""HTML for browsers, JSON for everyone else, decided by the request's Accept.

A browser's Accept puts ``text/html`` first (``text/html,...,*/*;q=0.8``); curl,
requests and most API clients send ``*/*`` or ``application/json``.
``request.accept_mimetypes.accept_html`` is no test for a browser: it is true
for ``*/*`` too, so an API client would get the page meant for a person.
"""

from __future__ import annotations

from flask import Response
from flask import after_this_request
from flask import request

__all__ = ["prefers_html"]

#: The request's WSGI environ holds this key once its response varies on Accept.
_VARIES = "feature_gates.varies_on_accept"


def prefers_html() -> bool:
    """True when the client prefers ``text/html`` over JSON: a browser's Accept.

    False for ``*/*`` (curl, requests), for JSON, for a tie and without an
    Accept header. The response is marked ``Vary: Accept``, since it was chosen
    by it, so a cache never hands a browser's page to an API client.
    """
    environ = request.environ
    if _VARIES not in environ:
        environ[_VARIES] = True
        after_this_request(_vary_on_accept)
    return request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"


def _vary_on_accept(response: Response) -> Response:
    response.vary.add("Accept")
    return response
