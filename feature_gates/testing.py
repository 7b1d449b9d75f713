"""Helpers for testing applications that use feature-gates (and feature-gates itself).

The pytest plugin (:mod:`feature_gates.pytest_plugin`) builds its fixtures on these.
"""

from __future__ import annotations

import http.client
import itertools
import json as jsonlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import urlsplit

import psycopg
from flask import Flask
from psycopg import conninfo as pg_conninfo
from psycopg import sql
from werkzeug.serving import make_server

from .migrate import MigrationSettings
from .migrate import migrate

if TYPE_CHECKING:
    from .pgserver import LocalPostgres

__all__ = [
    "DatabaseFactory",
    "ParallelResult",
    "fire_concurrently",
    "serve",
    "start_test_server",
]

#: Names a PostgreSQL server for tests instead of a throwaway one.
TEST_DATABASE_URL_ENV = "FEATURE_GATES_TEST_DATABASE_URL"


def start_test_server() -> tuple[str, LocalPostgres | None]:
    """The URL of a PostgreSQL server for a test session, and the server if one was started.

    Uses ``FEATURE_GATES_TEST_DATABASE_URL`` when set (its role needs CREATEDB);
    otherwise starts a throwaway :class:`~feature_gates.pgserver.LocalPostgres`.
    """
    url = os.environ.get(TEST_DATABASE_URL_ENV)
    if url:
        return url, None
    # Only here: the server module runs initdb and postgres, and needs their binaries.
    from .pgserver import LocalPostgres

    server = LocalPostgres().start()
    return server.url(), server


def _with_dbname(url: str, dbname: str) -> str:
    params = pg_conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return pg_conninfo.make_conninfo("", **params)


class DatabaseFactory:
    """Creates fresh databases on one server, cheaply.

    Each distinct :class:`~feature_gates.migrate.MigrationSettings` is migrated once
    into a template database; every database asked for afterwards is a copy of
    that template (``CREATE DATABASE ... TEMPLATE``), which takes milliseconds.
    """

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._prefix = f"fg_test_{os.getpid()}"
        self._counter = itertools.count(1)
        self._templates: dict[tuple[object, ...], str] = {}
        self._created: list[str] = []
        self._lock = threading.Lock()

    def url(self, dbname: str) -> str:
        """The URL of ``dbname`` on this factory's server."""
        return _with_dbname(self.server_url, dbname)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.server_url, autocommit=True)

    def _new_name(self, kind: str) -> str:
        return f"{self._prefix}_{kind}_{next(self._counter)}"

    def _create(self, name: str, template: str | None = None) -> None:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        with self._admin() as conn:
            conn.execute(query)
        self._created.append(name)

    def template(self, settings: MigrationSettings) -> str:
        """The name of a template database migrated with ``settings`` (made once)."""
        folders = tuple(sorted((k, str(v)) for k, v in (settings.folders or {}).items()))
        key = (settings.sets, folders, settings.schema, settings.user_id_type)
        with self._lock:
            name = self._templates.get(key)
            if name is None:
                name = self._new_name("template")
                self._create(name)
                migrate(self.url(name), settings)
                self._templates[key] = name
            return name

    def create(self, settings: MigrationSettings | None = None) -> str:
        """A new database, migrated with ``settings``; empty when ``settings`` is None.

        Returns its URL.
        """
        template = self.template(settings) if settings is not None else None
        name = self._new_name("db")
        self._create(name, template)
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a database made by :meth:`create`, closing any session still in it."""
        name = pg_conninfo.conninfo_to_dict(url)["dbname"]
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
            )
        if name in self._created:
            self._created.remove(str(name))

    def close(self) -> None:
        """Drop every database this factory made (templates included)."""
        for name in reversed(list(self._created)):
            self.drop(self.url(name))
        self._templates.clear()


# -- the parallel-limit harness --------------------------------------------------------------


@dataclass(frozen=True)
class ParallelResult:
    """How N concurrent requests were answered."""

    statuses: Counter[int]

    @property
    def allowed(self) -> int:
        """Responses with a status below 400."""
        return sum(n for status, n in self.statuses.items() if status < 400)

    @property
    def denied(self) -> int:
        """Responses with a 4xx status."""
        return sum(n for status, n in self.statuses.items() if 400 <= status < 500)

    @property
    def failed(self) -> int:
        """Responses with a 5xx status."""
        return sum(n for status, n in self.statuses.items() if status >= 500)


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Run ``app`` on a real threaded HTTP server on loopback; yields its base URL.

    Each request gets its own thread, as in production, so gates meet real
    concurrency (the test client runs one request at a time).
    """
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="feature-gates-test-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fire_concurrently(
    target: Flask | str,
    method: str,
    path: str,
    *,
    n: int = 32,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    timeout: float = 30.0,
) -> ParallelResult:
    """Send ``n`` requests at once and count the answers by status.

    :param target: an application (served on a threaded loopback server for the
        call) or the base URL of a running server (pytest-flask's ``live_server.url()``).
    :param json: a body sent as JSON with every request.

    .. code-block:: python

        result = fire_concurrently(app, "POST", "/messages", n=32, headers=auth)
        assert result.allowed == 10
    """
    if isinstance(target, Flask):
        with serve(target) as url:
            return fire_concurrently(url, method, path, n=n, headers=headers, json=json)
    split = urlsplit(target)
    body = None if json is None else jsonlib.dumps(json).encode()
    sent_headers = dict(headers or {})
    if body is not None:
        sent_headers.setdefault("Content-Type", "application/json")
    # Everyone connects first, then all send together.
    start = threading.Barrier(n)
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        conn = http.client.HTTPConnection(
            split.hostname or "127.0.0.1", split.port, timeout=timeout
        )
        try:
            conn.connect()
            start.wait(timeout)
            conn.request(method, split.path.rstrip("/") + path, body=body, headers=sent_headers)
            response = conn.getresponse()
            response.read()
            with lock:
                statuses.append(response.status)
        except BaseException as exc:  # reported to the caller below
            with lock:
                errors.append(exc)
            start.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=one, name=f"feature-gates-client-{i}") for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} requests failed: {errors[0]!r}") from errors[0]
    return ParallelResult(Counter(statuses))
