"""Random faults from a seed, each at a chosen workload step: what happens, not how (the
runner does it)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    KILL = "kill9"  # kill -9 of pgferry (and its children), then --resume
    CRASH_AFTER_COMMITS = "crash-after-commits"  # PGFERRY_TEST_CRASH_AFTER_COMMITS=N
    CRASH_AT_SETUP = "crash-at-cdc-setup"  # PGFERRY_TEST_CRASH_AT=cdc-setup
    KILL_AT_CUTOVER = "kill9-cutover"  # kill -9 after stop-cdc, then --resume
    WALSENDER = "walsender"  # pg_terminate_backend of the slot's walsender on the source
    APPLY_SESSION = "apply-session"  # pg_terminate_backend of pgferry's target sessions
    SOURCE_RESTART = "source-restart"
    TARGET_RESTART = "target-restart"


# Faults on connections are injected once apply runs (a lost source connection during the
# copy loses the exported snapshot: a documented stop, not a divergence).
NEEDS_APPLY = (
    FaultKind.WALSENDER,
    FaultKind.APPLY_SESSION,
    FaultKind.SOURCE_RESTART,
    FaultKind.TARGET_RESTART,
)

_WEIGHTS = {
    FaultKind.KILL: 4,
    FaultKind.CRASH_AFTER_COMMITS: 1,
    FaultKind.KILL_AT_CUTOVER: 1,
    FaultKind.WALSENDER: 3,
    FaultKind.APPLY_SESSION: 3,
    FaultKind.SOURCE_RESTART: 1,
    FaultKind.TARGET_RESTART: 1,
}


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    step: int  # before this workload transaction (cutover faults: ignored)
    arg: float  # a delay in seconds, a commit count or a stop mode's draw, by kind

    def describe(self) -> str:
        if self.kind == FaultKind.KILL_AT_CUTOVER:
            return f"{self.kind}+{self.arg:.1f}s"
        if self.kind == FaultKind.CRASH_AFTER_COMMITS:
            return f"{self.kind}={int(self.arg)}"
        if self.kind == FaultKind.CRASH_AT_SETUP:
            return str(self.kind)
        return f"{self.kind}@{self.step}"


def generate_faults(rng: random.Random, steps: int) -> list[Fault]:
    """0 to 3 faults at random steps of a `steps`-transaction workload, in step order."""
    kinds = list(_WEIGHTS)
    faults = []
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        kind = rng.choices(kinds, weights=[_WEIGHTS[k] for k in kinds])[0]
        step = rng.randrange(1, max(2, steps))
        if kind == FaultKind.CRASH_AFTER_COMMITS:
            arg = float(rng.randrange(3, 60))
            step = 0
        elif kind == FaultKind.KILL_AT_CUTOVER:
            arg = rng.uniform(0.0, 2.0)
            step = steps
        else:
            arg = rng.random()
        faults.append(Fault(kind, step, arg))
    # One crash-after-commits at most: it is an environment variable of the first start.
    seen_crash = False
    unique = []
    for fault in faults:
        if fault.kind == FaultKind.CRASH_AFTER_COMMITS:
            if seen_crash:
                continue
            seen_crash = True
        unique.append(fault)
    return sorted(unique, key=lambda f: f.step)


def maybe_crash_at_setup(seed: int) -> list[Fault]:
    """One seed in twenty dies between creating the slot and recording it (a stream of
    its own, so that adding it left every other seed's faults as they were)."""
    if random.Random(seed * 7_919 + 3).random() < 0.05:
        return [Fault(FaultKind.CRASH_AT_SETUP, 0, 0.0)]
    return []
