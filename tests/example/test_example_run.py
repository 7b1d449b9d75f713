"""`python -m examples.sentinel` starts on the embedded PostgreSQL and keeps its data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg

from feature_gates.pgserver import embedded_bindir
from feature_gates.pgserver import server_major_version

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_once(data_dir: Path) -> str:
    """Start the app, check /healthz and /me, stop it with Ctrl+C; return its output."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.sentinel",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.load(r)
                break
            except OSError:
                assert time.monotonic() < deadline, "the app did not answer within 120 s"
                time.sleep(0.3)
        assert health["status"] == "ok"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/me", headers={"Authorization": "Bearer sntl_demo_pro"}
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            assert json.load(r)["user"]["plan"] == "pro"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    return output


def test_the_app_runs_on_the_embedded_database_and_a_second_start_reuses_it(tmp_path):
    data_dir = tmp_path / "pgdata"
    first = run_once(data_dir)
    assert "created the demo accounts" in first
    assert "sntl_demo_admin" in first
    assert (data_dir / "PG_VERSION").read_text().strip() == server_major_version(embedded_bindir())
    second = run_once(data_dir)
    assert "created the demo accounts" not in second
    assert "applied migration" not in second
    assert "sntl_demo_free" in second


def refusal(*args: str, database_url: str | None = None) -> str:
    """Start the app expecting it to refuse; return the one line it printed on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "examples.sentinel", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_data_folder_of_another_major_version_is_refused(tmp_path):
    data_dir = tmp_path / "pgdata"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("9.6\n")
    assert "holds a PostgreSQL 9.6 database" in refusal("--data-dir", str(data_dir))


def test_an_unreachable_database_url_is_one_line_naming_it():
    url = f"postgresql://sentinel@127.0.0.1:{free_port()}/sentinel"
    error = refusal(database_url=url)
    assert error.startswith("error: cannot reach the database in DATABASE_URL: ")
    assert "check DATABASE_URL" in error


def test_a_database_that_cannot_be_migrated_is_one_line_naming_it(feature_gates_database_url):
    with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE feature_gates_schema_history SET checksum = 'edited' "
            "WHERE set_name = 'sentinel' AND version = '0001'"
        )
    error = refusal(database_url=feature_gates_database_url)
    assert error.startswith("error: cannot migrate the database in DATABASE_URL: ")
    assert "sentinel/0001_base_tables.up.sql was changed after it was applied" in error
