"""One running camera of the gateway: its reader, its stream unit and its counters."""
from __future__ import annotations

import threading
import time
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
        self.stop_requested_at: float | None = None
        self.stop_reason = "stopped"
        self.removed = False  # stopped because a reload dropped it (not a shutdown): its HA entities go too
        self.finished = threading.Event()
        self.latencies: list[float] = []  # the last few thousand, for stats()
        self._fps_mark = (time.monotonic(), 0)

    def stats(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def q(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3, 2) if lat else None

        return {"read": self.reader.read, "processed": self.processed, "dropped": self.reader.dropped,
                "reconnects": self.reader.reconnects, "online": self.reader.online or not self.cfg.live,
                "alarm_active": self.unit.alarm_active, "latency_p50_ms": q(0.5), "latency_p99_ms": q(0.99)}
