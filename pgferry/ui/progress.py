"""Progress during the data phase: live bars on a terminal, plain lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from typing import Any, Protocol

from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
)

from pgferry import log as pflog
from pgferry.state.store import UnitKind
from pgferry.text import human_bytes, human_duration
from pgferry.ui.console import make_console

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
        self.console = make_console(sys.stderr)
        self.progress = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(bar_width=40),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=False,
            redirect_stderr=True,
            redirect_stdout=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.rate = RateMeter()

    def start(self) -> None:
        self.progress.start()
        handler = pflog.stderr_handler()
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)  # the Live proxy prints lines above the bars
        for name in ("data", "tables", "indexes"):
            self.tasks[name] = self.progress.add_task(name, total=None, detail="")

    def update(self, snap: Any) -> None:
        rate = self.rate.add(snap.bytes_done)
        total = max(snap.bytes_total, snap.bytes_done)
        if snap.tables_total and snap.tables_done == snap.tables_total:
            total = snap.bytes_done  # sizes on disk were only an estimate of COPY bytes
        left = max(total - snap.bytes_done, 0)
        eta = human_duration(left / rate) if rate > 0 and left else "-"
        self.progress.update(
            self.tasks["data"],
            completed=snap.bytes_done,
            total=total or None,
            detail=f"{human_bytes(snap.bytes_done)} of ~{human_bytes(total)}  "
            f"{human_bytes(rate)}/s  ETA {eta}",
        )
        self.progress.update(
            self.tasks["tables"],
            completed=snap.tables_done,
            total=snap.tables_total or None,
            detail=f"{snap.tables_done}/{snap.tables_total} tables copied",
        )
        built = snap.done.get(UnitKind.INDEX, 0) + snap.done.get(UnitKind.CONSTRAINT, 0)
        count = snap.total.get(UnitKind.INDEX, 0) + snap.total.get(UnitKind.CONSTRAINT, 0)
        running = len(snap.running.get(UnitKind.INDEX, []))
        self.progress.update(
            self.tasks["indexes"],
            completed=built,
            total=count or None,
            detail=f"{built}/{count} indexes and constraints ({running} building)",
        )

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
