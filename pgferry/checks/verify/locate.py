"""Narrowing a differing key range down to the differing rows, by bisection.

Both modes end here: full mode with its differing chunks, quick mode with its differing
samples. Pure: rows are read through a `RangeReader`, so the search is unit tested on
in-memory tables and the SQL stays in `queries`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pgferry.checks.verify.ranges import Key, KeyRange, split_range

ONLY_SOURCE = "only on source"
ONLY_TARGET = "only on target"
DIFFERENT = "different content"
MOVED = "ordered elsewhere on the target"  # same row, found outside the range: collation


@dataclass(frozen=True)
class RowDifference:
    key: Key
    what: str  # ONLY_SOURCE, ONLY_TARGET, DIFFERENT or MOVED


def diff_rows(source: Mapping[Key, str], target: Mapping[Key, str]) -> list[RowDifference]:
    """Rows (key -> content hash) that differ between two reads of the same key range."""
    out = [RowDifference(k, ONLY_SOURCE) for k in source if k not in target]
    out += [RowDifference(k, ONLY_TARGET) for k in target if k not in source]
    out += [RowDifference(k, DIFFERENT) for k in source if k in target and source[k] != target[k]]
    return out


class RangeReader(Protocol):
    """One table on one side, read by key range."""

    def fingerprint(self, rng: KeyRange) -> tuple[int, str]: ...

    def split_points(self, rng: KeyRange, parts: int) -> list[Key]: ...

    def rows(self, rng: KeyRange) -> dict[Key, str]: ...

    def lookup(self, key: Key) -> str | None: ...


@dataclass
class Location:
    """What bisecting one differing range found."""

    rows: list[RowDifference] = field(default_factory=list)
    ranges: list[KeyRange] = field(default_factory=list)  # smallest differing ranges read
    complete: bool = True  # False: stopped at max_keys or max_steps


def locate_rows(
    source: RangeReader,
    target: RangeReader,
    rng: KeyRange,
    *,
    leaf_rows: int,
    fanout: int,
    max_keys: int,
    max_steps: int = 200,
    known: tuple[tuple[int, str], tuple[int, str]] | None = None,
) -> Location:
    """Narrow a differing key range down to the differing rows.

    A range is cut at keys taken from the side holding more of its rows, and only the
    sub-ranges whose count or hash differ are followed, until ranges of at most
    `leaf_rows` rows on both sides, which are read row by row (key and content hash).
    A key read on one side only is then looked up on the other side by equality: a row
    found there with the same content only sorts differently (a collation difference).
    """
    loc = Location()
    queue: deque[tuple[KeyRange, tuple[tuple[int, str], tuple[int, str]] | None]] = deque(
        [(rng, known)]
    )
    steps = 0
    while queue:
        if len([r for r in loc.rows if r.what != MOVED]) >= max_keys or steps >= max_steps:
            loc.complete = False
            break
        part, counts = queue.popleft()
        steps += 1
        if counts is None:
            counts = (source.fingerprint(part), target.fingerprint(part))
        (s_rows, s_hash), (t_rows, t_hash) = counts
        if (s_rows, s_hash) == (t_rows, t_hash):
            continue
        if max(s_rows, t_rows) > leaf_rows:
            reader = source if s_rows >= t_rows else target
            points = reader.split_points(part, fanout)
            subs = split_range(part, points)
            if len(subs) > 1:
                queue.extend((sub, None) for sub in subs)
                continue
        loc.ranges.append(part)
        loc.rows.extend(_confirm(source, target, diff_rows(source.rows(part), target.rows(part))))
    return loc


def _confirm(
    source: RangeReader, target: RangeReader, found: list[RowDifference]
) -> list[RowDifference]:
    """Look up, by equality, keys read on one side only (see locate_rows)."""
    out = []
    for d in found:
        if d.what in (ONLY_SOURCE, ONLY_TARGET):
            here, other = (source, target) if d.what == ONLY_SOURCE else (target, source)
            there = other.lookup(d.key)
            if there is not None:
                same = there == here.lookup(d.key)
                out.append(RowDifference(d.key, MOVED if same else DIFFERENT))
                continue
        out.append(d)
    return out
