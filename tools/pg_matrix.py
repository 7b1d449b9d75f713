"""Runs the test suite once per PostgreSQL major version and sums up.

    .venv/bin/python tools/pg_matrix.py 14 15 16 17 18 [-- PYTEST_ARGS]

Each run gets the server binaries of its version (tools/postgres_bindir.py finds
or fetches them) through ``FEATURE_GATES_PG_BINDIR``, so every throwaway server
the suite starts is of that version. ``FEATURE_GATES_TEST_DATABASE_URL`` is left
out of the runs: it would point every version at one server. Each run's output
goes to the terminal and to ``.cache/test-matrix/<major>.log``. Exits non-zero
when any run fails.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from postgres_bindir import ROOT
from postgres_bindir import bindir_for

LOGS = ROOT / ".cache" / "test-matrix"
#: pytest's last line: "=== 540 passed, 1 xfailed in 250.12s (0:04:10) ===" ("=" without -q)
_SUMMARY = re.compile(r"^=* ?(\d+ (?:passed|failed|errors?|skipped)\b.*?) ?=*$", re.MULTILINE)


@dataclass(frozen=True)
class Result:
    major: str
    bindir: Path
    returncode: int
    seconds: float
    summary: str


def run_one(major: str, pytest_args: list[str]) -> Result:
    bindir = bindir_for(major)
    env = {k: v for k, v in os.environ.items() if k != "FEATURE_GATES_TEST_DATABASE_URL"}
    env["FEATURE_GATES_PG_BINDIR"] = str(bindir)
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{major}.log"
    print(f"\n=== PostgreSQL {major}: {bindir}", flush=True)
    started = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *pytest_args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        returncode = process.wait()
    seconds = time.monotonic() - started
    matches = _SUMMARY.findall(log_path.read_text())
    summary = matches[-1] if matches else f"no summary (exit {returncode})"
    return Result(major, bindir, returncode, seconds, summary)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Everything after "--" is pytest's.
    split = argv.index("--") if "--" in argv else len(argv)
    argv, pytest_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], usage="%(prog)s MAJOR [MAJOR ...] [-- PYTEST_ARGS]"
    )
    parser.add_argument("majors", nargs="+", help="PostgreSQL major versions, like 14 18")
    args = parser.parse_args(argv)
    bad = [m for m in args.majors if not m.isdigit()]
    if bad:
        parser.error(f"not major versions (digits, like 14): {', '.join(bad)}")
    # A shell that starts this in the background without job control leaves SIGINT
    # ignored, and every process the suite starts would inherit that: the example
    # app's test stops the app with SIGINT. A handled signal is reset by exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    results = [run_one(major, pytest_args) for major in args.majors]
    print("\n=== PostgreSQL versions")
    for result in results:
        verdict = "ok  " if result.returncode == 0 else "FAIL"
        print(f"{verdict} {result.major:>3}  {result.summary}  ({result.seconds:.0f} s wall)")
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
