"""The built wheel carries every bundled SQL file and works from anywhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: a build writes build/ and *.egg-info/ into its source tree.
    source = tmp_path_factory.mktemp("source") / "feature-gates"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".pgdata"
        ),
    )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("feature_gates-*.whl")
    return wheel


def test_wheel_installs_in_a_fresh_virtualenv_with_every_sql_file(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
    )
    expected = sorted(
        str(p.relative_to(ROOT / "migrations")) for p in ROOT.glob("migrations/**/*.sql")
    )
    assert expected, "the source tree has no .sql files"
    probe = (
        "import importlib.resources as r\n"
        "root = r.files('feature_gates.migrations')\n"
        "def walk(t, prefix=''):\n"
        "    for e in t.iterdir():\n"
        "        if e.is_dir(): yield from walk(e, prefix + e.name + '/')\n"
        "        elif e.name.endswith('.sql'): yield prefix + e.name\n"
        "print('\\n'.join(sorted(walk(root))))\n"
    )
    unrelated = tmp_path / "elsewhere"
    unrelated.mkdir()
    found = subprocess.run(
        [str(python), "-c", probe], cwd=unrelated, check=True, capture_output=True, text=True
    ).stdout.split()
    assert found == expected
    location = subprocess.run(
        [str(python), "-c", "import feature_gates; print(feature_gates.__file__)"],
        cwd=unrelated,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "site-packages" in location
    help_text = subprocess.run(
        [str(env_dir / "bin" / "feature-gates"), "--help"],
        cwd=unrelated,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "migrate" in help_text


def test_wheel_ships_type_information(wheel):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "feature_gates/py.typed" in names
    # The templates `counter add` writes a counter set from.
    templates = {n for n in names if n.startswith("feature_gates/migrate/counter_sql/")}
    assert len(templates) == len(list(ROOT.glob("feature_gates/migrate/counter_sql/*.sql")))
    assert "feature_gates/migrate/counter_sql/rows.up.sql" in templates
    assert not any(name.startswith(("tests/", "examples/", "benchmarks/")) for name in names)
