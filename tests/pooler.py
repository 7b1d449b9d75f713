"""A real PgBouncer in transaction mode, in front of a test PostgreSQL.

Most production PostgreSQL is reached through a transaction pooler (PgBouncer,
RDS Proxy, Supavisor...): each transaction may run on another server connection,
and a server connection passes from client to client with whatever session state
the last one left. :class:`PgBouncer` runs Debian's ``pgbouncer`` that way, with a
small pool (2 server connections per database) so that clients really share them.

Fixtures (registered from conftest.py):

``pooler``
    A PgBouncer in front of the session's server (``feature_gates_server_url``):
    ``pooler.url(feature_gates_database_url)`` reaches any database of the factory
    through it. Started again before each test if a test left it halted.
``own_pooler``
    A PgBouncer in front of the module's own server (``own_server``), for tests
    that halt the server or the pooler.

PgBouncer listens on a unix socket only, refuses to run as root (under root it
runs as the account ``LocalPostgres`` uses), and stops when :meth:`PgBouncer.stop`
is called, when the test process exits, and (through the kernel's parent-death
signal) when the test process is killed.

The one skip the suite allows: without pgbouncer on a run that is not root, the
tests that use it are skipped; as root a missing pgbouncer fails them
(``tools/system-packages`` installs it).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo as pg_conninfo
from psycopg.rows import dict_row

from feature_gates.pgserver import _die_with_parent
from feature_gates.pgserver import _open_path_for
from feature_gates.pgserver import _run_as_account

SKIP_REASON = (
    "pgbouncer is not installed and this run is not root "
    "(tools/system-packages installs it as root)"
)

#: Debian installs pgbouncer into /usr/sbin, outside an ordinary user's PATH.
_DEBIAN_BINARY = Path("/usr/sbin/pgbouncer")
_PORT = 6432


def find_pgbouncer() -> Path:
    """The pgbouncer binary; skips the test when it is missing and the run is not
    root, fails it when the run is root (the set-up should have installed it)."""
    found = shutil.which("pgbouncer")
    if found:
        return Path(found)
    if _DEBIAN_BINARY.is_file():
        return _DEBIAN_BINARY
    if os.geteuid() != 0:
        pytest.skip(SKIP_REASON)
    pytest.fail(
        "pgbouncer is not installed although this run is root: run tools/system-packages "
        "(make test does) to install it"
    )


class PgBouncer:
    """A PgBouncer in transaction mode in front of the server of ``server_url``.

    :param pool_size: server connections per database and user
        (``default_pool_size``): small, so clients share them.
    :param settings: more ``[pgbouncer]`` settings for this run, or overrides.
    """

    def __init__(
        self,
        server_url: str,
        *,
        pool_size: int = 2,
        settings: dict[str, str] | None = None,
        binary: Path | None = None,
    ) -> None:
        self.server = pg_conninfo.conninfo_to_dict(server_url)
        self.user = str(self.server.get("user") or "postgres")
        self.pool_size = pool_size
        self.settings = settings or {}
        self.binary = binary or find_pgbouncer()
        self._account = _run_as_account()
        self._scratch: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owner_pid = 0

    # -- lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> PgBouncer:
        """Start PgBouncer (again, at the same URL, after :meth:`halt`) and wait
        until its admin console answers. Returns ``self``."""
        if self.running:
            return self
        if self._scratch is None:
            self._prepare()
        assert self._scratch is not None
        log_path = self._scratch / "pgbouncer.log"
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                [str(self.binary), str(self._scratch / "pgbouncer.ini")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # SIGTERM is PgBouncer's immediate shutdown.
                preexec_fn=functools.partial(_die_with_parent, signal.SIGTERM)
                if sys.platform == "linux"
                else None,
                **self._subprocess_kwargs(),
            )
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            atexit.register(self.stop)
        self._wait_ready(timeout, log_path)
        return self

    def halt(self) -> None:
        """Stop PgBouncer at once (clients are disconnected) but keep its folder:
        :meth:`start` brings it back at the same URL. For outage tests."""
        process, self._process = self._process, None
        if process is None or self._owner_pid != os.getpid():
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        """Halt and start again: every client connection is cut, the URL stays."""
        self.halt()
        self.start()

    def stop(self) -> None:
        """Stop PgBouncer and delete its folder."""
        self.halt()
        if self._scratch is not None and self._owner_pid in (0, os.getpid()):
            atexit.unregister(self.stop)
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- connecting ----------------------------------------------------------------

    def url(self, database_url: str) -> str:
        """The URL of ``database_url``'s database through this pooler.

        ``database_url`` must name a database of the server the pooler stands in
        front of (the same host and port).
        """
        params = pg_conninfo.conninfo_to_dict(database_url)
        for key in ("host", "port"):
            if str(params.get(key) or "") != str(self.server.get(key) or ""):
                raise ValueError(
                    f"{database_url!r} is not on the server this PgBouncer pools "
                    f"({key} {params.get(key)!r}, not {self.server.get(key)!r})"
                )
        return self._conninfo(str(params.get("dbname") or "postgres"))

    def admin_url(self) -> str:
        """The URL of PgBouncer's admin console (the ``pgbouncer`` database)."""
        return self._conninfo("pgbouncer")

    def show(self, what: str) -> list[dict[str, Any]]:
        """The rows of ``SHOW <what>`` on the admin console (``POOLS``, ``SERVERS``,
        ``CLIENTS``...), as dicts."""
        if not what.isalpha():
            raise ValueError(f"SHOW {what!r}: not an admin console listing")
        # The admin console speaks only the simple query protocol, which psycopg
        # uses for a statement without parameters.
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            with conn.cursor(row_factory=dict_row) as cursor:
                cursor.execute(f"SHOW {what.upper()}".encode())
                return cursor.fetchall()

    def log(self) -> str:
        """What PgBouncer logged so far."""
        if self._scratch is None:
            return ""
        return (self._scratch / "pgbouncer.log").read_text(errors="replace")

    # -- internals -----------------------------------------------------------------

    def _conninfo(self, dbname: str) -> str:
        assert self._scratch is not None, "PgBouncer has not been started"
        return pg_conninfo.make_conninfo(
            "", host=str(self._scratch / "socket"), port=_PORT, dbname=dbname, user=self.user
        )

    def _prepare(self) -> None:
        self._scratch = Path(tempfile.mkdtemp(prefix="feature-gates-pgbouncer-"))
        socket_dir = self._scratch / "socket"
        socket_dir.mkdir()
        # trust: the server behind does the authentication (the forced user and
        # password of the [databases] line); the client's user must be listed.
        (self._scratch / "users.txt").write_text(f'"{self.user}" ""\n')
        (self._scratch / "pgbouncer.ini").write_text(self._ini(socket_dir))
        if self._account is not None:
            os.chown(socket_dir, self._account.pw_uid, self._account.pw_gid)
            # Readable by the account PgBouncer runs as, not writable.
            self._scratch.chmod(0o711)
            for name in ("users.txt", "pgbouncer.ini"):
                (self._scratch / name).chmod(0o644)
            _open_path_for(self.binary)

    def _ini(self, socket_dir: Path) -> str:
        server = {
            key: str(self.server[key])
            for key in ("host", "port", "user", "password")
            if self.server.get(key)
        }
        server.setdefault("user", self.user)
        target = " ".join(f"{key}={value}" for key, value in server.items())
        settings = {
            # No listen_addr: no TCP at all, the unix socket only.
            "unix_socket_dir": str(socket_dir),
            "listen_port": str(_PORT),
            "auth_type": "trust",
            "auth_file": str(self._scratch / "users.txt") if self._scratch else "",
            "admin_users": self.user,
            "pool_mode": "transaction",
            "default_pool_size": str(self.pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": "200",
            # As PgBouncer ships: no reset between clients in transaction mode,
            # so session state passes from client to client as in production.
            "server_reset_query_always": "0",
            # Back within a second after the server returns (the default waits 15 s).
            "server_login_retry": "1",
            **self.settings,
        }
        lines = ["[databases]", f"* = {target}", "", "[pgbouncer]"]
        lines += [f"{name} = {value}" for name, value in settings.items()]
        return "\n".join(lines) + "\n"

    def _subprocess_kwargs(self) -> dict[str, object]:
        if self._account is None:
            return {}
        return {
            "user": self._account.pw_uid,
            "group": self._account.pw_gid,
            "extra_groups": [],
            "cwd": "/",
        }

    def _wait_ready(self, timeout: float, log_path: Path) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(
                    f"PgBouncer exited while starting; its log:\n{log_path.read_text()}"
                )
            try:
                with psycopg.connect(self.admin_url(), connect_timeout=2, autocommit=True):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.halt()
                    raise RuntimeError(
                        f"PgBouncer did not accept connections within {timeout:.0f} s; "
                        f"its log:\n{log_path.read_text(errors='replace')}"
                    ) from None
                time.sleep(0.05)


@contextmanager
def busy(url: str, clients: int = 8) -> Iterator[None]:
    """``clients`` connections to ``url`` running short transactions all along,
    as an application's workers keep a pooler busy."""
    stop = threading.Event()
    ready = threading.Barrier(clients + 1)

    def client() -> None:
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            conn.execute("SELECT 1")
            ready.wait()
            while not stop.is_set():
                conn.execute("SELECT pg_sleep(0.002)")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()


@pytest.fixture(scope="session")
def _session_pooler(feature_gates_server_url: str) -> Iterator[PgBouncer]:
    with PgBouncer(feature_gates_server_url) as bouncer:
        yield bouncer


@pytest.fixture
def pooler(_session_pooler: PgBouncer) -> PgBouncer:
    """PgBouncer (transaction mode, 2 server connections per database) in front of
    the session's server; ``pooler.url(feature_gates_database_url)``."""
    return _session_pooler.start()


@pytest.fixture(scope="module")
def _module_pooler(own_server: Any) -> Iterator[PgBouncer]:
    with PgBouncer(own_server.url()) as bouncer:
        yield bouncer


@pytest.fixture
def own_pooler(_module_pooler: PgBouncer) -> PgBouncer:
    """PgBouncer in front of the module's own server (``own_server``)."""
    return _module_pooler.start()
