"""Cross-camera batching: frames of different cameras go through one inference call.

The dispatcher calls :func:`collect` under the gateway's condition. As soon as one frame waits it
allows ``max_wait_s`` for more (so one camera alone never waits longer than that), and stops early
once the batch is full or every running camera already has a frame in it. Frames are taken
round-robin, one per camera per pass, so a file camera with a full queue cannot starve the live
ones; a camera's status events are taken when they reach the head of its deque, so every camera's
events keep their order relative to its frames.
"""
from __future__ import annotations

import threading
import time
from typing import Iterable, Protocol

from edgeseg.apps.gateway.readers import Item


class Feed(Protocol):
    name: str

    @property
    def reader(self): ...  # CameraReader


def _waiting(feeds: Iterable) -> int:
    return sum(f.reader.pending_frames() for f in feeds)


def collect(feeds: list, cond: threading.Condition, max_batch: int, max_wait_s: float,
            idle_wait_s: float = 0.1) -> tuple[list[tuple[object, Item]], list[tuple[object, Item]]]:
    """Return ``(frames, controls)``: up to ``max_batch`` ``(feed, item)`` frames and the status items
    that preceded them; both empty after ``idle_wait_s`` with nothing to do. Call with ``cond`` held."""
    if not any(f.reader.items for f in feeds):
        cond.wait(idle_wait_s)
        if not any(f.reader.items for f in feeds):
            return [], []
    if _waiting(feeds) and max_wait_s > 0:
        deadline = time.monotonic() + max_wait_s
        while _waiting(feeds) < max_batch:
            idle = [f for f in feeds if not f.reader.done and not f.reader.pending_frames()]
            left = deadline - time.monotonic()
            if not idle or left <= 0:
                break
            cond.wait(left)
    frames: list[tuple[object, Item]] = []
    controls: list[tuple[object, Item]] = []
    taken = {id(f): 0 for f in feeds}
    progress = True
    while progress and len(frames) < max_batch:
        progress = False
        for f in feeds:
            items = f.reader.items
            if not taken[id(f)]:
                while items and items[0].control is not None:  # status events ahead of its next frame
                    controls.append((f, items.popleft()))
            if items and items[0].control is None and len(frames) < max_batch:
                frames.append((f, items.popleft()))
                taken[id(f)] += 1
                progress = True
    if frames:
        cond.notify_all()  # file readers blocked on a full queue
    return frames, controls
