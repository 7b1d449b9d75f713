"""HTML for browsers, JSON for everyone else, decided by the request's Accept.

A browser's Accept prefers ``text/html`` (``text/html,...,*/*;q=0.8``); curl,
requests and most API clients send ``*/*`` or ``application/json``, and get JSON.
``accept_mimetypes.accept_html`` is no test for that: it is true for ``*/*`` too.
"""

from __future__ import annotations

from flask import Response
from flask import g
from flask import request

__all__ = ["prefers_html", "vary_on_accept", "wants_html"]


def prefers_html() -> bool:
    """True when the client prefers ``text/html`` over JSON (a browser's Accept).

    A tie, ``*/*`` or no Accept at all, goes to JSON. The response is marked to
    vary on Accept (see :func:`vary_on_accept`), since it was chosen by it.
    """
    g.sentinel_varies_on_accept = True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def wants_html() -> bool:
    """:func:`prefers_html`, unless the URL asks for one: ``?format=html`` or ``json``."""
    asked = request.args.get("format")
    if asked in ("html", "json"):
        return asked == "html"
    return prefers_html()


def vary_on_accept(response: Response) -> Response:
    """``after_request``: a response chosen by Accept says so (``Vary: Accept``),
    so that a cache never hands a browser's page to an API client, or back."""
    if g.get("sentinel_varies_on_accept"):
        response.vary.add("Accept")
    return response
