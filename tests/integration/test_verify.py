"""`pgferry verify`: a correct copy passes; a lost, changed or added row, a dropped index
or constraint and a sequence set back fail, naming the table and the key range or key;
quick mode reads big tables through their index only.

The source is tests/sql/rich_schema.sql (bulk.big: 200,000 rows keyed by id 1..200000,
14 MB: quick mode samples it by key range); the target is restored from its pg_dump once
per module and copied for each test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from psycopg import sql

from pgferry.catalog.filters import no_filters, parse_filters
from pgferry.checks.report import Report, Verdict
from pgferry.checks.verify import VerifyOptions, run_verify
from pgferry.demo.clusters import LocalCluster
from pgferry.pg.conninfo import ConnInfo
from pgferry.state.store import Meta, StateStore
from tests.helpers.cli import dump_restore, run_pgferry, run_psql

if TYPE_CHECKING:
    from tests.conftest import DbPair

TARGET_TEMPLATE = "verify_target_template"


@pytest.fixture(scope="module")
def target_template(
    rich_template: str, source_cluster: LocalCluster, target_cluster: LocalCluster
) -> Iterator[str]:
    """rich_template restored on the target cluster (pg_dump | psql), analyzed."""
    target_cluster.create_database(TARGET_TEMPLATE)
    dump_restore(source_cluster.uri(rich_template), target_cluster.uri(TARGET_TEMPLATE))
    run_psql(target_cluster.uri(TARGET_TEMPLATE), command="ANALYZE")
    yield TARGET_TEMPLATE
    target_cluster.drop_database(TARGET_TEMPLATE)


@pytest.fixture
def copied(rich_source: DbPair, target_template: str) -> DbPair:
    """A rich source and a correct copy of it on the target."""
    rich_source.target.drop_database(rich_source.tgt_db)
    with rich_source.target.connect() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(rich_source.tgt_db), sql.Identifier(target_template)
            )
        )
    return rich_source


def on_target(p: DbPair, *statements: str) -> None:
    with p.tgt_conn() as conn:
        for statement in statements:
            conn.execute(statement)


def verify_cli(p: DbPair, *extra: str) -> tuple[int, dict[str, Any]]:
    """Run `pgferry verify --json`; its exit code and report."""
    result = run_pgferry(
        "verify", "--source", p.source_uri, "--target", p.target_uri, "--json", *extra, check=False
    )
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def verify(p: DbPair, *, full: bool = False, filters: str = "", **options: Any) -> Report:
    return run_verify(
        ConnInfo.parse(p.source_uri, "source"),
        ConnInfo.parse(p.target_uri, "target"),
        parse_filters(filters) if filters else no_filters(),
        full=full,
        jobs=2,
        options=VerifyOptions(**options),
    )


def failures(report: dict[str, Any] | Report) -> list[dict[str, Any]]:
    data = report.to_json() if isinstance(report, Report) else report
    return [c for c in data["checks"] if c["verdict"] == "FAIL"]


def failed_text(report: dict[str, Any] | Report) -> str:
    return "\n".join(f"{c['name']}: {c['message']}" for c in failures(report))


def table_failure(report: dict[str, Any] | Report, table: str) -> dict[str, Any]:
    found = [c for c in failures(report) if c["details"].get("table") == table]
    assert found, f"no FAIL for {table}:\n{failed_text(report)}"
    return found[0]


# -- a correct copy ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_a_correct_copy_passes(copied: DbPair, mode: str) -> None:
    code, report = verify_cli(copied, *(["--full"] if mode == "full" else []))
    assert code == 0, failed_text(report)
    assert report["verdict"] in ("PASS", "WARN")
    names = {c["name"] for c in report["checks"]}
    kinds = "tables columns indexes constraints sequences views materialized_views functions"
    for kind in (*kinds.split(), "triggers", "extensions", "policies"):
        assert f"schema.{kind}" in names
    assert "sequences" in names and "sizes" in names
    if mode == "quick":
        sample = next(c for c in report["checks"] if c["name"] == "data.sample")
        assert sample["details"]["sampled"] == ["bulk.big"]
        assert "rows.estimates" in names
    else:
        summary = next(c for c in report["checks"] if c["name"] == "data.full")
        assert "200,738 source rows compared exactly" in summary["message"]


def test_human_report(copied: DbPair) -> None:
    on_target(copied, "DELETE FROM bulk.big WHERE id = 1")
    result = run_pgferry(
        "verify", "--source", copied.source_uri, "--target", copied.target_uri, check=False
    )
    assert result.returncode == 1, result.stderr
    assert "bulk.big" in result.stdout and "id=1: only on source" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("FAIL")


def test_names_with_markup_characters_are_printed_as_they_are(copied: DbPair) -> None:
    ddl = 'CREATE TABLE public."[/]x[bold]" (id int PRIMARY KEY, v text)'
    with copied.src_conn() as conn:
        conn.execute(ddl)
        conn.execute("INSERT INTO public.\"[/]x[bold]\" VALUES (1, 'a'), (2, 'b')")
    on_target(copied, ddl, "INSERT INTO public.\"[/]x[bold]\" VALUES (1, 'a')")
    result = run_pgferry(
        "verify", "--source", copied.source_uri, "--target", copied.target_uri, check=False
    )
    assert result.returncode == 1, result.stderr
    assert 'public."[/]x[bold]": rows differ' in result.stdout
    assert "id=2: only on source" in result.stdout


def test_quick_mode_stops_starting_data_checks_at_its_time_budget(copied: DbPair) -> None:
    report = verify(copied, budget_seconds=0)
    checks = {c.name: c for c in report.checks}
    assert checks["data.budget"].verdict == Verdict.WARN
    assert report.exit_code() == 0


# -- rows changed on the target ----------------------------------------------------------

# The first and last rows by key are always in the ranges quick mode samples.
EDGE_CHANGES = {
    "changed": ("UPDATE bulk.big SET qty = qty + 1 WHERE id = 1", "id <= 1000", "id=1: different"),
    "deleted": (
        "DELETE FROM bulk.big WHERE id = 200000",
        "id >= 199001",
        "id=200000: only on source",
    ),
    "added": (
        "INSERT INTO bulk.big VALUES (200001, 'new', 1, now())",
        "id >= 199001",
        "id=200001: only on target",
    ),
}


@pytest.mark.parametrize("change", sorted(EDGE_CHANGES))
def test_quick_mode_catches_a_row_in_a_sampled_range(copied: DbPair, change: str) -> None:
    statement, key_range, row = EDGE_CHANGES[change]
    on_target(copied, statement)
    code, report = verify_cli(copied)
    assert code == 1
    failure = table_failure(report, "bulk.big")
    assert f"key range {key_range}" in failure["message"]
    assert row in failure["message"]
    assert [f["name"] for f in failures(report)] == ["data.table", "data.sample"]


@pytest.mark.parametrize("change", sorted(EDGE_CHANGES))
def test_full_mode_catches_the_same_rows(copied: DbPair, change: str) -> None:
    statement, _, row = EDGE_CHANGES[change]
    on_target(copied, statement)
    report = verify(copied, full=True, chunk_rows=30_000)
    assert report.exit_code() == 1
    assert row in table_failure(report, "bulk.big")["message"]


def test_full_mode_names_rows_anywhere_and_the_chunks_they_are_in(copied: DbPair) -> None:
    with copied.src_conn() as conn:  # a row the target has and the source does not
        conn.execute("DELETE FROM bulk.big WHERE id = 150000")
    on_target(
        copied,
        "UPDATE bulk.big SET label = 'changed' WHERE id = 100000",
        "DELETE FROM bulk.big WHERE id = 123456",
        "UPDATE sales.order_lines SET unit_price = 0 "
        "WHERE (region, order_no, line_no) = ('eu', 3, 2)",
        """UPDATE public."Ünïcödé 表" SET "ключ" = 0 WHERE "列 ñ" = 'k3 ñ'""",
    )
    code, report = verify_cli(copied, "--full", "--table-jobs", "3")
    assert code == 1
    big = table_failure(report, "bulk.big")
    assert "id=100000: different content" in big["message"]
    assert "id=123456: only on source" in big["message"]
    assert "id=150000: only on target" in big["message"]
    assert {r["difference"] for r in big["details"]["rows"]} == {
        "different content",
        "only on source",
        "only on target",
    }
    assert big["details"]["ranges"]  # the differing chunks, as conditions on the key
    assert all("id" in r["condition"] for r in big["details"]["ranges"])
    lines = table_failure(report, "sales.order_lines")
    assert "(region, order_no, line_no)=('eu', 3, 2): different content" in lines["message"]
    unicode = table_failure(report, 'public."Ünïcödé 表"')
    assert """"列 ñ"='k3 ñ': different content""" in unicode["message"]


def test_full_mode_bisects_within_big_chunks(copied: DbPair) -> None:
    on_target(copied, "DELETE FROM bulk.big WHERE id IN (77, 99999, 160001)")
    report = verify(copied, full=True, chunk_rows=100_000, leaf_rows=500, fanout=4)
    message = table_failure(report, "bulk.big")["message"]
    for key in (77, 99999, 160001):
        assert f"id={key}: only on source" in message


def test_a_table_without_key_fails_with_its_counts(copied: DbPair) -> None:
    on_target(copied, "DELETE FROM public.events_log WHERE level = 'warn'")
    report = verify(copied, full=True)
    message = table_failure(report, "public.events_log")["message"]
    assert "6 rows on source, 5 on target" in message
    assert "a key is needed to locate the rows" in message
    # Quick mode compares small tables whole, key or not.
    assert (
        "6 rows on source, 5 on target"
        in table_failure(verify(copied), "public.events_log")["message"]
    )


# -- schema and sequences ------------------------------------------------------------------


def test_dropped_index_constraint_and_sequence_set_back_fail(copied: DbPair) -> None:
    on_target(
        copied,
        "DROP INDEX bulk.big_qty_idx",
        "ALTER TABLE sales.orders DROP CONSTRAINT orders_total_nonneg",
        "SELECT setval('public.standalone_seq', 1000, false)",
    )
    code, report = verify_cli(copied)
    assert code == 1
    by_name = {c["name"]: c for c in failures(report)}
    assert set(by_name) == {"schema.indexes", "schema.constraints", "sequences"}
    assert "missing on target: bulk.big_qty_idx" in by_name["schema.indexes"]["message"]
    assert (
        "missing on target: sales.orders.orders_total_nonneg"
        in by_name["schema.constraints"]["message"]
    )
    assert by_name["sequences"]["details"]["sequences"] == ["public.standalone_seq"]


def test_changed_definition_and_extra_objects(copied: DbPair) -> None:
    on_target(
        copied,
        "ALTER TABLE sales.seats ADD CONSTRAINT seats_id_check CHECK (id > 0) NOT VALID",
        "CREATE INDEX extra_idx ON sales.seats (seat_no)",
        "ALTER TABLE sales.orders ALTER COLUMN note TYPE varchar(100)",
    )
    report = verify(copied)
    by_name = {c["name"]: c for c in report.to_json()["checks"]}
    assert by_name["schema.columns"]["verdict"] == "FAIL"
    assert "definition differs: sales.orders.note" in by_name["schema.columns"]["message"]
    # Extra objects on the target lose nothing: a warning.
    assert by_name["schema.indexes"]["verdict"] == "WARN"
    assert "only on target: sales.extra_idx" in by_name["schema.indexes"]["message"]
    assert by_name["schema.constraints"]["verdict"] == "WARN"


# -- quick mode does not scan big tables ---------------------------------------------------


def _scans(conn: Any) -> tuple[int, int]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables "
        "WHERE relid = 'bulk.big'::regclass"
    ).fetchone()
    return int(row[0]), int(row[1])


def test_quick_mode_reads_big_tables_by_index_only(copied: DbPair) -> None:
    with copied.src_conn() as src, copied.tgt_conn() as tgt:
        before = [_scans(src), _scans(tgt)]
        t0 = time.monotonic()
        code, report = verify_cli(copied)
        assert code == 0, failed_text(report)
        assert time.monotonic() - t0 < 30
        # Statistics reach the shared counters when the verify sessions end.
        deadline = time.monotonic() + 10
        after = [_scans(src), _scans(tgt)]
        while any(a[1] == b[1] for a, b in zip(after, before, strict=True)):
            assert time.monotonic() < deadline, f"no index scans counted: {before} -> {after}"
            time.sleep(0.2)
            after = [_scans(src), _scans(tgt)]
    assert [a[0] for a in after] == [b[0] for b in before], "bulk.big was scanned"
    assert all(a[1] > b[1] for a, b in zip(after, before, strict=True))


# -- scope ---------------------------------------------------------------------------------

FILTERS = """\
[exclude-table]
public.events_log
[exclude-table-data]
bulk.big
"""


def test_filters_scope_the_comparison(copied: DbPair, tmp_path: Path) -> None:
    on_target(copied, "DROP TABLE public.events_log", "TRUNCATE bulk.big")
    assert verify(copied).exit_code() == 1
    report = verify(copied, filters=FILTERS, full=True)
    assert report.verdict != Verdict.FAIL, failed_text(report)
    # The schema of an exclude-table-data table is still compared.
    on_target(copied, "ALTER TABLE bulk.big DROP COLUMN label")
    report = verify(copied, filters=FILTERS)
    assert "missing on target: bulk.big.label" in failed_text(report)


def test_the_migration_directory_gives_the_filters(copied: DbPair, tmp_path: Path) -> None:
    on_target(copied, "DROP TABLE public.events_log", "TRUNCATE bulk.big")
    workdir = tmp_path / "work"
    workdir.mkdir()
    store = StateStore.open_dir(workdir)
    store.set_json(Meta.FILTERS, parse_filters(FILTERS, "filters.ini").to_json())
    store.close()
    code, report = verify_cli(copied, "--dir", str(workdir))
    assert code == 0, failed_text(report)
    assert report["facts"]["filters"] == "filters.ini"
    # --filters wins over the directory's.
    (tmp_path / "none.ini").write_text("# nothing excluded\n")
    code, report = verify_cli(
        copied, "--dir", str(workdir), "--filters", str(tmp_path / "none.ini")
    )
    assert code == 1
