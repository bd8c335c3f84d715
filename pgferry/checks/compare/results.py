"""What `compare_data` and `compare_schema` return, and how each difference reads.

Frozen results per table, sequence, large objects and object type. Each says in one human
line what differs (`problem` / `problems`), and the two comparisons turn into the JSON
that `pgferry compare --json` prints. No database access here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pgferry.text import display_name

_MAX_LISTED = 10  # large object OIDs named in one problem line

_SINGULAR = {
    "schemas": "schema",
    "extensions": "extension",
    "event triggers": "event trigger",
    "types": "type",
    "tables": "table",
    "columns": "column",
    "indexes": "index",
    "constraints": "constraint",
    "sequences": "sequence",
    "views": "view",
    "materialized views": "materialized view",
    "functions": "function",
    "triggers": "trigger",
    "policies": "policy",
}


@dataclass(frozen=True)
class TableResult:
    """One table on both sides; rows/hash are None where the table is missing or failed."""

    schema: str
    name: str
    source_rows: int | None
    target_rows: int | None
    source_hash: str | None
    target_hash: str | None
    ok: bool
    kind: str = "table"  # or "materialized view"
    only_on_source_columns: tuple[str, ...] = ()
    only_on_target_columns: tuple[str, ...] = ()
    error: str | None = None

    @property
    def qualname(self) -> str:
        return display_name(self.schema, self.name)

    def problem(self) -> str | None:
        """One human line saying what differs, or None when both sides hold the same rows."""
        if self.ok:
            return None
        what = f"{self.kind} {self.qualname}"
        if self.error:
            return f"{what}: {self.error}"
        if self.source_rows is None and self.source_hash is None:
            return f"{what}: only on target"
        if self.target_rows is None and self.target_hash is None:
            return f"{what}: missing on target"
        notes = []
        if self.only_on_source_columns:
            notes.append("columns only on source: " + ", ".join(self.only_on_source_columns))
        if self.only_on_target_columns:
            notes.append("columns only on target: " + ", ".join(self.only_on_target_columns))
        if self.source_rows != self.target_rows:
            notes.insert(
                0, f"{_rows(self.source_rows)} on source, {_rows(self.target_rows)} on target"
            )
        elif self.source_hash != self.target_hash:
            notes.insert(0, f"same row count ({_rows(self.source_rows)}) but different content")
        return f"{what}: " + "; ".join(notes)


def _rows(n: int | None) -> str:
    if n is None:
        return "not populated"
    return f"{n:,} row" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class SequenceResult:
    """One sequence's position on both sides (None where missing or unreadable)."""

    schema: str
    name: str
    source_last_value: int | None
    source_is_called: bool | None
    target_last_value: int | None
    target_is_called: bool | None
    ok: bool
    error: str | None = None

    @property
    def qualname(self) -> str:
        return display_name(self.schema, self.name)

    def problem(self) -> str | None:
        if self.ok:
            return None
        what = f"sequence {self.qualname}"
        if self.error:
            return f"{what}: {self.error}"
        if self.source_last_value is None:
            return f"{what}: only on target"
        if self.target_last_value is None:
            return f"{what}: missing on target"
        return (
            f"{what}: target is behind the source (source last_value "
            f"{self.source_last_value}{'' if self.source_is_called else ' (not called)'}, "
            f"target {self.target_last_value}{'' if self.target_is_called else ' (not called)'})"
        )


@dataclass(frozen=True)
class LargeObjectResult:
    """Large objects on both sides: which are missing, extra, or hold other bytes."""

    source_count: int
    target_count: int
    missing_on_target: tuple[int, ...] = ()
    only_on_target: tuple[int, ...] = ()
    different: tuple[int, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.error or self.missing_on_target or self.only_on_target or self.different)

    def problems(self) -> list[str]:
        lines = []
        if self.error:
            lines.append(f"large objects: {self.error}")
        for label, oids in (
            ("missing on target", self.missing_on_target),
            ("only on target", self.only_on_target),
            ("with different content", self.different),
        ):
            if oids:
                lines.append(f"large objects {label} ({len(oids)}): {_oid_list(oids)}")
        return lines


def _oid_list(oids: Sequence[int]) -> str:
    shown = ", ".join(str(o) for o in oids[:_MAX_LISTED])
    return shown + (f", ... ({len(oids) - _MAX_LISTED} more)" if len(oids) > _MAX_LISTED else "")


@dataclass(frozen=True)
class DataComparison:
    """The outcome of `compare_data`."""

    tables: tuple[TableResult, ...]
    sequences: tuple[SequenceResult, ...]
    large_objects: LargeObjectResult
    seconds: float = 0.0

    @property
    def large_objects_ok(self) -> bool:
        return self.large_objects.ok

    @property
    def ok(self) -> bool:
        return (
            all(t.ok for t in self.tables)
            and all(s.ok for s in self.sequences)
            and self.large_objects_ok
        )

    def problems(self) -> list[str]:
        """One human line per difference, tables first."""
        lines = [p for t in self.tables if (p := t.problem())]
        lines += [p for s in self.sequences if (p := s.problem())]
        return lines + self.large_objects.problems()

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems(), **asdict(self)}


@dataclass(frozen=True)
class ObjectKindComparison:
    """One object type (indexes, triggers, ...): names on each side, differing definitions."""

    kind: str
    source_count: int
    target_count: int
    only_on_source: tuple[str, ...] = ()
    only_on_target: tuple[str, ...] = ()
    different: tuple[tuple[str, str, str], ...] = ()  # (name, source def, target def)

    @property
    def ok(self) -> bool:
        return not (self.only_on_source or self.only_on_target or self.different)

    def problems(self) -> list[str]:
        singular = _SINGULAR.get(self.kind, self.kind)
        lines = [f"{singular} {name}: missing on target" for name in self.only_on_source]
        lines += [f"{singular} {name}: only on target" for name in self.only_on_target]
        lines += [
            f"{singular} {name}: definition differs: source {_clip(s)!r}, target {_clip(t)!r}"
            for name, s, t in self.different
        ]
        return lines


def _clip(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass(frozen=True)
class SchemaComparison:
    """The outcome of `compare_schema`: one entry per object type."""

    kinds: tuple[ObjectKindComparison, ...]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.kinds)

    def problems(self) -> list[str]:
        return [line for k in self.kinds for line in k.problems()]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems(), **asdict(self)}
