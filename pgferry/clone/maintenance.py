"""Phase 8: VACUUM ANALYZE the copied tables."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgferry.catalog.model import Table


def vacuum_analyze(conn: psycopg.Connection[Any], table: Table) -> None:
    """VACUUM (ANALYZE) one table; `conn` must be in autocommit mode."""
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table.ident))
