"""The knobs of `pgferry verify`, in one frozen dataclass.

Every phase (catalog checks, quick sampling, full checksums, locating rows) reads its
limits from here, so the defaults that keep quick mode bounded on databases of any size
are found and changed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class VerifyOptions:
    """The knobs of a verification; the defaults suit databases of any size."""

    row_tolerance_pct: float = 5.0  # estimated row counts may differ this much ...
    row_tolerance_rows: int = 100  # ... or by this many rows, without a warning
    ranges_per_table: int = 4  # quick: key ranges sampled in each large table
    range_rows: int = 1000  # quick: rows in each sampled range
    small_table_bytes: int = 8 * MiB  # quick: tables this small are compared whole ...
    small_tables: int = 50  # ... at most this many of them (a random choice)
    budget_seconds: float = 90.0  # quick: data checks stop starting after this
    statement_timeout_ms: int = 30_000  # quick: per data statement
    lock_timeout_ms: int = 5_000  # quick: per data statement
    chunk_rows: int = 100_000  # full: rows per compared key range
    leaf_rows: int = 1000  # full: ranges this small are compared row by row
    fanout: int = 16  # full: sub-ranges per bisection step
    max_keys: int = 20  # differing rows listed per table
    max_located_chunks: int = 5  # full: differing chunks narrowed down per table
    max_listed: int = 20  # names listed in one report line
