"""The detection loop for one source: frame -> Segmenter -> alarm -> sinks.

``edgeseg detect`` runs it as stages (``edgeseg.stages``: :meth:`DetectionLoop.segment` on the
calling thread, :meth:`DetectionLoop.deliver` on a writer thread); the gateway batches many
cameras itself but uses the same Segmenter, LeakAlarm, Annotator and Sink pieces.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.alarm import LeakAlarm
from edgeseg.annotate import Annotator
from edgeseg.segmenter import Result, Segmenter
from edgeseg.sinks import Sink, stamp
from edgeseg.sources import Frame

AnnotateFn = Callable[[np.ndarray, np.ndarray, list], np.ndarray]


class DetectionLoop:
    """Segments frames and feeds the results to ``sinks``.

    ``alarm``: video and streams go through a :class:`LeakAlarm` (start / update / end events);
    with ``alarm=None`` every frame gets its own ``detection`` event (images, folders).
    ``context``: fields added to every event (``source``, ``camera``). ``every``: process every
    N-th frame index (others are counted, not segmented). ``annotate`` draws only when a sink
    wants annotated frames.
    """

    def __init__(self, segmenter: Segmenter, sinks: Sequence[Sink], alarm: LeakAlarm | None = None,
                 every: int = 1, context: dict[str, Any] | None = None, annotate: AnnotateFn | None = None) -> None:
        if every < 1:
            raise ValueError(f"--every must be >= 1, got {every}")
        self.segmenter, self.sinks, self.alarm, self.every = segmenter, list(sinks), alarm, every
        self.context = dict(context or {})
        self.annotate = annotate or Annotator(segmenter.info.leak_class)
        self._draw = any(s.wants_annotated for s in self.sinks)
        self.read = self.processed = 0
        self.last_index, self.last_timestamp = -1, 0.0

    @property
    def stop_requested(self) -> bool:
        return any(s.stop_requested for s in self.sinks)

    def emit(self, record: dict[str, Any]) -> None:
        stamped = stamp(record, **self.context)
        for sink in self.sinks:
            sink.event(stamped)

    def segment(self, frame: Frame) -> Result | None:
        """Segment one frame; None when ``every`` skips it (``edgeseg.stages`` runs this on the
        calling thread and :meth:`deliver` on the writer thread)."""
        self.read += 1
        if frame.index % self.every:
            return None
        result = self.segmenter.segment(frame.image)
        self.processed += 1
        return result

    def segment_many(self, frames: Sequence[Frame]) -> list[Result | None]:
        """:meth:`segment` for several frames in one backend call (the backend runs them side by
        side: ``backend.parallel_frames``); None for the frames ``every`` skips."""
        self.read += len(frames)
        todo = [f for f in frames if f.index % self.every == 0]
        results = iter(self.segmenter.segment_batch([f.image for f in todo]) if todo else [])
        self.processed += len(todo)
        return [next(results) if f.index % self.every == 0 else None for f in frames]

    def deliver(self, frame: Frame, result: Result, index: int | None = None, timestamp: float | None = None) -> None:
        """Annotate, feed the sinks, update the alarm and emit its events. Call in frame order.
        ``index`` / ``timestamp`` override the frame's own for the alarm."""
        annotated = self.annotate(frame.image, result.mask, result.regions) if self._draw else None
        for sink in self.sinks:
            sink.frame(frame, result, annotated)
        if self.alarm is None:
            self.emit({"event": "detection", "frame": frame.index, "image": frame.name, "leak": result.leak,
                       "regions": [r.to_dict() for r in result.regions],
                       "confidence": max((r.max_conf for r in result.regions), default=0.0)})
        else:
            self.last_index = frame.index if index is None else index
            self.last_timestamp = frame.timestamp_s if timestamp is None else timestamp
            for ev in self.alarm.update(self.last_index, self.last_timestamp, result.regions):
                self.emit(ev)

    def finish(self, reason: str) -> None:
        """Close an incident still open (its ``end`` carries ``reason``), then every sink; the
        sinks are closed even when that last event cannot be written (disk full)."""
        try:
            if self.alarm is not None:
                for ev in self.alarm.close(self.last_index, self.last_timestamp, reason):
                    self.emit(ev)
        finally:
            errors = []
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:  # noqa: BLE001 - close the others, then report the first
                    errors.append(exc)
            if errors:
                raise errors[0]

    @property
    def outputs(self) -> list[str]:
        return [path for sink in self.sinks for path in sink.outputs]
