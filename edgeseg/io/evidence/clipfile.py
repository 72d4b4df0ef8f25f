"""One clip file: H.264 in MP4 (PyAV), written under a temporary name and renamed when complete.

Frames carry their source timestamps (milliseconds, variable frame rate), so a clip lasts as long
as the scene it shows, whatever frames the gateway skipped. A file that was not closed (kill -9,
power cut) keeps its temporary name ``.<name>.tmp``; :func:`edgeseg.io.evidence.retention.clean_temporaries`
removes it at the next start.
"""
from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.core.errors import OutputError


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _av() -> Any:
    try:
        import av  # noqa: PLC0415 - only clips need PyAV
    except ImportError:
        raise OutputError("clips need PyAV (fix: pip install 'edgeseg[gateway]' or pip install av)") from None
    return av


def finalize(tmp: Path, path: Path) -> dict[str, Any]:
    """fsync ``tmp``, rename it to ``path``; its size and sha256. On a failure (disk full) ``tmp`` is removed."""
    try:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full clips disk keeps no orphan temporaries (#37 point 15)
        raise
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def write_file(path: Path, data: bytes) -> dict[str, Any]:
    """``data`` written to ``path`` atomically (temporary name, fsync, rename); its evidence record.
    Raises ``OSError`` (disk full, ...) with no temporary left behind."""
    tmp = temp_name(path)
    try:
        tmp.write_bytes(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return finalize(tmp, path)


class ClipFile:
    """An H.264 MP4 being written; :meth:`add` frames in time order, then :meth:`close` or :meth:`abort`."""

    def __init__(self, path: str | Path, t0: float, shape: tuple[int, ...], fps: float = 25.0, crf: int = 23) -> None:
        av = _av()
        self.path = Path(path)
        self.tmp = temp_name(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = float(t0)
        self.h, self.w = int(shape[0]) // 2 * 2, int(shape[1]) // 2 * 2  # yuv420p needs even sizes
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        stream = self.container.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = self.w, self.h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        # one encoder thread, fastest preset: the writer must never take the cameras' CPU
        stream.codec_context.options = {"preset": "ultrafast", "crf": str(crf), "threads": "1"}
        stream.thread_count = 1
        self.stream = stream
        self.frames, self.first_ts, self.last_ts, self._last_pts = 0, None, None, -1
        self._shift, self._step = 0.0, None

    def add(self, image: np.ndarray, ts: float) -> None:
        av = _av()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.shape[0] != self.h or image.shape[1] != self.w:
            if image.shape[0] >= self.h and image.shape[1] >= self.w:
                image = image[: self.h, : self.w]
            else:
                image = cv2.resize(image, (self.w, self.h))
        if self.last_ts is not None and ts < self.last_ts - 1e-6:
            # source time went back (a looped file, a reconnect): the clip's own time runs on
            self._shift += (self.last_ts - ts) + (self._step or 0.04)
        elif self.last_ts is not None:
            self._step = ts - self.last_ts if ts > self.last_ts else self._step
        pts = max(int(round((ts + self._shift - self.t0) * 1000)), self._last_pts + 1)
        # OpenCV's BGR -> I420 (BT.601, limited range: what swscale's bgr24 -> yuv420p gives) costs a
        # fifth of the conversion PyAV would do inside encode(): the writer's CPU is taken from
        # inference on a saturated host (docs/gateway.md), so every millisecond per frame counts
        yuv = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_BGR2YUV_I420)
        vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        vf.pts, vf.time_base = pts, Fraction(1, 1000)
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self._last_pts = pts
        self.frames += 1
        self.first_ts = ts if self.first_ts is None else self.first_ts
        self.last_ts = ts

    def close(self) -> dict[str, Any]:
        """Flush, close and rename; the clip's evidence record (path, sha256, frames, duration_s, bytes)."""
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        span = (self._last_pts / 1000 - (self.first_ts - self.t0)) if self.frames else 0.0
        step = span / (self.frames - 1) if self.frames > 1 else 0.0
        return {**finalize(self.tmp, self.path), "frames": self.frames, "duration_s": round(span + step, 3),
                "start_ts": self.first_ts, "end_ts": self.last_ts}

    def abort(self) -> None:
        """Drop the file (a failed write): nothing half-written keeps a name."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the file goes anyway
            pass
        self.tmp.unlink(missing_ok=True)
