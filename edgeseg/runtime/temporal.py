"""Temporal input for thermal cameras: what a gas camera's "high sensitivity mode" shows, as three channels.

Why: in real optical gas imaging a plume is faint and semi-transparent; in one frame it is barely there,
against the scene's own background over a few seconds it stands out (it moves and flickers, the scene
does not). A temporal model (metadata ``input: temporal-v1``) therefore takes, per frame, at its network
size:

- B: the frame (grey),
- G: ``128 + GAIN_DIFF x (frame - the stream's running background)``, both with their frame mean removed
  (a camera's automatic gain shifts the whole picture; a plume changes a part of it),
- R: ``GAIN_STD x`` the standard deviation of the last ``WINDOW`` frames (flicker).

The running background is an exponential average (``ALPHA`` per frame). The state is one stream's: a
camera, a video. It resets itself on a scene cut (the mean absolute change against the background
above ``CUT`` levels or ``CUT_SHARE`` of the scene's own contrast: a camera moved, a palette switched,
the gain jumped) and when the frame size changes,
and a caller resets it on a reconnect. Memory per stream: ``(WINDOW + 1)`` float32 frames at the network
size (5 x 256 x 256 x 4 B = 1.3 MB at the defaults); :attr:`TemporalState.memory_bytes` says so.

The same function makes the training clips' input (``training.thermal_video``), so the network sees at
training exactly what it sees deployed.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

#: the metadata value of a temporal model's ``input`` key; a model without the key takes pictures
TEMPORAL_V1 = "temporal-v1"
ALPHA = 0.2  # running-background update per frame (time constant ~5 frames)
WINDOW = 4  # frames in the flicker (standard deviation) window
GAIN_DIFF = 4.0
GAIN_STD = 6.0
CUT = 40.0  # mean |frame - background| (8-bit levels) that counts as a scene cut: start again
CUT_SHARE = 0.8  # ... or this share of the scene's own contrast (a palette switch in a low-contrast scene)
MIN_CONTRAST = 5.0  # scenes flatter than this (mean |level|) are judged by CUT alone: noise is not a cut


def network_gray(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame as float32 grey at the network size ``(h, w)`` (resized first: cheaper than converting
    a 1080p frame; the same bilinear resize as :func:`edgeseg.runtime.preprocess.preprocess`)."""
    h, w = size
    small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR) if frame.shape[:2] != (h, w) else frame
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGRA2GRAY if small.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    return small.astype(np.float32)


class TemporalState:
    """One stream's history for a temporal model: :meth:`push` a frame, get the network's picture.

    Thread-safety: :meth:`reset` may be called from another thread (a camera reader on reconnect); it
    only flags the state, and the next :meth:`push` starts afresh.
    """

    def __init__(self, size: tuple[int, int] = (256, 256), alpha: float = ALPHA, window: int = WINDOW,
                 cut: float = CUT) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.alpha, self.window, self.cut = float(alpha), int(window), float(cut)
        self._lock = threading.Lock()
        self._pending_reset = True
        self._background: np.ndarray | None = None
        self._recent: list[np.ndarray] = []
        self._source_shape: tuple[int, ...] | None = None
        self.frames = 0  # frames pushed since the last start
        self.resets = 0  # starts, the first one included

    @property
    def memory_bytes(self) -> int:
        """The most this state holds: the background and ``window`` recent frames, float32 at network size."""
        return (self.window + 1) * self.size[0] * self.size[1] * 4

    def reset(self) -> None:
        """Forget the history (a reconnect, a new video): the next frame starts a new background."""
        self._pending_reset = True

    def push(self, frame: np.ndarray) -> np.ndarray:
        """The network's picture for ``frame`` (uint8, network size, 3 channels: frame, change, flicker)."""
        with self._lock:
            gray = network_gray(frame, self.size)
            level = gray - float(gray.mean())
            if self._pending_reset or self._background is None or frame.shape != self._source_shape:
                self._start(level, frame.shape)
            diff = level - self._background
            if self._is_cut(float(np.abs(diff).mean())):  # a scene cut: camera moved, palette or gain switched
                self._start(level, frame.shape)
                diff = np.zeros_like(level)
            self._recent.append(level)
            if len(self._recent) > self.window:
                self._recent.pop(0)
            flicker = np.std(np.stack(self._recent), axis=0) if len(self._recent) > 1 else np.zeros_like(level)
            cv2.accumulateWeighted(level, self._background, self.alpha)
            self.frames += 1
            return stack_channels(gray, diff, flicker)

    def _is_cut(self, change: float) -> bool:
        contrast = float(np.abs(self._background).mean())
        return change > self.cut or (contrast > MIN_CONTRAST and change > CUT_SHARE * contrast)

    def _start(self, level: np.ndarray, shape: tuple[int, ...]) -> None:
        self._background = level.copy()
        self._recent = []
        self._source_shape = shape
        self._pending_reset = False
        self.frames = 0
        self.resets += 1


def stack_channels(gray: np.ndarray, diff: np.ndarray, flicker: np.ndarray) -> np.ndarray:
    """(frame, 128 + GAIN_DIFF x change, GAIN_STD x flicker) as one uint8 3-channel picture."""
    out = np.empty(gray.shape + (3,), np.uint8)
    np.clip(gray, 0, 255, out=gray)
    out[..., 0] = gray
    out[..., 1] = np.clip(128.0 + GAIN_DIFF * diff, 0, 255)
    out[..., 2] = np.clip(GAIN_STD * flicker, 0, 255)
    return out


def clip_input(frames: list[np.ndarray], size: tuple[int, int] = (256, 256)) -> list[np.ndarray]:
    """Every frame of a clip through one fresh :class:`TemporalState` (training and evaluation)."""
    state = TemporalState(size)
    return [state.push(f) for f in frames]
