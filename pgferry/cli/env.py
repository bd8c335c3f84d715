"""Option defaults from the environment: PGFERRY_* first, then pgcopydb's PGCOPYDB_*."""

from __future__ import annotations

import os

from pgferry.errors import InputError

_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}


def env_value(name: str) -> str | None:
    """PGFERRY_<name> wins over PGCOPYDB_<name>; empty values count as unset."""
    for prefix in ("PGFERRY_", "PGCOPYDB_"):
        value = os.environ.get(prefix + name)
        if value:
            return value
    return None


def env_source(name: str) -> str | None:
    """Which variable supplied `name` (for error messages)."""
    for prefix in ("PGFERRY_", "PGCOPYDB_"):
        if os.environ.get(prefix + name):
            return prefix + name
    return None


def env_bool(name: str) -> bool:
    value = env_value(name)
    if value is None:
        return False
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InputError(
        f"{env_source(name)}={value!r} is not a boolean",
        fix="use true/false, on/off, yes/no or 1/0",
    )


def env_int(name: str, default: int) -> int:
    value = env_value(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(
            f"{env_source(name)}={value!r} is not an integer",
            fix=f"set {env_source(name)} to a whole number, or unset it",
        ) from None
