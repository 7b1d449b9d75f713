"""What every benchmark shares: the server, the sizes, the timing of compared sides,
the machine record and the command line.

Each case module (``tracking``, ``gates``, ``migrate_counters``, ``counters``) has a
``run(server_url=None, *, scale="full")`` returning its figures, and a ``main()``
built by :func:`cli`: ``--database-url``, ``--quick``, ``--smoke``, ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any
from typing import Literal

import psycopg

from feature_gates.pgserver import LocalPostgres

__all__ = [
    "Scale",
    "alternate",
    "cli",
    "in_threads",
    "load_average",
    "machine",
    "p50",
    "percentile",
    "parser",
    "ratio",
    "scale_of",
    "server",
    "write_json",
]

#: ``full`` is the published run; ``quick`` checks a change in under two minutes;
#: ``smoke`` only proves that every case runs (its figures mean nothing).
Scale = Literal["full", "quick", "smoke"]

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def server(database_url: str | None) -> Iterator[str]:
    """The URL of the server to measure: ``database_url``, or a private one started
    now with PostgreSQL's durable defaults (fsync and synchronous commit on) and
    stopped on exit. With ``database_url`` the role needs CREATEDB: every case works
    in databases of its own and drops them after."""
    if database_url is not None:
        yield database_url
        return
    # settings={}: PostgreSQL's defaults, not the throwaway server's fsync=off.
    with LocalPostgres(settings={}) as local:
        yield local.url()


def alternate(
    sides: dict[str, Callable[[], object]],
    *,
    blocks: int,
    per_block: int,
    warmup: int = 0,
) -> dict[str, list[float]]:
    """Time every call of every side, in microseconds, the sides taking turns.

    Each of ``blocks`` rounds runs ``per_block`` calls of each side, the order of
    the sides rotating from one round to the next, so that drift on a shared
    machine (another process waking up, a checkpoint) hits all sides alike.
    ``warmup`` calls of each side run first and are not kept.
    """
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    timer = time.perf_counter_ns
    times: dict[str, list[float]] = {name: [] for name in names}
    for block in range(blocks):
        shift = block % len(names)
        for name in names[shift:] + names[:shift]:
            call, kept = sides[name], times[name]
            for _ in range(per_block):
                started = timer()
                call()
                kept.append((timer() - started) / 1000)
    return times


def in_threads(target: Callable[[int], None], threads: int) -> float:
    """Run ``target(index)`` in ``threads`` threads; the wall time in seconds."""
    workers = [threading.Thread(target=target, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def p50(values: list[float]) -> float:
    return float(statistics.median(values))


def ratio(numerator: float, denominator: float, digits: int = 2) -> float:
    """``numerator / denominator`` rounded; infinity when the denominator is 0."""
    return round(numerator / denominator, digits) if denominator else float("inf")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages of the machine."""
    return [round(x, 2) for x in os.getloadavg()]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine(url: str) -> dict[str, Any]:
    """What the figures were measured on: the machine, the server and its durability
    settings, the client's versions."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('fsync'), "
            "current_setting('synchronous_commit'), current_setting('full_page_writes'), "
            "current_setting('shared_buffers')"
        ).fetchone()
    assert row is not None
    pg_version, fsync, synchronous_commit, full_page_writes, shared_buffers = row
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "postgresql": pg_version,
        "fsync": fsync,
        "synchronous_commit": synchronous_commit,
        "full_page_writes": full_page_writes,
        "shared_buffers": shared_buffers,
        "python": platform.python_version(),
        "psycopg": version("psycopg"),
        "psycopg_pool": version("psycopg-pool"),
        "flask": version("flask"),
        "commit": _git_commit(),
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(figures: dict[str, Any], path: str | None, *, echo: bool = True) -> None:
    """Print ``figures`` as JSON (unless ``echo`` is false); also write them to ``path``."""
    text = json.dumps(figures, indent=2, default=str)
    if echo:
        sys.stdout.write(text + "\n")
    if path:
        Path(path).write_text(text + "\n")


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark command takes; the docstring's first paragraph
    describes it and the rest follows the options."""
    head, _, rest = (doc or "").partition("\n\n")
    parser = argparse.ArgumentParser(
        prog=prog,
        description=head,
        epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        help="a server to measure (its role needs CREATEDB); default: a private durable one",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes: under two minutes")
    size.add_argument(
        "--smoke", action="store_true", help="tiny sizes: checks that it runs, figures mean nothing"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    return parser


def scale_of(args: argparse.Namespace) -> Scale:
    return "smoke" if args.smoke else "quick" if args.quick else "full"


def cli(
    prog: str,
    doc: str | None,
    run: Callable[..., dict[str, Any]],
    argv: list[str] | None,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The command line of a case module: parse ``argv``, run, print (and write) the JSON.

    ``options`` adds the module's own options (flag: ``add_argument`` keywords),
    passed to ``run`` as keyword arguments.
    """
    arguments = parser(prog, doc)
    own = [arguments.add_argument(flag, **kwargs).dest for flag, kwargs in (options or {}).items()]
    args = arguments.parse_args(argv)
    scale = scale_of(args)
    with server(args.database_url) as url:
        load_at_start = load_average()
        figures = run(url, scale=scale, **{dest: getattr(args, dest) for dest in own})
        figures["machine"] = {
            **machine(url),
            "scale": scale,
            "load_average_start": load_at_start,
            "load_average_end": load_average(),
        }
    write_json(figures, args.json)
    return figures
