"""Phase 5: large objects, recreated with their OIDs and contents, in batches.

Metadata (the object itself, its owner and grants) comes with the pre-data restore when
pg_dump included it; a missing object is created here. Contents are read in bounded
chunks on the migration snapshot and written in one target transaction per batch, so a
batch is either all there or redone whole.
"""

from __future__ import annotations

from typing import Any

import psycopg

FIRST_CHUNK = 16 * 1024
CHUNK = 1024 * 1024
INV_WRITE = 0x20000
SEEK_END = 2
# Cut what an object already on the target holds past the copied size (an object there
# before). Only then: lo_truncate64 at a multiple of the 2 kB page writes an empty page
# at that boundary, one page more than the source has.
TRUNCATE_LONGER_SQL = f"""
SELECT CASE WHEN lo_lseek64(o.fd, 0, {SEEK_END}) > %s THEN lo_truncate64(o.fd, %s) END
  FROM (SELECT lo_open(%s, %s) AS fd OFFSET 0) o"""


def copy_large_objects(
    source: psycopg.Connection[Any], target: psycopg.Connection[Any], first: int, last: int
) -> tuple[int, int]:
    """Copy the large objects with OIDs in [first, last]; returns (objects, bytes)."""
    with source.cursor() as cur:
        cur.execute(
            "SELECT m.oid::int8, lo_get(m.oid, 0, %s) FROM pg_largeobject_metadata m "
            "WHERE m.oid BETWEEN %s AND %s ORDER BY m.oid",
            (FIRST_CHUNK, first, last),
        )
        heads = cur.fetchall()
    count = total = 0
    with target.transaction(), target.pipeline(), target.cursor() as tcur:
        for oid, head in heads:
            tcur.execute(
                "SELECT lo_create(%s) WHERE NOT EXISTS "
                "(SELECT 1 FROM pg_largeobject_metadata WHERE oid = %s)",
                (oid, oid),
            )
            data, offset, expected = bytes(head), 0, FIRST_CHUNK
            while True:
                if data:
                    tcur.execute("SELECT lo_put(%s, %s, %s)", (oid, offset, data))
                    offset += len(data)
                if len(data) < expected:
                    break
                row = source.execute("SELECT lo_get(%s, %s, %s)", (oid, offset, CHUNK)).fetchone()
                data, expected = (bytes(row[0]) if row else b""), CHUNK
            tcur.execute(TRUNCATE_LONGER_SQL, (offset, offset, oid, INV_WRITE))
            count += 1
            total += offset
    return count, total
