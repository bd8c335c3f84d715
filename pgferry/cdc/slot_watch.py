"""The slot autopilot: while pgferry holds a replication slot, keep it from hurting the
source and say so before it is lost.

Every WATCH_SECONDS, on the source:

- a quiet source database on a busy cluster: the slot's confirmed position has not moved
  while it retains more than HEARTBEAT_BYTES of WAL. A logical message written in the
  database (pg_logical_emit_message, not transactional, nothing stored) gives decoding a
  position in it to confirm, and the WAL behind it is released;
- `max_slot_wal_keep_size` set: when what the source may still write before the slot is
  invalidated (`safe_wal_size`) would go in less than DANGER_SECONDS at the WAL rate
  measured between two looks, or `wal_status` is `unreserved`, a warning and a
  `slot_in_danger` event with the time left (once per DANGER_REPEAT_SECONDS);
- the slot lost (`wal_status` `lost`) or gone: an error line and a `slot_lost` event at
  once, with what can be done.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg

from pgferry import events
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.lsn import lsn_or_none
from pgferry.pg.replication import emit_heartbeat, slot_health
from pgferry.text import human_bytes, human_duration

log = logging.getLogger(__name__)

WATCH_SECONDS = float(os.environ.get("PGFERRY_TEST_SLOT_WATCH_SECONDS", "10"))
HEARTBEAT_BYTES = int(os.environ.get("PGFERRY_TEST_HEARTBEAT_BYTES", str(16 * 1024 * 1024)))
DANGER_SECONDS = 3600.0  # warn when the slot would be lost within the hour
DANGER_REPEAT_SECONDS = 300.0


LOST_FIX = (
    "start over: pgferry cleanup, pgferry target-clean, then clone --follow --restart "
    "(with max_slot_wal_keep_size raised); or, if the application can stop, a plain clone"
)


def lost_message(slot: str, what: str) -> str:
    return f"replication slot {slot} {what}: the changes since are gone and CDC cannot go on"


class SlotWatch(threading.Thread):
    def __init__(self, source: ConnInfo, slot: str, stop: threading.Event) -> None:
        super().__init__(name="slot-watch", daemon=True)
        self.source, self.slot, self.stop = source, slot, stop
        self._done = threading.Event()
        self._last: tuple[float, int, str | None] | None = None  # when, current LSN, confirmed
        self._warned_at = 0.0
        self._lost_said = False
        self.lost: str | None = None  # why CDC cannot go on (apply raises it)
        self._heartbeats = True  # off once the role may not write them
        self.heartbeats_sent = 0

    def finish(self) -> None:
        self._done.set()

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not (self._done.wait(WATCH_SECONDS) or self.stop.is_set()):
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self.source.connect("pgferry slot watch")
                self._look(conn)
            except psycopg.Error as exc:  # the source restarting: next time
                log.debug("slot watch: %s", " ".join(str(exc).split()))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _look(self, conn: psycopg.Connection[Any]) -> None:
        health = slot_health(conn, self.slot)
        now = time.monotonic()
        if health is None or health["wal_status"] == "lost":
            self._lost(health)
            return
        current = lsn_or_none(health["source_current_lsn"]) or 0
        confirmed = health["confirmed_flush_lsn"]
        rate = None
        if self._last is not None and now > self._last[0]:
            rate = max(0.0, (current - self._last[1]) / (now - self._last[0]))
        stuck = self._last is not None and self._last[2] == confirmed
        self._last = (now, current, confirmed)
        retained = health["retained_wal_bytes"] or 0
        if stuck and retained > HEARTBEAT_BYTES and self._heartbeats:
            try:
                emit_heartbeat(conn)
                self.heartbeats_sent += 1
                log.debug("slot watch: heartbeat (%s retained)", human_bytes(retained))
            except psycopg.errors.InsufficientPrivilege:
                self._heartbeats = False
                log.info(
                    "slot watch: the source role may not write logical messages: a quiet "
                    "database's slot retains WAL until the next change in it"
                )
        self._danger(health, rate, now)

    def _danger(self, health: dict[str, Any], rate: float | None, now: float) -> None:
        safe = health["safe_wal_size"]
        left = safe / rate if safe is not None and rate else None
        unreserved = health["wal_status"] == "unreserved"
        if not (unreserved or (left is not None and left < DANGER_SECONDS)):
            return
        if now - self._warned_at < DANGER_REPEAT_SECONDS and self._warned_at:
            return
        self._warned_at = now
        when = (
            f"in about {human_duration(left)} at the current WAL rate ({human_bytes(rate or 0)}/s)"
            if left is not None
            else "soon"
        )
        message = (
            f"replication slot {self.slot} is in danger: the source may write "
            f"{human_bytes(max(0, safe or 0))} more WAL before it invalidates the slot "
            f"(max_slot_wal_keep_size {health['max_slot_wal_keep_size']}), {when}; "
            "raise max_slot_wal_keep_size, or let apply catch up"
        )
        log.warning("%s", message)
        events.emit(
            "slot_in_danger",
            message,
            slot=self.slot,
            safe_wal_bytes=safe,
            seconds_left=left,
            wal_status=health["wal_status"],
        )

    def _lost(self, health: dict[str, Any] | None) -> None:
        if self._lost_said:
            return
        self._lost_said = True
        what = "was dropped" if health is None else "lost WAL it needed (wal_status lost)"
        message = lost_message(self.slot, what)
        self.lost = message
        events.emit("slot_lost", message, slot=self.slot)
