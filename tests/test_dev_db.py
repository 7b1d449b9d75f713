"""`feature-gates dev-db`: a development PostgreSQL that prints its URL, stops cleanly
on SIGTERM and Ctrl-C (SIGINT), and keeps its data from one start to the next."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

#: The console script, as pip installed it.
COMMAND = str(Path(sys.executable).parent / "feature-gates")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DevDb:
    """The command, run as a developer runs it, in a folder of its own."""

    def __init__(self, folder, port):
        self.folder, self.port = folder, port
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> tuple[str, str]:
        """Start the command; the URL it prints, and all it printed up to it."""
        environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        self.process = subprocess.Popen(
            [COMMAND, "dev-db", "--port", str(self.port)],
            cwd=self.folder,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        seen = []
        for line in self.process.stdout:
            seen.append(line)
            if line.strip().startswith("export DATABASE_URL="):
                return line.strip().removeprefix("export DATABASE_URL="), "".join(seen)
        _, err = self.process.communicate(timeout=60)
        self.process = None
        raise AssertionError(f"no URL printed: {''.join(seen)}{err}")

    def stop(self, signum) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=60)
        status, self.process = self.process.returncode, None
        return status, out + err

    def kill(self):
        if self.process is not None:
            self.process.kill()
            self.process.communicate(timeout=60)  # closes the pipes
            self.process = None


@pytest.fixture
def dev_db(tmp_path):
    command = DevDb(tmp_path, free_port())
    yield command
    command.kill()


def test_start_connect_stop_and_restart_with_the_data_kept(dev_db, tmp_path):
    url, printed = dev_db.start()
    assert url == f"postgresql://postgres@127.0.0.1:{dev_db.port}/postgres"
    assert printed.startswith("PostgreSQL ")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('written before the stop')")
    status, output = dev_db.stop(signal.SIGTERM)
    assert status == 0, output
    assert f"stopped; the data stays in {tmp_path / '.feature-gates-db'}" in output
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()

    url, _ = dev_db.start()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("written before the stop",)]
    status, output = dev_db.stop(signal.SIGINT)  # Ctrl-C
    assert status == 0, output
    assert "Traceback" not in output


def test_a_taken_port_is_one_line_saying_so(dev_db, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", dev_db.port))
        taken.listen()
        environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        result = subprocess.run(
            [COMMAND, "dev-db", "--port", str(dev_db.port)],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: port {dev_db.port} on 127.0.0.1 is in use (another dev-db, or another "
        "server): give another with --port\n"
    )
