"""`pgferry verify`: is the target a faithful copy of the source, within the filters?

Quick mode (the default) does bounded work whatever the database size: catalogs,
estimates, sizes, sequences, large object counts and key-range spot checks. Full mode
(`--full`) compares every row by chunked checksums and names the differing rows. Both
read the migration's scope (the filters) and give a PASS/WARN/FAIL report.

One module per phase: `run` (the order of the checks), `catalog` (what is read of each
side), `schema` and `counts` (catalog checks), `quick` and `full` (the data checks),
`outcome` (one table's result and report line), `locate` (bisection down to rows),
`ranges`, `queries` and `reader` (key ranges, their SQL, and reading them), `options`
and `text`. This package exports the entry point; the tests import the pieces from
their modules.
"""

from __future__ import annotations

from pgferry.checks.verify.options import MiB, VerifyOptions
from pgferry.checks.verify.run import run_verify

__all__ = ["MiB", "VerifyOptions", "run_verify"]
