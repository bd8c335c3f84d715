"""Log sequence numbers: parse, format, compare."""

from __future__ import annotations

import re

_LSN = re.compile(r"^\s*([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\s*$")


def parse_lsn(text: str) -> int:
    """'16/B374D848' -> int. Raises ValueError on anything else."""
    m = _LSN.match(text)
    if not m:
        raise ValueError(f"not an LSN: {text!r} (expected the X/X form, e.g. 0/16B3748)")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def format_lsn(value: int) -> str:
    """int -> 'X/X' as PostgreSQL prints it."""
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"LSN out of range: {value}")
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def lsn_or_none(text: str | None) -> int | None:
    return None if text is None else parse_lsn(text)
