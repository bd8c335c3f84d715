"""One step of the clone done again on its own (pgcopydb's `copy sequences` and `copy blobs`):
after a cutover, the sequences' values, or large objects changed on the source since
the copy (CDC does not carry them). The clone's own code does the work."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pgferry.catalog.facts import large_object_oids
from pgferry.catalog.model import Sequence
from pgferry.catalog.plan import LARGE_OBJECT_BATCH
from pgferry.catalog.queries import SEQUENCES_SQL
from pgferry.catalog.sequences import read_sequence, set_sequence
from pgferry.clone.blobs import copy_large_objects
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import DURABLE_WRITER, SNAPSHOT_READER
from pgferry.pg.snapshot import Snapshot, begin_on_snapshot
from pgferry.text import listed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Copied:
    objects: int
    bytes: int = 0
    left_out: tuple[str, ...] = ()


def copy_sequences(source: ConnInfo, target: ConnInfo) -> Copied:
    """Every sequence of the source's user schemas that the target has too takes the
    source's value (as the cutover does), read on one snapshot and set in one target
    transaction; those the target lacks (filtered out of the migration) are named."""
    with (
        source.connect("pgferry copy sequences", settings=SNAPSHOT_READER) as src,
        target.connect("pgferry copy sequences", settings=DURABLE_WRITER) as tgt,
    ):
        begin_on_snapshot(src, Snapshot(None, None))
        sequences = [Sequence(r[0], r[1], r[2], r[3]) for r in src.execute(SEQUENCES_SQL)]
        on_target = {(r[1], r[2]) for r in tgt.execute(SEQUENCES_SQL)}
        kept = [s for s in sequences if (s.schema, s.name) in on_target]
        values = [(s, *read_sequence(src, s)) for s in kept]
        with tgt.transaction():
            for seq, last_value, is_called in values:
                set_sequence(tgt, seq, last_value, is_called)
    missing = tuple(s.qualname for s in sequences if (s.schema, s.name) not in on_target)
    if missing:
        log.warning(
            "%d sequence(s) of the source are not on the target, left out: %s",
            len(missing),
            listed(list(missing), 10),
        )
    return Copied(len(kept), left_out=missing)


def copy_blobs(source: ConnInfo, target: ConnInfo) -> Copied:
    """Every large object of the source, created on the target where missing and its
    contents written again, in batches (one target transaction each) read on one
    snapshot. Objects only on the target are left alone."""
    objects = total = 0
    with (
        source.connect("pgferry copy blobs", settings=SNAPSHOT_READER) as src,
        target.connect("pgferry copy blobs", settings=DURABLE_WRITER) as tgt,
    ):
        begin_on_snapshot(src, Snapshot(None, None))
        oids = large_object_oids(src)
        for start in range(0, len(oids), LARGE_OBJECT_BATCH):
            batch = oids[start : start + LARGE_OBJECT_BATCH]
            count, size = copy_large_objects(src, tgt, batch[0], batch[-1])
            objects, total = objects + count, total + size
            log.info("large objects: %d of %d copied", objects, len(oids))
    return Copied(objects, total)
