"""`pgferry verify`: is the target a faithful copy of the source, within the filters?

Quick mode (the default) does bounded work whatever the database size: catalogs,
estimates, sizes, sequences, large object counts and key-range spot checks. Full mode
(`--full`) compares every row by chunked checksums and names the differing rows. Both
read the migration's scope (the filters) and give a PASS/WARN/FAIL report.

One module per phase: `run` (the order of the checks), `catalog` (what is read of each
side), `schema` and `counts` (catalog checks), `quick` and `full` (the data checks),
`outcome` (one table's result and report line), `locate` (bisection down to rows),
`ranges`, `queries` and `reader` (key ranges, their SQL, and reading them), `options`
and `text`. This package re-exports the public names.
"""

from __future__ import annotations

from pgferry.checks.verify.counts import estimate_drift
from pgferry.checks.verify.locate import (
    DIFFERENT,
    MOVED,
    ONLY_SOURCE,
    ONLY_TARGET,
    Location,
    RangeReader,
    RowDifference,
    diff_rows,
    locate_rows,
)
from pgferry.checks.verify.options import MiB, VerifyOptions
from pgferry.checks.verify.queries import (
    HISTOGRAM_SQL,
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
from pgferry.checks.verify.run import run_verify
from pgferry.checks.verify.schema import loosely_equal

__all__ = [
    "DIFFERENT",
    "HISTOGRAM_SQL",
    "MOVED",
    "ONLY_SOURCE",
    "ONLY_TARGET",
    "Key",
    "KeyRange",
    "Location",
    "MiB",
    "RangeReader",
    "RowDifference",
    "TableSpec",
    "VerifyOptions",
    "chunk_count",
    "diff_rows",
    "edge_query",
    "estimate_drift",
    "fingerprint_range_query",
    "key_text",
    "locate_rows",
    "lookup_query",
    "loosely_equal",
    "quick_ranges",
    "range_condition",
    "rows_query",
    "run_verify",
    "sample_percent",
    "split_points_query",
    "split_range",
    "spread_bounds",
]
