"""Incidents and site-ready defaults (issue #35, points 1 and 5), on the real parts: a real Gateway with
the tiny ONNX model, in-memory cameras whose leak a test turns on and off, the real HTTP API.

What an operator found: a cleared alarm left the list and could not be acknowledged (404); a leak back
within cooldown_s was dropped without a trace; per-frame updates pushed each start off the event list;
the defaults suited a demo (3 frames to confirm, an event per frame, a pre-roll shorter than the
confirmation)."""
from __future__ import annotations

import threading
import time
from datetime import datetime

import numpy as np
import pytest

from edgeseg import Gateway
from edgeseg.apps.gateway.config import ConfigError, parse_config
from edgeseg.apps.gateway.incidents import IncidentStore
from edgeseg.config.settings import AlarmSettings
from edgeseg.streaming.alarm import LeakAlarm
from test_api import call, js
from test_gateway import Collect, wait_for

LEAK = threading.Event()  # on: the cameras show a picture the tiny model (threshold 0.2) finds a leak in


class LeakCam:
    """A live camera at 25 fps (real time = source time): a noisy picture (a leak for the tiny model at
    threshold 0.2) while ``LEAK`` is set, else a black one (none)."""

    def __init__(self, spec, fps: float = 25.0) -> None:
        self.fps, self.next, self.served = fps, time.monotonic(), 0
        self.noise = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)

    def isOpened(self):
        return True

    def read(self):
        self.next += 1.0 / self.fps
        time.sleep(max(0.0, self.next - time.monotonic()))
        self.served += 1
        img = self.noise.copy() if LEAK.is_set() else np.zeros((48, 64, 3), np.uint8)
        img[0, 0, 0] = self.served % 2  # pictures that differ: not a frozen source
        return True, img

    def get(self, prop):
        import cv2

        return self.served * 1000.0 / self.fps if prop == cv2.CAP_PROP_POS_MSEC else self.fps

    def release(self):
        pass


@pytest.fixture(autouse=True)
def _no_leak():
    LEAK.clear()
    yield
    LEAK.clear()


def start(tiny_onnx, tmp_path, col, cameras=("yard",), **alarm) -> Gateway:
    cfg = {"model": str(tiny_onnx), "threads": 1, "threshold": 0.2, "guards": {"enabled": False},
           "alarm": {"k": 1, "n": 1, "m": 1, "verify_s": 0.2, "clear_s": 0.4, "cooldown_s": 30, **alarm},
           "cameras": [{"name": c, "source": f"fake://{c}"} for c in cameras], "metrics": {"port": 0},
           "state_dir": str(tmp_path / "state")}
    return Gateway(cfg, sinks=[col], capture_factory=lambda spec: LeakCam(spec)).start()


def leak_until(col: Collect, kind: str, count: int, on: bool) -> None:
    (LEAK.set if on else LEAK.clear)()
    assert wait_for(lambda: len(col.of(kind)) >= count, 20), col.events[-5:]


def test_an_incident_latches_rejoins_and_is_acknowledged_after_it_cleared(tiny_onnx, tmp_path):
    col = Collect()
    gw = start(tiny_onnx, tmp_path, col)
    try:
        leak_until(col, "start", 1, True)
        leak_until(col, "end", 1, False)
        first = col.of("start")[0]["alarm_id"]
        (inc,) = js(call(gw, "GET", "/api/incidents"))
        assert inc["id"] == first and inc["state"] == "cleared_unacknowledged" and not inc["active"]
        assert inc["camera"] == "yard" and inc["episodes"] == 1 and inc["cleared_iso"] and inc["reason"] == "quiet"
        cam = js(call(gw, "GET", "/api/cameras/yard"))
        assert cam["open_alarm"] is None and cam["unacknowledged_incident"] == first

        # back within cooldown_s: the same incident, and the start says so (it used to be dropped)
        leak_until(col, "start", 2, True)
        again = col.of("start")[1]
        assert again["alarm_id"] == first and again["rejoined"] is True and again["episode"] == 2
        assert js(call(gw, "GET", f"/api/incidents/{first}"))["state"] == "open"
        leak_until(col, "end", 2, False)
        inc = js(call(gw, "GET", f"/api/incidents/{first}"))
        assert inc["episodes"] == 2 and inc["state"] == "cleared_unacknowledged"

        # acknowledged after it cleared (was 404), with who and a note
        code, _, body = call(gw, "POST", f"/api/alarms/{first}/ack", {"who": "ann", "note": "valve 3 closed"})
        assert code == 200, body
        inc = js(call(gw, "GET", f"/api/incidents/{first}"))
        assert inc["state"] == "acknowledged" and inc["acknowledged"]["who"] == "ann"
        assert inc["acknowledged"]["note"] == "valve 3 closed" and not inc["acknowledged"]["while_open"]
        assert datetime.fromisoformat(inc["acknowledged"]["time_iso"]).utcoffset() is not None
        (ack,) = col.of("acknowledged")
        assert ack["alarm_id"] == first and ack["active"] is False and ack["note"] == "valve 3 closed"
        again = js(call(gw, "POST", f"/api/incidents/{first}/ack", {"who": "bob"}))
        assert again["already"] is True and again["incident"]["acknowledged"]["who"] == "ann"  # the first one stays
        assert call(gw, "POST", f"/api/incidents/{'0' * 16}/ack", {"who": "x"})[0] == 404

        # acknowledged and cleared: closed; a leak now is a new incident, listed first
        leak_until(col, "start", 3, True)
        third = col.of("start")[2]
        assert third["alarm_id"] != first and "rejoined" not in third
        listed = js(call(gw, "GET", "/api/incidents"))
        assert [i["id"] for i in listed] == [third["alarm_id"], first] and listed[0]["state"] == "open"
        assert [i["id"] for i in js(call(gw, "GET", "/api/incidents?state=unresolved"))] == [third["alarm_id"]]
        assert call(gw, "GET", "/api/incidents?state=bogus")[0] == 400
    finally:
        gw.stop()
    # every event: the epoch and ISO 8601 with the offset, the same instant
    for e in col.events:
        iso = datetime.fromisoformat(e["time_iso"])
        assert iso.utcoffset() is not None and abs(iso.timestamp() - e["wall_time"]) < 0.002, e


def test_updates_never_push_a_start_off_the_event_list(tiny_onnx, tmp_path):
    col = Collect()
    gw = start(tiny_onnx, tmp_path, col, update_every_s=0)  # the old default: an update per frame
    try:
        leak_until(col, "start", 1, True)
        assert wait_for(lambda: len(col.of("update")) >= 40, 20)
        newest = js(call(gw, "GET", "/api/events?limit=10"))
        assert "update" not in [e["event"] for e in newest]
        assert [e["event"] for e in newest][-1] == "start" and newest[-1]["time_iso"]
        with_updates = js(call(gw, "GET", "/api/events?limit=10&updates=1"))
        assert [e["event"] for e in with_updates] == ["update"] * 10
        tail = js(call(gw, "GET", "/api/events?since=0&limit=1000"))  # a client tailing misses nothing
        assert [e["event"] for e in tail].count("update") >= 40
        assert call(gw, "GET", "/api/events?updates=maybe")[0] == 400
    finally:
        gw.stop()


def test_incidents_survive_a_restart_and_are_acknowledged_with_their_camera_gone(tiny_onnx, tmp_path):
    col = Collect()
    gw = start(tiny_onnx, tmp_path, col)
    try:
        leak_until(col, "start", 1, True)
    finally:
        gw.stop()  # ends the alarm (reason stopped): the incident is cleared, not acknowledged
    first = col.of("start")[0]["alarm_id"]
    LEAK.clear()
    col2 = Collect()
    gw = start(tiny_onnx, tmp_path, col2, cameras=("gate",))  # yard was removed from the config
    try:
        (inc,) = js(call(gw, "GET", "/api/incidents"))
        assert inc["id"] == first and inc["state"] == "cleared_unacknowledged" and inc["reason"] == "stopped"
        assert inc["camera"] == "yard" and inc["event_ids"]
        start_event = js(call(gw, "GET", f"/api/events/{inc['event_ids'][0]}"))
        assert start_event["event"] == "start" and start_event["alarm_id"] == first
        code, _, body = call(gw, "POST", f"/api/incidents/{first}/ack", {"who": "night shift", "note": "checked"})
        assert code == 200, body
        assert col2.of("acknowledged")[0]["camera"] == "yard"
    finally:
        gw.stop()
    gw = start(tiny_onnx, tmp_path, Collect(), cameras=("gate",))
    try:
        inc = js(call(gw, "GET", f"/api/incidents/{first}"))
        assert inc["state"] == "acknowledged" and inc["acknowledged"]["who"] == "night shift"
    finally:
        gw.stop()


def test_the_incident_store_is_bounded_and_drops_closed_ones_first(tmp_path):
    store = IncidentStore(tmp_path, keep=3)
    ids = [f"{i:016x}" for i in range(5)]
    for i, a in enumerate(ids):
        store.event({"event": "start", "alarm_id": a, "camera": "c", "wall_time": float(i)})
        store.event({"event": "end", "alarm_id": a, "camera": "c", "wall_time": i + 0.5, "reason": "quiet"})
        if i < 2:  # the two oldest are acknowledged: closed
            store.event({"event": "acknowledged", "alarm_id": a, "camera": "c", "who": "ann", "wall_time": i + 0.6})
    assert sorted(i["id"] for i in store.select()) == ids[2:]  # the closed ones went, the unresolved stayed
    assert sorted(i["id"] for i in IncidentStore(tmp_path, keep=3).select()) == ids[2:]  # and on disk


# -- point 5: site-ready defaults, in seconds ----------------------------------------------------------------
def feed(alarm: LeakAlarm, pattern: list[tuple[float, bool]], fps: float = 25.0) -> list[dict]:
    """``pattern``: (seconds, leak) spans, fed at ``fps``."""
    out, i = [], 0
    for seconds, leak in pattern:
        for _ in range(round(seconds * fps)):
            out += alarm.update(i, i / fps, [{"area_pct": 1.0, "max_conf": 0.9}] if leak else [])
            i += 1
    return out


def test_the_defaults_confirm_and_clear_in_seconds_and_rate_limit_updates():
    s = AlarmSettings()
    assert (s.verify_s, s.clear_s, s.update_every_s, s.cooldown_s) == (3.0, 10.0, 10.0, 60.0)
    assert feed(LeakAlarm.from_settings(s), [(2.9, True)]) == []  # 73 frames of a leak: not yet 3 s
    ev = feed(LeakAlarm.from_settings(s), [(30, True), (9.9, False), (0.2, False)])
    assert [e["event"] for e in ev] == ["start", "update", "update", "end"]  # an update per 10 s, not per frame
    assert [round(e["timestamp"], 2) for e in ev] == [3.0, 13.0, 23.0, 39.96]  # clear: 10 s after the last leak


def test_the_pre_roll_covers_the_onset(caplog):
    def camera(**kw):
        raw = {"cameras": [{"name": "a", "source": "rtsp://h/a", **kw}], "clips": {"dir": "/tmp/clips"}}
        return parse_config(raw).cameras[0]

    assert camera().clips.pre_s == 5.0  # verify_s 3 + 2 s
    assert camera(alarm={"verify_s": 10}).clips.pre_s == 12.0  # derived: the clip starts before the leak did
    zones = {"named": [{"name": "flange", "include": [[[0, 0], [1, 0], [1, 1]]], "verify_s": 8}]}
    assert camera(zones=zones).clips.pre_s == 10.0  # a zone's longer verify_s counts
    assert camera(alarm={"verify_s": 0}, clips={"pre_s": 1}).clips.pre_s == 1.0  # no confirmation delay
    with pytest.raises(ConfigError, match=r"^cameras\[0\]\.clips\.pre_s: 5 s is shorter than alarm\.verify_s "
                                          r"\(10 s\) \+ 2 s.*\(fix: set clips\.pre_s to at least 12"):
        camera(alarm={"verify_s": 10}, clips={"pre_s": 5})
    with caplog.at_level("WARNING", "edgeseg"):
        assert camera(alarm={"verify_s": 120}).clips.pre_s == 60.0  # the most a pre-roll holds, and said so
    assert "clips begin 62 s after the leak's onset" in caplog.text
