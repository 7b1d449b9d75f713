"""The Django gates' benchmark runs end to end (its smallest sizes); figures are
never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_django_benchmark_writes_every_figure(feature_gates_server_url, tmp_path):
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "benchmarks.django_gates", "--smoke"]
    command += ["--database-url", feature_gates_server_url, "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    for framework in ("django", "flask"):
        for figure in ("plain", "gate_overhead", "metered_limit"):
            assert isinstance(figures[f"{framework}_{figure}_us_p50"], float)
    assert figures["calls_per_view"] == 20
