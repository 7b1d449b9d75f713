"""A private Redis server for the comparison with Flask-Limiter.

Debian's ``redis-server`` (``tools/system-packages redis-server=redis-server``
installs it, ``make bench`` does so), run on a unix socket in a folder of its
own, with nothing of the machine's configuration, and stopped when the
benchmark ends (or dies: the kernel's parent-death signal).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from feature_gates.pgserver import _die_with_parent

__all__ = ["RedisMissing", "redis_server"]

INSTALL = (
    "tools/system-packages redis-server=redis-server (as root), or apt-get install redis-server"
)


class RedisMissing(RuntimeError):
    """redis-server is not installed."""


def redis_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise RedisMissing(f"redis-server is not installed: {INSTALL}")
    return found


@contextmanager
def redis_server(*, durable: bool) -> Iterator[str]:
    """A running Redis; yields its ``redis+unix://`` URI.

    :param durable: an append-only file with ``appendfsync always`` (every write
        on disk before its reply, as a PostgreSQL commit is); otherwise no
        persistence at all.
    """
    binary = redis_binary()
    folder = Path(tempfile.mkdtemp(prefix="feature-gates-redis-"))
    socket = folder / "redis.sock"
    arguments = [
        binary,
        "--port", "0",
        "--unixsocket", str(socket),
        "--unixsocketperm", "700",
        "--dir", str(folder),
        "--save", "",
        "--daemonize", "no",
        "--logfile", str(folder / "redis.log"),
    ]  # fmt: skip
    if durable:
        arguments += ["--appendonly", "yes", "--appendfsync", "always"]
    else:
        arguments += ["--appendonly", "no"]
    process = subprocess.Popen(
        arguments,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                log = (folder / "redis.log").read_text() if (folder / "redis.log").exists() else ""
                raise RuntimeError(f"redis-server did not start: {log[-400:]}")
            time.sleep(0.02)
        yield f"redis+unix://{socket}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
