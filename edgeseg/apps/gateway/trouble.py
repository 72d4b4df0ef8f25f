"""What is wrong with a camera, as the page, the API and ``/healthz`` show it (#35 point 3).

Why a module of its own: an operator found an offline camera looking fine (a grey badge, the last
annotated frame and the last fps shown as if live, ``/healthz`` 200 for 30 s). Here one place decides:

- which troubles a camera has now (``offline``, ``stalled``, and the view guards' ``blocked``,
  ``defocused``, ``moved``), each with its fix text and since when (:func:`describe`),
- whether its latest frame is stale (:func:`stale`): then ``latest.jpg`` answers 503 instead of an old
  frame, and the fps reads 0,
- the ``/healthz`` verdict (:func:`health`): unhealthy as soon as a camera is known offline or stalled,
  and at the latest ``health.silent_after_s`` after its last processed frame.

:func:`follow` is told of every camera event (the dispatcher thread) and keeps each trouble's record
(its ``fix``, when it was raised); the truth of what is raised stays with the reader and the guards.
"""
from __future__ import annotations

import time
from typing import Any

from edgeseg.io.sinks.base import iso_time

#: fix texts of the reader's troubles (the guards' are in their trouble events: edgeseg.streaming.guards.FIX)
FIX = {
    "offline": "the camera does not answer: check its power, network cable and URL / credentials; the gateway "
               "reconnects on its own",
    "stalled": "the camera is connected but sends no new picture: check it / its encoder",
}
#: events that raise or clear a trouble shown on the page (``jump`` is a one-off notice, never raised)
_RAISE = {"trouble", "camera_offline"}
_CLEAR = {"trouble_cleared", "camera_online"}


def follow(cam: Any, record: dict[str, Any]) -> None:
    """Keep ``record``'s trouble (raised or cleared) on camera ``cam`` (its CameraState; None: ignored)."""
    kind = record.get("event")
    if cam is None or kind not in _RAISE | _CLEAR:
        return
    name = "offline" if kind in ("camera_offline", "camera_online") else record.get("trouble")
    if not isinstance(name, str) or name == "jump":
        return
    if kind in _CLEAR:
        cam.trouble_records.pop(name, None)
        return
    wall = record.get("wall_time") or time.time()
    cam.trouble_records.setdefault(name, {"trouble": name, "since_wall_time": wall, "since_iso": iso_time(wall),
                                          "fix": record.get("fix") or FIX.get(name, "see the gateway's log"),
                                          **({"error": record["error"]} if record.get("error") else {})})


def offline(cam: Any) -> bool:
    """A live camera known to be off: its reader lost it (or never had it and said so)."""
    return bool(cam.cfg.live and not cam.reader.online and ("offline" in cam.trouble_records or cam.reader.reconnects))


def stale(cam: Any, silent_after_s: float, now: float | None = None) -> bool:
    """Whether the camera's latest frame no longer shows the scene: offline, stalled, or silent."""
    if not cam.cfg.live or cam.finished.is_set():
        return False
    now = time.monotonic() if now is None else now
    return offline(cam) or cam.reader.stalled or now - (cam.last_result_at or cam.started_at) > silent_after_s


def describe(cam: Any) -> list[dict[str, Any]]:
    """The camera's troubles now, each ``{trouble, fix, since_wall_time, since_iso[, error]}``."""
    names = ["offline"] if offline(cam) else []
    names += ["stalled"] if cam.reader.stalled else []
    guard = cam.unit.guard
    names += sorted(guard.troubles) if guard is not None else []
    out = []
    for name in names:
        rec = cam.trouble_records.get(name)
        out.append(dict(rec) if rec else {"trouble": name, "fix": FIX.get(name, "see the gateway's log"),
                                          "since_wall_time": None, "since_iso": None})
    return out


def last_frame(cam: Any) -> dict[str, Any]:
    """When the camera's last frame was processed (wall clock, ISO 8601 with the offset): "last frame at"."""
    wall = cam.last_frame_wall
    return {"last_frame_wall_time": wall, "last_frame_iso": iso_time(wall) if wall else None}


def health(gw: Any) -> tuple[bool, dict[str, Any]]:
    """``/healthz``: 503 while a camera is offline or stalled (known at once), or silent for over
    ``health.silent_after_s`` (a camera that never connected, a frozen dispatcher)."""
    now = time.monotonic()
    limit = gw.config.silent_after_s
    silent, stalled, off, cams = [], [], [], {}
    with gw.cond:
        items = list(gw.cameras.items())
    for name, cam in items:
        age = now - (cam.last_result_at or cam.started_at)
        ended = cam.finished.is_set()
        cams[name] = {"online": cam.reader.online or not cam.cfg.live, "stalled": cam.reader.stalled,
                      "last_frame_age_s": round(age, 2), "ended": ended, **last_frame(cam)}
        if ended:
            continue
        if age > limit:
            silent.append(name)
        if cam.reader.stalled:
            stalled.append(name)
        if offline(cam):
            off.append(name)
    ok = not silent and not stalled and not off and gw._running and gw._crash is None
    return ok, {"status": "ok" if ok else "unhealthy", "silent": silent, "stalled": stalled, "offline": off,
                "silent_after_s": limit, "cameras": cams}
