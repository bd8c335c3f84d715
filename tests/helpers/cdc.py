"""Live-migration test plumbing: write load on the source, sentinel polling, cutover."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from pgferry.state.store import StateStore
from tests.helpers.cli import pg_program, run_pgferry
from tests.helpers.running import clone_args

if TYPE_CHECKING:
    from tests.conftest import DbPair


def names(p: DbPair) -> tuple[str, str]:
    """A slot and an origin name unique to this test (both are cluster-wide)."""
    base = p.src_db[-40:].lower()
    return f"s_{base}", f"o_{base}"


def follow_args(p: DbPair, plugin: str, *extra: str) -> list[str]:
    """`clone --follow` of the pair (clone_args) with this test's slot and origin."""
    slot, origin = names(p)
    return clone_args(
        p, "--follow", "--plugin", plugin, "--slot-name", slot, "--origin", origin, *extra
    )


def identify_every_table(p: DbPair) -> None:
    """pgoutput publishes only tables with a replica identity (pgferry refuses otherwise):
    give the keyless ones one, as a user would."""
    run_pgferry("fix-replica-identity", "--source", p.source_uri, "--yes")


def sentinel(workdir: Path) -> dict[str, object]:
    """The sentinel's fields, read through the state store, read-only ({} before it
    exists or while it cannot be read)."""
    if not (workdir / StateStore.FILENAME).exists():
        return {}
    try:
        store = StateStore.open_dir(workdir, readonly=True)
        try:
            row = store.sentinel()
        finally:
            store.close()
    except sqlite3.OperationalError:
        return {}
    return row.to_json() if row is not None else {}


def pause_apply(p: DbPair) -> None:
    """Hold apply (sentinel: prefetch) until told otherwise. Apply re-reads the sentinel
    every 200 ms and takes a transaction as soon as it is received: whatever is written
    on the source after this returns waits."""
    run_pgferry("stream", "sentinel", "set", "prefetch", "--dir", str(p.workdir))
    time.sleep(0.5)


def lsn(text: object) -> int:
    if not text:
        return 0
    hi, lo = str(text).split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def wait_until(
    check: Callable[[], bool],
    timeout: float = 120,
    what: str = "condition",
    proc: subprocess.Popen[str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"pgferry exited ({proc.returncode}) before {what}:\n{err}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_prefetched(
    p: DbPair, proc: subprocess.Popen[str], nbytes: int, what: str = "prefetch"
) -> None:
    """Until the receiver has made `nbytes` of WAL past the slot's start durable."""
    wait_until(
        lambda: (
            lsn(sentinel(p.workdir).get("flush_lsn"))
            > lsn(sentinel(p.workdir).get("startpos")) + nbytes
        ),
        what=what,
        proc=proc,
        timeout=180,
    )


def wait_applied(p: DbPair, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    """Until apply has applied something after the slot's start position."""
    wait_until(
        lambda: (
            lsn(sentinel(p.workdir).get("replay_lsn")) > lsn(sentinel(p.workdir).get("startpos"))
        ),
        what="apply",
        proc=proc,
        timeout=timeout,
    )


def cutover(p: DbPair, proc: subprocess.Popen[str], timeout: float = 300) -> str:
    """Writes have stopped: set the end position and wait for pgferry to finish."""
    run_pgferry("stop-cdc", "--yes", "--dir", str(p.workdir), "--source", p.source_uri)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "cutover point reached" in err
    assert (
        f"next: switch the application to the target; pgferry verify --full --dir {p.workdir}"
        in err
    )
    assert "verify: the target matches the source" in err  # verified right after cutover
    return err


class Load(threading.Thread):
    """Runs `step(conn, rng)` in a loop on the source until stopped; counts transactions."""

    def __init__(
        self,
        uri: str,
        step: Callable[[psycopg.Connection, random.Random], None],
        seed: int = 1,
        pause: float = 0.0,
    ) -> None:
        super().__init__(daemon=True)
        self.uri, self.step, self.rng, self.pause = uri, step, random.Random(seed), pause
        self.stop_event = threading.Event()
        self.count = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.uri, autocommit=True) as conn:
                while not self.stop_event.is_set():
                    self.step(conn, self.rng)
                    self.count += 1
                    if self.pause:
                        time.sleep(self.pause)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> int:
        self.stop_event.set()
        self.join(timeout=60)
        assert self.error is None, self.error
        return self.count


class Pgbench:
    """pgbench on the source database with its own tables."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.binary = str(pg_program("pgbench"))
        self.proc: subprocess.Popen[str] | None = None

    def init(self, scale: int = 1) -> None:
        subprocess.run(
            [self.binary, "-i", "-q", "-s", str(scale), self.uri],
            check=True,
            capture_output=True,
            text=True,
        )

    def start(self, clients: int = 2, seconds: int = 600, rate: int | None = None) -> None:
        limit = ["-R", str(rate)] if rate else []
        self.proc = subprocess.Popen(
            [self.binary, "-n", "-c", str(clients), "-T", str(seconds), *limit, self.uri],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.communicate(timeout=30)
