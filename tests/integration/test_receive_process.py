"""The receiver runs in a process of its own: killed, it is started again; its parent
killed, it ends too and lets go of the slot."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.helpers.cdc import (
    cutover,
    follow_args,
    identify_every_table,
    names,
    sentinel,
    wait_applied,
    wait_until,
)
from tests.helpers.running import start_pgferry
from tests.integration.test_cdc import assert_equal, drop_origin, setup, slot_active

if TYPE_CHECKING:
    import subprocess

    from tests.conftest import DbPair


def receiving_process(parent: int) -> int | None:
    """The pid of `parent`'s receiving process, if it has one now."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"receive_process" in cmdline:
            return int(entry.name)
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def log_text(p: DbPair) -> str:
    return (p.workdir / "pgferry.log").read_text()


def following(p: DbPair) -> tuple[subprocess.Popen[str], object]:
    """clone --follow of the pgbench source under a steady load, applying."""
    bench = setup(p)
    identify_every_table(p)
    bench.start(clients=2, rate=100)
    proc = start_pgferry(*follow_args(p, "pgoutput"))
    wait_until(lambda: bool(sentinel(p.workdir).get("apply")), what="apply", proc=proc)
    wait_applied(p, proc)
    return proc, bench


def test_receiving_process_killed_is_started_again(dbpair: DbPair) -> None:
    """kill -9 of the receiving process alone (the OOM killer's way): pgferry says so,
    starts it again, and it goes on from what it had made durable: exact at cutover."""
    p = dbpair
    proc, bench = following(p)
    try:
        for kill in (1, 2):
            wait_until(lambda: receiving_process(proc.pid) is not None, what="it", proc=proc)
            pid = receiving_process(proc.pid)
            assert pid is not None
            time.sleep(0.5)
            os.kill(pid, signal.SIGKILL)
            wait_until(
                lambda kill=kill: log_text(p).count("receiving process ended unexpectedly") >= kill,
                what="the restart",
                proc=proc,
            )
            wait_until(
                lambda pid=pid: receiving_process(proc.pid) not in (None, pid),
                what="a new receiving process",
                proc=proc,
            )
        time.sleep(1.5)
    finally:
        bench.stop()  # type: ignore[attr-defined]
    err = cutover(p, proc)
    assert "receiving process ended unexpectedly (killed by SIGKILL); starting it again" in err
    assert_equal(p)
    drop_origin(p)


def test_pgferry_killed_its_receiving_process_ends(dbpair: DbPair) -> None:
    """kill -9 of pgferry alone, not its process group: the orphaned receiving process
    sees its stdin end, stops, and lets go of the slot; --resume then goes on exactly."""
    p = dbpair
    proc, bench = following(p)
    slot, _ = names(p)
    try:
        pid = receiving_process(proc.pid)
        assert pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "the receiving process outlived pgferry"
        proc.communicate(timeout=30)  # its output ends with it
        assert not slot_active(p, slot)
        proc = start_pgferry(*follow_args(p, "pgoutput"), "--resume")
        wait_applied(p, proc)
        time.sleep(1.0)
    finally:
        bench.stop()  # type: ignore[attr-defined]
    cutover(p, proc)
    assert_equal(p)
    drop_origin(p)
