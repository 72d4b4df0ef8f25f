"""Open alarms survive a crash: a small journal of the alarms that have started and not ended.

Every ``start`` is written to ``<state_dir>/open-alarms.json`` (atomically: a temporary file
renamed into place, fsync'd), every ``end`` removes it. A clean stop ends every alarm, so the
journal is empty afterwards; a journal that is not empty at the next start means the process
died (``kill -9``, power cut, OOM): those alarms are ended first, with reason ``crashed``, before
any camera starts, so no consumer is left with a ``start`` that never ends.

Suspensions survive any restart (#37 point 9): every ``suspended`` is written to
``<state_dir>/suspensions.json`` (camera -> wall-clock end, null: until resumed), every ``resumed``
removes it. A camera that starts again is still suspended until then; one whose suspension ran out
while the gateway was down gets its ``resumed`` event (reason ``suspension expired``) as it starts.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from edgeseg.core.redact import redact_url

log = logging.getLogger("edgeseg")

FILE = "open-alarms.json"
SUSPENSIONS = "suspensions.json"


class AlarmJournal:
    """The open alarms of one gateway, by camera (``camera/zone`` for a named zone's alarm)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / FILE
        self.open: dict[str, dict[str, Any]] = {}
        for tmp in [*self.dir.glob(f".{FILE}.*.tmp"), *self.dir.glob(f".{SUSPENSIONS}.*.tmp")]:
            tmp.unlink(missing_ok=True)  # a write the crash interrupted: the old file is whole
        self.suspensions: dict[str, dict[str, Any]] = self._read(self.dir / SUSPENSIONS, "suspension journal")

    @staticmethod
    def _read(path: Path, what: str) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("%s %s unreadable (%s): what it held before this start is lost", what, path, exc)
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def left_over(self) -> dict[str, dict[str, Any]]:
        """What a process that died left open (empty after a clean stop); unreadable -> empty, logged."""
        data = self._read(self.path, "alarm journal")
        for entry in data.values():  # a journal written before sources were redacted
            if isinstance(entry, dict) and "source" in entry:
                entry["source"] = redact_url(entry["source"])
        return data

    def _write(self, name: str = FILE) -> None:
        tmp, path = self.dir / f".{name}.{os.getpid()}.tmp", self.dir / name
        try:
            with tmp.open("w", encoding="utf-8") as f:
                json.dump(self.open if name == FILE else self.suspensions, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:  # disk full: the alarm itself goes on; the journal is best effort
            tmp.unlink(missing_ok=True)
            log.error("cannot write the journal %s: %s", path, exc)
            raise

    def restore(self, camera: str, unit: Any) -> None:
        """Suspend ``unit`` again when ``camera`` was suspended at the last stop (before it starts)."""
        entry = self.suspensions.get(camera)
        if entry is None:
            return
        until = entry.get("until")
        if until is not None and (not isinstance(until, (int, float)) or time.time() >= until):
            unit.emit({"event": "resumed", "reason": "suspension expired", "while_down": True,
                       "until_wall_time": until})  # the journal forgets it (record)
            return
        unit.suspended_until = float("inf") if until is None else float(until)
        log.info("camera %s is still suspended%s (suspended before the restart)", camera,
                 "" if until is None else f" until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(until))}")

    def record(self, event: dict[str, Any]) -> None:
        """Follow one camera event: a ``start`` opens, an ``end`` closes."""
        cam = event.get("camera")
        if cam is None:
            return
        if event.get("event") in ("suspended", "resumed"):
            if event["event"] == "suspended":
                self.suspensions[cam] = {"until": event.get("until_wall_time"), "wall_time": event.get("wall_time"),
                                         **{k: event[k] for k in ("who", "why") if event.get(k) is not None}}
            elif self.suspensions.pop(cam, None) is None:
                return
            self._write(SUSPENSIONS)
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
