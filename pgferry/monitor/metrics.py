"""Prometheus metrics of a migration, served over HTTP (`--metrics-port`, `pgferry metrics`).

Every scrape builds `pgferry status --json`'s report from DIR (and the servers, read-only)
and exposes its figures, so the two always agree. The report is reused for CACHE_SECONDS:
several scrapers at once cost one report. No label carries a connection string or a URL:
the labels are phase names, unit kinds and states.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pgferry.monitor.rundir import Servers
from pgferry.monitor.status import StatusReport, status_report
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.lsn import lsn_or_none

log = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
PHASE_STATES = ("pending", "running", "done", "failed", "skipped", "stopped")
RUN_STATES = ("running", "done", "failed", "interrupted", "stopped", "not started")


class MigrationCollector(Collector):
    """The metrics of the migration in `workdir`."""

    def __init__(
        self, workdir: Path, source: ConnInfo | None = None, target: ConnInfo | None = None
    ) -> None:
        self.workdir = workdir
        self.servers = Servers(source=source, target=target)
        self._lock = threading.Lock()
        self._report: StatusReport | None = None
        self._at = 0.0

    def report(self) -> StatusReport | None:
        with self._lock:
            now = time.monotonic()
            if self._report is None or now - self._at >= CACHE_SECONDS:
                try:
                    self._report = status_report(self.workdir, servers=self.servers)
                except Exception as exc:  # DIR not there yet, or being created
                    log.debug("metrics: no report from %s: %s", self.workdir, exc)
                    self._report = None
                self._at = now
            return self._report

    def collect(self) -> Iterator[Any]:
        r = self.report()
        up = GaugeMetricFamily("pgferry_up", "1 when the work directory could be read")
        up.add_metric([], 0.0 if r is None else 1.0)
        yield up
        if r is None:
            return
        yield from _run(r)
        yield from _phases(r)
        yield from _copy(r)
        yield from _units(r)
        cdc = r.get("cdc")
        if cdc is not None:
            yield from _cdc(cdc)
        cutover = r.get("cutover")
        if cutover is not None:
            yield from _cutover(cutover)


def _gauge(name: str, doc: str, value: float | None, **labels: str) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=list(labels))
    if value is not None:
        g.add_metric(list(labels.values()), float(value))
    return g


def _run(r: StatusReport) -> Iterator[Any]:
    state = GaugeMetricFamily(
        "pgferry_run_state", "1 for the state the run is in", labels=["state"]
    )
    for s in RUN_STATES:
        state.add_metric([s], 1.0 if r["state"] == s else 0.0)
    yield state
    yield _gauge("pgferry_process_running", "1 while a pgferry process works on DIR",
                 1.0 if r["state"] == "running" else 0.0)  # fmt: skip
    yield _gauge("pgferry_errors", "errors shown by pgferry status", len(r["errors"]))
    yield _gauge(
        "pgferry_progress_ratio", "the whole copy's progress, 0 to 1",
        None if r["overall_percent"] is None else r["overall_percent"] / 100,
    )  # fmt: skip


def _phases(r: StatusReport) -> Iterator[Any]:
    g = GaugeMetricFamily(
        "pgferry_phase_state", "1 for each phase's state", labels=["phase", "state"]
    )
    seconds = GaugeMetricFamily(
        "pgferry_phase_duration_seconds", "time each phase took (so far)", labels=["phase"]
    )
    for p in r["phases"]:
        for s in PHASE_STATES:
            g.add_metric([p["name"], s], 1.0 if p["status"] == s else 0.0)
        if p["duration"] is not None:
            seconds.add_metric([p["name"]], float(p["duration"]))
    yield g
    yield seconds


def _copy(r: StatusReport) -> Iterator[Any]:
    c = r["copy"]
    done = CounterMetricFamily("pgferry_copy_bytes", "bytes copied so far")
    done.add_metric([], float(c["bytes_copied"]))
    yield done
    yield _gauge("pgferry_copy_estimated_bytes", "bytes the copy is estimated to move in all",
                 c["bytes_estimated_total"])  # fmt: skip
    rows = CounterMetricFamily("pgferry_copy_rows", "rows copied so far")
    rows.add_metric([], float(c["rows_done"]))
    yield rows
    yield _gauge("pgferry_copy_rate_bytes_per_second", "the copy's recent rate",
                 c["rate_bytes_per_second"])  # fmt: skip
    yield _gauge("pgferry_copy_eta_seconds", "the copy's time left at its recent rate",
                 c["eta_seconds"])  # fmt: skip
    for what in ("tables", "parts"):
        g = GaugeMetricFamily(f"pgferry_copy_{what}", f"{what} to copy, by state", labels=["state"])
        g.add_metric(["done"], float(c[f"{what}_done"]))  # type: ignore[literal-required]
        g.add_metric(["total"], float(c[f"{what}_total"]))  # type: ignore[literal-required]
        yield g


def _units(r: StatusReport) -> Iterator[Any]:
    g = GaugeMetricFamily(
        "pgferry_units", "units of work of the data phase, by kind and state",
        labels=["kind", "state"],
    )  # fmt: skip
    kinds = {
        "copy": r["copy"],
        "index": r["indexes"],
        "constraint": r["constraints"],
        "vacuum": r["vacuum"],
        "sequence": r["sequences"],
        "large_objects": r["large_objects"],
    }
    for kind, counts in kinds.items():
        for state in ("pending", "running", "done", "failed", "total"):
            g.add_metric([kind, state], float(counts[state]))  # type: ignore[literal-required]
    yield g


def _cdc(cdc: Any) -> Iterator[Any]:
    positions = GaugeMetricFamily(
        "pgferry_cdc_lsn_bytes", "CDC positions as WAL byte offsets", labels=["position"]
    )
    for name in ("received", "flushed", "applied_effective", "source_current", "endpos"):
        value = lsn_or_none(cdc["positions"].get(name))
        if value is not None:
            label = "applied" if name == "applied_effective" else name
            positions.add_metric([label], float(value))
    yield positions
    yield _gauge("pgferry_cdc_backlog_bytes", "WAL received or to receive, not applied yet",
                 cdc["backlog"]["bytes"])  # fmt: skip
    yield _gauge("pgferry_cdc_lag_seconds", "how far apply is behind, in time",
                 cdc["lag"]["seconds"])  # fmt: skip
    applied = CounterMetricFamily("pgferry_cdc_applied_transactions", "source transactions applied")
    applied.add_metric([], float(cdc["apply"]["applied_txns"]))
    yield applied
    yield _gauge("pgferry_cdc_caught_up", "1 when apply has caught up",
                 1.0 if cdc["caught_up"] else 0.0)  # fmt: skip
    yield _gauge("pgferry_cdc_endpos_reached", "1 once the end position is applied",
                 1.0 if cdc["endpos"]["reached"] else 0.0)  # fmt: skip
    slot = cdc.get("slot_health")
    if slot is not None:
        yield _gauge("pgferry_slot_exists", "1 while the replication slot exists",
                     1.0 if slot.get("exists") else 0.0)  # fmt: skip
        yield _gauge("pgferry_slot_retained_wal_bytes", "WAL the slot keeps on the source",
                     slot.get("retained_wal_bytes"))  # fmt: skip
        yield _gauge(
            "pgferry_slot_safe_wal_bytes",
            "WAL the source may still write before the slot is lost (max_slot_wal_keep_size)",
            slot.get("safe_wal_size"),
        )
        status = GaugeMetricFamily(
            "pgferry_slot_wal_status", "1 for the slot's wal_status", labels=["status"]
        )
        for s in ("reserved", "extended", "unreserved", "lost"):
            status.add_metric([s], 1.0 if slot.get("wal_status") == s else 0.0)
        yield status


CUTOVER_STEPS = ("caught up", "fence", "quiet", "applied", "verify", "report")


def _cutover(cutover: dict[str, Any]) -> Iterator[Any]:
    g = GaugeMetricFamily(
        "pgferry_cutover_step",
        "pgferry cutover: 1 for each step's outcome (done, failed)",
        labels=["step", "outcome"],
    )
    steps = cutover.get("steps", {})
    for step in CUTOVER_STEPS:
        for outcome in ("done", "failed"):
            g.add_metric([step, outcome], 1.0 if steps.get(step) == outcome else 0.0)
    yield g


def serve(
    workdir: Path,
    port: int,
    address: str = "127.0.0.1",
    source: ConnInfo | None = None,
    target: ConnInfo | None = None,
) -> MigrationCollector:
    """Serve DIR's metrics on http://address:port/metrics from a daemon thread."""
    registry = CollectorRegistry(auto_describe=False)
    collector = MigrationCollector(workdir, source, target)
    registry.register(collector)
    start_http_server(port, addr=address, registry=registry)
    log.info("metrics on http://%s:%d/metrics", address, port)
    return collector
