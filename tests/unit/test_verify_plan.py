"""The pure parts of `pgferry verify`: key ranges, chunk planning, bisection, the SQL it
builds (hostile names), estimate tolerance and the filters' scope — without a database."""

from __future__ import annotations

import hashlib
import random

import pytest

from pgferry.catalog.filters import parse_filters
from pgferry.catalog.objects import FilterScope, SchemaObject
from pgferry.checks.verify.counts import estimate_drift
from pgferry.checks.verify.locate import (
    DIFFERENT,
    MOVED,
    ONLY_SOURCE,
    ONLY_TARGET,
    RowDifference,
    diff_rows,
    locate_rows,
)
from pgferry.checks.verify.queries import (
    TableSpec,
    edge_query,
    fingerprint_range_query,
    lookup_query,
    range_condition,
    rows_query,
    split_points_query,
)
from pgferry.checks.verify.quick import quick_ranges
from pgferry.checks.verify.ranges import (
    Key,
    KeyRange,
    chunk_count,
    key_text,
    sample_percent,
    split_range,
    spread_bounds,
)
from pgferry.checks.verify.schema import loosely_equal

LONG = "ü" * 31 + "x"  # 63 bytes in UTF-8: the longest identifier PostgreSQL keeps
HOSTILE = [
    ('we"ird', '"we""ird"'),
    ("dot.ted", '"dot.ted"'),
    ("semi; DROP TABLE x; --", '"semi; DROP TABLE x; --"'),
    ("Ünïcödé 表", '"Ünïcödé 表"'),
    ("MixedCase", '"MixedCase"'),
    (LONG, f'"{LONG}"'),
]


def render(composed: object) -> str:
    return composed.as_string(None)  # type: ignore[attr-defined]


# -- key ranges and chunk planning ---------------------------------------------------------


def test_split_range_makes_adjacent_ranges_covering_the_original() -> None:
    parts = split_range(KeyRange(), [("10",), ("20",)])
    assert parts == [
        KeyRange(None, ("10",)),
        KeyRange(("10",), ("20",)),
        KeyRange(("20",), None),
    ]


def test_split_range_keeps_the_bounds_and_an_inclusive_upper_end() -> None:
    rng = KeyRange(("1",), ("100",), upper_inclusive=True)
    parts = split_range(rng, [("50",)])
    assert parts == [
        KeyRange(("1",), ("50",)),
        KeyRange(("50",), ("100",), upper_inclusive=True),
    ]
    assert split_range(rng, []) == [rng]


def test_chunk_count() -> None:
    assert chunk_count(0, 100_000) == 1
    assert chunk_count(100_000, 100_000) == 1
    assert chunk_count(100_001, 100_000) == 2
    assert chunk_count(10_000_000_000, 100_000) == 100_000


def test_sample_percent_reads_few_pages_of_a_big_table() -> None:
    # 1e9 rows on 12.5M pages, 10,000 chunks: 4 pages a chunk (keys on one page are
    # often neighbours), 0.32% of the pages; that also gives more than 20 keys a chunk.
    assert sample_percent(1e9, 12_500_000, 10_000) == pytest.approx(100 * 40_000 / 12_500_000)
    # Wide rows (one a page): 20 keys a chunk decide.
    assert sample_percent(1e6, 1_000_000, 10) == pytest.approx(100 * 200 / 1e6)
    # Never fewer than 64 pages.
    assert sample_percent(200_000, 1_800, 2) == pytest.approx(100 * 64 / 1_800)
    # Small tables and tables without statistics are read whole.
    assert sample_percent(1000, 10, 2) == 100.0
    assert sample_percent(0, 10_000, 2) == 100.0
    # At most 2 million keys.
    assert sample_percent(1e9, 10**10, 10**6) == pytest.approx(100 * 2e6 / 1e9)


def test_spread_bounds_takes_one_inner_value_per_slice() -> None:
    bounds = [str(i) for i in range(101)]
    picks = spread_bounds(bounds, 2, random.Random(1))
    assert len(picks) == 2
    assert 1 <= int(picks[0]) <= 50 < int(picks[1]) <= 99
    assert spread_bounds(bounds, 0, random.Random(1)) == []
    assert spread_bounds(["1", "2"], 3, random.Random(1)) == []  # no inner bound
    assert spread_bounds(["1", "2", "3"], 3, random.Random(1)) == ["2"]


def test_quick_ranges_cover_both_ends_open() -> None:
    ranges = quick_ranges(
        first=(("1000",), 1000),
        last=(("99001",), 1000),
        middles=[(("50000",), (("50999",), 1000)), (("70000",), None)],
        rows=1000,
    )
    assert ranges == [
        KeyRange(upper=("1000",), upper_inclusive=True),
        KeyRange(lower=("50000",), upper=("50999",), upper_inclusive=True),
        KeyRange(lower=("99001",)),
    ]


def test_quick_ranges_of_a_small_or_empty_table_is_the_whole_table() -> None:
    assert quick_ranges((("7",), 7), (("1",), 7), [], 1000) == [KeyRange()]
    assert quick_ranges(None, None, [], 1000) == [KeyRange()]


def test_describe_range_and_key_for_humans() -> None:
    assert KeyRange().describe(["id"]) == "all rows"
    assert KeyRange(("1",), ("500",)).describe(["id"]) == "id >= 1 AND id < 500"
    assert (
        KeyRange(upper=("x'y", "2"), upper_inclusive=True).describe(["Name", "n"])
        == "(\"Name\", n) <= ('x''y', 2)"
    )
    # A lower bound on the first key column only (from a histogram).
    assert KeyRange(lower=("k",)).describe(["a", "b"]) == "a >= 'k'"
    assert key_text(["id"], ("42",)) == "id=42"
    assert key_text(['we"ird', "b"], ("1", "-2.5")) == '("we""ird", b)=(1, -2.5)'


# -- bisection -------------------------------------------------------------------------------


class FakeTable:
    """A RangeReader over an in-memory table with integer keys (shown as text)."""

    def __init__(self, rows: dict[int, str], order: list[int] | None = None) -> None:
        self.data = dict(rows)
        # The side's key order (its collation); numeric by default.
        self.order = order if order is not None else sorted(self.data)
        self.pos = {k: i for i, k in enumerate(self.order)}
        self.reads = 0

    def _rank(self, key: Key) -> float:
        k = int(key[0])
        if k in self.pos:
            return self.pos[k]
        below = [p for x, p in self.pos.items() if x < k]  # not a key here: numeric place
        return max(below) + 0.5 if below else -0.5

    def _keys(self, rng: KeyRange) -> list[int]:
        lo = self._rank(rng.lower) if rng.lower is not None else float("-inf")
        hi = self._rank(rng.upper) if rng.upper is not None else float("inf")
        return [
            k
            for k in self.order
            if lo <= self.pos[k]
            and (self.pos[k] < hi or (self.pos[k] == hi and rng.upper_inclusive))
        ]

    def fingerprint(self, rng: KeyRange) -> tuple[int, str]:
        self.reads += 1
        keys = self._keys(rng)
        digest = sum(
            int(hashlib.md5(f"{k}:{self.data[k]}".encode()).hexdigest()[:8], 16) for k in keys
        )
        return len(keys), str(digest)

    def split_points(self, rng: KeyRange, parts: int) -> list[Key]:
        keys = self._keys(rng)
        n = len(keys)
        return [(str(keys[i]),) for i in range(1, n) if (i * parts) // n != ((i - 1) * parts) // n]

    def rows(self, rng: KeyRange) -> dict[Key, str]:
        return {(str(k),): self.data[k] for k in self._keys(rng)}

    def lookup(self, key: Key) -> str | None:
        k = int(key[0])
        return self.data.get(k)


def _table(n: int) -> dict[int, str]:
    return {i: f"row {i}" for i in range(1, n + 1)}


def test_locate_rows_finds_changed_missing_and_extra_rows() -> None:
    source = FakeTable(_table(10_000))
    changed = _table(10_000)
    changed[1234] = "changed"
    del changed[5000]
    changed[10_001] = "extra"
    target = FakeTable(changed)
    loc = locate_rows(source, target, KeyRange(), leaf_rows=100, fanout=8, max_keys=10)
    assert loc.complete
    assert sorted(loc.rows, key=lambda d: int(d.key[0])) == [
        RowDifference(("1234",), DIFFERENT),
        RowDifference(("5000",), ONLY_SOURCE),
        RowDifference(("10001",), ONLY_TARGET),
    ]
    # Only the differing sub-ranges were read row by row, each small.
    assert 1 <= len(loc.ranges) <= 3
    assert all(len(source.rows(r)) <= 100 for r in loc.ranges)


def test_locate_rows_of_equal_ranges_finds_nothing() -> None:
    loc = locate_rows(
        FakeTable(_table(500)),
        FakeTable(_table(500)),
        KeyRange(),
        leaf_rows=10,
        fanout=4,
        max_keys=5,
    )
    assert loc.rows == [] and loc.complete


def test_locate_rows_splits_on_the_side_with_more_rows() -> None:
    target = FakeTable({**_table(10), **{i: "extra" for i in range(1000, 3000)}})
    loc = locate_rows(FakeTable(_table(10)), target, KeyRange(), leaf_rows=50, fanout=4, max_keys=5)
    assert not loc.complete  # 2,000 extra rows; the first 5 are listed
    assert len(loc.rows) >= 5
    assert all(d.what == ONLY_TARGET for d in loc.rows)


def test_locate_rows_stops_at_max_keys() -> None:
    source = FakeTable(_table(2000))
    target = FakeTable({k: ("x" if k % 10 == 0 else v) for k, v in _table(2000).items()})
    loc = locate_rows(source, target, KeyRange(), leaf_rows=100, fanout=4, max_keys=7)
    assert not loc.complete
    assert 7 <= len(loc.rows) <= 7 + 100
    assert {d.what for d in loc.rows} == {DIFFERENT}


def test_locate_rows_tells_a_row_that_sorts_elsewhere_from_a_lost_one() -> None:
    rows = _table(300)
    # The target's collation puts key 150 last: in range [100, 200) it is missing there.
    order = [k for k in sorted(rows) if k != 150] + [150]
    loc = locate_rows(
        FakeTable(rows), FakeTable(rows, order), KeyRange(("100",), ("200",)),
        leaf_rows=1000, fanout=4, max_keys=5,
    )  # fmt: skip
    assert loc.rows == [RowDifference(("150",), MOVED)]


def test_locate_rows_uses_the_counts_it_is_given() -> None:
    source, target = FakeTable(_table(100)), FakeTable(_table(100))
    known = (source.fingerprint(KeyRange()), target.fingerprint(KeyRange()))
    source.reads = target.reads = 0
    locate_rows(source, target, KeyRange(), leaf_rows=10, fanout=4, max_keys=5, known=known)
    assert source.reads == target.reads == 0


def test_diff_rows() -> None:
    assert diff_rows({("1",): "a", ("2",): "b"}, {("2",): "c", ("3",): "d"}) == [
        RowDifference(("1",), ONLY_SOURCE),
        RowDifference(("3",), ONLY_TARGET),
        RowDifference(("2",), DIFFERENT),
    ]


# -- estimates and definitions ---------------------------------------------------------------


def test_estimate_drift_tolerances() -> None:
    assert estimate_drift(1000, 1040, 5, 100) is None  # within both
    assert estimate_drift(100_000, 105_900, 5, 100) == pytest.approx(5.9)  # not truncated
    assert estimate_drift(100_000, 105_000, 5, 100) is None
    assert estimate_drift(10, 60, 5, 100) is None  # 500% but only 50 rows
    assert estimate_drift(0, 5000, 5, 100) == pytest.approx(500_000)  # source empty, not target
    assert estimate_drift(None, 5000, 5, 100) is None  # no statistics


def test_loosely_equal_ignores_spacing_and_parentheses_only() -> None:
    assert loosely_equal("CHECK ((qty > 0))", "CHECK (qty > 0)")
    assert loosely_equal(" SELECT a,\n    b\n   FROM t;", "SELECT a, b FROM t;")
    assert not loosely_equal("CHECK ((qty > 0))", "CHECK ((qty >= 0))")


# -- SQL -----------------------------------------------------------------------------------------


def spec(name: str = "t", key: tuple[str, ...] = ("id",)) -> TableSpec:
    return TableSpec(name, name, (name, "id"), key)


@pytest.mark.parametrize(("name", "quoted"), HOSTILE)
def test_range_queries_quote_every_name(name: str, quoted: str) -> None:
    t = TableSpec(name, name, (name, "r"), (name, "id"))
    rng = KeyRange((" '; DELETE FROM y; --", "1"), ("z", "2"))
    for query, params in (
        fingerprint_range_query(t, rng),
        fingerprint_range_query(t, rng, limit=10),
        rows_query(t, rng, limit=10),
        split_points_query(t, rng, 4, sample_pct=0.5),
        edge_query(t, rng, 10, from_end=True),
        (lookup_query(t), []),
    ):
        text = render(query)
        assert f"FROM ONLY {quoted}.{quoted} AS r" in text
        assert f'"r".{quoted}' in text
        assert "DELETE FROM" not in text  # values travel as parameters, never in the SQL
        assert params in ([], [" '; DELETE FROM y; --", "1", "z", "2"])


def test_range_condition_shapes() -> None:
    cond, params = range_condition(["id"], KeyRange())
    assert (render(cond), params) == ("TRUE", [])
    cond, params = range_condition(["id"], KeyRange(("5",), ("9",), upper_inclusive=True))
    assert render(cond) == '"r"."id" >= %s AND "r"."id" <= %s'
    assert params == ["5", "9"]
    # A composite key: row comparisons, which the key's index serves; a prefix lower bound.
    cond, params = range_condition(["a", "b"], KeyRange(("x",), ("y", "2")))
    assert render(cond) == '"r"."a" >= %s AND ("r"."a", "r"."b") < (%s, %s)'
    assert params == ["x", "y", "2"]


def test_fingerprint_range_query_with_a_limit_reads_the_first_rows_by_key() -> None:
    query, params = fingerprint_range_query(spec(), KeyRange(lower=("7",)), limit=2001)
    assert render(query) == (
        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum(('x' || pg_catalog.substr("
        'pg_catalog.md5(ROW("r"."t", "r"."id")::text), 1, 16))'
        "::bit(64)::bigint::numeric), 0)::text "
        'FROM (SELECT "r"."t", "r"."id" FROM ONLY "t"."t" AS r WHERE "r"."id" >= %s '
        'ORDER BY "r"."id" LIMIT 2001) AS r'
    )
    assert params == ["7"]


def test_split_points_query_samples_and_cuts_into_equal_parts() -> None:
    query, _ = split_points_query(spec(key=("a", "b")), KeyRange(), 8, sample_pct=0.25)
    text = render(query)
    assert "TABLESAMPLE SYSTEM (0.25) REPEATABLE (0)" in text
    assert 'row_number() OVER (ORDER BY "r"."a", "r"."b")' in text
    assert '"r"."a"::text AS "k0", "r"."b"::text AS "k1"' in text
    assert "(rn - 1) * 8 / total <> (rn - 2) * 8 / total" in text
    query, _ = split_points_query(spec(), KeyRange(), 8, sample_pct=100.0)
    assert "TABLESAMPLE" not in render(query)


def test_edge_query_orders_the_typed_keys_not_their_text() -> None:
    # '999' > '1000' as text: the outer ORDER BY must use the subquery's typed column.
    query, _ = edge_query(spec(), KeyRange(), 1000)
    text = render(query)
    assert text.endswith('ORDER BY "s"."k0" DESC LIMIT 1')
    assert 'ORDER BY "r"."id" LIMIT 1000' in text
    query, _ = edge_query(spec(), KeyRange(), 1000, from_end=True)
    text = render(query)
    assert 'ORDER BY "r"."id" DESC LIMIT 1000' in text
    assert text.endswith('ORDER BY "s"."k0" LIMIT 1')


def test_lookup_query_matches_the_whole_key() -> None:
    text = render(lookup_query(spec(key=("a", "b"))))
    assert text.endswith('WHERE ("r"."a", "r"."b") = (%s, %s)')


# -- filters' scope ------------------------------------------------------------------------


def obj(
    kind: str,
    *parts: str,
    relation: str | None = None,
    refs: tuple[tuple[str, str, str], ...] | list[tuple[str, str, str]] = (),
    schema: str | None = None,
) -> SchemaObject:
    """A catalog object as the schema queries return it (its schema: the first part)."""
    if schema is None and kind not in ("extensions", "event triggers"):
        schema = parts[0]
    return SchemaObject(kind, parts, "", schema=schema, relation=relation, refs=tuple(refs))


P = "public"
OBJECTS = [
    obj("schemas", P),
    obj("schemas", "crm"),
    obj("schemas", "ext"),
    obj("extensions", "hstore", schema="ext"),
    obj("extensions", "citext", schema=P),
    obj("tables", P, "orders", relation="orders"),
    obj("tables", P, "lines", relation="lines"),
    obj("tables", P, "events", relation="events"),
    obj("tables", P, "events_2024", relation="events_2024", refs=[("partition of", P, "events")]),
    obj("tables", "crm", "people", relation="people"),
    obj("columns", P, "orders", "id", relation="orders"),
    obj("indexes", P, "orders_pkey", relation="orders"),
    obj("indexes", P, "lines_pkey", relation="lines"),
    obj("constraints", P, "lines", "lines_pkey", relation="lines",
        refs=[("index", P, "lines_pkey")]),
    obj("constraints", P, "lines", "lines_order_fkey", relation="lines",
        refs=[("references", P, "orders"), ("index", P, "orders_pkey")]),
    obj("sequences", P, "orders_id_seq", refs=[("owned by", P, "orders")]),
    obj("sequences", P, "free_seq"),
    obj("views", P, "order_view", relation="order_view", refs=[("uses", P, "orders")]),
    obj("views", P, "view_of_view", relation="view_of_view", refs=[("uses", P, "order_view")]),
    obj("views", P, "line_view", relation="line_view", refs=[("uses", P, "lines")]),
    obj("functions", "crm", "f", ""),
    obj("triggers", P, "orders", "orders_audit", relation="orders"),
    obj("event triggers", "no_ddl"),
]  # fmt: skip


def kept(filters_text: str) -> set[str]:
    scope = FilterScope(parse_filters(filters_text), OBJECTS)
    return {f"{o.kind}:{o.name}" for o in OBJECTS if scope.keeps(o)}


def test_no_filters_keep_everything() -> None:
    assert len(kept("")) == len(OBJECTS)


def test_exclude_table_takes_its_dependents_along() -> None:
    gone = {f"{o.kind}:{o.name}" for o in OBJECTS} - kept("[exclude-table]\npublic.orders\n")
    assert gone == {
        "tables:public.orders",
        "columns:public.orders.id",
        "indexes:public.orders_pkey",
        "constraints:public.lines.lines_order_fkey",  # references it
        "sequences:public.orders_id_seq",  # owned by it
        "views:public.order_view",  # uses it
        "views:public.view_of_view",  # uses a view that uses it
        "triggers:public.orders.orders_audit",
    }


def test_exclude_schema_and_the_schema_of_a_kept_extension() -> None:
    result = kept("[exclude-schema]\ncrm\next\n")
    assert "schemas:crm" not in result and "tables:crm.people" not in result
    assert "functions:crm.f()" not in result
    assert "schemas:ext" in result  # it holds hstore, which is kept
    result = kept("[exclude-schema]\next\n[exclude-extension]\nhstore\n")
    assert "schemas:ext" not in result and "extensions:hstore" not in result
    assert "extensions:citext" in result


def test_include_only_table_keeps_partitions_and_parents() -> None:
    result = kept("[include-only-table]\npublic.events_2024\n")
    assert {"tables:public.events", "tables:public.events_2024"} <= result
    assert "tables:public.orders" not in result and "tables:crm.people" not in result
    assert "views:public.order_view" not in result
    assert "sequences:public.free_seq" in result  # not a table: only its schema counts
    assert "functions:crm.f()" in result
    result = kept("[include-only-table]\npublic.events\n")
    assert "tables:public.events_2024" in result


def test_exclude_index_takes_the_constraints_it_backs() -> None:
    result = kept("[exclude-index]\npublic.lines_pkey\n")
    assert "indexes:public.lines_pkey" not in result
    assert "constraints:public.lines.lines_pkey" not in result
    assert "tables:public.lines" in result


def test_exclude_table_data_keeps_the_schema_but_not_the_rows() -> None:
    scope = FilterScope(parse_filters("[exclude-table-data]\npublic.events\n"), OBJECTS)
    assert "tables:public.events" in {f"{o.kind}:{o.name}" for o in OBJECTS if scope.keeps(o)}
    assert not scope.copies_data("public", "events")
    assert not scope.copies_data("public", "events_2024")  # its rows are the partition's
    assert scope.copies_data("public", "orders")


def test_exclude_event_trigger() -> None:
    assert "event triggers:no_ddl" not in kept("[exclude-event-trigger]\nno_ddl\n")
