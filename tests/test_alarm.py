import pytest

from edgeseg.streaming.alarm import LeakAlarm
from edgeseg.runtime.postprocess import Region

R = Region(1, 2, 3, 4, 12, 1.5, (2.0, 3.5), 0.6, 0.8)


def _feed(alarm, pattern, start=0):
    events = []
    for i, hit in enumerate(pattern, start):
        events += alarm.update(i, i / 10.0, [R] if hit else [])
    return events


def test_confirm_k_of_n():
    a = LeakAlarm(k=3, n=5, m=4)
    ev = _feed(a, [1, 0, 1, 0])
    assert ev == [] and not a.active
    ev = a.update(4, 0.4, [R])  # third hit within the last 5 frames
    assert [e["event"] for e in ev] == ["start"]
    assert a.active


def test_no_confirm_with_k_minus_1_of_n():
    a = LeakAlarm(k=3, n=5, m=4)
    # every window of 5 holds at most 2 hits
    ev = _feed(a, [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1])
    assert ev == [] and not a.active


def test_update_and_clear_after_exactly_m_quiet():
    a = LeakAlarm(k=2, n=3, m=3)
    ev = _feed(a, [1, 1])
    assert [e["event"] for e in ev] == ["start"]
    ev = _feed(a, [0, 1], start=2)  # quiet resets on a hit, hits give "update"
    assert [e["event"] for e in ev] == ["update"]
    ev = _feed(a, [0, 0], start=4)  # m-1 quiet frames: still active
    assert ev == [] and a.active
    ev = a.update(6, 0.6, [])
    assert len(ev) == 1 and ev[0]["event"] == "end" and ev[0]["reason"] == "quiet"
    assert ev[0]["active"] is False and ev[0]["confidence"] == 0.0 and ev[0]["regions"] == []
    assert not a.active
    # a single hit after clearing does not re-confirm (history was cleared)
    assert a.update(7, 0.7, [R]) == []


def test_event_fields():
    a = LeakAlarm(k=1, n=1, m=1)
    r2 = {"max_conf": 0.95, "area_px": 3}
    (ev,) = a.update(7, 1.25, [R, r2])
    assert ev["event"] == "start" and ev["frame"] == 7 and ev["timestamp"] == 1.25
    assert ev["active"] is True
    assert ev["confidence"] == pytest.approx(0.95)
    assert ev["regions"][0] == R.to_dict() and ev["regions"][1] == r2


def test_reset_and_validation():
    a = LeakAlarm(k=1, n=1, m=5)
    a.update(0, 0.0, [R])
    assert a.active
    a.reset()
    assert not a.active
    for k, n, m in [(4, 3, 1), (0, 3, 1), (1, 1, 0)]:
        with pytest.raises(ValueError):
            LeakAlarm(k, n, m)


def test_close_ends_an_open_alarm_once_and_resets():
    a = LeakAlarm(k=1, n=1, m=5)
    assert [e["event"] for e in a.update(0, 0.0, [R])] == ["start"]
    ev = a.close(1, 0.1, "interrupted")
    assert len(ev) == 1 and ev[0]["event"] == "end" and ev[0]["reason"] == "interrupted"
    assert ev[0]["frame"] == 1 and ev[0]["active"] is False and not a.active
    assert a.close(2, 0.2, "interrupted") == []  # nothing open: nothing to end


def test_close_without_an_alarm_emits_nothing():
    a = LeakAlarm(k=2, n=3, m=5)
    a.update(0, 0.0, [R])  # one hit: not confirmed
    assert a.close(1, 0.1, "source_ended") == []


def test_an_event_lists_the_largest_regions_and_counts_them_all():
    """A speckled mask can hold hundreds of regions: an event lists the 16 largest and says how many
    there were, so each event stays a short line a sink writes whole (kill -9 tears none)."""
    from edgeseg.streaming.alarm import MAX_EVENT_REGIONS

    regions = [{"area_px": 1000 - i, "max_conf": 0.9} for i in range(40)]
    (start,) = LeakAlarm(k=1, n=1, m=1).update(0, 0.0, regions)
    assert len(start["regions"]) == MAX_EVENT_REGIONS == 16 and start["regions_total"] == 40
    assert [r["area_px"] for r in start["regions"]] == list(range(1000, 984, -1))
    (few,) = LeakAlarm(k=1, n=1, m=1).update(0, 0.0, regions[:3])
    assert "regions_total" not in few and len(few["regions"]) == 3
