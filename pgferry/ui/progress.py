"""Progress during the data phase: live bars on a terminal, plain lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from pgferry import log as pflog
from pgferry.state.store import UnitKind
from pgferry.ui.format import human_bytes, human_duration

log = logging.getLogger("pgferry.progress")

LINE_INTERVAL = 10.0


class Reporter(Protocol):
    def start(self) -> None: ...
    def update(self, snap: Any) -> None: ...
    def stop(self) -> None: ...


class RateMeter:
    """Bytes per second over a recent window (for rate and ETA)."""

    def __init__(self, window: float = 30.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, value: int) -> float:
        now = time.monotonic()
        self.samples.append((now, value))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        t0, v0 = self.samples[0]
        return (value - v0) / (now - t0) if now > t0 else 0.0


class NullReporter:
    def start(self) -> None:
        pass

    def update(self, snap: Any) -> None:
        pass

    def stop(self) -> None:
        pass


class LineReporter:
    """A plain progress line every few seconds, for logs and non-terminals."""

    def __init__(self) -> None:
        self.last = 0.0
        self.rate = RateMeter()

    def start(self) -> None:
        self.last = time.monotonic()

    def update(self, snap: Any) -> None:
        rate = self.rate.add(snap.bytes_done)
        now = time.monotonic()
        if now - self.last < LINE_INTERVAL:
            return
        self.last = now
        log.info("%s", progress_line(snap, rate))

    def stop(self) -> None:
        pass


def progress_line(snap: Any, rate: float) -> str:
    d, t = snap.done, snap.total
    left = max(snap.bytes_total - snap.bytes_done, 0)
    eta = human_duration(left / rate) if rate > 0 and left else "-"
    parts = [
        f"copy {snap.tables_done}/{snap.tables_total} tables",
        f"{human_bytes(snap.bytes_done)} of ~{human_bytes(snap.bytes_total)}",
        f"{human_bytes(rate)}/s, ETA {eta}",
    ]
    for kind, name in (
        (UnitKind.INDEX, "indexes"),
        (UnitKind.CONSTRAINT, "constraints"),
        (UnitKind.VACUUM, "vacuum"),
        (UnitKind.SEQUENCE, "sequences"),
        (UnitKind.BLOBS, "large-object batches"),
    ):
        if t.get(kind):
            parts.append(f"{name} {d.get(kind, 0)}/{t[kind]}")
    return "progress: " + ", ".join(parts)


class RichReporter:
    """Live bars: bytes and tables copied, indexes built; log lines print above them."""

    def __init__(self) -> None:
        self.console = Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            redirect_stderr=True,
            redirect_stdout=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def start(self) -> None:
        self.progress.start()
        handler = pflog.stderr_handler()
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)  # the Live proxy prints lines above the bars
        self.tasks["bytes"] = self.progress.add_task("copy bytes", total=None)
        self.tasks["tables"] = self.progress.add_task("tables", total=None)
        self.tasks["indexes"] = self.progress.add_task("indexes", total=None)

    def update(self, snap: Any) -> None:
        self.progress.update(
            self.tasks["bytes"],
            completed=snap.bytes_done,
            total=max(snap.bytes_total, snap.bytes_done) or None,
        )
        self.progress.update(
            self.tasks["tables"], completed=snap.tables_done, total=snap.tables_total or None
        )
        built = snap.done.get(UnitKind.INDEX, 0) + snap.done.get(UnitKind.CONSTRAINT, 0)
        total = snap.total.get(UnitKind.INDEX, 0) + snap.total.get(UnitKind.CONSTRAINT, 0)
        self.progress.update(self.tasks["indexes"], completed=built, total=total or None)

    def stop(self) -> None:
        self.progress.stop()
        handler = pflog.stderr_handler()
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.__stderr__)


def make_reporter(*, enabled: bool = True) -> Reporter:
    if not enabled:
        return NullReporter()
    if sys.stderr.isatty():
        return RichReporter()
    return LineReporter()
