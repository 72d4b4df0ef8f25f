"""Temporal leak alarm: confirm k-of-n, clear after m quiet frames.

Single-frame detections flicker; requiring k hits in the last n frames
suppresses one-off false positives, and waiting m quiet frames avoids the
alarm toggling while a plume drifts in and out of view.
"""
from __future__ import annotations

from collections import deque
from typing import Any


def _region_dict(r: Any) -> dict:
    return r.to_dict() if hasattr(r, "to_dict") else dict(r)


def _max_conf(r: Any) -> float:
    return float(r.get("max_conf", 0.0)) if isinstance(r, dict) else float(getattr(r, "max_conf", 0.0))


class LeakAlarm:
    """State machine emitting "start"/"update"/"end" event dicts."""

    def __init__(self, k: int = 3, n: int = 5, m: int = 10) -> None:
        if min(k, n, m) < 1:
            raise ValueError(f"k, n, m must all be >= 1, got k={k}, n={n}, m={m}")
        if k > n:
            raise ValueError(f"k ({k}) must be <= n ({n}): cannot need more hits than the window holds")
        self.k, self.n, self.m = k, n, m
        self.reset()

    def reset(self) -> None:
        """Forget all history (e.g. after a camera switch)."""
        self._window: deque[bool] = deque(maxlen=self.n)
        self._active = False
        self._quiet = 0

    @property
    def active(self) -> bool:
        return self._active

    def _event(self, kind: str, frame_index: int, timestamp: float, regions: list, **extra: Any) -> dict:
        return {
            "event": kind,
            "frame": frame_index,
            "timestamp": timestamp,
            "regions": [_region_dict(r) for r in regions],
            "confidence": max((_max_conf(r) for r in regions), default=0.0),
            "active": self._active,
            **extra,
        }

    def update(self, frame_index: int, timestamp: float, regions: list) -> list[dict]:
        """Feed one frame's regions; return the events it triggers (possibly none)."""
        regions = list(regions or [])
        hit = len(regions) > 0
        self._window.append(hit)
        events: list[dict] = []
        if not self._active:
            if hit and sum(self._window) >= self.k:
                self._active = True
                self._quiet = 0
                events.append(self._event("start", frame_index, timestamp, regions))
            return events
        if hit:
            self._quiet = 0
            events.append(self._event("update", frame_index, timestamp, regions))
        else:
            self._quiet += 1
            if self._quiet >= self.m:
                self._active = False
                self._quiet = 0
                self._window.clear()
                events.append(self._event("end", frame_index, timestamp, regions, reason="quiet"))
        return events

    def close(self, frame_index: int, timestamp: float, reason: str) -> list[dict]:
        """End an open alarm because the video stopped (source ended, Ctrl-C, camera gone).

        Consumers pair every "start" with an "end"; without this an incident that is still
        open when the stream stops would dangle forever in their records. Returns [] when no
        alarm is open. The state is reset either way.
        """
        was_active = self._active
        self.reset()
        return [self._event("end", frame_index, timestamp, [], reason=reason)] if was_active else []
