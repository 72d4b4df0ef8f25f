"""What an operator may do to a running gateway (HTTP API, MQTT control): list cameras, suspend /
resume a camera, acknowledge an incident (open or cleared: :mod:`.incidents`), fetch the latest frame.

Every call runs ON THE DISPATCHER THREAD (:meth:`Controls.run` hands it over through a queue the
dispatch loop drains), because the stream units and sinks are the dispatcher's alone. A result is
``(status, body)`` with an HTTP status, so the HTTP API and MQTT say the same thing.
"""
from __future__ import annotations

import math
import re
import threading
import time
from typing import Any, Callable

from edgeseg.config.settings import ConfigError

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ALARM_ID = re.compile(r"^[0-9a-f]{16}$")


class Commands:
    """A thread-safe queue of calls for the dispatcher; :meth:`call` waits for the answer."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._queue: list[tuple[Callable[[], Any], dict[str, Any], threading.Event]] = []
        self._wake = wake

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        box: dict[str, Any] = {}
        done = threading.Event()
        with self._lock:
            self._queue.append((fn, box, done))
        self._wake()
        if not done.wait(timeout):
            return 503, {"error": "the gateway did not answer in time (fix: check its log; is it stopping?)"}
        if "error" in box:
            raise box["error"]
        return box["result"]

    def drain(self) -> None:
        """Run the queued calls (the dispatcher thread only)."""
        with self._lock:
            queue, self._queue = self._queue, []
        for fn, box, done in queue:
            try:
                box["result"] = fn()
            except Exception as exc:  # noqa: BLE001 - handed back to the caller's thread
                box["error"] = exc
            done.set()


def camera_state(cam: Any, incidents: Any = None, silent_after_s: float = 30.0) -> dict[str, Any]:
    """One camera as the API shows it (called on the dispatcher thread): an offline or stalled camera
    is trouble with its fix text and "last frame at", and 0 fps (:mod:`.trouble`, #35 point 3)."""
    from edgeseg.apps.gateway import trouble  # noqa: PLC0415

    unit, r = cam.unit, cam.reader
    details = trouble.describe(cam)
    troubles = [d["trouble"] for d in details]
    online = bool(r.online or not cam.cfg.live)
    suspended = unit.suspended
    state = ("ended" if cam.finished.is_set() else "offline" if not online else "alarm" if unit.open_alarm
             else "suspended" if suspended else "trouble" if troubles else "ok")
    until = unit.suspended_until
    stale = trouble.stale(cam, silent_after_s)
    fps = 0.0 if stale else cam.fps() if cam.cfg.live else cam.processed / max(1e-6, time.monotonic() - cam.started_at)
    store = getattr(incidents, "newest_unacknowledged", None)
    return {"unacknowledged_incident": store(cam.name) if store else None,
            "unacknowledged_incidents": incidents.unacknowledged(cam.name) if store else 0, "name": cam.name, "state": state, "online": online, "fps": round(fps, 2), "processed": cam.processed,
            "drops": r.dropped, "reconnects": r.reconnects, "open_alarm": unit.open_alarm, "open_alarms": unit.open_alarms,
            "acknowledged": bool(unit.open_alarms and unit.open_alarms[0]["acknowledged"]), "suspended": suspended,
            "suspended_until": None if until is None or math.isinf(until) else until, "troubles": troubles,
            "trouble_details": details, "stale": stale, **trouble.last_frame(cam)}


class Controls:
    """The operator's actions on gateway ``gw``; each returns ``(http_status, json_body)``."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self._reloading = threading.Lock()

    def reload(self, by: dict[str, str] | None = None) -> tuple[int, Any]:
        """Re-read the config file, as SIGHUP does (an admin's action: it can add, stop and change
        cameras). Runs on the caller's thread, not the gateway loop's: stopping a changed camera may take
        seconds. A file that no longer loads changes nothing and says why."""
        if self.gw.config.source_path is None:
            return 409, {"error": "this gateway was started from settings in code, not a file: there is nothing "
                                  "to re-read (fix: call Gateway.reload(new_config) in that code)"}
        if not self._reloading.acquire(blocking=False):
            return 409, {"error": "a reload is under way (fix: try again in a few seconds)"}
        try:
            return 200, self.gw.reload(by=by)
        except ConfigError as exc:
            return 400, {"error": f"{exc} (the running config stays)"}
        finally:
            self._reloading.release()

    def run(self, fn: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
        return self.gw.commands.call(fn)

    def _cam(self, name: str) -> Any:
        cam = self.gw.cameras.get(name) if NAME.match(name or "") else None
        return cam if cam is not None and cam.stop_requested_at is None else None

    def cameras(self) -> tuple[int, Any]:
        return self.run(lambda: (200, [self.state(c) for c in list(self.gw.cameras.values())]))

    def state(self, cam: Any) -> dict[str, Any]:
        return camera_state(cam, getattr(self.gw, "incidents", None), self.gw.config.silent_after_s)

    def camera(self, name: str) -> tuple[int, Any]:
        def fn() -> tuple[int, Any]:
            cam = self._cam(name)
            return (200, self.state(cam)) if cam else _unknown_camera(name)
        return self.run(fn)

    def suspend(self, name: str, minutes: Any = None, who: Any = None, why: Any = None,
                by: dict[str, str] | None = None) -> tuple[int, Any]:
        """Suspend camera ``name``; ``by`` (``{"user", "role"}`` of the authenticated caller) goes into the
        ``suspended`` event, the audit trail; ``who`` is only the name the caller typed (#35 point 6)."""
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                                    or not 0 < minutes <= 525600):
            return 400, {"error": f"minutes must be a number of minutes between 0 and 525600, got {minutes!r} "
                                  "(fix: e.g. {\"minutes\": 30}, or leave it out to suspend until resumed)"}

        def fn() -> tuple[int, Any]:
            cam = self._cam(name)
            if cam is None:
                return _unknown_camera(name)
            cam.unit.suspend(minutes, _text(who), _text(why), by)
            return 200, self.state(cam)
        return self.run(fn)

    def resume(self, name: str, who: Any = None, why: Any = None, by: dict[str, str] | None = None) -> tuple[int, Any]:
        def fn() -> tuple[int, Any]:
            cam = self._cam(name)
            if cam is None:
                return _unknown_camera(name)
            cam.unit.resume(_text(who), _text(why), by)
            return 200, self.state(cam)
        return self.run(fn)

    def ack(self, alarm_id: str, who: Any = None, why: Any = None, note: Any = None,
            by: dict[str, str] | None = None) -> tuple[int, Any]:
        """Acknowledge incident ``alarm_id``: its alarm open or cleared, its camera running or gone (removed
        by a reload, or the incident is from before a restart). The ``acknowledged`` event is emitted like
        any other, and the incident store follows it."""
        if not ALARM_ID.match(alarm_id or ""):
            return 404, {"error": "no incident with that id (fix: take the alarm_id of a start event or an incident, "
                                  "16 hex digits: GET /api/incidents)"}

        def fn() -> tuple[int, Any]:
            store = getattr(self.gw, "incidents", None)
            inc = store.get(alarm_id) if store else None
            if inc is not None and inc["acknowledged"] and not inc["active"]:  # closed: the first ack stays
                return 200, {"alarm_id": alarm_id, "camera": inc["camera"], "acknowledged": True, "already": True,
                             "incident": inc}
            for cam in list(self.gw.cameras.values()):
                if cam.unit.acknowledge(alarm_id, _text(who), _text(why), _text(note, 500), by) is not None:
                    return 200, {"alarm_id": alarm_id, "camera": cam.name, "acknowledged": True,
                                 "incident": store.get(alarm_id) if store else None}
            if inc is None:
                return 404, {"error": f"no incident {alarm_id} (fix: the id is wrong or long gone: GET /api/incidents)"}
            record = {"event": "acknowledged", "alarm_id": alarm_id, **({"zone": inc["zone"]} if inc.get("zone") else {}),
                      "active": False, **{k: v for k, v in (("who", _text(who)), ("why", _text(why)),
                                                            ("note", _text(note, 500))) if v}, **(by or {})}
            cam = self.gw.cameras.get(inc["camera"])
            if cam is not None:
                cam.unit.emit(record)
            else:
                self.gw._emit(None, {**record, "camera": inc["camera"]})
            return 200, {"alarm_id": alarm_id, "camera": inc["camera"], "acknowledged": True,
                         "incident": store.get(alarm_id)}
        return self.run(fn)

    def incidents(self, state: str | None = None, camera: str | None = None, limit: int = 100) -> tuple[int, Any]:
        store = getattr(self.gw, "incidents", None)
        return 200, store.select(state, camera, limit) if store is not None else []

    def incident(self, incident_id: str) -> tuple[int, Any]:
        store = getattr(self.gw, "incidents", None)
        inc = store.get(incident_id) if store is not None and ALARM_ID.match(incident_id or "") else None
        if inc is None:
            return 404, {"error": "no such incident (fix: GET /api/incidents lists them)"}
        return 200, inc

    def latest(self, name: str) -> tuple[int, Any]:
        """``(200, (image, result, regions, annotate))`` of the camera's last processed frame; 503 while
        that frame is stale (the camera offline, stalled or silent): an old frame is never served as live."""
        from edgeseg.apps.gateway import trouble  # noqa: PLC0415

        def fn() -> tuple[int, Any]:
            cam = self._cam(name)
            if cam is None:
                return _unknown_camera(name)
            if trouble.stale(cam, self.gw.config.silent_after_s):
                last = trouble.last_frame(cam)
                what = ", ".join(d["trouble"] for d in trouble.describe(cam)) or "silent"
                fixes = "; ".join(d["fix"] for d in trouble.describe(cam)) or "check the camera and the gateway's log"
                return 503, {"error": f"camera {name} is {what}: its last frame (at {last['last_frame_iso'] or 'never'}) "
                                      f"is stale (fix: {fixes})", "stale": True, **last}
            if cam.unit.latest is None:
                return 404, {"error": f"camera {name} has no processed frame yet (fix: wait for it to come online)"}
            return 200, (*cam.unit.latest, cam.unit.annotate)
        return self.run(fn)


def _unknown_camera(name: str) -> tuple[int, Any]:
    shown = name if NAME.match(name or "") else "(invalid name)"
    return 404, {"error": f"no camera {shown} (fix: GET /api/cameras lists them)"}


def _text(v: Any, most: int = 200) -> str | None:
    return None if v is None else str(v)[:most]
