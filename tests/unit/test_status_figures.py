"""The figures status and cdc-status compute (no database): copy rate and ETA, operation
labels, the spool backlog, CDC rates, and the argv a detached run gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgferry.admin.detach import strip_detach
from pgferry.cdc.protocol import pg_now
from pgferry.cdc.spool import SpoolBacklog, SpoolWriter, spool_backlog
from pgferry.monitor.cdc_status import CdcHistory, CdcSample
from pgferry.monitor.status import copy_progress, operation_label, unit_counts
from pgferry.pg.conninfo import move_passwords
from pgferry.state.store import Status, TableRow, UnitKind, UnitRow

NOW = 1_000_000.0


def table(oid: int, size: int, parts: int = 1, status: Status = Status.PENDING) -> TableRow:
    return TableRow(oid, "s", f"t{oid}", size, 0.0, parts, True, False, None, None, status)


def copy(
    uid: int,
    oid: int,
    status: Status,
    nbytes: int = 0,
    start: float | None = None,
    end: float | None = None,
    parts: int = 1,
) -> UnitRow:
    return UnitRow(
        id=uid,
        kind=UnitKind.COPY,
        table_oid=oid,
        part=1,
        obj_oid=0,
        label=f"s.t{oid}",
        status=status,
        pid=1,
        started_at=start,
        finished_at=end,
        duration=None if end is None or start is None else end - start,
        bytes=nbytes,
        rows=10 if status == Status.DONE else None,
        attempts=1,
        error=None,
        detail={"parts": parts},
    )


def test_rate_counts_only_the_window_and_eta_uses_the_observed_ratio() -> None:
    tables = [table(1, 1000, status=Status.DONE), table(2, 1000), table(3, 2000)]
    units = [
        # Finished long ago: outside the 60 s window, counts for the ratio only.
        copy(1, 1, Status.DONE, 500, start=NOW - 500, end=NOW - 400),
        # Running for 120 s, 600 bytes so far: half of its time is inside the window.
        copy(2, 2, Status.RUNNING, 600, start=NOW - 120),
        copy(3, 3, Status.PENDING),
    ]
    c = copy_progress(units, tables, now=NOW, live=True, window=60)
    assert c["bytes_done"] == 500 and c["bytes_in_flight"] == 600 and c["bytes_copied"] == 1100
    # COPY bytes per heap byte = 0.5 from the done part: 500 + max(500, 600) + 1000.
    assert c["copy_bytes_per_heap_byte"] == 0.5
    assert c["bytes_estimated_total"] == 2100
    assert c["rate_bytes_per_second"] == pytest.approx(300 / 60)
    assert c["eta_seconds"] == pytest.approx(1000 / 5)
    assert c["tables_done"] == 1 and c["parts_running"] == 1


def test_finished_copy_is_exact_and_has_no_window_rate() -> None:
    tables = [table(1, 1000, status=Status.DONE)]
    units = [copy(1, 1, Status.DONE, 700, start=NOW - 10, end=NOW - 5)]
    c = copy_progress(units, tables, now=NOW, live=True)
    assert c["bytes_estimated_total"] == 700 and c["percent"] == 100.0
    assert c["rate_bytes_per_second"] is None
    assert c["average_rate_bytes_per_second"] == pytest.approx(140)
    assert c["eta_seconds"] == 0.0


def test_dead_run_has_no_rate_and_running_units_are_interrupted() -> None:
    tables = [table(1, 1000)]
    units = [copy(1, 1, Status.RUNNING, 300, start=NOW - 30)]
    c = copy_progress(units, tables, now=NOW, live=False)
    assert c["rate_bytes_per_second"] is None and c["eta_seconds"] is None
    assert c["bytes_copied"] == 0 and c["parts_running"] == 0
    counts = unit_counts(units, UnitKind.COPY, live=False)
    assert counts["interrupted"] == 1 and counts["running"] == 0


@pytest.mark.parametrize(
    ("query", "label"),
    [
        ('COPY "app"."t" ("a", "b") FROM STDIN WITH (FREEZE)', 'COPY "app"."t" (in)'),
        (
            'COPY (SELECT "a" FROM ONLY "a b"."t;x" WHERE ctid < \'(8,0)\'::tid) TO STDOUT',
            'COPY "a b"."t;x" (out)',
        ),
        ("COPY public.t (a) TO stdout;", "COPY public.t (out)"),
        ('CREATE UNIQUE INDEX "Idx ""q""" ON t (a)', 'CREATE INDEX "Idx ""q"""'),
        ("ALTER TABLE ONLY s.t ADD CONSTRAINT c PRIMARY KEY USING INDEX i", "ALTER TABLE s.t"),
        ('VACUUM (ANALYZE) "s"."t"', 'VACUUM "s"."t"'),
        ("REFRESH MATERIALIZED VIEW s.mv", "REFRESH s.mv"),
        ("SELECT pg_sleep(1)", "SELECT pg_sleep(1)"),
    ],
)
def test_operation_labels(query: str, label: str) -> None:
    assert operation_label(query) == label


def _spool(root: Path, commits: list[int]) -> None:
    writer = SpoolWriter(root)
    for lsn in commits:
        writer.begin(lsn - 10, 1)
        writer.change(lsn - 5, b"x" * 100)
        writer.commit(lsn, pg_now())
    writer.flush()
    writer.close()


def test_spool_backlog_finds_the_first_unapplied_transaction(tmp_path: Path) -> None:
    _spool(tmp_path, [100 * i for i in range(1, 51)])
    b = spool_backlog(tmp_path, applied=2000)
    assert b.pending_txns == 30
    assert b.oldest_pending is not None and b.oldest_pending.commit_lsn == 2100
    assert b.last_applied is not None and b.last_applied.commit_lsn == 2000
    assert b.pending_bytes == 30 * (100 + 12)
    assert spool_backlog(tmp_path, applied=10_000).pending_txns == 0
    assert spool_backlog(tmp_path, applied=0).pending_txns == 50


def sample(t: float, applied: int, txns: int, source: int | None, pending: int = 1) -> CdcSample:
    return CdcSample(
        at=t,
        mono=t,
        origin_applied=applied,
        sentinel_applied=None,
        received=applied + 50,
        flushed=applied + 50,
        source_current=source,
        applied_txns=txns,
        apply_enabled=True,
        startpos=0,
        endpos=None,
        spool=SpoolBacklog(pending, 10, None, None),
    )


def test_cdc_rates_over_the_window_only() -> None:
    h = CdcHistory(window=10)
    h.add(sample(0, 0, 0, 0))
    h.add(sample(5, 1000, 10, 600))
    h.add(sample(15, 3000, 40, 1600))  # the first sample falls out of the window
    r = h.rates()
    assert r["window_seconds"] == 10
    assert r["apply_bytes_per_second"] == 200 and r["apply_txns_per_second"] == 3
    assert r["source_wal_bytes_per_second"] == 100
    assert r["apply_bytes_per_hour"] == 200 * 3600


def test_effective_applied_position() -> None:
    assert sample(0, 1000, 0, None, pending=1).effective_applied == 1000
    # Nothing waits in the spool: everything up to the flushed position is applied.
    assert sample(0, 1000, 0, None, pending=0).effective_applied == 1050


def test_detached_argv_holds_no_password() -> None:
    env: dict[str, str] = {}
    argv = [
        "clone",
        "--source",
        "postgresql://u:s3cret@h/db",
        "--target=host=t password=other dbname=x",
        "--detach",
    ]
    out = move_passwords(strip_detach(argv), env)
    assert "--detach" not in out
    assert not any("s3cret" in a or "other" in a for a in out)
    assert env == {"PGFERRY_SOURCE_PASSWORD": "s3cret", "PGFERRY_TARGET_PASSWORD": "other"}


def test_rate_after_a_resume_starts_with_the_resumed_work() -> None:
    tables = [table(1, 1000, status=Status.DONE), table(2, 1000)]
    units = [
        copy(1, 1, Status.DONE, 900, start=NOW - 3600, end=NOW - 3000),  # the first run
        copy(2, 2, Status.RUNNING, 1000, start=NOW - 10),  # resumed 10 s ago
    ]
    c = copy_progress(units, tables, now=NOW, live=True, window=60)
    assert c["rate_window_seconds"] == pytest.approx(10)
    assert c["rate_bytes_per_second"] == pytest.approx(100)
