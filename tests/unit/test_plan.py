"""Splitting tables into block ranges, ordering, and unit generation (no database)."""

from __future__ import annotations

from pgferry.catalog.model import Catalog, Index, Sequence, Table
from pgferry.catalog.plan import PlanOptions, plan_units, split_ranges
from pgferry.catalog.scope import Scope
from pgferry.state.store import UnitKind


def table(oid: int, size: int, pages: int, name: str = "t", am: str | None = "heap") -> Table:
    return Table(
        oid=oid,
        schema="s",
        name=name,
        relkind="r",
        persistence="p",
        access_method=am,
        is_partition=False,
        parent_oids=(),
        pages=pages,
        bytes=size,
        reltuples=1000.0,
        columns=("a",),
        rls_enabled=False,
        rls_forced=False,
    )


MB = 1024 * 1024


def test_small_table_not_split() -> None:
    opts = PlanOptions(split_tables_larger_than=10 * MB)
    assert len(split_ranges(table(1, 5 * MB, 640), opts, 15)) == 1


def test_split_covers_all_pages_without_gaps() -> None:
    opts = PlanOptions(split_tables_larger_than=10 * MB)
    ranges = split_ranges(table(1, 95 * MB, 12160), opts, 15)
    assert len(ranges) == 10
    assert ranges[0].first_page is None and ranges[-1].end_page is None
    for a, b in zip(ranges, ranges[1:], strict=False):
        assert a.end_page == b.first_page
    assert [r.part for r in ranges] == list(range(1, 11))
    assert all(r.parts == 10 for r in ranges)


def test_max_parts_caps() -> None:
    opts = PlanOptions(split_tables_larger_than=1 * MB, split_max_parts=4)
    assert len(split_ranges(table(1, 100 * MB, 12800), opts, 15)) == 4


def test_no_split_on_old_servers_or_other_access_methods() -> None:
    opts = PlanOptions(split_tables_larger_than=1 * MB)
    assert len(split_ranges(table(1, 100 * MB, 12800), opts, 13)) == 1
    assert len(split_ranges(table(1, 100 * MB, 12800, am="columnar"), opts, 15)) == 1


def test_toast_heavy_table_with_few_pages() -> None:
    # 100 MB in TOAST but only 3 heap pages: at most 3 parts, none empty by construction.
    opts = PlanOptions(split_tables_larger_than=1 * MB)
    ranges = split_ranges(table(1, 100 * MB, 3), opts, 15)
    assert len(ranges) == 3


def _catalog(*tables: Table, indexes=(), sequences=()) -> Catalog:
    return Catalog(
        server_version_num=150000,
        dbname="d",
        encoding="UTF8",
        block_size=8192,
        tables=tables,
        indexes=tuple(indexes),
        sequences=tuple(sequences),
        extensions=(),
        schemas=(),
        event_triggers=(),
        settings=(),
        large_objects=0,
    )


def _index(oid: int, table_oid: int, contype: str | None) -> Index:
    return Index(
        oid=oid,
        table_oid=table_oid,
        schema="s",
        name=f"i{oid}",
        definition="CREATE INDEX",
        is_unique=contype in ("p", "u"),
        is_primary=contype == "p",
        is_replident=False,
        is_clustered=False,
        tablespace=None,
        stat_targets=(),
        constraint_oid=oid + 1000 if contype else None,
        constraint_name=f"c{oid}" if contype else None,
        constraint_type=contype,
    )


def test_units_biggest_first_with_indexes_constraints_vacuum() -> None:
    small, big = table(1, 1 * MB, 128, "small"), table(2, 50 * MB, 6400, "big")
    cat = _catalog(
        small,
        big,
        indexes=[_index(10, 2, "p"), _index(11, 2, None), _index(12, 1, "x")],
        sequences=[Sequence(20, "s", "seq", None)],
    )
    scope = Scope(
        restore_ids=frozenset(),
        tables=frozenset({1, 2}),
        copy_tables=frozenset({1, 2}),
        indexes=frozenset({10, 11, 12}),
        sequences=frozenset({20}),
        large_objects=True,
        warnings=(),
    )
    units, parts = plan_units(
        cat, scope, PlanOptions(split_tables_larger_than=20 * MB), list(range(1, 1201))
    )
    copies = [u for u in units if u.kind == UnitKind.COPY]
    assert copies[0].table_oid == 2 and parts == {2: 3, 1: 1}
    assert [u.part for u in copies] == [1, 2, 3, 0]
    kinds = [(u.kind, u.obj_oid) for u in units if u.kind in (UnitKind.INDEX, UnitKind.CONSTRAINT)]
    # PK: index + constraint; plain index: index only; exclusion: constraint only.
    assert kinds == [
        (UnitKind.INDEX, 10),
        (UnitKind.CONSTRAINT, 10),
        (UnitKind.INDEX, 11),
        (UnitKind.CONSTRAINT, 12),
    ]
    assert sum(u.kind == UnitKind.VACUUM for u in units) == 2
    blobs = [u for u in units if u.kind == UnitKind.BLOBS]
    assert [b.detail["count"] for b in blobs] == [500, 500, 200]
    assert blobs[0].detail["first"] == 1 and blobs[-1].detail["last"] == 1200
    no_vacuum, _ = plan_units(cat, scope, PlanOptions(skip_vacuum=True), [])
    assert not any(u.kind == UnitKind.VACUUM for u in no_vacuum)
