"""Where results go, as objects (the counterpart of ``edgeseg.sources``).

A sink receives every processed frame (with its annotated image when it asked for one) and every
event record; ``detect`` and the gateway compose the sinks they need instead of hand-coding
files, windows and logs in their loops. Each sink flushes what it owns in ``close()``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from abc import ABC
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from edgeseg.segmenter import Result
from edgeseg.sources import Frame

log = logging.getLogger("edgeseg")


class Sink(ABC):
    """Receives frames and events. Override what applies; the defaults ignore."""

    #: whether ``frame()`` wants the annotated image (drawing is skipped when no sink does)
    wants_annotated: bool = False
    #: set by a sink that asks the loop to stop (e.g. Esc in a preview window)
    stop_requested: bool = False

    def frame(self, frame: Frame, result: Result, annotated: np.ndarray | None) -> None:
        """One processed frame."""

    def event(self, record: dict[str, Any]) -> None:
        """One event record (alarm start/update/end, per-image detection, camera status)."""

    def close(self) -> None:
        """Flush and release what the sink holds. Safe to call twice."""

    @property
    def outputs(self) -> list[str]:
        """Files this sink wrote (for the run summary)."""
        return []


class JsonlEvents(Sink):
    """Events as JSON lines, one object per line, flushed as written (a crash loses no line).

    ``target`` is a path (opened for append or truncate) or an open text stream (stdout).
    Thread-safe: the gateway's camera threads share one.
    """

    def __init__(self, target: str | Path | IO[str], append: bool = False) -> None:
        self._lock = threading.Lock()
        if isinstance(target, (str, Path)):
            self.path: Path | None = Path(target)
            self._stream: IO[str] = self.path.open("a" if append else "w")
            self._owned = True
        else:
            self.path, self._stream, self._owned = None, target, False
        self.lines = 0

    def event(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if self._owned and not self._stream.closed:
                self._stream.close()

    @property
    def outputs(self) -> list[str]:
        return [str(self.path)] if self.path else []


class AnnotatedVideo(Sink):
    """Annotated frames to an mp4 (mp4v), opened at the first frame's size; ``close()`` finishes the file."""

    wants_annotated = True

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path, self.fps = Path(path), float(fps)
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def frame(self, frame: Frame, result: Result, annotated: np.ndarray | None) -> None:
        assert annotated is not None
        if self._writer is None:
            h, w = annotated.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        self._writer.write(annotated)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    @property
    def outputs(self) -> list[str]:
        return [str(self.path)] if self.frames else []


class AnnotatedImages(Sink):
    """One ``<name>_annotated.png`` per frame (image and folder sources)."""

    wants_annotated = True

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.written: list[str] = []

    def frame(self, frame: Frame, result: Result, annotated: np.ndarray | None) -> None:
        assert annotated is not None
        path = self.folder / f"{frame.name}_annotated.png"
        cv2.imwrite(str(path), annotated)
        self.written.append(str(path))

    @property
    def outputs(self) -> list[str]:
        return list(self.written)


GUI_MISSING = "OpenCV was built without GUI support (opencv-python-headless); pip install opencv-python for --show"
_WINDOW = "edgeseg"


def display_unavailable_reason() -> str | None:
    """Why a preview window cannot be shown here, or None when it can.

    Checked once before the loop so a headless gateway gets one clear line, not a cv2.error
    traceback from ``imshow`` after the model has already loaded.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY / WAYLAND_DISPLAY not set)"
    try:
        cv2.namedWindow(_WINDOW, cv2.WINDOW_NORMAL)
        cv2.destroyWindow(_WINDOW)
    except cv2.error:
        return GUI_MISSING
    return None


class Display(Sink):
    """A preview window; Esc asks the loop to stop. Build it with :meth:`if_available`."""

    wants_annotated = True

    def __init__(self) -> None:
        self._opened = False

    @classmethod
    def if_available(cls) -> "Display | None":
        """A Display, or None with one warning where no window can open (detection carries on)."""
        reason = display_unavailable_reason()
        if reason is None:
            return cls()
        log.warning("--show disabled: %s; detection continues and outputs are still written", reason)
        return None

    def frame(self, frame: Frame, result: Result, annotated: np.ndarray | None) -> None:
        self._opened = True
        cv2.imshow(_WINDOW, annotated)
        if cv2.waitKey(1) & 0xFF == 27:
            self.stop_requested = True

    def close(self) -> None:
        if self._opened:  # never touch the GUI when nothing was shown
            cv2.destroyAllWindows()
            self._opened = False


def stamp(record: dict[str, Any], **context: Any) -> dict[str, Any]:
    """An event record with its context (source, camera) and the wall-clock time it was emitted."""
    return {**record, **context, "wall_time": time.time()}
