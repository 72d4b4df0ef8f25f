"""One stream's work after segmentation: zones -> alarm -> events -> sinks, with one error policy.

The same :class:`StreamUnit` runs behind ``edgeseg detect``'s staged runner (one source, one
unit) and ``edgeseg watch``'s batched runner (one unit per camera, fed from cross-camera
batches), so an event looks and is delivered the same whichever front end produced it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.alarm import LeakAlarm
from edgeseg.annotate import Annotator
from edgeseg.segmenter import Result
from edgeseg.settings import AlarmSettings, ZoneSettings
from edgeseg.sinks.base import Sink, deliver, stamp
from edgeseg.sinks.snapshots import SnapshotWriter
from edgeseg.sources import Frame
from edgeseg.zones import ZoneFilter

AnnotateFn = Callable[[np.ndarray, np.ndarray, list], np.ndarray]


class StreamUnit:
    """Turns one stream's segmented frames into events and outputs.

    ``alarm``: video and cameras get a :class:`LeakAlarm` (``start`` / ``update`` / ``end``);
    ``None`` (images, folders) gives every frame its own ``detection`` event. ``context``: fields
    stamped on every event (``source``, ``camera``). ``snapshots``: an annotated JPEG per alarm
    start, named in the event. ``on_event``: told of every event (metrics). Sinks get their share
    through :func:`edgeseg.sinks.base.deliver`: a critical sink's failure stops the stream, any
    other is logged and counted.
    """

    def __init__(self, sinks: Sequence[Sink], leak_class: int, alarm: AlarmSettings | None = AlarmSettings(),
                 zones: ZoneSettings | None = None, context: dict[str, Any] | None = None,
                 annotate: AnnotateFn | None = None, snapshots: SnapshotWriter | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None, evidence: Any = None) -> None:
        self.sinks = list(sinks)
        self.alarm = LeakAlarm(alarm.k, alarm.n, alarm.m) if alarm is not None else None
        self.zones = ZoneFilter(zones) if zones is not None else None
        self.context = dict(context or {})
        self.annotate = annotate or Annotator(leak_class)
        self.snapshots, self.on_event = snapshots, on_event
        self.evidence = evidence  # an edgeseg.evidence.Recorder (clips, snapshots) or None
        self._frame_sinks = [s for s in self.sinks if type(s).frame is not Sink.frame]
        self._draw = any(s.wants_annotated for s in self._frame_sinks)
        self.last_index, self.last_timestamp = -1, 0.0
        self.frames = 0

    @property
    def stop_requested(self) -> bool:
        return any(s.stop_requested for s in self.sinks)

    @property
    def alarm_active(self) -> bool:
        return bool(self.alarm and self.alarm.active)

    def emit(self, record: dict[str, Any]) -> None:
        """Stamp ``record`` with the context and the time, and hand it to every sink."""
        if self.alarm is not None:
            record.setdefault("frame", self.last_index)
            record.setdefault("timestamp", self.last_timestamp)
        stamped = stamp(record, **self.context)
        if self.on_event is not None:
            self.on_event(stamped)
        deliver(self.sinks, lambda s: s.event(stamped), str(stamped.get("event")))

    def handle(self, frame: Frame, result: Result) -> list[dict[str, Any]]:
        """One segmented frame, in order: zones, sinks' frame, alarm, events. Returns the events."""
        regions = self.zones(result.regions, frame.image.shape[:2]) if self.zones and self.zones.active else result.regions
        annotated = None
        if self._frame_sinks:
            annotated = self.annotate(frame.image, result.mask, regions) if self._draw else None
            deliver(self._frame_sinks, lambda s: s.frame(frame, result, annotated), "frame")
        self.frames += 1
        if self.alarm is None:
            event = {"event": "detection", "frame": frame.index, "image": frame.name, "leak": bool(regions),
                     "regions": [r.to_dict() for r in regions],
                     "confidence": max((r.max_conf for r in regions), default=0.0)}
            self.emit(event)
            return [event]
        self.last_index, self.last_timestamp = frame.index, frame.timestamp_s
        events = self.alarm.update(frame.index, frame.timestamp_s, regions)
        if self.evidence is not None:  # evidence (#24): pre-roll, clip, snapshots; an end waits for its post-roll
            events = self.evidence.handle(frame.index, frame.timestamp_s, frame.image, result.mask, regions, events)
        for ev in events:
            if ev["event"] == "start" and self.snapshots is not None:
                image = annotated if annotated is not None else self.annotate(frame.image, result.mask, regions)
                path = self.snapshots.write(self.context.get("camera") or "stream", frame.index, image)
                if path:
                    ev["snapshot"] = path
            self.emit(ev)
        return events

    def end_alarm(self, reason: str) -> None:
        """End an open alarm now (its ``end`` carries ``reason``): the source stopped, went
        offline, or the run ends. Nothing happens when none is open."""
        if self.alarm is not None:
            events = self.alarm.close(self.last_index, self.last_timestamp, reason)
            if self.evidence is not None:  # evidence (#24): open clips close now, held ends come back final
                events = self.evidence.finish(events)
            for ev in events:
                self.emit(ev)

    @property
    def outputs(self) -> list[str]:
        return [path for sink in self.sinks for path in sink.outputs]
