"""Notifications to people (e-mail, Telegram, Slack, ntfy, Pushover, ... through Apprise), with the
alarm's snapshot attached and a link to its incident; rate-limited, queued on disk while a service is down.

Why Apprise: one well-kept library speaks ~100 notification services from one URL each
(``mailtos://user:pass@example.com``, ``tgram://bot/chat``, ``ntfys://topic``, ``json://host/path``...),
so a site picks its channel in the config instead of us writing a client per service.

What is sent: a new incident (``start``; a leak back within ``cooldown_s`` says "back"), and by
default ``trouble`` and ``camera_offline`` (a blind camera is news too). At most one message per
camera per ``min_interval_s`` and ``max_per_hour`` in all: what the limit holds back is counted and
named in the next message ("+3 more since"), never silently gone. A ``start``'s annotated snapshot
is written by the evidence writer a moment after the event, so the sender waits up to
``attach_wait_s`` for the file before it sends without one.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Optional

from pydantic import field_validator

from edgeseg.core.backoff import Backoff
from edgeseg.core.declare import Strict, bad, setting
from edgeseg.core.errors import OutputError
from edgeseg.core.redact import redact_url
from edgeseg.io.sinks.base import Sink
from edgeseg.io.sinks.queue import DurableQueue, dead_letter

log = logging.getLogger("edgeseg")

NOTIFIED = ("start", "trouble", "camera_offline", "camera_online", "end")


class NotifySettings(Strict):
    urls: list[str] = setting(..., "Apprise URLs, one per channel (mailtos://, tgram://, slack://, ntfys://, "
                              "pover://, json://... see https://github.com/caronc/apprise/wiki)",
                              fix="e.g. urls: [ntfys://my-site-gas]", min_length=1)
    events: list[str] = setting(["start", "trouble", "camera_offline"], f"Which events notify (of {', '.join(NOTIFIED)})",
                                fix="e.g. events: [start, trouble]")
    page_url: Optional[str] = setting(None, "The status page as people reach it (e.g. https://gw.site.example/): each "
                                      "message links its incident there", fix="e.g. page_url: https://gw.site.example/")
    min_interval_s: float = setting(60.0, "At most one message per camera per this many seconds (the rest is counted "
                                    "into the next)", ge=0.0, le=86400.0)
    max_per_hour: int = setting(60, "At most this many messages per hour in all", ge=1, le=100_000)
    attach_snapshot: bool = setting(True, "Attach the alarm's annotated snapshot (needs clips)")
    attach_wait_s: float = setting(5.0, "Seconds to wait for the snapshot file before sending without it", ge=0.0, le=60.0)
    queue_dir: str = setting("notify-queue", "On-disk queue of unsent messages (relative: to the config file)", min_length=1)
    max_backoff_s: float = setting(300.0, "Longest wait between retries while a channel fails", gt=0, le=86400)

    @field_validator("urls")
    @classmethod
    def _apprise_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if "://" not in url or any(ch.isspace() for ch in url):
                raise bad(f"{redact_url(url)!r} is not an Apprise URL (scheme://...)", "e.g. ntfys://my-site-gas")
        return v

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str]) -> list[str]:
        unknown = [e for e in v if e not in NOTIFIED]
        if unknown:
            raise bad(f"unknown event(s) {unknown}", f"use some of {', '.join(NOTIFIED)}")
        return v


def message(record: dict[str, Any], page_url: str | None, held: int) -> tuple[str, str]:
    """Title and body of one event's message (plain text, one screen)."""
    cam, kind = record.get("camera", "gateway"), record.get("event")
    when = record.get("time_iso") or time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(record.get("wall_time", time.time())))
    if kind == "start":
        title = f"Gas leak {'back ' if record.get('rejoined') else ''}at {cam}"
        body = (f"Leak seen at {cam} since {when} (confidence {record.get('confidence', 0):.2f}). "
                "Check the camera and the site; acknowledge the incident on the status page.")
    elif kind == "end":
        title, body = f"Leak alarm at {cam} cleared", f"No leak seen at {cam} since {when} ({record.get('reason', '')})."
    elif kind == "trouble":
        title = f"Camera trouble at {cam}: {record.get('trouble', '?')}"
        body = f"{when}: {record.get('error') or record.get('trouble')}. Fix: {record.get('fix', 'see the status page')}"
    else:
        title, body = f"{cam}: {kind}", f"{when}: {kind.replace('_', ' ') if kind else ''}"
    if held:
        body += f" (+{held} more message(s) held back by the rate limit since the last one)"
    if page_url and record.get("alarm_id"):
        body += f"\n{page_url.rstrip('/')}/#incident={record['alarm_id']}"
    elif page_url:
        body += f"\n{page_url}"
    return title, body


class NotifySink(Sink):
    """Sends :func:`message` for each notified event through Apprise (see the module doc)."""

    def __init__(self, s: NotifySettings) -> None:
        try:
            import apprise  # noqa: PLC0415
        except ImportError:
            raise OutputError("the notify sink needs Apprise (fix: pip install 'edgeseg[notify]')") from None
        self.s = s
        self.apprise = apprise.Apprise()
        for url in s.urls:
            if not self.apprise.add(url):
                raise OutputError(f"sinks.notify.urls: Apprise does not know {redact_url(url)!r} "
                                  "(fix: see https://github.com/caronc/apprise/wiki for the URL of your service)")
        self.dir = Path(s.queue_dir)
        self.queue = DurableQueue(self.dir, 10_000, 64 * 1024 * 1024, what="notify queue")
        self._last: dict[str, float] = {}  # camera -> when its last message was queued (monotonic)
        self._held: dict[str, int] = {}  # camera -> messages the limit held back since
        self._hour: list[float] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.sent = self.failed = 0
        self._thread = threading.Thread(target=self._run, name="edgeseg-notify", daemon=True)
        self._thread.start()

    def event(self, record: dict[str, Any]) -> None:
        kind, cam = record.get("event"), str(record.get("camera", "gateway"))
        if kind not in self.s.events:
            return
        now = time.monotonic()
        self._hour = [t for t in self._hour if now - t < 3600.0]
        recent = now - self._last.get(cam, -1e18) < self.s.min_interval_s
        if recent or len(self._hour) >= self.s.max_per_hour:
            self._held[cam] = self._held.get(cam, 0) + 1
            return
        self._last[cam] = now
        self._hour.append(now)
        held = self._held.pop(cam, 0)
        title, body = message(record, self.s.page_url, held)
        snap = (record.get("evidence") or {}).get("snapshot_annotated") if kind == "start" else None
        self.queue.put(json.dumps({"title": title, "body": body, "attach": snap,
                                   "queued": time.time()}).encode(), durable=True)
        self._wake.set()

    def _send(self, item: dict[str, Any]) -> bool:
        attach = None
        if item.get("attach") and self.s.attach_snapshot:
            path = Path(item["attach"])
            deadline = item.get("queued", time.time()) + self.s.attach_wait_s
            while not path.is_file() and time.time() < deadline and not self._stop.is_set():
                time.sleep(0.2)
            attach = str(path) if path.is_file() else None
        return bool(self.apprise.notify(title=item["title"], body=item["body"], attach=attach))

    def _run(self) -> None:
        self.guarded_sender(self._loop, "notify", self._stop.is_set)

    def _loop(self) -> None:
        backoff = Backoff(1.0, self.s.max_backoff_s)
        while not self._stop.is_set():
            rows = self.queue.head()
            if not rows:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            row_id, _, body, _ = rows[0]
            try:
                item = json.loads(body)
                ok = self._send(item)
            except (ValueError, KeyError) as exc:  # a damaged row: set aside, never blocks the rest
                dead_letter(self.dir, row_id, body, f"unreadable: {exc}")
                self.queue.ack(row_id)
                continue
            if ok:
                self.queue.ack(row_id)
                self.sent += 1
                backoff.reset()
                continue
            self.failed += 1
            if self.queue.failed(row_id) == 1:
                self.report_trouble("notify_failed", queued=len(self.queue), queue_dir=str(self.dir),
                                    fix="a notification channel did not take the message (see the log); it is "
                                        "retried with back-off and kept on disk until it goes through")
            backoff.delay()
            self._stop.wait(backoff.current)

    def close(self) -> None:
        if self._stop.is_set():
            return
        deadline = time.monotonic() + 5.0
        while len(self.queue) and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.1)  # a message queued just before the stop still goes, while its channel answers
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10.0)
        if len(self.queue):
            log.warning("notify: %d message(s) left queued in %s; the next start sends them", len(self.queue), self.dir)
        self.queue.close()
