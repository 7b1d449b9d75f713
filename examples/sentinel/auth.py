"""Who is calling: an API token in ``Authorization: Bearer <token>``.

The JSON API takes the header only. The two HTML pages (``/me/usage`` and the
admin dashboard) also take the token from a cookie set by ``/login``, so that a
browser can open them; cookies are never accepted on the API, which keeps it
safe from cross-site request forgery.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec
from typing import TypeVar

from flask import current_app
from flask import g
from flask import request

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
]

COOKIE = "sentinel_token"

P = ParamSpec("P")
R = TypeVar("R")


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def load_user(*, allow_cookie: bool = False) -> User | None:
    """The user the request's token belongs to (cached on ``g`` for the request)."""
    if "sentinel_user" not in g:
        token = _bearer() or (request.cookies.get(COOKIE) if allow_cookie else None)
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


def _sync(view: Callable[P, R]) -> Callable[P, R]:
    """The view as Flask calls it (``ensure_sync``: an async view is run to completion).

    Flask types the result as ``Callable[..., Any]``; it takes the view's arguments
    and returns what a plain view returns.
    """
    call: Callable[P, R] = current_app.ensure_sync(view)
    return call


def login_required(*, allow_cookie: bool = False) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The view needs a valid token; 401 problem+json otherwise."""

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if load_user(allow_cookie=allow_cookie) is None:
                raise _unauthorized()
            return _sync(view)(*args, **kwargs)

        return wrapper

    return decorator


def admin_required(view: Callable[P, R]) -> Callable[P, R]:
    """The view needs an admin's token (header or cookie); 401 or 403 otherwise."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        user = load_user(allow_cookie=True)
        if user is None:
            raise _unauthorized()
        if not user.is_admin:
            raise Problem(403, "Forbidden", "this page is for administrators")
        return _sync(view)(*args, **kwargs)

    return wrapper
