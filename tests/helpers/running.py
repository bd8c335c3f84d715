"""Driving a pgferry process from a test: start it in its own process group, watch its
state store, kill it at a chosen moment."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pgferry.state.store import StateStore
from tests.helpers.cli import REPO_ROOT

if TYPE_CHECKING:
    from tests.conftest import DbPair

Row = dict[str, object]

# Environment that slows a clone's copy down (a pause per 256 kB chunk), so a test that
# interrupts it lands mid-copy however fast the machine is.
SLOW_COPY = {"PGFERRY_TEST_COPY_CHUNK_DELAY": "0.02"}


def clone_args(p: DbPair, *extra: str) -> list[str]:
    """`pgferry clone` of the pair into its work dir, 2 table and 2 index jobs, no bars."""
    return [
        "clone",
        "--source",
        p.source_uri,
        "--target",
        p.target_uri,
        "--dir",
        str(p.workdir),
        "--table-jobs",
        "2",
        "--index-jobs",
        "2",
        "--no-progress",
        *extra,
    ]


def start_pgferry(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """pgferry in a new session (its own process group), output captured."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "pgferry", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        start_new_session=True,
    )


def units(workdir: Path) -> list[Row]:
    """The units, read through the state store like any other process would (read-only),
    as dicts of their fields."""
    if not (workdir / StateStore.FILENAME).exists():
        return []
    try:
        store = StateStore.open_dir(workdir, readonly=True)
        try:
            return [dataclasses.asdict(u) for u in store.units()]
        finally:
            store.close()
    except sqlite3.OperationalError:
        return []


def wait_for(
    proc: subprocess.Popen[str],
    workdir: Path,
    condition: Callable[[list[Row]], bool],
    timeout: float = 120,
) -> list[Row]:
    """Poll the state store until `condition(units)` holds; fail if pgferry exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = units(workdir)
        if rows and condition(rows):
            return rows
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"pgferry exited ({proc.returncode}) first:\n{out}\n{err}")
        time.sleep(0.05)
    kill_group(proc)
    raise AssertionError("condition not reached in time")


def kill_group(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    """kill -9 the whole process group (pgferry and its pg_dump/pg_restore children)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.communicate(timeout=60)
