"""The core set as 0.1.0 released it (0001 to 0008): the schema of a database
migrated with that release, for the upgrade and rollback tests, and for the
tests of what those files do on their own (adopting an application's tables);
and the core set up to any version, for the upgrades from there."""

from __future__ import annotations

import atexit
import functools
import importlib.resources
import shutil
import tempfile
from pathlib import Path

from feature_gates.migrate import MigrationSettings

#: The last core migration of the 0.1.0 release.
RELEASED_LAST = 8


@functools.cache
def released_core() -> MigrationSettings:
    """Settings that apply the core set as released, from a copy of its files."""
    return core_until(RELEASED_LAST)


@functools.cache
def core_until(last: int) -> MigrationSettings:
    """Settings that apply the core set up to version ``last`` (its files copied):
    the schema of a database migrated before the versions after it existed."""
    folder = Path(tempfile.mkdtemp(prefix=f"feature-gates-core-{last:04d}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    bundled = importlib.resources.files("feature_gates.migrations").joinpath("core")
    for entry in bundled.iterdir():
        version = entry.name.split("_", 1)[0]
        if version.isdigit() and int(version) <= last:
            (folder / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "verify.sql").write_text(
        bundled.joinpath("verify.sql").read_text(encoding="utf-8"), encoding="utf-8"
    )
    return MigrationSettings(sets=("core",), folders={"core": folder})
