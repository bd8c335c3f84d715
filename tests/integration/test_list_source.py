"""`pgferry list tables|table-parts|indexes|sequences|extensions`: what a clone would copy,
decided as the clone decides it, and exactly what the clone then copies."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from tests.helpers.cli import run_pgferry
from tests.helpers.running import clone_args

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import DbPair

# A schema out, a table's rows out, a table out (and what depends on it goes too).
FILTERS = """
[exclude-schema]
"odd.schema name"

[exclude-table-data]
crm.audit_log

[exclude-table]
sales.discounts
"""


def _list(p: DbPair, what: str, filters: Path, *extra: str) -> dict[str, Any]:
    result = run_pgferry(
        "list", what, "--source", p.source_uri, "--filters", str(filters), "--json", *extra
    )
    return json.loads(result.stdout)


def _target(p: DbPair, query: str) -> set[str]:
    with p.tgt_conn() as conn:
        return {r[0] for r in conn.execute(query)}


USER = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"


def test_lists_match_what_the_clone_copies(rich_source: DbPair, tmp_path: Path) -> None:
    p = rich_source
    filters = tmp_path / "filters.ini"
    filters.write_text(FILTERS)
    with p.src_conn() as conn:
        slots_before = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()
    tables = _list(p, "tables", filters)
    parts = _list(p, "table-parts", filters, "--split-tables-larger-than", "1MB")
    indexes = _list(p, "indexes", filters)
    sequences = _list(p, "sequences", filters)
    extensions = _list(p, "extensions", filters)
    with p.tgt_conn() as conn:  # nothing written to the target: it is not even read
        assert conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE {USER} AND n.nspname <> 'public'"
        ).fetchone() == (0,)
    listed = {t["table"]: t for t in tables["tables"]}
    assert tables["left_out"] > 0
    assert "sales.discounts" not in listed
    assert not any(name.startswith("odd.schema name.") for name in listed)
    assert listed["crm.audit_log"]["copies_rows"] is False
    assert listed["crm.customers"]["copies_rows"] is True
    assert any(u["part"] > 1 for u in parts["table_parts"])  # split at 1MB
    assert {e["extension"] for e in extensions["extensions"] if e["created_by_clone"]}

    run_pgferry(*clone_args(p, "--filters", str(filters)))
    on_target = _target(
        p,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE c.relkind IN ('r', 'p', 'm', 'f') AND {USER}",
    )
    assert set(listed) == on_target
    assert {i["index"] for i in indexes["indexes"]} == _target(
        p,
        "SELECT n.nspname || '.' || c.relname FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_class t ON t.oid = i.indrelid AND t.relkind = 'r'"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {USER} AND i.indisvalid",
    )
    assert {s["sequence"] for s in sequences["sequences"]} == _target(
        p,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c"
        f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND {USER}",
    )
    with p.src_conn() as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == slots_before


def test_list_refuses_a_bad_filter_file(rich_source: DbPair, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text("[exclude-tables]\npublic.x\n")
    result = run_pgferry(
        "list", "tables", "--source", rich_source.source_uri, "--filters", str(bad), check=False
    )
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_clone_dry_run_prints_the_plan_and_writes_nothing(rich_source: DbPair) -> None:
    p = rich_source
    result = run_pgferry(
        *clone_args(p, "--dry-run", "--follow", "--split-tables-larger-than", "1MB")
    )
    out = result.stdout
    assert "the plan (nothing was written to either server)" in out
    assert re.search(r"copy: \d+ tables, .* in \d+ units \(1 tables split into \d+ parts\)", out)
    assert "bulk.big" in out.split("largest first:")[1].splitlines()[1]  # the largest first
    assert re.search(r"then: \d+ indexes \(2 at a time\), \d+ constraints", out)
    assert "target disk: keep at least" in out
    # The time range, from a sample copied into a temporary table on the target.
    estimate = re.search(r"time: about \S+ \(\S+ to \S+; from .* sampled: .*/s per copy", out)
    assert estimate, out
    assert not p.workdir.exists()
    with p.tgt_conn() as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE {USER}"
        ).fetchone() == (0,)
    with p.src_conn() as conn:
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
        ).fetchone() == (0,)
