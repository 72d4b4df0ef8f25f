"""Annotated output of ``detect``: a Matroska video, annotated images, a preview window."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeseg.core.errors import OutputError
from edgeseg.runtime.segmenter import Result
from edgeseg.io.sinks.base import Sink
from edgeseg.io.sources import Frame

log = logging.getLogger("edgeseg")


#: free bytes below which the video sink stops with "disk full" rather than write a frame the
#: encoder would silently drop (OpenCV's VideoWriter.write reports nothing)
MIN_FREE_BYTES = 1 << 20


class AnnotatedVideo(Sink):
    """Annotated frames to a Matroska file (``.mkv``, MPEG-4 Part 2), opened at the first frame's size.

    Why Matroska and not MP4: an MP4 is unplayable until its index is written at close, so a
    hard kill (``kill -9``, power cut) loses the whole recording; Matroska is written in clusters
    as it goes and a killed recording plays up to its last seconds. Frames of another size (a
    camera that reconnects at a new resolution) are scaled to the file's size rather than
    silently dropped by the encoder. ``fps=None`` (live streams) measures the rate from the
    first frames' timestamps instead of trusting the stream's announced (often wrong) fps.
    """

    wants_annotated = True
    MEASURE_FRAMES = 12  # frames buffered to measure a live stream's rate (about a second)

    def __init__(self, path: str | Path, fps: float | None) -> None:
        self.path, self.fps = Path(path), (float(fps) if fps else None)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._pending: list[tuple[float, np.ndarray]] = []
        self.frames = 0
        self.resized = 0

    def frame(self, frame: Frame, result: Result, annotated: np.ndarray | None) -> None:
        assert annotated is not None
        if self._writer is None and self.fps is None:
            self._pending.append((frame.timestamp_s, annotated))
            if len(self._pending) < self.MEASURE_FRAMES:
                return
            self._start_measured()
            return
        self._write(annotated)

    def _start_measured(self) -> None:
        """Open the writer at the rate the buffered frames arrived at, then write them."""
        stamps = [t for t, _ in self._pending]
        span = stamps[-1] - stamps[0]
        self.fps = (len(stamps) - 1) / span if len(stamps) > 1 and span > 0 else 10.0
        log.info("live source measured at %.1f processed frames/s; recording at that rate", self.fps)
        pending, self._pending = self._pending, []
        for _, image in pending:
            self._write(image)

    def _open(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        self._writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"),
                                       float(self.fps or 10.0), (w, h))
        if not self._writer.isOpened():
            self._writer = None
            raise OutputError(f"cannot create video {self.path} (no FFmpeg writer for .mkv/mp4v or folder "
                              "not writable); check the -o folder")
        self._size = (w, h)

    def _write(self, image: np.ndarray) -> None:
        if self._writer is None:
            self._open(image)
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
            self.resized += 1
            if self.resized == 1:
                log.warning("frame size changed to %dx%d; scaling to the recording's %dx%d",
                            image.shape[1], image.shape[0], *self._size)
        free = shutil.disk_usage(self.path.parent).free
        if free < MIN_FREE_BYTES:
            raise OutputError(f"cannot write {self.path}: disk full ({free // 1024} KiB free); "
                              "outputs are complete up to the last frame and event written")
        self._writer.write(image)  # type: ignore[union-attr]
        self.frames += 1

    def close(self) -> None:
        if self._writer is None and self._pending:
            try:
                self._start_measured()  # a short stream: record what there is
            except OutputError:
                pass
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    @property
    def outputs(self) -> list[str]:
        return [str(self.path)] if self.frames else []


def annotated_image_name(frame_name: str) -> str:
    """``cam.jpg`` -> ``cam.jpg.annotated.png``: the source's extension is kept, so ``cam.png`` and
    ``cam.jpg`` in one folder never write the same file."""
    return f"{frame_name}.annotated.png"


class AnnotatedImages(Sink):
    """One ``<file name>.annotated.png`` per frame (image and folder sources), written atomically
    (temporary file, then rename) and checked: a failed write raises instead of being reported."""

    wants_annotated = True

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.written: list[str] = []

    def frame(self, frame: Frame, result: Result, annotated: np.ndarray | None) -> None:
        assert annotated is not None
        path = self.folder / annotated_image_name(frame.name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
        ok = False
        try:
            ok = bool(cv2.imwrite(str(tmp), annotated))
            if ok:
                os.replace(tmp, path)
        except (cv2.error, OSError) as exc:
            raise OutputError(f"cannot write {path}: {exc}; check free space and permissions of the -o folder") from exc
        finally:
            if not ok:
                tmp.unlink(missing_ok=True)
        if not ok:
            free = shutil.disk_usage(self.folder).free
            raise OutputError(f"cannot write {path} ({'disk full' if free < MIN_FREE_BYTES else 'write failed'}, "
                              f"{free // 1024} KiB free); check the -o folder")
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


