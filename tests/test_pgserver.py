from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest

from feature_gates.pgserver import LocalPostgres
from feature_gates.pgserver import PostgresNotFound
from feature_gates.pgserver import find_bindir


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped has stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_throwaway_server_starts_answers_and_cleans_up():
    server = LocalPostgres().start()
    data_dir = server.data_dir
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
            listen = conn.execute("SHOW listen_addresses").fetchone()
        assert listen == ("",), "a test server must not listen on any TCP address"
    finally:
        server.stop()
    assert not server.running
    assert not data_dir.exists()


def test_persistent_server_keeps_its_data_between_starts(tmp_path):
    data_dir = tmp_path / "pgdata"
    with LocalPostgres(data_dir) as server:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
    with LocalPostgres(data_dir) as server:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)


def test_server_stops_when_the_process_that_started_it_is_killed(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        from feature_gates.pgserver import LocalPostgres
        server = LocalPostgres().start()
        print(server._process.pid, flush=True)
        time.sleep(600)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            postgres_pid = int(parent.stdout.readline())
            assert _alive(postgres_pid)
        finally:
            parent.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(postgres_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(postgres_pid), "postgres outlived the process that started it"


def test_bindir_from_environment_must_hold_a_server(monkeypatch, tmp_path):
    monkeypatch.setenv("FEATURE_GATES_PG_BINDIR", str(tmp_path))
    with pytest.raises(PostgresNotFound, match="does not hold initdb and postgres"):
        find_bindir()


def test_halted_server_comes_back_at_the_same_url():
    with LocalPostgres() as server:
        url = server.url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE survives (x int)")
        server.halt()
        assert not server.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()
        server.start()
        assert server.url() == url
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM survives").fetchone() == (0,)
