"""The detection loop for one source: frame -> Segmenter -> :class:`~edgeseg.streaming.unit.StreamUnit`.

``edgeseg detect`` runs it as stages (``edgeseg.streaming.stages``: :meth:`DetectionLoop.segment` on the
calling thread, :meth:`DetectionLoop.deliver` on a writer thread). The gateway batches many
cameras itself and feeds the same :class:`StreamUnit` per camera.
"""
from __future__ import annotations

from typing import Any, Sequence

from edgeseg.runtime.segmenter import Result, Segmenter
from edgeseg.config.settings import AlarmSettings, ZoneSettings
from edgeseg.io.sinks.base import Sink, close_all
from edgeseg.io.sources import Frame
from edgeseg.streaming.unit import AnnotateFn, StreamUnit


class DetectionLoop:
    """Segments every ``every``-th frame of one source and hands it to its stream unit.

    ``alarm``: settings of the temporal alarm for video and streams; ``None`` gives every frame
    its own ``detection`` event (images, folders). ``every`` is validated where it is declared
    (``edgeseg.config.settings.StreamSettings``); here it only selects frames.
    """

    def __init__(self, segmenter: Segmenter, sinks: Sequence[Sink], alarm: AlarmSettings | None = None,
                 every: int = 1, context: dict[str, Any] | None = None, annotate: AnnotateFn | None = None,
                 zones: ZoneSettings | None = None, video: bool = True) -> None:
        self.segmenter, self.every = segmenter, int(every)
        # a video or stream is one history (a temporal model's); stills each stand alone (single-frame answer)
        self.stream = segmenter.stream() if video else None
        self.unit = StreamUnit(sinks, segmenter.info.leak_class, alarm, zones, context, annotate)
        self.read = self.processed = 0

    @property
    def sinks(self) -> list[Sink]:
        return self.unit.sinks

    @property
    def stop_requested(self) -> bool:
        return self.unit.stop_requested

    def segment(self, frame: Frame) -> Result | None:
        """Segment one frame; None when ``every`` skips it."""
        self.read += 1
        if frame.index % self.every:
            return None
        result = self.stream.segment(frame.image) if self.stream is not None else self.segmenter.segment(frame.image)
        self.processed += 1
        return result

    def segment_many(self, frames: Sequence[Frame]) -> list[Result | None]:
        """:meth:`segment` for several frames in one backend call (the backend runs them side by
        side: ``backend.parallel_frames``); None for the frames ``every`` skips."""
        self.read += len(frames)
        todo = [f for f in frames if f.index % self.every == 0]
        results = iter(self.segmenter.segment_batch([f.image for f in todo], states=[self.stream.state if self.stream else None] * len(todo))
                       if todo else [])
        self.processed += len(todo)
        return [next(results) if f.index % self.every == 0 else None for f in frames]

    def deliver(self, frame: Frame, result: Result) -> None:
        """Zones, sinks, alarm and events for one frame (call in frame order)."""
        self.unit.handle(frame, result)

    def finish(self, reason: str) -> None:
        """End an alarm still open (its ``end`` carries ``reason``), then close every sink; the
        sinks are closed even when that last event cannot be written (disk full)."""
        try:
            self.unit.end_alarm(reason)
        finally:
            close_all(self.sinks)

    @property
    def outputs(self) -> list[str]:
        return self.unit.outputs
