"""Sessions left behind by a pgferry that was killed, found by their application_name."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from pgferry.pg.conninfo import ConnInfo

log = logging.getLogger(__name__)


def dir_tag(path: Path) -> str:
    """A short stable token for a work directory, put in every session's application_name."""
    return hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:10]


def terminate_orphans(info: ConnInfo, tag: str) -> int:
    """End the sessions a previous (dead) pgferry on the same DIR left open.

    Called while holding DIR's lock, so no live pgferry owns sessions with this tag. A
    killed client leaves its backend running until it notices: a CREATE INDEX could
    still commit, an old snapshot could pin the source's xmin.
    """
    with info.connect("pgferry cleanup") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
            (f"pgferry:{tag} %",),
        ).fetchall()
        waits = conn.info.server_version >= 140000
        for (pid,) in rows:
            log.warning("ending session %s left by a previous pgferry run on %s", pid, info.role)
            if waits:
                conn.execute("SELECT pg_terminate_backend(%s, 30000)", (pid,))
            else:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(300 if rows and not waits else 0):
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                ([pid for (pid,) in rows],),
            ).fetchone()
            if not left or not left[0]:
                break
            time.sleep(0.1)
    return len(rows)
