"""One running camera of the gateway: its reader, its stream unit and its counters."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from edgeseg.apps.gateway.readers import CameraReader
from edgeseg.config.settings import CameraConfig
from edgeseg.streaming.unit import StreamUnit


class CameraState:
    """One running camera: its reader, stream unit and counters (dispatcher-owned)."""

    def __init__(self, cfg: CameraConfig, reader: CameraReader, unit: StreamUnit) -> None:
        self.cfg, self.name, self.reader, self.unit = cfg, cfg.name, reader, unit
        self.kind: str | None = None  # visible / thermal, decided at the first frame when the config says auto
        self.stream: Any = None  # the camera's Segmenter.stream() (a temporal model's history)
        self.processed = 0
        self.started_at = time.monotonic()
        self.last_result_at: float | None = None
        self.last_frame_wall: float | None = None  # wall clock of the last processed frame: "last frame at" (#35)
        self.trouble_records: dict[str, dict[str, Any]] = {}  # raised trouble -> its fix, since when (trouble.follow)
        self.result_times: deque[float] = deque(maxlen=64)  # monotonic times of the last results: the fps now
        self.stop_requested_at: float | None = None
        self.stop_reason = "stopped"
        self.removed = False  # stopped because a reload dropped it (not a shutdown): its HA entities go too
        self.finished = threading.Event()
        self.latencies: list[float] = []  # the last few thousand, for stats()
        self._fps_mark = 0.0  # when the metrics' fps gauge was last set (dispatch._sync_metrics)

    def fps(self, now: float | None = None, window_s: float = 3.0) -> float:
        """Frames processed per second over the last results (at most 64): 0 once the camera went quiet
        for ``window_s`` (or three of its frame intervals): an offline camera must not show the fps it had."""
        now = time.monotonic() if now is None else now
        times = list(self.result_times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        rate = (len(times) - 1) / (times[-1] - times[0])
        return rate if now - times[-1] <= max(window_s, 3.0 / rate) else 0.0

    def stats(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def q(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3, 2) if lat else None

        return {"read": self.reader.read, "processed": self.processed, "dropped": self.reader.dropped,
                "reconnects": self.reader.reconnects, "online": self.reader.online or not self.cfg.live,
                "alarm_active": self.unit.alarm_active, "latency_p50_ms": q(0.5), "latency_p99_ms": q(0.99)}
