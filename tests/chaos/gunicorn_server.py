"""A real gunicorn serving the example app, as docs/deployment.md runs it.

:class:`Gunicorn` starts ``python -m gunicorn -c examples/sentinel/gunicorn_conf.py``
with the options of a test (``--workers``, ``--preload``, ``--threads``,
``--max-requests``...) on a free loopback port, with the database in the
environment (``FEATURE_GATES_DATABASE_URL``), waits until ``/healthz`` answers,
and stops it with a signal: SIGTERM is gunicorn's graceful stop (each worker
finishes its requests, then exits, and feature-gates writes what it tracked).
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from feature_gates.pgserver import _die_with_parent

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "examples/sentinel/gunicorn_conf.py"
#: The variables that name a database: the test's own are the only ones passed on.
DATABASE_VARIABLES = (
    "DATABASE_URL",
    "FEATURE_GATES_DATABASE_URL",
    "FEATURE_GATES_MIGRATION_DATABASE_URL",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """gunicorn serving ``app`` (``module:expression``) with ``options``, the
    database at ``database_url``; its log in ``log_path``."""

    def __init__(self, app: str, options: list[str], database_url: str, log_path: Path) -> None:
        self.app = app
        self.options = options
        self.database_url = database_url
        self.log_path = log_path
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "gunicorn has not been started"
        return self._process.pid

    def start(self, timeout: float = 60.0) -> Gunicorn:
        env = {k: v for k, v in os.environ.items() if k not in DATABASE_VARIABLES}
        env["FEATURE_GATES_DATABASE_URL"] = self.database_url
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            CONFIG,
            # Several servers may run on one machine: no shared control socket.
            "--no-control-socket",
            "--bind",
            f"127.0.0.1:{self.port}",
            *self.options,
            self.app,
        ]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A test that dies takes its server with it (gracefully).
                preexec_fn=functools.partial(_die_with_parent, signal.SIGTERM),
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"gunicorn exited while starting; its log:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s:\n{self.log()}")
            time.sleep(0.1)

    def workers(self) -> list[int]:
        """The pids of the master's live children (its workers)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> tuple[int, float]:
        """Send ``sig`` to the master and wait for it to exit: (exit code, seconds)."""
        assert self._process is not None, "gunicorn has not been started"
        started = time.monotonic()
        if self._process.poll() is None:
            self._process.send_signal(sig)
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise AssertionError(f"gunicorn did not stop within {timeout:.0f} s") from None
        return code, time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self.stop(signal.SIGKILL)
