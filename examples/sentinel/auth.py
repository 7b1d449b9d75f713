"""Who is calling: an API token in ``Authorization: Bearer <token>``, or a browser's cookie.

The JSON API takes the header. A browser signs in at ``/login``, which sets the
token in an HTTP-only cookie; the cookie is accepted by the views that say so
(``allow_cookie=True``: the usage pages and the export downloads) and only on a
request that changes nothing (GET, HEAD). A request that changes state never
counts the cookie, so another site cannot forge one on the user's behalf; the
pages' own forms carry a CSRF token (csrf.py).

A browser that is not signed in is sent to ``/login?next=...`` from a page that
takes the cookie; an API client gets 401 problem+json.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NoReturn
from typing import ParamSpec
from typing import TypeVar
from urllib.parse import urlsplit

from flask import abort
from flask import current_app
from flask import g
from flask import redirect
from flask import request
from flask import url_for

from feature_gates import prefers_html

from .accounts import User
from .problems import Problem
from .state import sentinel

__all__ = [
    "COOKIE",
    "admin_required",
    "current_user",
    "forget_request",
    "load_user",
    "login_required",
    "safe_next",
]

COOKIE = "sentinel_token"
#: The methods on which the cookie counts: they change nothing.
COOKIE_METHODS = frozenset({"GET", "HEAD"})

P = ParamSpec("P")
R = TypeVar("R")


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def load_user(*, allow_cookie: bool = False) -> User | None:
    """The user the request's token belongs to (cached on ``g`` for the request).

    With ``allow_cookie``, the sign-in cookie counts too, on a GET or HEAD only.
    """
    if "sentinel_user" not in g:
        token = _bearer()
        if token is None and allow_cookie and request.method in COOKIE_METHODS:
            token = request.cookies.get(COOKIE)
        found = None
        if token and len(token) <= 200:
            found = sentinel().accounts.user_for_token(token)
        g.sentinel_user = found
    user: User | None = g.sentinel_user
    return user


def forget_request(error: BaseException | None = None) -> None:
    """``teardown_request``: drop what was read for this request from ``g``.

    ``g`` outlives the request when an outer application context is pushed (a
    test, a CLI command): the next request must not find this one's caller or body.
    """
    for name in [name for name in g if name.startswith("sentinel_")]:
        g.pop(name)


def current_user() -> User:
    user = load_user()
    assert user is not None, "current_user() outside a login_required view"
    return user


def _unauthorized() -> Problem:
    return Problem(
        401,
        "Unauthorized",
        "send your API token as 'Authorization: Bearer <token>' "
        "(python -m examples.sentinel prints the demo users' tokens)",
        headers={"WWW-Authenticate": 'Bearer realm="sentinel"'},
    )


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site (``/me/usage?x=1``), else None.

    ``next`` comes from the URL, which anyone can write: a full URL, ``//host``
    or ``/\\host`` (which browsers read as another host) would send the user away
    after signing in.
    """
    if not target or len(target) > 2000 or not target.startswith("/"):
        return None
    if target.startswith("//") or "\\" in target or not target.isprintable():
        return None
    parts = urlsplit(target)
    return target if not (parts.scheme or parts.netloc) else None


def _refuse_anonymous(*, page: bool) -> NoReturn:
    """No valid token: a browser on a page signs in first, anyone else gets 401."""
    if page and _bearer() is None and prefers_html():
        here = request.full_path.rstrip("?")
        abort(redirect(url_for("usage.login_form", next=here)))
    raise _unauthorized()


def _sync(view: Callable[P, R]) -> Callable[P, R]:
    """The view as Flask calls it (``ensure_sync``: an async view is run to completion).

    Flask types the result as ``Callable[..., Any]``; it takes the view's arguments
    and returns what a plain view returns.
    """
    call: Callable[P, R] = current_app.ensure_sync(view)
    return call


def login_required(*, allow_cookie: bool = False) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The view needs a valid token; 401 problem+json otherwise.

    ``allow_cookie``: a browser's sign-in cookie counts too (on GET and HEAD), and a
    browser that is not signed in is redirected to the sign-in page.
    """

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if load_user(allow_cookie=allow_cookie) is None:
                _refuse_anonymous(page=allow_cookie)
            return _sync(view)(*args, **kwargs)

        return wrapper

    return decorator


def admin_required(view: Callable[P, R]) -> Callable[P, R]:
    """The view needs an admin's token (header or cookie); 401 (or the sign-in page)
    or 403 otherwise."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        user = load_user(allow_cookie=True)
        if user is None:
            _refuse_anonymous(page=True)
        if not user.is_admin:
            raise Problem(403, "Forbidden", "this page is for administrators")
        return _sync(view)(*args, **kwargs)

    return wrapper
