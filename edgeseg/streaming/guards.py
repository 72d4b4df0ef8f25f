"""Picture trouble apart from leaks: the view is blocked, defocused, moved, or jumped as a whole.

Cheap statistics of a small grey thumbnail (:data:`SIDE` pixels square, about the network's own
resolution) per processed frame, judged against the camera's own running reference:

- ``blocked``: mean brightness below ``dark_below`` / above ``bright_above``, or a spread below
  ``uniform_below`` (a cap, a hand, a wall of fog);
- ``defocused``: sharpness (variance of the Laplacian) below ``defocus_ratio`` of its running
  reference (an exponential average over the frames that were fine);
- ``moved``: the zero-mean correlation with the reference view below ``moved_below``;
- ``jump``: mean brightness moves by more than ``jump_delta`` from one frame to the next, or the
  picture's correlation with the previous one turns negative (an IR palette or a day / night
  switch). A jump is a single ``trouble`` with no ``trouble_cleared``;
  the references are learned again after it.

A condition must hold for ``hold_frames`` frames to raise its trouble, and be gone as long to clear
it. :meth:`ViewGuard.check` returns the events; the stream unit ends an open alarm and does not
feed the alarm while a trouble is up (``edgeseg.streaming.unit``).
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgeseg.config.settings import GuardSettings

SIDE = 64
#: correlation with the previous frame below this: the palette was inverted (a jump)
INVERTED = -0.3
FIX = {
    "blocked": "the view is covered, dark, over-exposed or uniform: check the lens, the light and the camera's exposure",
    "defocused": "the picture lost its sharpness: refocus or clean the lens",
    "moved": "the view no longer matches the camera's reference: re-aim the camera (or restart it to learn the new view)",
    "jump": "the whole picture changed at once (IR palette / day-night switch): alarms were ended, the reference re-learned",
}


def thumbnail(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 and image.shape[2] == 3 else image.reshape(image.shape[:2])
    return cv2.resize(grey, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


def stats(image: np.ndarray) -> dict[str, float]:
    """Mean, spread and sharpness of ``image`` at :data:`SIDE` pixels (what the guards judge)."""
    t = thumbnail(image)
    return {"mean": float(t.mean()), "std": float(t.std()), "sharpness": float(cv2.Laplacian(t, cv2.CV_32F).var())}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-6 else 0.0


class ViewGuard:
    """Per camera; feed every processed frame to :meth:`check`. ``troubles``: the raised ones."""

    def __init__(self, settings: GuardSettings) -> None:
        self.s = settings
        self.troubles: set[str] = set()
        self._counts: dict[str, int] = {}
        self._relearn()
        self._last_mean: float | None = None
        self._last_blocked = False
        self._last: np.ndarray | None = None

    def _relearn(self) -> None:
        self._ref_sharp: float | None = None
        self._ref_view: np.ndarray | None = None
        self._learned = 0

    def _flags(self, t: np.ndarray) -> tuple[dict[str, bool], dict[str, float]]:
        s = self.s
        mean, std = float(t.mean()), float(t.std())
        sharp = float(cv2.Laplacian(t, cv2.CV_32F).var())
        blocked = mean < s.dark_below or mean > s.bright_above or std < s.uniform_below
        ready = self._learned >= s.warmup_frames and self._ref_sharp is not None
        defocused = bool(ready and not blocked and sharp < s.defocus_ratio * self._ref_sharp)
        corr = _corr(t, self._ref_view) if self._ref_view is not None else 1.0
        moved = bool(ready and not blocked and corr < s.moved_below)
        return ({"blocked": blocked, "defocused": defocused, "moved": moved},
                {"mean": round(mean, 1), "std": round(std, 1), "sharpness": round(sharp, 1), "correlation": round(corr, 3)})

    def check(self, image: np.ndarray) -> list[dict[str, Any]]:
        """The trouble / trouble_cleared events this frame causes (usually none)."""
        if not self.s.enabled:
            return []
        t = thumbnail(image)
        events: list[dict[str, Any]] = []
        mean = float(t.mean())
        flags, measured = self._flags(t)
        # a cover put on / taken off is a jump too, but "blocked" says it better; an inverted palette
        # (white-hot <-> black-hot) keeps the mean but turns the picture's correlation negative
        inverted = self._last is not None and _corr(t, self._last) < INVERTED
        stepped = self._last_mean is not None and abs(mean - self._last_mean) > self.s.jump_delta
        if (stepped or inverted) and not flags["blocked"] and not self._last_blocked and "blocked" not in self.troubles:
            events.append({"event": "trouble", "trouble": "jump", "mean_before": round(self._last_mean or 0.0, 1),
                           "mean": round(mean, 1), "inverted": bool(inverted), "fix": FIX["jump"]})
            self._relearn()
            flags, measured = self._flags(t)
        self._last_mean, self._last_blocked, self._last = mean, flags["blocked"], t
        for kind, on in flags.items():
            self._counts[kind] = self._counts.get(kind, 0) + 1 if on != (kind in self.troubles) else 0
            if self._counts[kind] >= self.s.hold_frames:
                self._counts[kind] = 0
                if on:
                    self.troubles.add(kind)
                    events.append({"event": "trouble", "trouble": kind, **measured, "fix": FIX[kind]})
                else:
                    self.troubles.discard(kind)
                    events.append({"event": "trouble_cleared", "trouble": kind, **measured})
        if not any(flags.values()) and not self.troubles:  # learn only from frames that are fine
            sharp = measured["sharpness"]
            self._ref_sharp = sharp if self._ref_sharp is None else 0.95 * self._ref_sharp + 0.05 * sharp
            self._ref_view = t.copy() if self._ref_view is None else 0.95 * self._ref_view + 0.05 * t
            self._learned += 1
        return events
