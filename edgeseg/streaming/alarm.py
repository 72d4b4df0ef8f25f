"""Temporal leak alarm: confirm k-of-n (and for ``verify_s`` seconds), clear after ``clear_s`` quiet seconds.

Single-frame detections flicker; requiring k hits in the last n frames (and, with ``verify_s``,
hits for that many seconds) suppresses one-off false positives, and waiting ``clear_s`` seconds
(and at least m frames) without a leak avoids the alarm toggling while a plume drifts in and out of
view. Seconds, not frames: a site's cameras run at 5 or 25 fps, and an operator thinks in seconds.

The lifecycle of one alarm: ``start`` (a new ``alarm_id``), ``update`` (at most one per
``update_every_s``; sooner, but never within ``update_min_s``, when the leak area changes by more
than ``update_area_change`` of itself), ``end`` (with its ``reason``).

The ``alarm_id`` names an *incident*: a leak that comes back within ``cooldown_s`` seconds of its
end, before anyone acknowledged it, REJOINS the same incident - its ``start`` carries the same
``alarm_id``, ``rejoined: true`` and ``episode`` (2, 3, ...). It is never dropped: an earlier
version held a returning leak off for ``cooldown_s`` and a site lost 2 of 5 episodes that way (#35).
An incident acknowledged (while open or after it cleared) is closed: a leak after that is a new one.

``update(..., start=False)`` holds the alarm while the view cannot be trusted (picture trouble:
blocked, defocused, moved): no new alarm starts, and an open one stays open - a frame with a leak
still gives its update, a frame without one does not count toward its end.
"""
from __future__ import annotations

import uuid
from collections import deque
from typing import Any


def _region_dict(r: Any) -> dict:
    return r.to_dict() if hasattr(r, "to_dict") else dict(r)


def _max_conf(r: Any) -> float:
    return float(r.get("max_conf", 0.0)) if isinstance(r, dict) else float(getattr(r, "max_conf", 0.0))


def _area(regions: list) -> float:
    return float(sum((r.get("area_pct", 0.0) if isinstance(r, dict) else getattr(r, "area_pct", 0.0)) for r in regions))


def new_alarm_id() -> str:
    return uuid.uuid4().hex[:16]


#: regions listed in one event at most (the largest); ``regions_total`` says how many there were
MAX_EVENT_REGIONS = 16


class LeakAlarm:
    """State machine emitting "start"/"update"/"end" event dicts, each with the ``alarm_id``."""

    def __init__(self, k: int = 3, n: int = 5, m: int = 10, verify_s: float = 0.0, cooldown_s: float = 0.0,
                 update_every_s: float = 0.0, update_area_change: float = 0.0, clear_s: float = 0.0,
                 update_min_s: float = 0.0) -> None:
        if min(k, n, m) < 1:
            raise ValueError(f"k, n, m must all be >= 1, got k={k}, n={n}, m={m}")
        if k > n:
            raise ValueError(f"k ({k}) must be <= n ({n}): cannot need more hits than the window holds")
        self.k, self.n, self.m = k, n, m
        self.verify_s, self.cooldown_s = verify_s, cooldown_s
        self.update_every_s, self.update_area_change = update_every_s, update_area_change
        self.clear_s, self.update_min_s = clear_s, update_min_s
        self.ended_at: float | None = None  # timestamp of the last end (the rejoin window)
        self.episode = 0
        self._last: tuple[str, int, bool] | None = None  # (alarm_id, episode, acknowledged) of the last ended one
        self.reset()

    @classmethod
    def from_settings(cls, s: Any, verify_s: float | None = None, cooldown_s: float | None = None) -> "LeakAlarm":
        """An alarm of :class:`~edgeseg.config.settings.AlarmSettings` ``s`` (a named zone may override two)."""
        return cls(s.k, s.n, s.m, s.verify_s if verify_s is None else verify_s,
                   s.cooldown_s if cooldown_s is None else cooldown_s, s.update_every_s, s.update_area_change,
                   s.clear_s, s.update_min_s)

    def reset(self) -> None:
        """Forget the window and the open alarm (e.g. after a camera switch); the cooldown stays."""
        self._window: deque[bool] = deque(maxlen=self.n)
        self._active = False
        self._quiet = 0
        self._hits_since: float | None = None
        self._last_hit = 0.0  # timestamp of the last frame with a leak (or held open): clear_s counts from it
        self.alarm_id: str | None = None
        self.acknowledged = False
        self._last_update: tuple[float, float] | None = None  # (timestamp, area) of the last start / update

    @property
    def active(self) -> bool:
        return self._active

    def _event(self, kind: str, frame_index: int, timestamp: float, regions: list, **extra: Any) -> dict:
        # the largest MAX_EVENT_REGIONS regions (they come largest first), and how many there were: an
        # event stays a short line (a few KB at most) that a sink writes whole, whatever the mask holds
        return {
            "event": kind,
            "alarm_id": self.alarm_id,
            "frame": frame_index,
            "timestamp": timestamp,
            "regions": [_region_dict(r) for r in regions[:MAX_EVENT_REGIONS]],
            **({"regions_total": len(regions)} if len(regions) > MAX_EVENT_REGIONS else {}),
            "area_pct": round(_area(regions), 4),
            "confidence": max((_max_conf(r) for r in regions), default=0.0),
            "active": self._active,
            **({"acknowledged": True} if self.acknowledged else {}),
            **({"episode": self.episode} if self.episode > 1 else {}),
            **extra,
        }

    def cooling(self, timestamp: float) -> bool:
        """Whether a leak confirmed now rejoins the last incident (``cooldown_s`` after its end, not
        acknowledged). A source whose time went back (a looped file, a reconnect) starts afresh."""
        return (self._last is not None and not self._last[2] and self.ended_at is not None
                and 0.0 <= timestamp - self.ended_at < self.cooldown_s)

    def update(self, frame_index: int, timestamp: float, regions: list, start: bool = True) -> list[dict]:
        """Feed one frame's regions; return the events it triggers (possibly none).

        ``start=False``: the view cannot be trusted (picture trouble): no alarm starts and the frame
        counts for no later start; an open alarm is held open (updates go on, quiet frames are not
        counted): a trouble never ends an alarm, so no cooldown can swallow the rest of a leak."""
        regions = list(regions or [])
        hit = len(regions) > 0
        if not start:
            if self._active:
                self._last_hit = timestamp  # held: the time the view is gone counts for no clearing
            if not self._active or not hit:
                return []
            self._quiet = 0
            if not self._due(timestamp, _area(regions)):
                return []
            self._last_update = (timestamp, _area(regions))
            return [self._event("update", frame_index, timestamp, regions)]
        self._window.append(hit)
        if not any(self._window):
            self._hits_since = None
        elif hit and self._hits_since is None:
            self._hits_since = timestamp
        events: list[dict] = []
        if not self._active:
            verified = self._hits_since is not None and timestamp - self._hits_since >= self.verify_s
            if hit and sum(self._window) >= self.k and verified:
                rejoin = self._last if self.cooling(timestamp) else None
                self._active, self._quiet, self._last_hit = True, 0, timestamp
                self.alarm_id, self.acknowledged = (rejoin[0], False) if rejoin else (new_alarm_id(), False)
                self.episode = rejoin[1] + 1 if rejoin else 1
                self._last_update = (timestamp, _area(regions))
                extra = {"rejoined": True, "quiet_s": round(timestamp - (self.ended_at or timestamp), 3)} if rejoin else {}
                events.append(self._event("start", frame_index, timestamp, regions, **extra))
            return events
        if hit:
            self._quiet, self._last_hit = 0, timestamp
            if self._due(timestamp, _area(regions)):
                self._last_update = (timestamp, _area(regions))
                events.append(self._event("update", frame_index, timestamp, regions))
        else:
            self._quiet += 1
            if self._quiet >= self.m and timestamp - self._last_hit >= self.clear_s - 1e-9:
                events += self._end(frame_index, timestamp, "quiet")
        return events

    def _due(self, timestamp: float, area: float) -> bool:
        if self._last_update is None or not self.update_every_s:
            return True
        t0, a0 = self._last_update
        changed = abs(area - a0) > self.update_area_change * max(a0, 1e-9)
        soon = self.update_area_change > 0 and changed and timestamp - t0 >= self.update_min_s
        return timestamp - t0 >= self.update_every_s or soon

    def _end(self, frame_index: int, timestamp: float, reason: str) -> list[dict]:
        self._active = False
        ev = self._event("end", frame_index, timestamp, [], reason=reason)
        self.ended_at = timestamp
        self._last = (str(self.alarm_id), self.episode, self.acknowledged)
        self.episode = 0
        self.reset()
        return [ev]

    def acknowledge(self, alarm_id: str) -> bool:
        """Mark incident ``alarm_id`` acknowledged: the open alarm (its later events say so) or the last
        one that ended (it is closed: a leak that comes back now is a new incident, not a rejoin)."""
        if self._active and alarm_id == self.alarm_id:
            self.acknowledged = True
            return True
        if self._last is not None and alarm_id == self._last[0]:
            self._last = (self._last[0], self._last[1], True)
            return True
        return False

    def close(self, frame_index: int, timestamp: float, reason: str) -> list[dict]:
        """End an open alarm because the video stopped (source ended, Ctrl-C, camera gone) or was
        suspended. Picture trouble (view blocked, moved, a jump) never ends one: :meth:`update` with
        ``start=False`` holds it.

        Consumers pair every "start" with an "end"; without this an incident that is still
        open when the stream stops would dangle forever in their records. Returns [] when no
        alarm is open. The window is reset either way.
        """
        if self._active:
            return self._end(frame_index, timestamp, reason)
        self.reset()
        return []
