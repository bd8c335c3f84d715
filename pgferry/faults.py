"""Fault injection for tests: die (SIGKILL) at a named point of a run.

`PGFERRY_TEST_CRASH_AT=<name>` makes `crash_point(name)` kill the process there, where
no test could time a kill from outside (between two steps a few milliseconds apart).
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("PGFERRY_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
