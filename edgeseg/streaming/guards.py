"""Picture trouble apart from leaks: the view is blocked, defocused, moved, or jumped as a whole.

Cheap statistics of a small grey thumbnail (:data:`SIDE` pixels square, about the network's own
resolution) per processed frame, judged against the camera's own running reference:

- ``blocked``: the picture went dark, over-exposed or uniform *compared with the scene's own
  baseline* (a cap, a hand, a wall of fog): mean brightness below ``dark_below`` / above
  ``bright_above`` or spread below ``uniform_below`` (the absolute bounds) *and* below
  ``blocked_ratio`` of the baseline's own (the running mean brightness, distance from white and
  spread of the frames that were fine). A scene that is dark or low in contrast by nature (night,
  a dim hall) is its own baseline and is not blocked; a picture with no structure at all (spread
  below :data:`UNIFORM_FLOOR`: a lens cap) is blocked even before a baseline was learned.
  Hysteresis: once raised, the picture must be ``1 + blocked_margin`` times clear of the bounds
  to count as fine again;
- ``defocused``: sharpness (variance of the Laplacian) below ``defocus_ratio`` of its running
  reference (an exponential average over the frames that were fine);
- ``moved``: the zero-mean correlation with the reference view below ``moved_below`` *and* the
  whole view changed: at least ``moved_area`` of the picture (cells of a :data:`GRID` x
  :data:`GRID` grid) no longer matches the reference there, or the picture as a whole slid
  against it (phase correlation: a clear peak :data:`SLID_PX` or more off centre). A person or a
  vehicle passing close covers a part of the view and the rest still matches, unmoved: a partial
  occlusion, no trouble; a camera turned slides all of it, a camera re-aimed changes all of it;
- ``jump``: mean brightness moves by more than ``jump_delta`` from one frame to the next, or the
  picture's correlation with the previous one turns negative (an IR palette or a day / night
  switch). A jump is a single ``trouble`` with no ``trouble_cleared``;
  the references are learned again after it.

A condition must hold for ``hold_frames`` frames to raise its trouble, and be gone for
``clear_frames`` (default: ``hold_frames``) to clear it. :meth:`ViewGuard.check` returns the
events. A trouble never ends an open alarm: the stream unit keeps it open beside the trouble and
only starts no *new* alarm while the view is gone (:data:`VIEW_GONE`; ``edgeseg.streaming.unit``).
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgeseg.config.settings import GuardSettings

SIDE = 64
#: the ``moved`` test compares GRID x GRID cells of the thumbnail with the reference's
GRID = 8
#: correlation with the previous frame below this: the palette was inverted (a jump)
INVERTED = -0.3
#: the picture slid against the reference by this many thumbnail pixels or more (3 % of it): the camera turned
SLID_PX = 2.0
#: ... with a phase-correlation peak at least this strong (a passing object gives a weak, stray one)
SLID_PEAK = 0.3
#: a thumbnail spread below this has no structure at all (a lens cap): blocked, whatever the baseline
UNIFORM_FLOOR = 1.5
#: the troubles during which the view cannot be trusted: no new alarm starts (an open one stays open)
VIEW_GONE = frozenset({"blocked", "defocused", "moved"})
FIX = {
    "blocked": "the view is covered, dark, over-exposed or uniform: check the lens, the light and the camera's exposure",
    "defocused": "the picture lost its sharpness: refocus or clean the lens",
    "moved": "the view no longer matches the camera's reference: re-aim the camera (or restart it to learn the new view)",
    "jump": "the whole picture changed at once (IR palette / day-night switch): the reference was re-learned",
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


def _cells(t: np.ndarray) -> np.ndarray:
    k = SIDE // GRID
    return t.reshape(GRID, k, GRID, k).transpose(0, 2, 1, 3).reshape(GRID * GRID, k * k)


def changed_share(t: np.ndarray, ref: np.ndarray, below: float) -> float:
    """The share of the :data:`GRID` x :data:`GRID` cells of ``t`` that no longer match ``ref``.

    A cell with structure in the reference matches when its zero-mean correlation is at least
    ``below``; a flat one (a sky, a wall: spread under a quarter of the picture's, or under 2) when
    it is still flat and its brightness moved by less than half the picture's spread (at least 4)."""
    a, b = _cells(ref), _cells(t)
    sa, sb = a.std(axis=1), b.std(axis=1)
    da, db = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    corr = np.where(den > 1e-6, (da * db).sum(axis=1) / np.maximum(den, 1e-6), 0.0)
    spread = float(ref.std())
    floor = max(2.0, 0.25 * spread)
    flat = sa < floor
    still = (sb < 2.0 * np.maximum(sa, floor)) & (np.abs(a.mean(axis=1) - b.mean(axis=1)) < max(4.0, 0.5 * spread))
    return float(np.where(flat, ~still, corr < below).mean())


def slid(t: np.ndarray, ref: np.ndarray) -> float:
    """How far (thumbnail pixels) the picture as a whole slid against ``ref``; 0 without a clear peak."""
    (dx, dy), peak = cv2.phaseCorrelate(ref.astype(np.float32), t.astype(np.float32), _window())
    return float(np.hypot(dx, dy)) if peak >= SLID_PEAK else 0.0


_WINDOW: list[np.ndarray] = []


def _window() -> np.ndarray:
    if not _WINDOW:
        _WINDOW.append(cv2.createHanningWindow((SIDE, SIDE), cv2.CV_32F))
    return _WINDOW[0]


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
        self._base: tuple[float, float] | None = None  # (mean, spread) of the scene: what "blocked" is judged against
        self._learned = 0

    def _blocked(self, mean: float, std: float) -> bool:
        s = self.s
        if std < UNIFORM_FLOOR:
            return True
        if self._base is None or self._learned < s.warmup_frames:
            return False  # a dark or flat scene from the start is learned as the scene (a cap is caught above)
        m = 1.0 + s.blocked_margin if "blocked" in self.troubles else 1.0  # hysteresis: clear well clear of the bounds
        base_mean, base_std = self._base
        r = s.blocked_ratio * m
        dark = mean < s.dark_below * m and mean < r * base_mean
        bright = 255.0 - mean < (255.0 - s.bright_above) * m and 255.0 - mean < r * (255.0 - base_mean)
        uniform = std < s.uniform_below * m and std < r * base_std
        return bool(dark or bright or uniform)

    def _flags(self, t: np.ndarray) -> tuple[dict[str, bool], dict[str, float]]:
        s = self.s
        mean, std = float(t.mean()), float(t.std())
        sharp = float(cv2.Laplacian(t, cv2.CV_32F).var())
        blocked = self._blocked(mean, std)
        ready = self._learned >= s.warmup_frames and self._ref_sharp is not None
        defocused = bool(ready and not blocked and sharp < s.defocus_ratio * self._ref_sharp)
        corr = _corr(t, self._ref_view) if self._ref_view is not None else 1.0
        share = shift = 0.0
        if ready and not blocked and corr < s.moved_below:  # the whole view, or a part of it (a person passing)?
            share, shift = changed_share(t, self._ref_view, s.moved_below), slid(t, self._ref_view)
        moved = bool(share >= s.moved_area or shift >= SLID_PX)
        return ({"blocked": blocked, "defocused": defocused, "moved": moved},
                {"mean": round(mean, 1), "std": round(std, 1), "sharpness": round(sharp, 1), "correlation": round(corr, 3),
                 "changed": round(share, 2), "slid_px": round(shift, 1)})

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
            if self._counts[kind] >= (self.s.hold_frames if on else self.s.clear_frames or self.s.hold_frames):
                self._counts[kind] = 0
                if on:
                    self.troubles.add(kind)
                    events.append({"event": "trouble", "trouble": kind, **measured, "fix": FIX[kind]})
                else:
                    self.troubles.discard(kind)
                    events.append({"event": "trouble_cleared", "trouble": kind, **measured})
        if not any(flags.values()) and not self.troubles:  # learn only from frames that are fine
            self._learn(t, measured["sharpness"])
        return events

    def _learn(self, t: np.ndarray, sharp: float) -> None:
        def ema(old: Any, new: Any) -> Any:
            return new if old is None else 0.95 * old + 0.05 * new

        self._ref_sharp = ema(self._ref_sharp, sharp)
        self._ref_view = ema(self._ref_view, t.copy())
        base = (float(t.mean()), float(t.std()))
        self._base = base if self._base is None else (ema(self._base[0], base[0]), ema(self._base[1], base[1]))
        self._learned += 1
