"""An annotated JPEG of the frame that started an alarm (its path travels in the ``start`` event).

One snapshot source (#35): a camera whose alarms have an evidence recorder (``clips`` on) gets no JPEG
from here; its ``start`` names the recorder's annotated snapshot instead
(:class:`edgeseg.streaming.unit.StreamUnit`). This sink is the snapshot of cameras without clips.

Its folder is evidence like a clips folder and kept the same way: swept by
:func:`edgeseg.io.evidence.retention.sweep` (``retain_days``, ``max_gb``, ``min_free_gb``,
``keep_min_hours`` of ``sinks.snapshots``) at start and every :data:`SWEEP_EVERY_S` seconds, from a
thread of its own (a camera never waits for a folder walk). An operator found this folder never cleaned.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edgeseg.io.evidence import retention
from edgeseg.io.evidence.clipfile import write_file

log = logging.getLogger("edgeseg")
SWEEP_EVERY_S = 60.0


class SnapshotWriter:
    """Writes ``<dir>/<stream>/<stream>_<frame>_<ms>.annotated.jpg`` atomically (temporary name, fsync, rename).
    ``retention``: the ``sinks.snapshots`` settings (retain_days, max_gb, min_free_gb, keep_min_hours):
    its folder is swept by them; None: never swept (``edgeseg detect``'s own folder)."""

    def __init__(self, folder: str | Path, quality: int = 90, retention: Any = None,
                 on_deleted: Callable[[str, str], None] | None = None,
                 trouble: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.folder, self.quality = Path(folder), int(quality)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.last: dict[str, Any] = {}  # the record (path, bytes, sha256) of the last snapshot written
        self.retention, self.on_deleted, self.trouble = retention, on_deleted, trouble
        self.deleted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if retention is not None:
            clean_folder(self.folder)
            self._thread = threading.Thread(target=self._sweeper, name="edgeseg-snapshots-retention", daemon=True)
            self._thread.start()

    def write(self, stream: str, frame_index: int, annotated: np.ndarray) -> str | None:
        """The snapshot's path, or None (logged) when it could not be written; never raises."""
        folder = self.folder / stream
        # annotated (mask, boxes): named so, as the evidence viewer and the API tell clean from annotated by name
        path = folder / f"{stream}_{frame_index:09d}_{int(time.time() * 1000)}.annotated.jpg"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise OSError("the JPEG encoder wrote nothing")
            self.last = write_file(path, buf.tobytes())  # no temporary left behind on a failure
        except (OSError, cv2.error) as exc:
            log.error("cannot write snapshot %s: %s", path, exc)
            return None
        return str(path)

    def sweep(self, now: float | None = None) -> list[tuple[str, str]]:
        """Delete what ``retention`` asks for now; ``(path, reason)`` per deleted file (never raises)."""
        s = self.retention
        if s is None:
            return []
        gone = retention.sweep(self.folder, s.retain_days, s.max_gb, s.min_free_gb, now=now,
                               keep_min_hours=s.keep_min_hours, report=self.trouble,
                               section="sinks.snapshots")
        for path, reason in gone:
            self.deleted += 1
            if self.on_deleted is not None:
                self.on_deleted(path, reason)
        return gone

    def _sweeper(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - retention must never stop the gateway
                log.exception("snapshots: retention sweep of %s failed", self.folder)
            if self._stop.wait(SWEEP_EVERY_S):
                return

    def close(self) -> None:
        """Stop the sweeper thread (the gateway stops)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def clean_folder(folder: Path) -> None:
    """Half-written snapshots a killed run left in ``folder``'s camera folders never keep a name."""
    for sub in [folder, *(p for p in folder.iterdir() if p.is_dir())]:
        retention.clean_temporaries(sub)
