"""Cross-site request forgery: a browser's form must carry the token from its cookie.

The pages' forms (sign in, sign out) send a hidden ``csrf_token`` field, or a
script the ``X-CSRF-Token`` header, equal to the ``sentinel_csrf`` cookie. Another
site can make a browser send the cookie but cannot read it, so it cannot send the
matching field: :func:`check` refuses such a request with 403 before the view runs.
The session cookie is never accepted on a request that changes state (auth.py),
so the JSON API, which takes tokens in a header only, needs no such check.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TypeGuard

from flask import Response
from flask import g
from flask import request

from .problems import Problem

__all__ = ["COOKIE", "FIELD", "HEADER", "check", "csrf_token", "renew", "store"]

COOKIE = "sentinel_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LENGTH = 43  # secrets.token_urlsafe(32)


def _usable(token: str | None) -> TypeGuard[str]:
    return token is not None and len(token) == _LENGTH and token.isascii()


def csrf_token() -> str:
    """The token this browser's forms send back (a template global); a new one is
    made, and set as the cookie, when the browser has none yet."""
    token: str | None = g.get("sentinel_csrf_new") or request.cookies.get(COOKIE)
    if not _usable(token):
        token = renew()
    return token


def renew() -> str:
    """A fresh token, set as the cookie with this response (after signing in)."""
    token = secrets.token_urlsafe(32)
    g.sentinel_csrf_new = token
    return token


def check() -> None:
    """``before_request`` of the pages: a request that changes state carries the token."""
    if request.method in SAFE_METHODS:
        return
    expected = request.cookies.get(COOKIE)
    sent = request.form.get(FIELD) or request.headers.get(HEADER)
    if not (_usable(expected) and _usable(sent) and hmac.compare_digest(sent, expected)):
        raise Problem(
            403,
            "Forbidden",
            "the form's security token is missing or out of date: "
            "reload the page and send the form again",
        )


def store(response: Response) -> Response:
    """``after_request``: set the cookie when this request made a new token."""
    token = g.get("sentinel_csrf_new")
    if token:
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure
        )
    return response
