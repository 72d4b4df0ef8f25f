"""How much of the host's CPU re-encoding clips may take (``clips.encode_share``), host-wide.

Why a cap at all: a gateway on a small host keeps its cores busy with inference. Re-encoding a
clip (MJPEG / webcam sources, every annotated clip) costs about 20 ms of CPU per 720p frame with
libx264 ``ultrafast``; measured on a 2-core host, that CPU came out of inference even with the
writer at ``SCHED_IDLE`` (the inference runtimes' worker threads yield and sleep between layers,
and the idle writer runs then), about 6 % of the gateway's FPS with OpenVINO at 720p
(``benchmarks/clips_bench.py``). A camera's detections matter more than the frame rate of its
evidence, so past the cap a clip is thinned instead: frames are kept evenly by their source
timestamps, at the rate the budget pays for, and the dropped ones are counted. Stream copies
(RTSP packets, a file's own packets) cost next to nothing and are never thinned.

The budget is shared by every camera's writer: ``share`` x the cores this process may use, split
evenly between the writers that have a clip open.
"""
from __future__ import annotations

import os
import threading
import weakref

from edgeseg.core.host import usable_cores

_LOCK = threading.Lock()
_OPEN: "weakref.WeakSet[EncodeBudget]" = weakref.WeakSet()  # writers with a re-encoded clip open (a dropped one leaves)


class EncodeBudget:
    """One writer's share of the re-encoding budget. ``keep(ts)`` before a frame is encoded,
    ``spent(ts, cpu_s)`` after; ``opened()`` / ``closed()`` around each clip."""

    def __init__(self, share: float, cores: int | None = None) -> None:
        self.share = float(share)
        self.cores = cores or usable_cores() or os.cpu_count() or 1
        self.cost: float | None = None  # CPU seconds one kept frame costs (moving average)
        self.last_ts: float | None = None
        self.thinned = 0
        self._first = True  # a clip's first frame also starts its encoders: not a frame's cost

    @property
    def unlimited(self) -> bool:
        return self.share >= 1.0

    def opened(self) -> None:
        with _LOCK:
            _OPEN.add(self)
        self.last_ts, self._first = None, True

    def closed(self) -> None:
        with _LOCK:
            _OPEN.discard(self)

    def min_gap_s(self) -> float:
        """Source seconds between two kept frames that the budget pays for (0: keep every frame)."""
        if self.unlimited or self.cost is None:
            return 0.0
        with _LOCK:
            writers = max(1, len(_OPEN))
        return self.cost / (self.share * self.cores / writers)

    def keep(self, ts: float) -> bool:
        if self.last_ts is None or ts < self.last_ts:  # the first frame, or source time went back
            return True
        if ts - self.last_ts >= self.min_gap_s() * 0.999:
            return True
        self.thinned += 1
        return False

    def spent(self, ts: float, cpu_s: float) -> None:
        self.last_ts = ts
        if self._first:
            self._first = False
            return
        self.cost = cpu_s if self.cost is None else 0.8 * self.cost + 0.2 * cpu_s
