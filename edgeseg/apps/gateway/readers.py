"""One reader thread per camera: live sources keep only the newest frame, files lose none.

A reader puts :class:`Item` s into its camera's small deque, which the gateway's dispatcher
drains. On a live camera (URL, webcam index) a new frame replaces a frame still waiting there
(the stale one is counted as dropped), so under overload the frame-to-result latency stays at
about one batch instead of growing without bound. A file blocks instead (at most ``file_queue``
frames wait), so every frame is processed, in order. Status changes (``camera_online`` /
``camera_offline``) travel in the same deque, so they reach the sinks in order with the frames.

Live sources reconnect forever: ``open_source(..., max_retries=0)`` hands every failure back here
and this loop waits (0.5 s doubling up to ``max_backoff_s``) and reopens, for a refused
connection at start as for a drop mid-stream.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgeseg.core.backoff import Backoff
from edgeseg.core.errors import SourceError
from edgeseg.core.redact import redact_url
from edgeseg.config.settings import CameraConfig
from edgeseg.io.sources import fingerprint, open_source, timed_capture

log = logging.getLogger("edgeseg")
RECENT = 256  # pictures a live reader remembers (fingerprints), about 10 s at 25 fps
# After a stall a camera is back only once new pictures keep arriving for RECOVER_S seconds (and
# at least RECOVER_FRAMES, or half of what its fps gives in that time): an RTSP server that replays
# the few pictures it buffered on each reconnect is no recovery (no flapping /healthz, nothing processed)
RECOVER_S = 1.0
RECOVER_FRAMES = 4


@dataclass
class Item:
    """A frame to segment, or (``frame is None``) a status event to emit in order."""

    index: int
    timestamp: float  # source time: seconds into a file, wall clock (epoch s) of the read for live
    image: np.ndarray | None = None
    read_at: float = 0.0  # time.monotonic() of the read: frame-to-result latency starts here
    control: dict[str, Any] | None = field(default=None)


def capture_factory(read_timeout_s: float, first_frame_s: float | None = None) -> Callable[[Any], Any]:
    """``cv2.VideoCapture`` with open / read timeouts for URLs (``edgeseg.io.sources.timed_capture``): a
    connect may take ``first_frame_s`` to deliver the stream's first picture, a read ``read_timeout_s``."""
    return timed_capture(read_timeout_s, max(read_timeout_s, first_frame_s or 0.0))


class CameraReader:
    """Reads one camera in its own thread into ``items`` (guarded by the gateway's condition)."""

    def __init__(self, cfg: CameraConfig, cond: threading.Condition, factory: Callable[[Any], Any],
                 max_backoff_s: float = 30.0, file_queue: int = 4,
                 on_reconnect: Callable[[], None] | None = None, sleep_unit: float = 0.5,
                 on_crash: Callable[[str], None] | None = None, stall_s: float = 10.0,
                 recover_s: float = RECOVER_S) -> None:
        self.cfg, self.cond, self.factory = cfg, cond, factory
        self.live = cfg.live
        self.max_backoff_s, self.file_queue, self.sleep_unit = max_backoff_s, file_queue, sleep_unit
        self.on_reconnect = on_reconnect or (lambda: None)
        self.on_crash = on_crash or (lambda what: None)
        self.stall_s, self.recover_s = stall_s, recover_s
        self.stalled = False  # connected, but no new frame for stall_s (trouble until frames flow again)
        # a live camera's last pictures: after a stall, a reconnect that shows one of them again (the
        # frozen picture, or a server replaying what it sent before) is still no new picture
        self.recent: deque[int] = deque(maxlen=RECENT)
        self.openers: deque[int] = deque(maxlen=RECENT)  # the first pictures of each connection (a server's preroll)
        self.items: deque[Item] = deque()
        self.stop_evt = threading.Event()
        self.done = False
        self.read = self.dropped = self.reconnects = 0
        self.index = 0  # running frame index, monotonic across reconnects and replays
        self.online = False
        self.end_reason = "stopped"
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"edgeseg-cam-{cfg.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_evt.set()
        with self.cond:
            self.cond.notify_all()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the deque ---------------------------------------------------------------------------------
    def pending_frames(self) -> int:
        return sum(1 for it in self.items if it.control is None)

    def _put_frame(self, item: Item) -> None:
        with self.cond:
            if self.live:
                stale = [it for it in self.items if it.control is None]
                if stale:  # latest frame wins: the waiting one is already out of date
                    self.dropped += len(stale)
                    self.items = deque(it for it in self.items if it.control is not None)
            else:
                while self.pending_frames() >= self.file_queue and not self.stop_evt.is_set():
                    self.cond.wait(0.1)
                if self.stop_evt.is_set():
                    return
            self.items.append(item)
            self.cond.notify_all()

    def _put_control(self, event: str, **fields: Any) -> None:
        ts = time.time() if self.live else 0.0
        with self.cond:
            self.items.append(Item(max(self.index - 1, 0), ts, control={"event": event, **fields}))
            self.cond.notify_all()

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._run_live() if self.live else self._run_file()
        except Exception as exc:  # noqa: BLE001 - a bug, not a camera fault: the service stops non-zero
            log.exception("camera %s: reader failed", self.cfg.name)
            self.error = redact_url(f"{type(exc).__name__}: {exc}")
            self.end_reason = "error"
            self.on_crash(f"the reader of camera {self.cfg.name} failed: {self.error}")
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def _frames(self, source: Any, live: bool, offset: float = 0.0) -> float:
        """Push the frames of one opened source; returns the last source timestamp."""
        last, fresh = offset, 0
        window: list[float] = []  # after a stall: arrivals of the new pictures of this connection
        fps = getattr(source, "fps", None) if live else None
        fps = fps if fps and 0 < fps <= 240 else None
        need = max(RECOVER_FRAMES, min(10, int(0.5 * fps * self.recover_s)) if fps else 0)  # fps: as announced
        gap = max(self.recover_s, 2.0 / fps if fps else 0.0)  # a longer silence restarts the window
        for frame in source:
            if self.stop_evt.is_set():
                break
            seen = fingerprint(frame.image) if live else 0
            if live and self.stalled and not self.online:
                if seen in self.recent or seen in self.openers:
                    continue  # reconnected to a picture from before the stall: not new (the stall timer runs)
                now = time.monotonic()
                if window and now - window[-1] > gap:
                    window.clear()
                window.append(now)
                if len(window) < need or now - window[0] < self.recover_s:
                    continue  # not yet recovered: not processed, still stalled (a replay ends here)
            if live and not self.online:
                self.online = True
                if self.stalled:
                    self.stalled = False
                    self._put_control("trouble_cleared", trouble="stalled")
                self._put_control("camera_online", reconnects=self.reconnects,
                                  frame_size=[int(frame.image.shape[1]), int(frame.image.shape[0])])
            idx = self.index
            self.index += 1
            self.read += 1
            last = time.time() if live else offset + frame.timestamp_s
            if live:
                self.recent.append(seen)
                if fresh < 8:
                    fresh += 1
                    self.openers.append(seen)
            if idx % self.cfg.every:
                continue
            self._put_frame(Item(idx, last, frame.image, time.monotonic()))
        return last

    def _run_live(self) -> None:
        attempt = 0  # consecutive connections that delivered no frame
        announced_offline = False
        while not self.stop_evt.is_set():
            error, before = "stream ended", self.read
            try:
                source = open_source(self.cfg.source, max_retries=0, capture_factory=self.factory, stall_s=self.stall_s)
                self._frames(source, live=True)
            except SourceError as exc:  # the retries are ours: drop open_source's "after 0 retries"
                error = redact_url(str(exc)).replace(" and did not come back after 0 retries", "").replace(" after 0 retries", "")
                if " stalled " in error and not self.stalled and not self.stop_evt.is_set():
                    self.stalled = True
                    self._put_control("trouble", trouble="stalled", error=error,
                                      fix="the camera is connected but sends no new picture: check it / its encoder")
            if self.stop_evt.is_set():
                break
            if self.read > before:
                attempt = 0
            if self.online or not announced_offline:
                self.online, announced_offline = False, True
                self._put_control("camera_offline", error=error)
                log.warning("camera %s offline: %s", self.cfg.name, error)
            attempt += 1
            delay = Backoff(self.sleep_unit, max(self.sleep_unit, self.max_backoff_s)).wait_for(attempt)
            self.reconnects += 1
            self.on_reconnect()
            if self.stop_evt.wait(delay):
                break

    def _run_file(self) -> None:
        offset = 0.0
        while not self.stop_evt.is_set():
            try:
                source = open_source(self.cfg.source, capture_factory=self.factory)
            except SourceError as exc:
                self.error, self.end_reason = redact_url(str(exc)), "source_error"
                self._put_control("source_error", error=self.error)
                return
            offset = self._frames(source, live=False, offset=offset) + 1.0 / (source.fps or 10.0)
            if not self.cfg.loop:
                if not self.stop_evt.is_set():
                    self.end_reason = "source_ended"
                return
