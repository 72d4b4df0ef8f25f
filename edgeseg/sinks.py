"""Where results go, as objects (the counterpart of ``edgeseg.sources``).

A sink receives every processed frame (with its annotated image when it asked for one) and every
event record; ``detect`` and the gateway compose the sinks they need instead of hand-coding
files, windows and logs in their loops. Each sink flushes what it owns in ``close()``.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sys
import threading
import time
from abc import ABC
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from edgeseg.errors import OutputError
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


def _write_failed(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {exc.strerror or exc} ({'disk full' if exc.errno == errno.ENOSPC else 'check the folder'}); "
                       "outputs are complete up to the last frame and event written")


#: events after which the log is fsync'd: an incident's start and end must survive a power cut
DURABLE_EVENTS = frozenset({"start", "end"})


class JsonlEvents(Sink):
    """Events as JSON lines, one object per line, each line written whole and flushed at once.

    ``target`` is a path (appended to, or truncated with ``append=False``) or an open text stream
    (stdout). A write that fails (disk full) is rolled back to the last complete line and raised
    as :class:`OutputError`, so the file never ends in half a line; ``start`` / ``end`` are also
    fsync'd. Thread-safe: the gateway's camera threads share one.
    """

    def __init__(self, target: str | Path | IO[str], append: bool = False) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._stream: IO[str] | None = None
        if isinstance(target, (str, Path)):
            self.path: Path | None = Path(target)
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
            try:
                self._fd = os.open(self.path, flags, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot create {self.path}: {exc.strerror}; choose a writable -o folder") from exc
            self._size = os.lseek(self._fd, 0, os.SEEK_END)
        else:
            self.path, self._stream = None, target
        self.lines = 0

    def event(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            if self._fd is None:
                if self._stream is None:
                    raise OutputError(f"events sink {self.path} is closed")
                self._stream.write(line)
                self._stream.flush()
            else:
                data = line.encode()
                try:
                    written = 0
                    while written < len(data):
                        written += os.write(self._fd, data[written:])
                    if record.get("event") in DURABLE_EVENTS:
                        os.fsync(self._fd)
                except OSError as exc:
                    os.ftruncate(self._fd, self._size)  # never leave half a line behind
                    raise _write_failed(self.path, exc) from exc  # type: ignore[arg-type]
                self._size += len(data)
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.fsync(fd)
                except OSError:
                    pass
                os.close(fd)

    @property
    def outputs(self) -> list[str]:
        return [str(self.path)] if self.path else []


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


def stamp(record: dict[str, Any], **context: Any) -> dict[str, Any]:
    """An event record with its context (source, camera) and the wall-clock time it was emitted."""
    return {**record, **context, "wall_time": time.time()}
