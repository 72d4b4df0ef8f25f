"""The status page at / (issue #25, point 4), in a real browser: Debian's headless chromium driven
over the DevTools pipe (``tests/chromium.py``) against a running gateway. With
``EDGESEG_UPDATE_SCREENSHOT=1`` it rewrites the screenshot of docs/gateway.md
(benchmarks/reports/status_page.png); otherwise it leaves the checkout as it was. Skips with the reason where chromium is absent
(``make test`` installs it as root: ``make system-deps``)."""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import numpy as np
import pytest

import chromium
from test_gateway import Collect, wait_for
from training.synth import render_clip
from fakes import DEMO_ALARM

ROOT = Path(__file__).resolve().parents[1]
EXE = chromium.find()
pytestmark = pytest.mark.skipif(EXE is None, reason="chromium is not installed (apt-get install chromium; make system-deps)")


class ClipCam:
    """A live camera in memory playing a rendered clip forth and back at ``fps``."""

    frames: list[np.ndarray] = []

    def __init__(self, spec, fps: float = 8.0) -> None:
        self.fps, self.i, self.next = fps, 9 * int(spec[-1]), time.monotonic()  # each camera its own moment

    def isOpened(self):
        return True

    def read(self):
        self.next += 1.0 / self.fps
        time.sleep(max(0.0, self.next - time.monotonic()))
        n = len(self.frames)
        k = self.i % (2 * n - 2)
        self.i += 1
        return True, self.frames[k if k < n else 2 * n - 2 - k].copy()

    def get(self, prop):
        import cv2

        return self.i * 125.0 if prop == cv2.CAP_PROP_POS_MSEC else self.fps

    def release(self):
        pass


@pytest.fixture(scope="module", autouse=True)
def _clip():
    ClipCam.frames = render_clip(5, frames=24, size=(240, 320))[0]


def start(tiny_onnx, tmp_path, col, **extra):
    from edgeseg import Gateway

    cfg = {"model": str(tiny_onnx), "threads": 1, "threshold": 0.2, "alarm": {**DEMO_ALARM, "k": 2, "n": 3, "m": 4, "update_every_s": 30},
           "cameras": [{"name": "yard-east", "source": "fake://1"}, {"name": "compressor-2", "source": "fake://2"}],
           "metrics": {"port": 0}, "state_dir": str(tmp_path / "state"),
           "sinks": {"snapshots": {"dir": str(tmp_path / "snaps")}}, **extra}
    return Gateway(cfg, sinks=[col], capture_factory=lambda spec: ClipCam(spec)).start()


def test_status_page_shows_cameras_alarms_events_and_acknowledges(tiny_onnx, tmp_path):
    col = Collect()
    gw = start(tiny_onnx, tmp_path, col)
    browser = chromium.Browser(EXE, str(tmp_path / "profile"))
    try:
        assert wait_for(lambda: col.of("start", "yard-east") and col.of("start", "compressor-2"), 30)
        browser.goto(gw.server.url + "/")
        cards = browser.wait_js("""(() => { const c = [...document.querySelectorAll('.cam')];
            return c.length === 2 && c.every(e => e.querySelector('img').naturalWidth > 0)
              && c.map(e => e.dataset.camera + ':' + e.querySelector('.state').textContent); })()""")
        assert sorted(c.split(":")[0] for c in cards) == ["compressor-2", "yard-east"]
        assert all(c.split(":")[1] in ("alarm", "ok") for c in cards), cards
        img = browser.js("document.querySelector('.cam img').naturalWidth + 'x' + document.querySelector('.cam img').naturalHeight")
        assert img == "320x240"  # the latest annotated frame at the camera's resolution
        rows = browser.wait_js("[...document.querySelectorAll('#alarms tr[data-alarm]')].map(r => r.dataset.alarm)")
        # incidents latch (#35): the rows are the gateway's incidents, the open alarms among them
        incident_ids = {i["id"] for i in gw.incidents.select()}
        assert set(rows) <= incident_ids and rows
        assert {c.unit.open_alarm for c in gw.cameras.values()} - {None} <= incident_ids
        browser.wait_js("[...document.querySelectorAll('#events img[data-event]')].some(i => i.naturalWidth > 0)")
        events = browser.js("[...document.querySelectorAll('#events tbody tr')].map(r => r.cells[3].textContent)")
        assert "start" in events and "camera_started" in events

        # the committed screenshot of docs/gateway.md is rewritten only when asked (a test run must not
        # leave the checkout modified): EDGESEG_UPDATE_SCREENSHOT=1 pytest tests/test_status_page.py
        update = os.environ.get("EDGESEG_UPDATE_SCREENSHOT") == "1"
        shot = ROOT / "benchmarks" / "reports" / "status_page.png" if update else tmp_path / "status_page.png"
        shot.write_bytes(browser.screenshot())
        assert shot.stat().st_size > 20000

        alarm = rows[0]
        browser.js(f"document.querySelector('#alarms tr[data-alarm=\"{alarm}\"] button.ack').click()")
        assert wait_for(lambda: [e for e in col.of("acknowledged") if e["alarm_id"] == alarm], 10)
        assert col.of("acknowledged")[0]["who"] == "status page"
        browser.wait_js(f"""(() => {{ const r = document.querySelector('#alarms tr[data-alarm="{alarm}"]');
            return !r || r.cells[2].textContent === 'acknowledged'; }})()""")
    finally:
        browser.close()
        gw.stop()


def test_status_page_asks_for_the_token_when_reads_need_one(tiny_onnx, tmp_path):
    tok = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(tok)
    col = Collect()
    gw = start(tiny_onnx, tmp_path, col, api={"token_file": str(tmp_path / "token"), "read_token": True})
    browser = chromium.Browser(EXE, str(tmp_path / "profile"))
    try:
        browser.goto(gw.server.url + "/")
        status = browser.wait_js("document.querySelector('#status').textContent.startsWith('error') "
                                 "&& document.querySelector('#status').textContent")
        assert "API token" in status and not browser.js("document.querySelectorAll('.cam').length")
        browser.js(f"document.querySelector('#token').value = '{tok}';"
                   "document.querySelector('#tokenform').requestSubmit()")
        assert browser.wait_js("document.querySelectorAll('.cam').length") == 2
    finally:
        browser.close()
        gw.stop()


def test_page_is_shipped_in_the_package_without_a_cdn():
    from importlib import resources

    static = resources.files("edgeseg.apps.gateway").joinpath("static")
    for name in ("index.html", "app.js", "style.css"):
        text = static.joinpath(name).read_text()
        assert "http://" not in text and "https://" not in text, name  # no CDN, no build step
    assert 'gateway/static/*' in (ROOT / "pyproject.toml").read_text()
