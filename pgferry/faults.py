"""Fault injection for tests: every knob the test suite turns, in one place.

None changes what a run does unless its environment variable is set:

- `PGFERRY_TEST_CRASH_AT=<name>`: `crash_point(name)` kills the process there (SIGKILL),
  where no test could time a kill from outside (between two steps milliseconds apart);
- `PGFERRY_TEST_CRASH_AFTER_COMMITS=N`: apply dies once N transactions are committed on
  the target, before it records them (`crash_after_commits`);
- `PGFERRY_TEST_COPY_CHUNK_DELAY=SECONDS`: each COPY chunk waits that long, so that a test
  can act while a copy runs (`copy_chunk_delay`);
- `PGFERRY_TEST_COPY_LOCK_TIMEOUT=INTERVAL`: how long a copy waits for its table's lock
  (`copy_lock_timeout`; default 20s);
- `PGFERRY_TEST_APPLY_REPORT_SECONDS=SECONDS`: how often apply logs its progress
  (`apply_report_seconds`; default 30).
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Die here when the test asked for it."""
    if os.environ.get("PGFERRY_TEST_CRASH_AT") == name:
        die()


def die() -> None:
    """SIGKILL this process: nothing runs after it (no finally, no atexit)."""
    os.kill(os.getpid(), signal.SIGKILL)


def crash_after_commits() -> int:
    """Committed transactions after which apply dies (0: never)."""
    return int(os.environ.get("PGFERRY_TEST_CRASH_AFTER_COMMITS", "0") or 0)


def copy_chunk_delay() -> float:
    """Seconds each COPY chunk waits (0: none)."""
    return float(os.environ.get("PGFERRY_TEST_COPY_CHUNK_DELAY", "0") or 0)


def apply_report_seconds() -> float:
    """How often apply logs its progress (rate, backlog) while it applies."""
    return float(os.environ.get("PGFERRY_TEST_APPLY_REPORT_SECONDS", "0") or 30)


def copy_lock_timeout() -> str:
    """How long a copy waits for its table's lock before giving up on that snapshot."""
    return os.environ.get("PGFERRY_TEST_COPY_LOCK_TIMEOUT") or "20s"
