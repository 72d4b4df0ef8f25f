"""The pre-roll: the last ``pre_s`` seconds of one camera's decoded frames (source timestamps)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Shot:
    """One processed frame as the evidence writer needs it."""

    index: int
    ts: float
    image: np.ndarray
    mask: Any
    regions: list


class PreRoll:
    """Frames of the last ``pre_s`` seconds, oldest first; at most ``max_frames`` (memory bound)."""

    def __init__(self, pre_s: float, max_frames: int = 60 * 60) -> None:
        self.pre_s = float(pre_s)
        self.frames: deque[Shot] = deque(maxlen=max(1, int(max_frames)))

    def push(self, shot: Shot) -> None:
        frames = self.frames
        if frames and shot.ts < frames[-1].ts:  # the source restarted (a looped file, a reconnect)
            frames.clear()
        frames.append(shot)
        while frames and shot.ts - frames[0].ts > self.pre_s:
            frames.popleft()

    def before(self, ts: float) -> list[Shot]:
        """The frames older than ``ts`` that lie within ``pre_s`` of it."""
        return [s for s in self.frames if ts - self.pre_s <= s.ts < ts]

    def clear(self) -> None:
        self.frames.clear()
