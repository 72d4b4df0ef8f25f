"""Open alarms survive a crash: a small journal of the alarms that have started and not ended.

Every ``start`` is written to ``<state_dir>/open-alarms.json`` (atomically: a temporary file
renamed into place, fsync'd), every ``end`` removes it. A clean stop ends every alarm, so the
journal is empty afterwards; a journal that is not empty at the next start means the process
died (``kill -9``, power cut, OOM): those alarms are ended first, with reason ``crashed``, before
any camera starts, so no consumer is left with a ``start`` that never ends.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from edgeseg.core.redact import redact_url

log = logging.getLogger("edgeseg")

FILE = "open-alarms.json"


class AlarmJournal:
    """The open alarms of one gateway, by camera (``camera/zone`` for a named zone's alarm)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / FILE
        self.open: dict[str, dict[str, Any]] = {}
        for tmp in self.dir.glob(f".{FILE}.*.tmp"):  # a write the crash interrupted: the old file is whole
            tmp.unlink(missing_ok=True)

    def left_over(self) -> dict[str, dict[str, Any]]:
        """What a process that died left open (empty after a clean stop); unreadable -> empty, logged."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("alarm journal %s unreadable (%s): alarms open at the last crash cannot be ended", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        for entry in data.values():  # a journal written before sources were redacted
            if isinstance(entry, dict) and "source" in entry:
                entry["source"] = redact_url(entry["source"])
        return data

    def _write(self) -> None:
        tmp = self.dir / f".{FILE}.{os.getpid()}.tmp"
        try:
            with tmp.open("w", encoding="utf-8") as f:
                json.dump(self.open, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # disk full: the alarm itself goes on; the journal is best effort
            tmp.unlink(missing_ok=True)
            log.error("cannot write the alarm journal %s: %s", self.path, exc)
            raise

    def record(self, event: dict[str, Any]) -> None:
        """Follow one camera event: a ``start`` opens, an ``end`` closes."""
        cam = event.get("camera")
        if cam is None:
            return
        key = f"{cam}/{event['zone']}" if event.get("zone") else cam  # one open alarm per camera and zone
        if event.get("event") == "start":
            self.open[key] = {k: event.get(k) for k in ("camera", "zone", "alarm_id", "frame", "timestamp", "wall_time")}
            self.open[key]["source"] = redact_url(event.get("source"))  # never a camera's password on disk
            self._write()
        elif event.get("event") == "end" and key in self.open:
            del self.open[key]
            self._write()

    def clear(self) -> None:
        self.open.clear()
        self._write()
