"""Where the time goes: profiles of the tracker and of gated requests, as text.

    python -m benchmarks.profiles [--database-url URL] [--out DIR] [--profiler NAME]

Runs each workload in a child process under py-spy (a sampling profiler that
leaves the code as it is; ``pip install py-spy``), or under cProfile when py-spy
is missing or ``--profiler cprofile`` is given, against a private durable
PostgreSQL (or ``--database-url``), and writes one summary per workload to DIR
(benchmarks/results by default):

``tracker``
    4 threads calling ``gates.track()`` over many keys, then ``gates.flush()``;
    the background writer's thread is included.
``required``
    Requests to a view under ``@feature_required`` through the Flask test client.
``metered``
    Requests to a view under a metered ``@feature_limit``.

A summary lists the frames holding the most samples, inclusive (the frame and
what it calls) and own (the frame itself), as shares of the workload's samples.
py-spy samples only the thread holding the GIL: Python's CPU time, not the
waits on a lock or on the database (which release the GIL).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from feature_gates import FeatureGates
from feature_gates.migrate import MigrationSettings
from feature_gates.testing import DatabaseFactory

from . import gates
from . import harness
from . import tracking

__all__ = ["main", "summarise"]

RESULTS = harness.ROOT / "benchmarks" / "results"
#: The workload's own loop: only the samples under it (and under the tracker's
#: writer thread) count.
ROOTS = {
    "tracker": ("_track_rounds", "_track_rounds.<locals>.work", "UsageTracker._run"),
    "required": ("_request_workload",),
    "metered": ("_request_workload",),
}
#: A leaf frame that means the thread is waiting, not working.
WAITING = re.compile(r"^(Condition\.wait|Event\.wait|Thread\.join|Thread\._wait_for_tstate_lock)\b")
#: Samples per second. py-spy stops the process for each sample (whole stacks);
#: a modest rate keeps the slow-down small.
RATE = 250
TRACKER_EVENTS = 200_000
TRACKER_ROUNDS = 4
REQUESTS = 20_000


def _tracker_workload(url: str) -> str:
    events = tracking.make_events(TRACKER_EVENTS, 4_000)
    app = Flask("benchmarks.profiles")
    app.config.update(FEATURE_GATES_DATABASE_URL=url, FEATURE_GATES_COMMAND_NAME="")
    extension = FeatureGates(app)
    try:
        elapsed = _track_rounds(app, extension, events)
    finally:
        extension.close(app, timeout=120)
    done = TRACKER_EVENTS * TRACKER_ROUNDS
    return (
        f"{done} events tracked by 4 threads and flushed in {elapsed:.2f} s "
        f"({done / elapsed:,.0f} events/s), {TRACKER_ROUNDS} rounds"
    )


def _track_rounds(app: Flask, extension: FeatureGates, events: list[tracking.Key]) -> float:
    shares = [events[n::4] for n in range(4)]

    def work(index: int) -> None:
        with app.app_context():
            track = extension.track
            for user_id, feature in shares[index]:
                track(user_id, feature)

    started = time.perf_counter()
    for _ in range(TRACKER_ROUNDS):
        harness.in_threads(work, 4)
        with app.app_context():
            extension.flush(timeout=600)
    return time.perf_counter() - started


def _request_workload(url: str, path: str) -> str:
    app, _ = gates.make_app(url)
    client = app.test_client()
    for _ in range(500):  # warm-up: the pool, prepared statements
        client.post(path).close()
    started = time.perf_counter()
    try:
        for _ in range(REQUESTS):
            client.post(path).close()
    finally:
        elapsed = time.perf_counter() - started
        app.extensions["feature_gates"].close()
    return (
        f"{REQUESTS} requests to {path} in {elapsed:.2f} s ({elapsed / REQUESTS * 1e6:.0f} us each)"
    )


WORKLOADS: dict[str, Callable[[str], str]] = {
    "tracker": _tracker_workload,
    "required": lambda url: _request_workload(url, "/required"),
    "metered": lambda url: _request_workload(url, "/metered"),
}


def _frame(text: str) -> str:
    """``function (file)`` without the line number and the site-packages prefix."""
    text = re.sub(r":\d+\)$", ")", text)
    return re.sub(r"\(.*?(site-packages|lib/python3\.\d+)/", "(", text)


def summarise(raw: str, roots: tuple[str, ...], top: int = 30) -> tuple[str, int]:
    """A text summary of py-spy's raw (collapsed) stacks, and the samples counted."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [_frame(f) for f in stack.split(";")]
        # From the workload's own frame down: what called it is the same everywhere.
        start = next(
            (i for i, f in enumerate(frames) if any(f.startswith(r + " ") for r in roots)), None
        )
        if start is None:
            continue
        frames = frames[start:]
        if WAITING.match(frames[-1]):
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = io.StringIO()

    def section(title: str, counts: Counter[str], keep: Callable[[str], bool]) -> None:
        out.write(f"\n{title}\n")
        shown = [(f, n) for f, n in counts.most_common() if keep(f)][:top]
        for frame, n in shown:
            out.write(f"{100 * n / total:6.1f}%  {frame}\n")

    section("Inclusive (the frame and what it calls):", inclusive, lambda f: True)
    section("Inclusive, feature_gates frames only:", inclusive, lambda f: "(feature_gates/" in f)
    section("Own (the frame itself):", own, lambda f: True)
    return out.getvalue(), total


def _record_py_spy(py_spy: str, url: str, workload: str, out: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        raw_path = Path(scratch) / "stacks.txt"
        info_path = Path(scratch) / "info.txt"
        command = [
            py_spy,
            "record",
            "--rate",
            str(RATE),
            # Only the thread holding the GIL: Python's CPU time, not threads
            # waiting on a lock or on the database.
            "--gil",
            "--format",
            "raw",
            "--output",
            str(raw_path),
            "--",
            sys.executable,
            "-m",
            "benchmarks.profiles",
            "--child",
            workload,
            "--database-url",
            url,
            "--info",
            str(info_path),
        ]
        subprocess.run(command, cwd=harness.ROOT, check=True, capture_output=True)
        text, samples = summarise(raw_path.read_text(), ROOTS[workload])
        info = info_path.read_text()
    version = subprocess.run([py_spy, "--version"], capture_output=True, text=True).stdout
    out.write_text(
        f"Profile of the {workload!r} workload: {info}\n"
        f"py-spy ({version.strip()}) at {RATE} samples/s, {samples} samples of the workload "
        "(of the thread holding the GIL).\n"
        f"Made by: python -m benchmarks.profiles (benchmarks/profiles.py, {workload!r}).\n" + text
    )


def _record_cprofile(url: str, workload: str, out: Path) -> None:
    profile = cProfile.Profile()
    profile.enable()
    info = WORKLOADS[workload](url)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(40)
    out.write_text(
        f"Profile of the {workload!r} workload: {info}\n"
        "cProfile (deterministic: it slows small calls more than large ones).\n"
        f"Made by: python -m benchmarks.profiles --profiler cprofile ({workload!r}).\n"
        + text.getvalue()
    )


def main(argv: list[str] | None = None) -> None:
    head, _, rest = (__doc__ or "").partition("\n\n")
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profiles",
        description=head,
        epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database-url", help="a server (its role needs CREATEDB)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the summaries go")
    parser.add_argument("--profiler", choices=("py-spy", "cprofile"))
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append")
    parser.add_argument("--child", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        # Under py-spy: the database is ready; run the workload, say what it did.
        info = WORKLOADS[args.child](args.database_url)
        Path(args.info).write_text(info)
        return
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    use_py_spy = args.profiler != "cprofile" and py_spy is not None
    if args.profiler == "py-spy" and py_spy is None:
        parser.error("py-spy is not installed: pip install py-spy, or use --profiler cprofile")
    args.out.mkdir(parents=True, exist_ok=True)
    with harness.server(args.database_url) as server_url:
        databases = DatabaseFactory(server_url)
        try:
            for workload in args.workload or sorted(WORKLOADS):
                url = databases.create(MigrationSettings())
                out = args.out / f"profile_{workload}.txt"
                if use_py_spy:
                    assert py_spy is not None
                    _record_py_spy(py_spy, url, workload, out)
                else:
                    _record_cprofile(url, workload, out)
                databases.drop(url)
                sys.stderr.write(f"benchmarks.profiles: wrote {out}\n")
        finally:
            databases.close()


if __name__ == "__main__":
    main()
