"""An annotated JPEG of the frame that started an alarm (its path travels in the ``start`` event)."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("edgeseg")


class SnapshotWriter:
    """Writes ``<dir>/<stream>/<stream>_<frame>_<ms>.jpg`` atomically (temporary name, then rename)."""

    def __init__(self, folder: str | Path, quality: int = 90) -> None:
        self.folder, self.quality = Path(folder), int(quality)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, stream: str, frame_index: int, annotated: np.ndarray) -> str | None:
        """The snapshot's path, or None (logged) when it could not be written; never raises."""
        folder = self.folder / stream
        path = folder / f"{stream}_{frame_index:09d}_{int(time.time() * 1000)}.jpg"
        tmp = path.with_name(f".{path.name}.tmp.jpg")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(tmp), annotated, [cv2.IMWRITE_JPEG_QUALITY, self.quality]):
                raise OSError("the JPEG encoder wrote nothing (disk full?)")
            os.replace(tmp, path)
        except (OSError, cv2.error) as exc:
            tmp.unlink(missing_ok=True)
            log.error("cannot write snapshot %s: %s", path, exc)
            return None
        return str(path)
