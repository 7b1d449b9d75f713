"""Every error Sentinel answers an API client is ``application/problem+json`` (RFC 9457).

feature-gates' denials already are; this module gives the app's own errors (bad
input, missing token, not found, too large) the same shape, and reads request
bodies so that no input, however malformed, reaches the database or ends in a 500.
A browser (a client that prefers HTML: feature_gates.prefers_html()) gets each error as a page
instead (error_pages.py).
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING
from typing import Any

import psycopg
from flask import Flask
from flask import Response
from flask import jsonify
from flask import request
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request as BaseRequest
from werkzeug.wrappers import Response as BaseResponse

from feature_gates import FeatureDenied
from feature_gates import StorageError
from feature_gates import prefers_html

from .error_pages import denial_page
from .error_pages import error_page

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["InvalidInput", "Problem", "problem", "read_json", "register"]

logger = logging.getLogger("sentinel")

PROBLEM_TYPES = "https://feature-gates.dev/sentinel/problems/"
#: Headers of an error response that its page or problem document keeps.
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {
        "type": PROBLEM_TYPES + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


class Problem(HTTPException):
    """An HTTP error with a problem+json body; ``extra`` members are added to it."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.code = status
        self.title = title
        self.headers = headers or {}
        self.extra = extra

    def get_response(
        self,
        environ: WSGIEnvironment | BaseRequest | None = None,
        scope: dict[str, Any] | None = None,
    ) -> Response:
        response = problem(self.code or 500, self.title, self.description or "", **self.extra)
        response.headers.update(self.headers)
        return response


class InvalidInput(Problem):
    """The request body is not what the endpoint takes (400)."""

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(400, "Invalid input", detail)
        if field:
            self.extra["field"] = field


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large")
    return value


def _check_text(value: Any, path: str) -> None:
    """Strings PostgreSQL cannot store (NUL, lone surrogates) are refused here."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput("text must not contain NUL characters", path or None)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("text must be valid Unicode", path or None) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path)
            _check_text(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{path}[{index}]")


def read_json() -> dict[str, Any]:
    """The request body as a JSON object, or :class:`InvalidInput`.

    Any content type is accepted (``curl -d`` sends a form type by default). The
    size limit is Flask's ``MAX_CONTENT_LENGTH`` (413 beyond it).
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidInput("the request needs a JSON object body")
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite)
    except UnicodeDecodeError:
        raise InvalidInput("the body must be UTF-8 encoded JSON") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object, not {type(body).__name__}")
    _check_text(body, "")
    return body


def text(
    body: dict[str, Any], name: str, *, max_length: int = 200, required: bool = True
) -> str | None:
    """A non-empty string member of ``body`` (stripped), at most ``max_length`` long."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"'{name}' is required", name)
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"'{name}' must be a non-empty string", name)
    if len(value) > max_length:
        raise InvalidInput(f"'{name}' is longer than {max_length} characters", name)
    return value.strip()


def obj(body: dict[str, Any], name: str, *, required: bool = False) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"'{name}' is required", name)
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"'{name}' must be a JSON object", name)
    return value


def items(body: dict[str, Any], name: str, *, max_items: int) -> list[Any]:
    """A non-empty list member of ``body`` with at most ``max_items`` elements."""
    value = body.get(name)
    if value is None:
        raise InvalidInput(f"'{name}' is required", name)
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"'{name}' must be a non-empty list", name)
    if len(value) > max_items:
        raise InvalidInput(f"'{name}' takes at most {max_items} items per request", name)
    return value


def register(app: Flask) -> None:
    """Answer every error with problem+json, and never show a traceback."""

    @app.before_request
    def refuse_large_bodies() -> None:
        # Werkzeug refuses a body over MAX_CONTENT_LENGTH when a view reads it; a
        # view that reads none would take any size. Refused here for every view.
        limit = request.max_content_length
        if limit is not None and (request.content_length or 0) > limit:
            raise RequestEntityTooLarge()

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> BaseResponse:
        response = error.get_response()
        kept = {h: response.headers[h] for h in KEPT_HEADERS if h in response.headers}
        if isinstance(error, BadRequest) and error.description == BadRequest.description:
            detail = "the request could not be understood"
        else:
            detail = error.description or error.name
        if prefers_html():
            if isinstance(error, FeatureDenied):
                return denial_page(error, kept)
            return error_page(error.code or 500, detail, headers=kept)
        if response.mimetype == "application/problem+json":
            return response  # feature-gates' denials and our own Problems
        reply = problem(error.code or 500, error.name, detail)
        reply.headers.update(kept)
        return reply

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(psycopg.InterfaceError)
    @app.errorhandler(StorageError)
    def database_away(error: psycopg.Error | StorageError) -> Response:
        # The database is stopped, restarting or out of connections (a pooled
        # connection it closed fails once), or a read through feature-gates failed
        # (StorageUnavailable while its health says the database is away): the
        # client may try again shortly.
        logger.warning(
            "%s %s: the database does not answer: %s", request.method, request.path, error
        )
        return _failure(503, "Service unavailable", "the database does not answer; try again")

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return _failure(500, "Internal Server Error", "something went wrong on our side")


def _failure(status: int, title: str, detail: str) -> Response:
    """A server-side failure, as a page or as problem+json; 503 says when to retry."""
    headers = {"Retry-After": "1"} if status == 503 else {}
    if prefers_html():
        return error_page(status, detail, headers=headers)
    reply = problem(status, title, detail)
    reply.headers.update(headers)
    return reply
