"""HTML for browsers, JSON for everyone else: feature_gates.prefers_html() decides
by the request's Accept; a URL may ask for one (``?format=html`` or ``json``)."""

from __future__ import annotations

from flask import request

from feature_gates import prefers_html

__all__ = ["wants_html"]


def wants_html() -> bool:
    """:func:`feature_gates.prefers_html`, unless the URL asks: ``?format=html`` or ``json``."""
    asked = request.args.get("format")
    if asked in ("html", "json"):
        return asked == "html"
    return prefers_html()
