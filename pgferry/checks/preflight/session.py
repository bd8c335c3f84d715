"""Preflight's own sessions, and how a failed query becomes a report line.

Both sides are read in read-only sessions with statement and lock timeouts (the helper
scripts' belt): a busy server cannot hang preflight and preflight cannot write to it.
A side that cannot be reached is a FAIL line, not an exception, and its checks are skipped;
a query that fails is reported as "not checked", never read as an empty answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from pgferry.checks.report import Report
from pgferry.errors import PgferryError
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.describe import error_text
from pgferry.pg.profiles import READ_ONLY


def open_session(
    report: Report, info: ConnInfo, stack: contextlib.ExitStack
) -> psycopg.Connection[Any] | None:
    """A read-only session, or a FAIL line saying why not."""
    name = f"{info.role}.connect"
    try:
        conn = info.connect("pgferry preflight", settings=READ_ONLY)
    except PgferryError as exc:
        report.fail(name, exc.message + f" (the other {info.role} checks are skipped)", exc.fix)
        return None
    except psycopg.Error as exc:
        report.fail(name, f"cannot set up the {info.role} session: {error_text(exc)}")
        return None
    stack.enter_context(conn)
    report.ok(name, f"connected to {info.short()}")
    return conn


@contextlib.contextmanager
def guarded_check(report: Report, name: str) -> Iterator[None]:
    """A failed query makes its check "not checked" (WARN), never a silent pass."""
    try:
        yield
    except psycopg.Error as exc:
        report.warn(
            name,
            f"not checked: {error_text(exc)}",
            "check it by hand, or run preflight as a role that can read this",
        )


def fetch_one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    """The single row of `query`: its one value, or the row when it has several."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row
