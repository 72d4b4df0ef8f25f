"""Events POSTed to an HTTP receiver, in order, at least once, queued on disk while it is down."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgeseg.backoff import Backoff
from pydantic import field_validator

from edgeseg.declare import Strict, bad, setting
from edgeseg.sinks.base import Sink

log = logging.getLogger("edgeseg")


class WebhookSettings(Strict):
    url: str = setting(..., "Receiver URL; each event is POSTed as JSON, in order, at least once",
                       fix="e.g. url: http://127.0.0.1:8080/events", min_length=1)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise bad(f"must start with http:// or https://, got {v!r}", "e.g. url: http://127.0.0.1:8080/events")
        return v
    queue_dir: str = setting("webhook-queue", "On-disk queue of undelivered events (relative: to the config file)",
                             min_length=1)
    timeout_s: float = setting(5.0, "Seconds per POST", gt=0, le=300)
    max_backoff_s: float = setting(30.0, "Longest wait between retries while the receiver is down", gt=0, le=3600)
    headers: dict[str, str] = setting({}, "Extra HTTP headers, e.g. {Authorization: Bearer xyz}",
                                      fix="a mapping of header names to strings, e.g. headers: {Authorization: Bearer xyz}")


class WebhookSink(Sink):
    """POSTs each event as JSON to ``url``, in order, at least once.

    Every event is first written to ``queue_dir`` (one file per event, atomically renamed into
    place, numbered in order); a sender thread POSTs the oldest and deletes it only after a 2xx.
    While the receiver is down it retries with back-off (0.5 s doubling up to ``max_backoff_s``)
    and the queue grows on disk; events still queued at ``close()`` (after ``drain_s``) are sent by
    the next gateway start. Each event carries ``event_id`` so a receiver can drop a duplicate
    (a crash between a delivered POST and the delete re-sends that one event).
    """

    def __init__(self, url: str, queue_dir: str | Path, timeout_s: float = 5.0, max_backoff_s: float = 30.0,
                 headers: dict[str, str] | None = None, drain_s: float = 5.0) -> None:
        self.url, self.timeout_s, self.max_backoff_s, self.drain_s = url, timeout_s, max_backoff_s, drain_s
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.dir = Path(queue_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):  # a write interrupted by a crash: never acknowledged
            tmp.unlink(missing_ok=True)
        existing = self._queued()
        self._seq = int(existing[-1].stem) + 1 if existing else 0
        self._cond = threading.Condition()
        self._closing = False
        self._wake = threading.Event()
        self.delivered = self.failures = 0
        self._thread = threading.Thread(target=self._run, name="edgeseg-webhook", daemon=True)
        self._thread.start()

    def _queued(self) -> list[Path]:
        return sorted(self.dir.glob("*.json"))

    @property
    def pending(self) -> int:
        return len(self._queued())

    def event(self, record: dict[str, Any]) -> None:
        with self._cond:
            seq = self._seq
            self._seq += 1
            rec = {**record, "event_id": f"{record.get('camera', 'gateway')}-{int(record.get('wall_time', time.time()) * 1e6)}-{seq}"}
            tmp = self.dir / f"{seq:012d}.tmp"
            with tmp.open("w", encoding="utf-8") as f:
                f.write(json.dumps(rec))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / f"{seq:012d}.json")
            self._cond.notify_all()

    def _post(self, body: bytes) -> bool:
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return 200 <= resp.status < 300
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.debug("webhook %s: %s", self.url, exc)
            return False

    def _run(self) -> None:
        backoff = Backoff(0.5, self.max_backoff_s)
        while True:
            with self._cond:
                queued = self._queued()
                while not queued and not self._closing:
                    self._cond.wait(1.0)
                    queued = self._queued()
                if not queued:
                    return  # closing and drained
            if backoff.attempts:
                if self._closing and time.monotonic() > self._deadline:
                    return  # the rest stays on disk for the next start
                self._wake.wait(backoff.current)  # new events do not cut the back-off short; close() does
            head = queued[0]
            try:
                body = head.read_bytes()
            except FileNotFoundError:
                continue
            if self._post(body):
                head.unlink(missing_ok=True)
                self.delivered += 1
                backoff.reset()
            else:
                self.failures += 1
                backoff.delay()
                if self.failures == 1 or self.failures % 20 == 0:
                    log.warning("webhook %s unreachable; %d event(s) queued in %s, retrying in %.1fs",
                                self.url, len(queued), self.dir, backoff.current)
            if self._closing and time.monotonic() > self._deadline:
                return

    def close(self) -> None:
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + self.drain_s
            self._cond.notify_all()
        self._wake.set()
        self._thread.join(timeout=self.drain_s + self.timeout_s + 1)
        if self.pending:
            log.warning("webhook: %d event(s) left queued in %s; the next start delivers them", self.pending, self.dir)
