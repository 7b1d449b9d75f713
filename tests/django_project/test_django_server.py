"""The adapter under real pre-forking servers: gunicorn, two workers of eight threads
(WSGI), and gunicorn's ASGI worker serving the async views."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from feature_gates.testing import fire_concurrently

PROJECT = Path(__file__).parent
PRO = {"X-User": "7", "X-Plan": "pro"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


WSGI = ["--worker-class", "gthread", "--threads", "8", "gated_site.wsgi"]
ASGI = ["--worker-class", "asgi", "gated_site.asgi"]


@contextmanager
def gunicorn(
    gates_url: str, served: list[str] = WSGI, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The test project under gunicorn (two workers); yields its URL and process."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--workers", "2"]
    command += ["--bind", f"127.0.0.1:{port}", *served]
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gated_site.settings",
        "GATED_SITE_GATES_URL": gates_url,
        "PYTHONPATH": os.pathsep.join([str(PROJECT), str(PROJECT.parent)]),
        **env,
    }
    server = subprocess.Popen(command, cwd=PROJECT, env=environ, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/cbv/messages", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(server.stderr.read().decode()) from None  # type: ignore[union-attr]
                time.sleep(0.1)
        yield url, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        assert server.stderr is not None
        server.stderr.close()


def count(url: str, feature: str = "chat_messages_monthly") -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(usage_count), 0) FROM feature_usage WHERE user_id = 7 "
            "AND feature = %s",
            (feature,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_32_concurrent_requests_against_a_limit_of_10_grant_exactly_10(
    feature_gates_database_url: str,
) -> None:
    with gunicorn(feature_gates_database_url) as (url, _):
        result = fire_concurrently(url, "POST", "/messages", n=32, headers=PRO)
    assert result.statuses == {201: 10, 429: 22}
    assert count(feature_gates_database_url) == 10


def test_stopping_gunicorn_writes_the_tracked_usage_of_its_workers(
    feature_gates_database_url: str,
) -> None:
    # The writer would wait a minute: what reaches the database is written at exit.
    with gunicorn(feature_gates_database_url, GATED_SITE_FLUSH_INTERVAL="60") as (url, server):
        result = fire_concurrently(url, "GET", "/trips/pdf", n=12, headers=PRO)
        assert result.statuses == {200: 12}
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    assert count(feature_gates_database_url, "can_export_pdf") == 12


def test_the_asgi_worker_grants_exactly_10_of_32_to_an_async_view(
    feature_gates_database_url: str,
) -> None:
    with gunicorn(feature_gates_database_url, ASGI) as (url, _):
        result = fire_concurrently(url, "POST", "/async/messages", n=32, headers=PRO)
    assert result.statuses == {201: 10, 429: 22}
    assert count(feature_gates_database_url) == 10


def test_stopping_the_asgi_worker_writes_its_tracked_usage(feature_gates_database_url: str) -> None:
    served = gunicorn(feature_gates_database_url, ASGI, GATED_SITE_FLUSH_INTERVAL="60")
    with served as (url, server):
        result = fire_concurrently(url, "GET", "/async/export", n=12, headers=PRO)
        assert result.statuses == {200: 12}
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    assert count(feature_gates_database_url, "can_export_pdf") == 12
