"""Run a source through the detection loop in three overlapping stages.

Decoding, inference and annotation + encoding each take a real share of a frame's time; one loop
ran them one after the other. Here a reader thread decodes ahead, the calling thread runs the
network, and a writer thread annotates, encodes and emits events, joined by small bounded queues
(order kept, nothing dropped: a full queue makes the faster stage wait). The network stays on the
calling thread so Ctrl-C and SIGTERM arrive where the loop can stop cleanly; an error in either
helper thread is raised there too.
"""
from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any, Callable, ContextManager, Iterable

from edgeseg.streaming.pipeline import DetectionLoop
from edgeseg.io.sources import Frame

QUEUE_FRAMES = 4  # per stage: enough to absorb jitter, small enough to bound memory (720p: ~11 MB)
_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class StagedRun:
    """``for result in StagedRun(loop, frames).results(): ...`` yields each (frame, result) after
    segmentation; outputs are written behind it by the writer thread. Always call :meth:`close`."""

    def __init__(self, loop: DetectionLoop, frames: Iterable[Frame], skip: tuple[type[BaseException], ...] = (),
                 on_skip: Callable[[Frame, BaseException], None] | None = None,
                 guard: Callable[[], ContextManager[Any]] = contextlib.nullcontext, batch: int = 1) -> None:
        """``skip``: exceptions of one frame's segmentation that skip that frame (``on_skip`` is
        told); ``guard``: entered around segmenting a frame and handing it to the writer, so a
        stop signal never separates the two (a frame counted but not recorded). ``batch``: segment
        up to this many frames per call, taking only frames already decoded (a live source never
        waits for a batch to fill; a file's reader runs ahead, so its batches are full)."""
        self.loop, self.frames, self.batch = loop, frames, max(1, int(batch))
        self.skip, self.on_skip, self.guard = skip, on_skip, guard
        self._decoded: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
        self._segmented: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
        self._stop = threading.Event()
        self._writer_error: BaseException | None = None
        self._reader = threading.Thread(target=self._read, name="edgeseg-decode", daemon=True)
        self._writer = threading.Thread(target=self._write, name="edgeseg-encode", daemon=True)
        self._reader.start()
        self._writer.start()

    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for frame in self.frames:
                if not self._put(self._decoded, frame):
                    return
            self._put(self._decoded, _END)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            self._put(self._decoded, _Failed(exc))

    def _write(self) -> None:
        while True:
            item = self._segmented.get()
            if item is _END:
                return
            if self._writer_error is not None:
                continue  # drain: the calling thread raises the first error
            frame, result = item
            try:
                self.loop.deliver(frame, result)
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                self._writer_error = exc

    def results(self):
        """Segment frames as the reader delivers them; yields (frame, result or None when skipped)."""
        while True:
            if self._writer_error is not None:
                raise self._writer_error
            try:
                item = self._decoded.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            group, tail = [item], None
            while len(group) < self.batch:  # more frames only if already decoded: never wait for them
                try:
                    nxt = self._decoded.get_nowait()
                except queue.Empty:
                    break
                if nxt is _END or isinstance(nxt, _Failed):
                    tail = nxt
                    break
                group.append(nxt)
            yield from self._segment(group)
            if tail is _END:
                return
            if isinstance(tail, _Failed):
                raise tail.exc

    def _segment(self, group: list[Frame]):
        """Segment a group in one call and hand it to the writer; a frame that fails (``skip``) is
        found by segmenting the group's frames one by one, so only that frame is skipped."""
        if len(group) > 1:
            try:
                with self.guard():
                    results = self.loop.segment_many(group)
                    for frame, result in zip(group, results):
                        if result is not None:
                            self._segmented.put((frame, result))
            except self.skip:
                pass  # nothing was handed over: redo the group frame by frame
            else:
                yield from zip(group, results)
                return
        for item in group:
            try:
                with self.guard():
                    result = self.loop.segment(item)
                    if result is not None:
                        self._segmented.put((item, result))
            except self.skip as exc:
                if self.on_skip is not None:
                    self.on_skip(item, exc)
                yield item, None
                continue
            yield item, result

    def close(self) -> None:
        """Stop reading, finish writing the frames already segmented, join both threads, and raise
        a writer error that happened meanwhile."""
        self._stop.set()
        self._segmented.put(_END)
        self._writer.join()
        self._reader.join(timeout=5)
        if self._writer_error is not None:
            raise self._writer_error
