"""Events of a migration, posted to webhooks (`--notify-url`): Slack or plain JSON.

`emit` never blocks the migration: events go into a bounded queue that one daemon thread
posts, each with a timeout and a few retries; a receiver that is down loses events (and
says so in the log once per failure), never the migration. The URLs are secrets (a Slack
webhook's path is its key): logs show only their scheme and host.

Payload (`--notify-format json`, the default): one JSON object per POST,

    {"event": "phase_finished", "message": "phase copy finished", "dir": "/var/tmp/m",
     "time": 1733400000.0, "pgferry": "0.x", ...fields of the event}

Slack (`--notify-format slack`): {"text": "pgferry (DIR): MESSAGE"}.

Events: run_started, resumed, phase_started, phase_finished, error, caught_up,
lag_above (apply more than PGFERRY_LAG_EVENT_BYTES, 1 GB, behind what is received),
slot_in_danger, slot_lost, end_position_reached, verify, cutover_step, finished.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from pgferry import __version__
from pgferry.errors import InputError
from pgferry.log import scrubbed

log = logging.getLogger(__name__)

FORMATS = ("json", "slack")
TIMEOUT_SECONDS = 5.0
RETRY_SECONDS = (1.0, 3.0, 10.0)
QUEUE_SIZE = 1000


def masked_url(url: str) -> str:
    """scheme://host/… : what a log may show of a webhook URL."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


@dataclass
class _Notifier:
    urls: tuple[str, ...]
    fmt: str
    dir: str
    inbox: queue.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: queue.Queue(QUEUE_SIZE)
    )
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self.thread.start()

    def put(self, event: dict[str, Any]) -> None:
        try:
            self.inbox.put_nowait(event)
        except queue.Full:
            log.warning("notify: %d events waiting to be posted; this one is dropped", QUEUE_SIZE)

    def _run(self) -> None:
        while True:
            event = self.inbox.get()
            if event is None:
                return
            for url in self.urls:
                self._post(url, event)
            self.inbox.task_done()

    def _body(self, event: dict[str, Any]) -> bytes:
        if self.fmt == "slack":
            return json.dumps({"text": f"pgferry ({self.dir}): {event['message']}"}).encode()
        return json.dumps(event, default=str).encode()

    def _post(self, url: str, event: dict[str, Any]) -> None:
        body = self._body(event)
        for attempt in range(len(RETRY_SECONDS) + 1):
            request = urllib.request.Request(
                url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as r:
                    r.read()
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or getattr(exc, "code", None) or exc
                if attempt == len(RETRY_SECONDS):
                    log.warning(
                        "notify: could not post %s to %s: %s",
                        event["event"],
                        masked_url(url),
                        _without(str(reason), url),
                    )
                    return
                time.sleep(RETRY_SECONDS[attempt])

    def drain(self, seconds: float) -> None:
        """Give the queued events up to `seconds` to go out (at exit)."""
        deadline = time.monotonic() + seconds
        while self.inbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)


def _without(text: str, url: str) -> str:
    return text.replace(url, masked_url(url))


_notifier: _Notifier | None = None


def configure(urls: list[str], fmt: str, directory: str) -> None:
    """Post the events of this process to `urls` (none: events are only logged at debug)."""
    global _notifier
    if not urls:
        return
    for url in urls:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise InputError(
                f"--notify-url {masked_url(url)} is not an http(s) URL",
                fix="give the webhook's https://... URL",
            )
    _notifier = _Notifier(tuple(urls), fmt, directory)
    _notifier.start()
    log.info("events posted to %s", ", ".join(masked_url(u) for u in urls))


def emit(event: str, message: str, **fields: Any) -> None:
    """One event: posted (if configured) in the background; never raises."""
    log.debug("event %s: %s", event, message)
    if _notifier is None:
        return
    _notifier.put(
        {
            "event": event,
            "message": scrubbed(message),  # as a log line: no password, no webhook URL
            "dir": _notifier.dir,
            "time": time.time(),
            "pgferry": __version__,
            **fields,
        }
    )


def flush(seconds: float = 5.0) -> None:
    """At the end of a command: let the last events go out."""
    if _notifier is not None:
        _notifier.drain(seconds)
