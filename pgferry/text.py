"""Human-readable sizes and durations, and parsing of pretty sizes (pgcopydb's units)."""

from __future__ import annotations

import re
from collections.abc import Sequence

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1024,
    "MB": 1024**2,
    "GB": 1024**3,
    "TB": 1024**4,
    "PB": 1024**5,
    "EB": 1024**6,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtTpPeE]?[bB]?)\s*$")


def parse_size(text: str) -> int:
    """'50GB', '200kB', '1048576' -> bytes (1024-based, as PostgreSQL and pgcopydb)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 1048576, 200kB, 50MB, 2GB)")
    unit = m.group(2).upper()
    if unit and not unit.endswith("B"):
        unit += "B"
    return int(float(m.group(1)) * _UNITS[unit])


def human_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


_PLAIN_IDENT = re.compile(r"^[a-z_][a-z0-9_$]*$")


def listed(names: Sequence[str], limit: int) -> str:
    """The first `limit` names, comma separated, and how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def display_name(*parts: str) -> str:
    """schema.name for humans: each part double-quoted only when it needs to be."""
    return ".".join(p if _PLAIN_IDENT.match(p) else '"' + p.replace('"', '""') + '"' for p in parts)
