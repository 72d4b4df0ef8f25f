"""Alarm lifecycle (issue #25, point 1): ids, verification time, rate-limited updates, cooldown,
suspend / resume / acknowledge on the stream unit the gateway and ``detect`` share."""
from __future__ import annotations

import time

import numpy as np

from edgeseg.streaming.alarm import LeakAlarm
from edgeseg.runtime.postprocess import Region
from edgeseg.runtime.segmenter import Result
from edgeseg.config.settings import AlarmSettings
from edgeseg.io.sinks import Sink
from edgeseg.io.sources import Frame
from edgeseg.streaming.unit import StreamUnit
from fakes import DEMO_ALARM


def region(area_pct: float) -> Region:
    return Region(1, 2, 3, 4, 12, area_pct, (2.0, 3.5), 0.6, 0.8)


def feed(alarm: LeakAlarm, hits: list[float], fps: float = 10.0, start: int = 0) -> list[dict]:
    """``hits``: per frame the leak area (0: no leak); frame i at i / fps seconds."""
    out = []
    for i, area in enumerate(hits, start):
        out += alarm.update(i, i / fps, [region(area)] if area else [])
    return out


def test_every_alarm_has_its_own_id_on_start_update_end():
    a = LeakAlarm(k=1, n=1, m=2)
    ev = feed(a, [1, 1, 0, 0, 1, 0, 0])
    assert [e["event"] for e in ev] == ["start", "update", "end", "start", "end"]
    first, second = ev[0]["alarm_id"], ev[3]["alarm_id"]
    assert first != second and len(first) == 16
    assert ev[1]["alarm_id"] == ev[2]["alarm_id"] == first and ev[4]["alarm_id"] == second
    assert ev[2]["reason"] == "quiet"


def test_verify_s_needs_the_leak_for_that_long_not_only_k_of_n():
    a = LeakAlarm(k=2, n=3, m=5, verify_s=1.0)  # at 10 fps: k of n after 0.1 s, but 1 s of leak needed
    ev = feed(a, [1] * 10)
    assert ev == []
    ev = a.update(10, 1.0, [region(1)])
    assert [e["event"] for e in ev] == ["start"] and ev[0]["timestamp"] == 1.0
    b = LeakAlarm(k=2, n=3, m=5, verify_s=1.0)  # the count starts again after a quiet window
    assert feed(b, [1] * 8 + [0, 0, 0] + [1] * 9) == []


def test_updates_are_rate_limited_unless_the_area_jumps():
    a = LeakAlarm(k=1, n=1, m=3, update_every_s=1.0, update_area_change=0.5)
    ev = feed(a, [1.0] * 25)  # 2.5 s of a steady leak at 10 fps
    kinds = [e["event"] for e in ev]
    assert kinds == ["start", "update", "update"]
    assert [e["timestamp"] for e in ev] == [0.0, 1.0, 2.0]
    ev = a.update(25, 2.5, [region(1.6)])  # +60 % of the area: reported at once
    assert [e["event"] for e in ev] == ["update"] and ev[0]["area_pct"] == 1.6
    assert a.update(26, 2.6, [region(1.7)]) == []  # +6 %: waits for update_every_s


def test_a_leak_back_within_cooldown_rejoins_its_incident_never_dropped():
    """#35: cooldown_s used to hold a returning leak off (2 of 5 episodes had no event, metric or clip);
    now it rejoins the same incident, and says so."""
    a = LeakAlarm(k=1, n=1, m=2, cooldown_s=3.0)
    ev = feed(a, [1, 0, 0])  # start at 0.0 s, end at 0.2 s
    assert [e["event"] for e in ev] == ["start", "end"]
    first = ev[0]["alarm_id"]
    ev = feed(a, [1, 0, 0], start=3)  # 0.3 s: back, 0.1 s after the end
    assert [e["event"] for e in ev] == ["start", "end"]
    assert ev[0]["alarm_id"] == first and ev[0]["rejoined"] is True and ev[0]["episode"] == 2
    assert ev[0]["quiet_s"] == 0.1 and ev[1]["episode"] == 2 and ev[1]["alarm_id"] == first
    ev = feed(a, [1], start=36)  # 3.6 s: over 3 s after the last end (0.5 s): a new incident
    assert [e["event"] for e in ev] == ["start"] and ev[0]["alarm_id"] != first and "rejoined" not in ev[0]


def test_an_incident_acknowledged_after_it_cleared_is_closed_a_leak_after_it_is_new():
    a = LeakAlarm(k=1, n=1, m=2, cooldown_s=60.0)
    first = feed(a, [1, 0, 0])[0]["alarm_id"]
    assert a.acknowledge(first) and not a.active  # acknowledged after the alarm ended
    ev = feed(a, [1], start=3)
    assert [e["event"] for e in ev] == ["start"] and ev[0]["alarm_id"] != first and "rejoined" not in ev[0]


def test_clear_s_ends_after_quiet_seconds_not_frames():
    a = LeakAlarm(k=1, n=1, m=2, clear_s=1.0)
    ev = feed(a, [1] + [0] * 9)  # 0.9 s of quiet at 10 fps: m frames long passed, clear_s not yet
    assert [e["event"] for e in ev] == ["start"]
    ev = feed(a, [0], start=10)  # 1.0 s after the last leak
    assert [e["event"] for e in ev] == ["end"] and ev[0]["reason"] == "quiet"
    b = LeakAlarm(k=1, n=1, m=2, clear_s=1.0)
    assert [e["event"] for e in feed(b, [1] + [0] * 8 + [1] + [0] * 9)] == ["start", "update"]  # a leak resets it


def test_area_jumps_give_updates_no_more_often_than_update_min_s():
    a = LeakAlarm(k=1, n=1, m=3, update_every_s=10.0, update_area_change=0.5, update_min_s=1.0)
    ev = feed(a, [1.0, 3.0] * 15)  # the area doubles and halves every frame for 3 s at 10 fps
    assert [e["timestamp"] for e in ev] == [0.0, 1.1, 2.2]  # the start, then one jump per second at most


def test_acknowledge_marks_the_open_alarm_only():
    a = LeakAlarm(k=1, n=1, m=2)
    start = feed(a, [1])[0]
    assert not a.acknowledge("0" * 16) and a.acknowledge(start["alarm_id"])
    upd = feed(a, [1], start=1)[0]
    assert upd["acknowledged"] is True
    end = feed(a, [0, 0], start=2)[0]
    assert end["event"] == "end" and end["acknowledged"] is True
    # ended: the incident can still be acknowledged (#35: it used to answer 404), another id cannot
    assert a.acknowledge(start["alarm_id"]) and not a.acknowledge("1" * 16)


class Collect(Sink):
    def __init__(self) -> None:
        self.events: list[dict] = []

    def event(self, record: dict) -> None:
        self.events.append(record)


def _frame(i: int, leak: bool) -> tuple[Frame, Result]:
    img = np.full((32, 32, 3), 100, np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    return Frame(i, i / 10.0, img, "cam"), Result(mask, [region(1)] if leak else [], {}, ("bg", "leak"))


def test_stream_unit_suspend_for_minutes_expires_and_is_logged(monkeypatch):
    col = Collect()
    unit = StreamUnit([col], 1, AlarmSettings(k=1, n=1, m=2, **DEMO_ALARM), context={"camera": "cam"})
    unit.handle(*_frame(0, True))
    assert unit.open_alarm
    unit.suspend(0.01, who="ann", why="welding")  # 0.6 s
    kinds = [e["event"] for e in col.events]
    assert kinds == ["start", "end", "suspended"] and col.events[1]["reason"] == "suspended"
    assert col.events[2]["who"] == "ann" and col.events[2]["why"] == "welding" and col.events[2]["camera"] == "cam"
    for i in range(1, 4):
        assert unit.handle(*_frame(i, True)) == []  # leaks while suspended raise nothing
    time.sleep(0.7)
    events = unit.handle(*_frame(5, True))
    assert [e["event"] for e in col.events[-2:]] == ["resumed", "start"] and events[0]["event"] == "start"
    assert col.events[-2]["reason"] == "suspension expired"
    unit.suspend(None)  # until resumed
    time.sleep(0.05)
    assert unit.handle(*_frame(6, True)) == [] and unit.suspended
    unit.resume(who="bob")
    assert col.events[-1] == {**col.events[-1], "event": "resumed", "who": "bob"}


def _at(x: float, y: float, area: float = 1.0) -> Region:
    return Region(int(x), int(y), 2, 2, 4, area, (x, y), 0.6, 0.8)


def test_named_zones_have_their_own_alarm_verify_s_and_cooldown_s():
    from edgeseg.config.settings import ZoneSettings

    col = Collect()
    zones = ZoneSettings(named=[
        {"name": "flange", "include": [[[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]]]},              # top left
        {"name": "vent", "include": [[[0.5, 0], [1, 0], [1, 0.5], [0.5, 0.5]]], "verify_s": 0.5, "cooldown_s": 1.0}])
    unit = StreamUnit([col], 1, AlarmSettings(k=1, n=1, m=2, **DEMO_ALARM), zones, context={"camera": "cam"})
    img = np.full((32, 32, 3), 100, np.uint8)
    mask = np.zeros((32, 32), np.uint8)

    def frame(i: int, *regions: Region) -> list[dict]:
        return unit.handle(Frame(i, i / 10.0, img, "cam"), Result(mask, list(regions), {}, ("bg", "leak")))

    both = (_at(5, 10), _at(25, 10))
    first = frame(0, *both)
    assert [(e["event"], e["zone"]) for e in first] == [("start", "flange")]  # vent: 0.5 s to verify
    for i in range(1, 5):
        assert all(e["zone"] == "flange" for e in frame(i, *both))
    vent = [e for e in frame(5, *both) if e["event"] == "start"]
    assert vent and vent[0]["zone"] == "vent" and vent[0]["alarm_id"] != first[0]["alarm_id"]
    assert sorted(a["zone"] for a in unit.open_alarms) == ["flange", "vent"]

    ack = unit.acknowledge(first[0]["alarm_id"], who="ann")
    assert ack["zone"] == "flange" and [a["acknowledged"] for a in sorted(unit.open_alarms, key=lambda a: a["zone"])] == [True, False]

    ends = frame(6) + frame(7)  # quiet: both end, each naming its zone
    assert sorted((e["event"], e["zone"]) for e in ends) == [("end", "flange"), ("end", "vent")]
    again = frame(8, *both) + frame(9, *both)  # flange starts again at once, vent is cooling down (1 s)
    assert [(e["event"], e["zone"]) for e in again if e["event"] == "start"] == [("start", "flange")]
    assert not any(e["zone"] == "vent" for e in again)
    unit.end_alarm("stopped")
    assert col.events[-1]["event"] == "end" and col.events[-1]["zone"] == "flange" and col.events[-1]["reason"] == "stopped"
    # the camera's own alarm (no zone) takes the leaks outside every named zone
    own = frame(30, _at(10, 28))
    assert [(e["event"], "zone" in e) for e in own] == [("start", False)]


def test_journal_keeps_one_open_alarm_per_camera_and_zone(tmp_path):
    from edgeseg.apps.gateway.journal import AlarmJournal

    j = AlarmJournal(tmp_path)
    j.record({"event": "start", "camera": "cam", "zone": "flange", "alarm_id": "a" * 16})
    j.record({"event": "start", "camera": "cam", "alarm_id": "b" * 16})
    left = AlarmJournal(tmp_path).left_over()
    assert left["cam/flange"]["zone"] == "flange" and left["cam/flange"]["camera"] == "cam" and left["cam"]["alarm_id"] == "b" * 16
    j.record({"event": "end", "camera": "cam", "zone": "flange"})
    assert list(AlarmJournal(tmp_path).left_over()) == ["cam"]
