"""Events POSTed to an HTTP receiver, in order, at least once, queued on disk while it is down."""
from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import time
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any

from pydantic import field_validator

from edgeseg.core.backoff import Backoff
from edgeseg.core.declare import Strict, bad, setting
from edgeseg.core.redact import redact_url
from edgeseg.io.sinks.base import DURABLE_EVENTS, Sink
from edgeseg.io.sinks.queue import DurableQueue, dead_letter

log = logging.getLogger("edgeseg")
#: an HTTP header name (RFC 9110 token)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class WebhookSettings(Strict):
    url: str = setting(..., "Receiver URL; each event is POSTed as JSON, in order, at least once",
                       fix="e.g. url: http://127.0.0.1:8080/events", min_length=1)
    queue_dir: str = setting("webhook-queue", "On-disk queue of undelivered events (relative: to the config file); "
                             "one gateway per queue", min_length=1)
    timeout_s: float = setting(5.0, "Seconds per POST", gt=0, le=300)
    max_backoff_s: float = setting(30.0, "Longest wait between retries while the receiver is down", gt=0, le=3600)
    headers: dict[str, str] = setting({}, "Extra HTTP headers, e.g. {Authorization: Bearer xyz}",
                                      fix="a mapping of header names to strings, e.g. headers: {Authorization: Bearer xyz}")
    max_events: int = setting(100_000, "Queue bound: beyond it the OLDEST queued events are dropped (counted, trouble)",
                              ge=10, le=100_000_000)
    max_mb: float = setting(256.0, "Queue bound in MB: beyond it the OLDEST queued events are dropped", gt=0, le=1_000_000)
    drain_cpu_share: float = setting(0.05, "While a backlog drains, the share of one CPU core the sender may use "
                                     "(the cameras keep the rest)", gt=0.0, le=1.0)
    dead_letter_after: int = setting(5, "A 5xx answered this many times in a row sends the event to "
                                     "<queue_dir>/dead-letter (4xx at once)", ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        example = "e.g. url: http://127.0.0.1:8080/events"
        if not v.startswith(("http://", "https://")):
            raise bad(f"must start with http:// or https://, got {v!r}", example)
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in v):
            raise bad(f"{redact_url(v)!r} holds a space, a line break or a control character", f"remove it ({example})")
        u = urlsplit(v)
        try:
            u.port  # noqa: B018 - raises on a port that is not a number 0..65535
        except ValueError:
            raise bad(f"{redact_url(v)!r} has an invalid port", f"a port is a number 1..65535 ({example})") from None
        if not u.hostname:
            raise bad(f"{redact_url(v)!r} names no host", f"give the receiver's host or IP ({example})")
        return v

    @field_validator("headers")
    @classmethod
    def _one_line_headers(cls, v: dict[str, str]) -> dict[str, str]:
        # http.client refuses such a header on every POST: nothing would be delivered (and it looked "unreachable")
        for name, value in v.items():
            if not _TOKEN.fullmatch(name):
                raise bad(f"header name {name!r} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ "
                          "only: no spaces, colons or line breaks)", "name it like Authorization or X-Api-Key")
            if any(ch in value for ch in "\r\n\0"):
                raise bad(f"header {name!r} has a line break (CR / LF) or NUL in its value",
                          "write the value on one line, without \\r or \\n, e.g. Authorization: Bearer xyz")
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                raise bad(f"header {name!r} has a character HTTP headers cannot carry (beyond Latin-1)",
                          "use ASCII in header values (percent- or base64-encode anything else)") from None
        return v


class WebhookSink(Sink):
    """POSTs each event as JSON to ``url``, in order, at least once.

    Every event is first put in a :class:`~edgeseg.io.sinks.queue.DurableQueue` in ``queue_dir``; a
    sender thread POSTs the oldest and acknowledges it only after a 2xx, so ``event()`` (the
    camera path) never waits for the network or for a backlog. While the receiver is unreachable
    it retries with back-off (0.5 s doubling up to ``max_backoff_s``); ``close()`` drains for up to
    ``drain_s`` while the receiver answers, gives a failing one a single last try, and events still
    queued then are sent by the next start. A receiver that refuses an event
    (4xx other than 408 / 429, or ``dead_letter_after`` 5xx in a row) gets the next one: the
    refused event goes to ``queue_dir/dead-letter/`` with a ``trouble`` event. Each event carries
    ``event_id`` so a receiver can drop a duplicate.
    """

    def __init__(self, url: str, queue_dir: str | Path, timeout_s: float = 5.0, max_backoff_s: float = 30.0,
                 headers: dict[str, str] | None = None, drain_s: float = 5.0, max_events: int = 100_000,
                 max_mb: float = 256.0, dead_letter_after: int = 5, drain_cpu_share: float = 0.05) -> None:
        self.url, self.timeout_s, self.max_backoff_s, self.drain_s = url, timeout_s, max_backoff_s, drain_s
        self.shown = redact_url(url)  # what logs and dead letters name: no user:password@
        self.dead_letter_after, self.drain_cpu_share = int(dead_letter_after), float(drain_cpu_share)
        self._conn: http.client.HTTPConnection | None = None
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.dir = Path(queue_dir)
        self.queue = DurableQueue(self.dir, max_events, int(max_mb * 1024 * 1024), what="webhook queue")
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = 0.0
        self._wake = threading.Event()
        self._seq = 0
        self.delivered = self.failures = self.dead_letters = 0
        self._thread = threading.Thread(target=self._run, name="edgeseg-webhook", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self.queue)

    def event(self, record: dict[str, Any]) -> None:
        self._seq += 1
        rec = {**record, "event_id": f"{record.get('camera', 'gateway')}-{int(record.get('wall_time', time.time()) * 1e6)}-{self._seq}"}
        dropped = self.queue.put(json.dumps(rec).encode(), durable=record.get("event") in DURABLE_EVENTS)
        if dropped:
            self.report_trouble("webhook_queue_full", dropped=dropped, queued=len(self.queue), queue_dir=str(self.dir),
                                fix="the receiver has been away too long: the oldest events were dropped; "
                                    "raise sinks.webhook.max_events / max_mb or bring the receiver back")
        with self._cond:
            self._cond.notify_all()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            u = urlsplit(self.url)
            cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(u.hostname or "127.0.0.1", u.port, timeout=self.timeout_s)
        return self._conn

    def _post(self, body: bytes) -> int | None:
        """The receiver's HTTP status, or None when it could not be reached. One kept-alive
        connection (a new TCP connection per event would cost the cameras CPU while a backlog drains)."""
        u = urlsplit(self.url)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        for attempt in (0, 1):  # a kept-alive connection the receiver closed meanwhile: reopen once
            conn = self._connection()
            try:
                conn.request("POST", path, body=body, headers=self.headers)
                resp = conn.getresponse()
                resp.read()
                if resp.will_close:
                    conn.close()
                    self._conn = None
                return int(resp.status)
            except (http.client.HTTPException, OSError, ValueError) as exc:
                conn.close()
                self._conn = None
                reused = attempt == 0 and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                             ConnectionResetError))
                if not reused:
                    log.debug("webhook %s: %s", self.shown, exc)
                    return None
        return None

    def _refused(self, row_id: int, body: bytes, status: int) -> None:
        path = dead_letter(self.dir, row_id, body, f"HTTP {status} from {self.shown}")
        self.queue.ack(row_id)
        self.dead_letters += 1
        log.error("webhook %s refused an event (HTTP %d): moved to %s", self.shown, status, path)
        self.report_trouble("webhook_dead_letter", status=status, path=str(path),
                            fix="the receiver refused this event; check its logs, then re-post the file")

    def _run(self) -> None:
        self.guarded_sender(self._send_loop, "webhook", lambda: self._closing)

    def _send_loop(self) -> None:
        backoff = Backoff(min(0.5, self.max_backoff_s), self.max_backoff_s)
        last_try = False  # close() cuts a back-off short for ONE last try (#37 point 15: no hot loop at stop)
        while True:
            rows = self.queue.head()
            if not rows:
                with self._cond:
                    if self._closing:
                        return  # closing and drained
                    self._cond.wait(1.0)
                continue
            if backoff.attempts:
                if not self._closing:
                    self._wake.wait(backoff.current)  # new events do not cut the back-off short; close() does
                if self._closing:
                    if last_try or time.monotonic() > self._deadline:
                        return  # the receiver still fails: the rest stays queued for the next start
                    last_try = True
            row_id, _, body, _ = rows[0]
            cpu0 = time.thread_time()
            status = self._post(body)
            if len(self.queue) > 1 and self.drain_cpu_share < 1.0:
                # a backlog: use at most drain_cpu_share of a core, leave the rest to the cameras
                used = time.thread_time() - cpu0
                self._wake.wait(used * (1.0 / self.drain_cpu_share - 1.0))
            if status is not None and 200 <= status < 300:
                self.queue.ack(row_id)
                self.delivered += 1
                backoff.reset()
            elif status is not None and 400 <= status < 500 and status not in (408, 429):
                self._refused(row_id, body, status)
                backoff.reset()
            else:
                self.failures += 1
                tries = self.queue.failed(row_id)
                if status is not None and status >= 500 and tries >= self.dead_letter_after:
                    self._refused(row_id, body, status)
                    backoff.reset()
                    continue
                backoff.delay()
                if self.failures == 1 or self.failures % 20 == 0:
                    log.warning("webhook %s %s; %d event(s) queued in %s, retrying in %.1fs", self.shown,
                                "unreachable" if status is None else f"answered HTTP {status}", len(self.queue),
                                self.dir, backoff.current)
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
        self.queue.close()
