"""Server errors described in one line, the same way everywhere."""

from __future__ import annotations

import psycopg


def error_text(exc: psycopg.Error) -> str:
    """The error's text on one line, with its SQLSTATE when the server gave one."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {state})" if state else text
