"""Notifications (issue #35 point 8) on the real parts: a real Gateway (tiny ONNX model, a live
in-memory camera whose leak the test turns on and off, clips on), the real Apprise library, and a
local HTTP receiver that Apprise's ``json://`` channel posts to (what ntfy / Slack / a webhook
relay would get): the snapshot attached, a link to the incident, the rate limit counted into the
next message, messages queued on disk while the receiver is down."""
from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

pytest.importorskip("apprise", reason="the notify sink needs Apprise (pip install 'edgeseg[notify]')")

from edgeseg import Gateway  # noqa: E402
from edgeseg.io.sinks.notify import NotifySettings, message  # noqa: E402
from test_gateway import Collect, CountingReceiver, free_port, wait_for  # noqa: E402
from test_incidents import LEAK, LeakCam, _no_leak, leak_until  # noqa: E402,F401 - the fixture resets LEAK


class Receiver(CountingReceiver):
    """The local receiver Apprise's json:// posts to: ``status`` is what it answers now, ``got`` what it took."""

    def __init__(self) -> None:
        self.status = 200
        super().__init__(free_port(), lambda body: self.status)
        self.up()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.down()


def start(tiny_onnx, tmp_path, col, port, **notify) -> Gateway:
    cfg = {"model": str(tiny_onnx), "threads": 1, "threshold": 0.2, "guards": {"enabled": False},
           "alarm": {"k": 1, "n": 1, "m": 1, "verify_s": 0.2, "clear_s": 0.4, "cooldown_s": 0},
           "cameras": [{"name": "yard", "source": "fake://yard"}], "state_dir": str(tmp_path / "state"),
           "clips": {"dir": str(tmp_path / "clips"), "pre_s": 2.5, "post_s": 0.5, "min_free_gb": 0},
           "sinks": {"notify": {"urls": [f"json://127.0.0.1:{port}/hook"], "page_url": "https://gw.site.example/",
                                "queue_dir": str(tmp_path / "notify-queue"), **notify}}}
    return Gateway(cfg, sinks=[col], capture_factory=lambda spec: LeakCam(spec)).start()


def test_a_leak_notifies_with_its_snapshot_and_a_link_to_the_incident(tiny_onnx, tmp_path, receiver):
    col = Collect()
    gw = start(tiny_onnx, tmp_path, col, receiver.port)
    try:
        leak_until(col, "start", 1, True)
        assert wait_for(lambda: len(receiver.got) >= 1, 20)
        leak_until(col, "end", 1, False)
    finally:
        gw.stop()
    start_ev = col.of("start")[0]
    got = receiver.got[0]
    assert got["title"] == "Gas leak at yard"
    assert f"https://gw.site.example/#incident={start_ev['alarm_id']}" in got["message"]
    snap = Path(start_ev["evidence"]["snapshot_annotated"])
    (att,) = got["attachments"]
    data = base64.b64decode(att["base64"])
    assert data[:3] == b"\xff\xd8\xff" and att["mimetype"] == "image/jpeg"  # a JPEG: the annotated snapshot
    assert att["filename"] == snap.name and snap.is_file()
    # the snapshot is rewritten while the leak grows: the attached one is that camera's picture, full size
    import cv2
    import numpy as np

    sent, final = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.imread(str(snap))
    assert sent is not None and sent.shape == final.shape


def test_the_rate_limit_counts_what_it_holds_back_and_a_down_receiver_loses_nothing(tiny_onnx, tmp_path, receiver):
    col = Collect()
    receiver.status = 503  # the channel is down when the first leak comes
    gw = start(tiny_onnx, tmp_path, col, receiver.port, min_interval_s=8.0, events=["start"], max_backoff_s=1.0)
    try:
        leak_until(col, "start", 1, True)
        assert wait_for(lambda: any(e.get("trouble") == "notify_failed" for e in col.of("trouble")), 20)
        receiver.status = 200  # back: the queued message goes out
        assert wait_for(lambda: len(receiver.got) >= 1, 20)
        leak_until(col, "end", 1, False)
        leak_until(col, "start", 2, True)  # within min_interval_s: held back, counted
        assert col.of("start")[1]["wall_time"] - col.of("start")[0]["wall_time"] < 8.0
        leak_until(col, "end", 2, False)
        assert wait_for(lambda: time.time() - col.of("start")[0]["wall_time"] > 8.5, 15)
        leak_until(col, "start", 3, True)  # after the interval: sent, naming the one held back
        assert wait_for(lambda: len(receiver.got) >= 2, 20)
    finally:
        gw.stop()
    assert len(receiver.got) == 2, [b["title"] for b in receiver.got]
    assert "(+1 more message(s) held back by the rate limit" in receiver.got[1]["message"]


def test_settings_refuse_what_cannot_work():
    from edgeseg.core.declare import ConfigError
    from edgeseg.core.validation import validate

    with pytest.raises(ConfigError, match="not an Apprise URL"):
        validate(NotifySettings, {"urls": ["ntfy my topic"]})
    with pytest.raises(ConfigError, match="unknown event"):
        validate(NotifySettings, {"urls": ["json://127.0.0.1/x"], "events": ["leak"]})
    title, body = message({"event": "trouble", "camera": "gate", "trouble": "offline", "fix": "check the cable",
                           "time_iso": "2026-12-07T15:00:00+00:00"}, None, 0)
    assert title == "Camera trouble at gate: offline" and body.endswith("Fix: check the cable")
