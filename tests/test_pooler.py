"""The PgBouncer fixture (tests/pooler.py) pools as production poolers do: in
transaction mode, few server connections shared by many clients, session state
passed from one client to the next."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psycopg
import pytest
from test_pgserver import _alive


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    # No server-side prepared statements: they do not survive a transaction pooler.
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)


def _backend_pid(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def _servers(pooler, dbname: str) -> list[dict[str, object]]:
    return [row for row in pooler.show("SERVERS") if row["database"] == dbname]


def test_two_clients_take_turns_on_one_server_connection(pooler, empty_url):
    url = pooler.url(empty_url)
    with _connect(url) as first, _connect(url) as second:
        pid = _backend_pid(first)
        first.execute("SELECT set_config('application_name', 'left by the first client', false)")
        assert _backend_pid(second) == pid, "an idle pooler hands its one server to the next"
        # The server connection keeps the session state its last client left.
        row = second.execute("SELECT current_setting('application_name')").fetchone()
        assert row == ("left by the first client",)
    dbname = psycopg.conninfo.conninfo_to_dict(empty_url)["dbname"]
    assert len(_servers(pooler, str(dbname))) == 1


def test_a_transaction_keeps_its_server_and_the_pool_holds_two(pooler, empty_url):
    url = pooler.url(empty_url)
    dbname = str(psycopg.conninfo.conninfo_to_dict(empty_url)["dbname"])
    answered = threading.Event()
    with _connect(url) as first, _connect(url) as second, _connect(url) as third:
        first.execute("BEGIN")
        second.execute("BEGIN")
        pids = {_backend_pid(first), _backend_pid(second)}
        assert len(pids) == 2, "two open transactions hold two server connections"

        def ask() -> None:
            _backend_pid(third)
            answered.set()

        waiter = threading.Thread(target=ask)
        waiter.start()
        deadline = time.monotonic() + 10
        while not _waiting_clients(pooler, dbname) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_clients(pooler, dbname) == 1, "the third client waits for a server"
        assert not answered.is_set()
        first.execute("COMMIT")
        waiter.join(timeout=30)
        assert answered.is_set(), "the server freed by the commit serves the waiting client"
        second.execute("COMMIT")
    assert len(_servers(pooler, dbname)) == 2


def _waiting_clients(pooler, dbname: str) -> int:
    return sum(int(row["cl_waiting"]) for row in pooler.show("POOLS") if row["database"] == dbname)


def test_restart_cuts_clients_and_keeps_the_url(pooler, empty_url):
    url = pooler.url(empty_url)
    with _connect(url) as conn:
        _backend_pid(conn)
        pooler.halt()
        with pytest.raises(psycopg.OperationalError):
            _backend_pid(conn)
    with pytest.raises(psycopg.OperationalError):
        _connect(url)
    pooler.start()
    with _connect(url) as conn:
        assert _backend_pid(conn) > 0


def test_url_refuses_a_database_of_another_server(pooler):
    with pytest.raises(ValueError, match="not on the server this PgBouncer pools"):
        pooler.url("postgresql://postgres@/elsewhere?host=/nonexistent")


def test_pgbouncer_stops_when_the_process_that_started_it_is_killed(feature_gates_server_url):
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pooler import PgBouncer
        bouncer = PgBouncer({feature_gates_server_url!r}).start()
        print(bouncer._process.pid, flush=True)
        time.sleep(600)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            pgbouncer_pid = int(parent.stdout.readline())
            assert _alive(pgbouncer_pid)
        finally:
            parent.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(pgbouncer_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pgbouncer_pid), "pgbouncer outlived the process that started it"


@pytest.mark.parametrize(("euid", "outcome"), [(1000, "skipped"), (0, "failed")])
def test_missing_pgbouncer_is_a_skip_only_when_not_root(monkeypatch, tmp_path, euid, outcome):
    import pooler as pooler_module

    monkeypatch.setattr(pooler_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(pooler_module, "_DEBIAN_BINARY", tmp_path / "pgbouncer")
    monkeypatch.setattr(pooler_module.os, "geteuid", lambda: euid)
    expected = pytest.skip.Exception if outcome == "skipped" else pytest.fail.Exception
    with pytest.raises(expected) as raised:
        pooler_module.find_pgbouncer()
    reason = pooler_module.SKIP_REASON if outcome == "skipped" else "run tools/system-packages"
    assert reason in str(raised.value)
