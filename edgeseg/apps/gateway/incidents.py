"""Incidents: an alarm latches until a person acknowledges it (#35 point 1).

An alarm's ``alarm_id`` names an incident. The incident stays in the list after its alarm cleared,
until someone acknowledges it; a leak that comes back within ``alarm.cooldown_s`` rejoins it
(:mod:`edgeseg.streaming.alarm`: its ``start`` says ``rejoined``). Its ``state``:

- ``open``: the leak is on and nobody has acknowledged it,
- ``cleared_unacknowledged``: the leak stopped (the alarm ended), nobody has acknowledged it yet,
- ``acknowledged``: someone did (``acknowledged``: who, note, when); ``active`` says whether the leak
  is still on. An acknowledged incident that has cleared is closed: a later leak is a new incident.

Why a store of its own and not the event list: an operator found that a cleared alarm vanished and
could not be acknowledged (404), and per-frame updates pushed each ``start`` off the 30-row event
list (#35). This :class:`~edgeseg.io.sinks.base.Sink` follows the same events every sink sees
(``start``, ``update``, ``end``, ``acknowledged``) in the dispatcher's order, so an incident is what
the events say, whichever path (HTTP, MQTT, the page) acknowledged it.

It survives a restart: ``<state_dir>/incidents.json``, written atomically (temporary file, fsync,
rename) at every change of state, not at updates. Bounded: at most :data:`MAX_INCIDENTS`, the
oldest closed ones dropped first (an unacknowledged one only when nothing else is left, logged).
Written on the dispatcher thread; the HTTP threads read copies under the lock.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from edgeseg.io.sinks.base import Sink, iso_time

log = logging.getLogger("edgeseg")

FILE = "incidents.json"
#: incidents kept (memory and disk: about 1 KB each)
MAX_INCIDENTS = 1000
#: event ids remembered per incident (its starts, ends and acknowledgment: links to evidence)
MAX_EVENT_IDS = 32
STATES = ("open", "cleared_unacknowledged", "acknowledged")


def state_of(inc: dict[str, Any]) -> str:
    return "acknowledged" if inc.get("acknowledged") else "open" if inc.get("active") else "cleared_unacknowledged"


def closed(inc: dict[str, Any]) -> bool:
    """Acknowledged and cleared: nothing is left to do about it."""
    return bool(inc.get("acknowledged")) and not inc.get("active")


class IncidentStore(Sink):
    """The gateway's incidents (see the module doc). ``events``: the :class:`EventStore` before it in the
    sinks, whose ``last_id`` is the id of the event this store is handed (links to snapshots and clips)."""

    def __init__(self, state_dir: str | Path, events: Any = None, keep: int = MAX_INCIDENTS) -> None:
        self.dir, self.events, self.keep = Path(state_dir), events, keep
        self.path = self.dir / FILE
        self._lock = threading.Lock()
        for tmp in self.dir.glob(f".{FILE}.*.tmp"):
            tmp.unlink(missing_ok=True)  # a write a crash interrupted: the old file is whole
        self._items: dict[str, dict[str, Any]] = {}  # id -> incident, oldest first
        for inc in self._read():
            inc["active"] = False  # the alarms of the last run ended (a clean stop, or `crashed` at this start)
            inc["state"] = state_of(inc)
            self._items[inc["id"]] = inc

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("incident file %s unreadable (%s): the incidents before this start are lost", self.path, exc)
            return []
        items = data.get("incidents") if isinstance(data, dict) else None
        return [i for i in items or [] if isinstance(i, dict) and isinstance(i.get("id"), str)][-self.keep:]

    # -- the dispatcher thread ---------------------------------------------------------------------
    def event(self, record: dict[str, Any]) -> None:
        kind, alarm_id = record.get("event"), record.get("alarm_id")
        if kind not in ("start", "update", "end", "acknowledged") or not isinstance(alarm_id, str):
            return
        with self._lock:
            inc = self._items.get(alarm_id)
            if inc is None and kind != "start":
                return  # an incident dropped by the bound, or an event of another gateway's state
            if kind == "start":
                inc = self._start(inc, record)
            elif kind == "update":
                self._peak(inc, record)
                return  # updates change nothing an operator acts on: no write
            elif kind == "end":
                inc.update(active=False, cleared_wall_time=record.get("wall_time"), cleared_iso=record.get("time_iso"),
                           reason=record.get("reason"))
            elif not inc.get("acknowledged"):  # the first acknowledgment is the one kept
                inc["acknowledged"] = {"who": record.get("who"), "user": record.get("user"), "role": record.get("role"),
                                       "note": record.get("note") or record.get("why"),
                                       "wall_time": record.get("wall_time"), "time_iso": record.get("time_iso"),
                                       "while_open": bool(inc.get("active"))}
            ids = inc.setdefault("event_ids", [])
            last = getattr(self.events, "last_id", None)
            if last is not None and kind != "update" and len(ids) < MAX_EVENT_IDS:
                ids.append(last)
            proof = inc.setdefault("evidence_event_ids", [])  # the page's evidence viewer: starts and ends with files
            if last is not None and kind in ("start", "end") and (record.get("snapshot") or record.get("evidence")) \
                    and len(proof) < MAX_EVENT_IDS:
                proof.append(last)
            inc["state"] = state_of(inc)
            self._bound()
            snapshot = list(self._items.values())
        self._write(snapshot)

    def _start(self, inc: dict[str, Any] | None, r: dict[str, Any]) -> dict[str, Any]:
        if inc is None:
            inc = {"id": r["alarm_id"], "alarm_id": r["alarm_id"], "camera": r.get("camera"), "zone": r.get("zone"),
                   "source": r.get("source"), "opened_wall_time": r.get("wall_time"), "opened_iso": r.get("time_iso"),
                   "episodes": 0, "peak_area_pct": 0.0, "max_confidence": 0.0, "acknowledged": None}
            self._items[inc["id"]] = inc
        inc["episodes"] = int(inc.get("episodes") or 0) + 1
        inc.update(active=True, cleared_wall_time=None, cleared_iso=None, reason=None)
        if r.get("rejoined"):
            inc["rejoined_wall_time"], inc["rejoined_iso"] = r.get("wall_time"), r.get("time_iso")
        self._peak(inc, r)
        return inc

    @staticmethod
    def _peak(inc: dict[str, Any], r: dict[str, Any]) -> None:
        inc["peak_area_pct"] = max(float(inc.get("peak_area_pct") or 0.0), float(r.get("area_pct") or 0.0))
        inc["max_confidence"] = max(float(inc.get("max_confidence") or 0.0), float(r.get("confidence") or 0.0))
        if r.get("snapshot"):
            inc["snapshot"] = r["snapshot"]

    def _bound(self) -> None:
        """At most ``keep`` incidents: the oldest closed ones go first (lock held)."""
        extra = len(self._items) - self.keep
        if extra <= 0:
            return
        gone = [k for k, v in self._items.items() if closed(v)][:extra]
        if len(gone) < extra:
            more = [k for k, v in self._items.items() if not v.get("active") and k not in gone][:extra - len(gone)]
            log.warning("over %d incidents: %d unacknowledged one(s) dropped, the oldest (fix: acknowledge incidents)",
                        self.keep, len(more))
            gone += more
        for k in gone:
            del self._items[k]

    def _write(self, items: list[dict[str, Any]]) -> None:
        tmp = self.dir / f".{FILE}.{os.getpid()}.tmp"
        try:
            with tmp.open("w", encoding="utf-8") as f:
                json.dump({"version": 1, "incidents": items}, f, default=str)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # disk full: the incidents live on in memory; the file is best effort
            tmp.unlink(missing_ok=True)
            log.error("cannot write the incident file %s: %s", self.path, exc)

    # -- any thread --------------------------------------------------------------------------------
    def get(self, incident_id: str) -> dict[str, Any] | None:
        with self._lock:
            inc = self._items.get(incident_id)
            return _shown(inc) if inc is not None else None

    def select(self, state: str | None = None, camera: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Unresolved incidents first (newest first), then the closed ones (newest first): an incident that
        needs someone is never pushed off a page by old ones. ``state``: one of :data:`STATES`, or
        ``unresolved`` (all but the closed ones)."""
        with self._lock:
            items = [i for i in self._items.values() if camera is None or i.get("camera") == camera]
        if state == "unresolved":
            items = [i for i in items if not closed(i)]
        elif state is not None:
            items = [i for i in items if i.get("state") == state]
        items.sort(key=lambda i: (not closed(i), i.get("opened_wall_time") or 0.0), reverse=True)
        return [_shown(i) for i in items[:limit]]

    def newest_unacknowledged(self, camera: str) -> str | None:
        """The id of ``camera``'s newest incident nobody has acknowledged (MQTT ``ack`` without an id)."""
        with self._lock:
            ids = [k for k, v in self._items.items() if v.get("camera") == camera and not v.get("acknowledged")]
        return ids[-1] if ids else None

    def unacknowledged(self, camera: str) -> int:
        with self._lock:
            return sum(1 for v in self._items.values() if v.get("camera") == camera and not v.get("acknowledged"))


def _shown(inc: dict[str, Any]) -> dict[str, Any]:
    """A copy as the API shows it (the state recomputed, the event ids as a new list)."""
    out = {**inc, "state": state_of(inc), "event_ids": list(inc.get("event_ids") or []),
           "evidence_event_ids": list(inc.get("evidence_event_ids") or [])}
    out["acknowledged"] = dict(inc["acknowledged"]) if inc.get("acknowledged") else None
    return out
