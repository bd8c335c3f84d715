"""Key ranges, the unit of comparison of `pgferry verify`, and how tables are cut into them.

Pure: no connection, so chunk planning and quick sampling are unit tested without a
database. Key values are kept as the server prints them and never compared here: their
order (type and collation) is the server's.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pgferry.text import display_name

Key = tuple[str, ...]  # a key's column values as the server prints them


@dataclass(frozen=True)
class KeyRange:
    """Rows whose key is >= lower (a full key or a prefix of it) and < upper (<= when
    upper_inclusive); None is unbounded. Values are compared by the servers, never here:
    the order of a key's values is the server's (type and collation)."""

    lower: Key | None = None
    upper: Key | None = None
    upper_inclusive: bool = False

    def describe(self, columns: Sequence[str]) -> str:
        """The range as a SQL condition a user can paste: `id >= 1 AND id < 500`."""
        parts = []
        if self.lower is not None:
            parts.append(
                f"{_columns_text(columns[: len(self.lower)])} >= {_values_text(self.lower)}"
            )
        if self.upper is not None:
            op = "<=" if self.upper_inclusive else "<"
            parts.append(
                f"{_columns_text(columns[: len(self.upper)])} {op} {_values_text(self.upper)}"
            )
        return " AND ".join(parts) or "all rows"


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _value_text(value: str) -> str:
    return value if _NUMBER.match(value) else "'" + value.replace("'", "''") + "'"


def _values_text(values: Sequence[str]) -> str:
    shown = ", ".join(_value_text(v) for v in values)
    return shown if len(values) == 1 else f"({shown})"


def _columns_text(columns: Sequence[str]) -> str:
    shown = ", ".join(display_name(c) for c in columns)
    return shown if len(columns) == 1 else f"({shown})"


def key_text(columns: Sequence[str], key: Key) -> str:
    """One row's key for humans: `id=42`, `(a, b)=(1, 'x')`."""
    return f"{_columns_text(columns)}={_values_text(key)}"


def split_range(rng: KeyRange, points: Sequence[Key]) -> list[KeyRange]:
    """Cut a range at the given keys (ascending, inside the range) into adjacent ranges
    that together hold exactly the rows of `rng`."""
    bounds: list[Key | None] = [rng.lower, *points, rng.upper]
    out = []
    for i in range(len(bounds) - 1):
        last = i == len(bounds) - 2
        out.append(
            KeyRange(
                bounds[i], bounds[i + 1], upper_inclusive=rng.upper_inclusive if last else False
            )
        )
    return out


def chunk_count(estimated_rows: float, chunk_rows: int) -> int:
    """How many key ranges to cut a table of that many rows into (at least 1)."""
    if estimated_rows <= chunk_rows:
        return 1
    return math.ceil(estimated_rows / chunk_rows)


def sample_percent(
    estimated_rows: float, pages: int, parts: int, per_part: int = 20, min_pages: int = 64
) -> float:
    """TABLESAMPLE SYSTEM percentage that yields about `per_part` keys per part (at most
    2 million keys) from at least 4 pages per part (and `min_pages`): SYSTEM picks whole
    pages, whose keys are often neighbours, so a part needs keys from several pages."""
    if estimated_rows <= 0 or pages <= min_pages:
        return 100.0
    wanted = min(parts * per_part, 2_000_000)
    pct = max(100.0 * wanted / estimated_rows, 100.0 * max(min_pages, 4 * parts) / pages)
    return min(100.0, pct)


def spread_bounds(bounds: Sequence[str], count: int, rnd: random.Random) -> list[str]:
    """`count` values from a histogram, one random pick in each of `count` equal slices
    (the first and last bounds excluded: the first and last ranges cover the ends)."""
    inner = list(bounds[1:-1])
    if count <= 0 or not inner:
        return []
    count = min(count, len(inner))
    picks = []
    for i in range(count):
        lo = i * len(inner) // count
        hi = max(lo + 1, (i + 1) * len(inner) // count)
        picks.append(inner[rnd.randrange(lo, hi)])
    return picks
