"""docs/counters.md, run as written: its files written, its commands run in order
from the application's folder against a fresh database, their output compared
with the page's; its reserve() example exact at its limit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from feature_gates.pgserver import find_bindir

PAGE = Path(__file__).resolve().parents[1] / "docs" / "counters.md"
_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
_FILE = re.compile(r"^`([\w./-]+\.sql)`:")


def blocks() -> list[tuple[str, str, str]]:
    """(language, text, the paragraph before it) of each code block of the page."""
    text = PAGE.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n\n", 1)[-1]
        found.append((match[1], match[2], before.strip()))
    return found


def commands() -> list[tuple[str, list[str]]]:
    """Each command of the page's console blocks, with the output it shows."""
    found: list[tuple[str, list[str]]] = []
    for language, text, _ in blocks():
        if language != "console":
            continue
        for line in text.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            else:
                found[-1][1].append(line)
    return found


def shown_in(expected: list[str], output: list[str]) -> bool:
    """Whether the lines shown appear in the output in that order (``...``
    stands for any lines)."""
    position = 0
    for line in (line for line in expected if line != "..."):
        try:
            position = output.index(line, position) + 1
        except ValueError:
            return False
    return True


def test_the_page_has_what_the_walkthrough_needs():
    files = [_FILE.match(before)[1] for _, _, before in blocks() if _FILE.match(before)]
    assert files == [
        "migrations/app/0001_tables.up.sql",
        "migrations/app/0001_tables.down.sql",
        "seed.sql",
    ]
    assert len(commands()) >= 15


def test_every_command_of_the_page_runs_as_written(empty_url, tmp_path):
    for _, text, before in blocks():
        match = _FILE.match(before)
        if match:
            path = tmp_path / match[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    # The page's `feature-gates` and `psql`: this environment's, and the test
    # server's client.
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), str(find_bindir()), os.environ["PATH"]]
    )
    env = {**os.environ, "DATABASE_URL": empty_url, "PATH": path}
    for command, expected in commands():
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = done.stdout.splitlines() + done.stderr.splitlines()
        assert shown_in(expected, output), f"$ {command}\n{done.stdout}{done.stderr}"
        failing = any(line.startswith("Error: ") or "problem(s) found" in line for line in expected)
        assert (done.returncode != 0) == failing, f"$ {command}\n{done.stdout}{done.stderr}"


def test_the_reserve_example_stops_at_the_limit(empty_url, tmp_path):
    test_every_command_of_the_page_runs_as_written(empty_url, tmp_path)
    # The rollback at the end of the page took the counters away: back again.
    subprocess.run(
        [
            Path(sys.executable).parent / "feature-gates",
            "--database-url", empty_url,
            "--migrations", f"app_counters={tmp_path / 'migrations/counters'}",
            "--set", "app_counters", "migrate",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (example,) = [text for language, text, _ in blocks() if "def add_task" in text]
    scope: dict[str, object] = {}
    exec(compile(example, str(PAGE), "exec"), scope)  # noqa: S102 - the page's own code
    with psycopg.connect(empty_url) as conn:
        open_tasks = conn.execute("SELECT open_tasks_count FROM projects WHERE id = 2").fetchone()
        limit = open_tasks[0] + 2
        scope["add_task"](conn, 2, "one", limit=limit)  # type: ignore[operator]
        scope["add_task"](conn, 2, "two", limit=limit)  # type: ignore[operator]
        with pytest.raises(scope["ProjectFull"]):  # type: ignore[call-overload]
            scope["add_task"](conn, 2, "three", limit=limit)  # type: ignore[operator]
        assert conn.execute("SELECT open_tasks_count FROM projects WHERE id = 2").fetchone() == (
            limit,
        )
