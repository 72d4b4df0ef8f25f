"""One stream's work after segmentation: zones -> alarm -> events -> sinks, with one error policy.

The same :class:`StreamUnit` runs behind ``edgeseg detect``'s staged runner (one source, one
unit) and ``edgeseg watch``'s batched runner (one unit per camera, fed from cross-camera
batches), so an event looks and is delivered the same whichever front end produced it.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from edgeseg.streaming.alarm import MAX_EVENT_REGIONS, LeakAlarm
from edgeseg.runtime.annotate import Annotator
from edgeseg.runtime.segmenter import Result
from edgeseg.streaming.guards import VIEW_GONE, ViewGuard
from edgeseg.config.settings import AlarmSettings, GuardSettings, ZoneSettings
from edgeseg.io.sinks.base import Sink, deliver, stamp
from edgeseg.io.sinks.snapshots import SnapshotWriter
from edgeseg.io.sources import Frame
from edgeseg.streaming.zones import NamedZones, ZoneFilter

AnnotateFn = Callable[[np.ndarray, np.ndarray, list], np.ndarray]


class StreamUnit:
    """Turns one stream's segmented frames into events and outputs.

    ``alarm``: video and cameras get a :class:`LeakAlarm` (``start`` / ``update`` / ``end``);
    ``None`` (images, folders) gives every frame its own ``detection`` event. ``context``: fields
    stamped on every event (``source``, ``camera``). ``snapshots``: an annotated JPEG per alarm
    start, named in the event (``snapshot``); when the alarm has an evidence recorder (clips on), it
    names the recorder's annotated snapshot instead of writing a third JPEG (#35: one source). ``on_event``: told of every event (metrics). Sinks get their share
    through :func:`edgeseg.io.sinks.base.deliver`: a critical sink's failure stops the stream, any
    other is logged and counted.
    """

    def __init__(self, sinks: Sequence[Sink], leak_class: int, alarm: AlarmSettings | None = AlarmSettings(),
                 zones: ZoneSettings | None = None, context: dict[str, Any] | None = None,
                 annotate: AnnotateFn | None = None, snapshots: SnapshotWriter | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None, guards: GuardSettings | None = None,
                 evidence: Any = None, zone_evidence: dict[str, Any] | None = None) -> None:
        self.sinks = list(sinks)
        self.alarm = LeakAlarm.from_settings(alarm) if alarm is not None else None
        self.guard = ViewGuard(guards) if guards is not None and alarm is not None else None
        named = list(zones.named) if zones is not None and alarm is not None else []
        self.named = NamedZones(zones) if named else None
        #: one alarm per named zone (own id, verify_s, cooldown_s); leaks outside them feed ``self.alarm``
        self.zone_alarms = {z.name: LeakAlarm.from_settings(alarm, z.verify_s, z.cooldown_s) for z in named}
        self.suspended_until: float | None = None  # wall clock; inf: until resumed
        self.latest: tuple[Any, Any, list] | None = None  # (image, Result, regions) of the last frame: latest.jpg
        self.zones = ZoneFilter(zones) if zones is not None else None
        self.context = dict(context or {})
        self.annotate = annotate or Annotator(leak_class)
        self.snapshots, self.on_event = snapshots, on_event
        self.evidence = evidence  # an edgeseg.io.evidence.Recorder (clips, snapshots) or None
        self.zone_evidence = dict(zone_evidence or {})  # a Recorder per named zone: each alarm gets its clip
        self._frame_sinks = [s for s in self.sinks if type(s).frame is not Sink.frame]
        self._draw = any(s.wants_annotated for s in self._frame_sinks)
        self.last_index, self.last_timestamp = -1, 0.0
        self.frames = 0

    @property
    def stop_requested(self) -> bool:
        return any(s.stop_requested for s in self.sinks)

    @property
    def alarms(self) -> list[tuple[str | None, LeakAlarm]]:
        """(zone, alarm): the camera's own (zone None) and one per named zone."""
        return ([(None, self.alarm)] if self.alarm is not None else []) + list(self.zone_alarms.items())

    @property
    def alarm_active(self) -> bool:
        return any(a.active for _, a in self.alarms)

    def emit(self, record: dict[str, Any]) -> None:
        """Stamp ``record`` with the context and the time, and hand it to every sink."""
        if self.alarm is not None:
            record.setdefault("frame", self.last_index)
            record.setdefault("timestamp", self.last_timestamp)
        stamped = stamp(record, **self.context)
        if self.on_event is not None:
            self.on_event(stamped)
        deliver(self.sinks, lambda s: s.event(stamped), str(stamped.get("event")))

    @property
    def suspended(self) -> bool:
        if self.suspended_until is not None and time.time() >= self.suspended_until:
            self.suspended_until = None
            self.emit({"event": "resumed", "reason": "suspension expired"})
        return self.suspended_until is not None

    def suspend(self, minutes: float | None = None, who: str | None = None, why: str | None = None,
                audit: dict[str, str] | None = None) -> dict[str, Any]:
        """No alarm for ``minutes`` (None: until :meth:`resume`); an open alarm ends (reason ``suspended``).
        ``audit`` (the authenticated ``user`` and ``role``) is recorded in the event as it is."""
        self.suspended_until = float("inf") if minutes is None else time.time() + 60.0 * minutes
        self.end_alarm("suspended")
        event = {"event": "suspended", "minutes": minutes, **_who(who, why), **(audit or {}),
                 **({"until_wall_time": self.suspended_until} if minutes is not None else {})}
        self.emit(event)
        return event

    def resume(self, who: str | None = None, why: str | None = None,
               audit: dict[str, str] | None = None) -> dict[str, Any]:
        self.suspended_until = None
        event = {"event": "resumed", **_who(who, why), **(audit or {})}
        self.emit(event)
        return event

    def acknowledge(self, alarm_id: str, who: str | None = None, why: str | None = None,
                    note: str | None = None, audit: dict[str, str] | None = None) -> dict[str, Any] | None:
        """Acknowledge incident ``alarm_id``: the open alarm, or the last one that cleared (it then
        rejoins nothing); None when it is neither of this unit's."""
        found = next(((z, a.active) for z, a in self.alarms if a.acknowledge(alarm_id)), None)
        if found is None:
            return None
        zone, active = found
        event = {"event": "acknowledged", "alarm_id": alarm_id, **({"zone": zone} if zone else {}), "active": active,
                 **_who(who, why), **({"note": str(note)[:500]} if note else {}), **(audit or {})}
        self.emit(event)
        return event

    @property
    def open_alarm(self) -> str | None:
        """The id of an open alarm (the camera's own first), None when none is open."""
        return next((a.alarm_id for _, a in self.alarms if a.active), None)

    @property
    def open_alarms(self) -> list[dict[str, Any]]:
        return [{"alarm_id": a.alarm_id, "zone": z, "acknowledged": a.acknowledged} for z, a in self.alarms if a.active]

    def handle(self, frame: Frame, result: Result) -> list[dict[str, Any]]:
        """One segmented frame, in order: zones, sinks' frame, guards, alarm, events. Returns the events."""
        regions = self.zones(result.regions, frame.image.shape[:2]) if self.zones and self.zones.active else result.regions
        self.latest = (frame.image, result, list(regions))  # the mask is made only when asked for
        annotated = None
        if self._frame_sinks:
            annotated = self.annotate(frame.image, result.mask, regions) if self._draw else None
            deliver(self._frame_sinks, lambda s: s.frame(frame, result, annotated), "frame")
        self.frames += 1
        if self.alarm is None:
            event = {"event": "detection", "frame": frame.index, "image": frame.name, "leak": bool(regions),
                     "regions": [r.to_dict() for r in regions[:MAX_EVENT_REGIONS]],
                     **({"regions_total": len(regions)} if len(regions) > MAX_EVENT_REGIONS else {}),
                     "confidence": max((r.max_conf for r in regions), default=0.0)}
            self.emit(event)
            return [event]
        self.last_index, self.last_timestamp = frame.index, frame.timestamp_s
        if self.guard is not None:
            for ev in self.guard.check(frame.image):  # trouble stands beside an open alarm: it ends none (#37)
                self.emit(ev)
        if self.suspended:
            return []  # not fed to the alarm: suspension ended the open alarm, and none starts
        # while the view is gone (blocked, defocused, moved) no new alarm starts; an open one is held
        # open (a lens capped, a camera turned away): its updates go on, its quiet frames do not count
        start = self.guard is None or not (self.guard.troubles & VIEW_GONE)
        by_zone = self.named.split(list(regions), frame.image.shape[:2]) if self.named is not None else {None: regions}
        events = self.alarm.update(frame.index, frame.timestamp_s, by_zone[None], start)
        if self.evidence is not None:  # evidence (#24), the camera's own alarm: pre-roll, clip, snapshots;
            # its end waits for the post-roll
            events = self.evidence.handle(frame.index, frame.timestamp_s, frame.image, result.mask, by_zone[None], events)
        for zone, alarm in self.zone_alarms.items():
            zone_events = [{**ev, "zone": zone}
                           for ev in alarm.update(frame.index, frame.timestamp_s, by_zone.get(zone, []), start)]
            if zone in self.zone_evidence:  # the zone's alarm has its own clip, from the same frames
                zone_events = self.zone_evidence[zone].handle(frame.index, frame.timestamp_s, frame.image, result.mask,
                                                              by_zone.get(zone, []), zone_events)
            events += zone_events
        for ev in events:
            recorded = (ev.get("evidence") or {}).get("snapshot_annotated") if ev["event"] == "start" else None
            if recorded and self.snapshots is not None:  # one snapshot source (#35): the recorder's, not a third JPEG
                ev["snapshot"] = recorded
            elif ev["event"] == "start" and self.snapshots is not None:
                image = annotated if annotated is not None else self.annotate(frame.image, result.mask, regions)
                path = self.snapshots.write(self.context.get("camera") or "stream", frame.index, image)
                if path:
                    ev["snapshot"], ev["snapshot_sha256"] = path, self.snapshots.last.get("sha256")
            self.emit(ev)
        return events

    def end_alarm(self, reason: str) -> None:
        """End an open alarm now (its ``end`` carries ``reason``): the source stopped, went
        offline, or the run ends. Nothing happens when none is open."""
        for zone, alarm in self.alarms:
            events = [{**ev, "zone": zone} if zone else ev for ev in alarm.close(self.last_index, self.last_timestamp, reason)]
            recorder = self.evidence if zone is None else self.zone_evidence.get(zone)
            if recorder is not None:  # evidence (#24): open clips close now, held ends final
                events = recorder.finish(events)
            for ev in events:
                self.emit(ev)

    @property
    def recorders(self) -> list[Any]:
        """Its evidence recorders: the camera's own (when clips are on) and one per named zone."""
        return [r for r in (self.evidence, *self.zone_evidence.values()) if r is not None]

    def close_evidence(self) -> None:
        """The stream is gone for good: every recorder's packet ring disconnects."""
        for recorder in self.recorders:
            recorder.close()

    @property
    def outputs(self) -> list[str]:
        return [path for sink in self.sinks for path in sink.outputs]


def _who(who: str | None, why: str | None) -> dict[str, str]:
    return {k: str(v)[:200] for k, v in (("who", who), ("why", why)) if v}
