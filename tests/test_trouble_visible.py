"""Offline is trouble (#35 point 3), against the real parts: a running gateway (real ONNX Runtime, the
real HTTP server) with in-memory live cameras that drop off or hang, and the status page in Debian's
headless chromium. Before: an offline camera showed a grey badge, its last annotated frame and its old
fps as if live, and /healthz said 200 for 30 s."""
from __future__ import annotations

import json
import threading
import time


import chromium
from edgeseg import Gateway
from edgeseg.apps.gateway.trouble import FIX
from test_api import call, js
from test_gateway import Collect, FakeCam, cams, health, wait_for

EXE = chromium.find()


class Switch:
    """cam1 of a gateway: ``gone`` set, its camera drops the stream (and refuses reconnects: offline);
    ``hang`` set, its read blocks (connected, silent) until released."""

    def __init__(self) -> None:
        self.gone, self.hang, self.release = threading.Event(), threading.Event(), threading.Event()

    def factory(self, spec):
        sw = self

        class Cam(FakeCam):
            def read(self):
                if spec.endswith("1") and sw.gone.is_set():
                    return False, None
                if spec.endswith("1") and sw.hang.is_set():
                    sw.release.wait(60)
                return super().read()
        return Cam(spec, fps=15)


def start(tiny_onnx, tmp_path, sw: Switch, silent_after_s: float, **extra) -> Gateway:
    cfg = {"model": str(tiny_onnx), "threads": 1, "cameras": cams(2), "metrics": {"port": 0}, "guards": {"enabled": False},
           "state_dir": str(tmp_path / "state"), "health": {"silent_after_s": silent_after_s},
           "reconnect": {"max_backoff_s": 0.5}, **extra}
    return Gateway(cfg, sinks=[Collect()], capture_factory=sw.factory, reconnect_unit_s=0.1).start()


def test_offline_camera_is_trouble_with_last_frame_and_fix_no_stale_frame_and_unhealthy_at_once(tiny_onnx, tmp_path):
    sw = Switch()
    silent_after_s = 3.0
    gw = start(tiny_onnx, tmp_path, sw, silent_after_s)
    browser = chromium.Browser(EXE, str(tmp_path / "profile")) if EXE else None
    try:
        assert wait_for(lambda: health(gw)[0] == 200 and gw.stats()["cameras"]["cam1"]["processed"] > 10, 30, step=0.2)
        assert call(gw, "GET", "/api/cameras/cam1/latest.jpg")[0] == 200
        sw.gone.set()
        t0 = time.monotonic()
        assert wait_for(lambda: health(gw)[0] == 503, silent_after_s + 5, step=0.15)  # within api.probe_rate
        noticed = time.monotonic() - t0
        code, body = health(gw)
        assert body["offline"] == ["cam1"] and body["cameras"]["cam1"]["last_frame_iso"], body
        assert noticed < silent_after_s, f"/healthz took {noticed:.1f} s to say unhealthy (silent_after_s {silent_after_s})"

        cam = js(call(gw, "GET", "/api/cameras/cam1"))
        assert (cam["state"], cam["online"], cam["stale"], cam["fps"]) == ("offline", False, True, 0)
        assert "offline" in cam["troubles"]
        off = next(t for t in cam["trouble_details"] if t["trouble"] == "offline")
        assert off["fix"] == FIX["offline"] and off["since_iso"] and cam["last_frame_iso"]
        assert cam["last_frame_wall_time"] <= off["since_wall_time"] <= time.time()
        code, ctype, raw = call(gw, "GET", "/api/cameras/cam1/latest.jpg")  # never the old frame as if live
        err = json.loads(raw)
        assert code == 503 and ctype.startswith("application/json") and err["stale"] is True
        assert "offline" in err["error"] and "(fix: " in err["error"] and err["last_frame_iso"] == cam["last_frame_iso"]
        live = js(call(gw, "GET", "/api/cameras/cam0"))
        assert live["state"] in ("ok", "alarm") and live["fps"] > 0 and not live["stale"]
        assert call(gw, "GET", "/api/cameras/cam0/latest.jpg")[0] == 200

        if browser is not None:  # the page: trouble with "last frame at" (date and time) and the fix, no old frame
            browser.goto(gw.server.url + "/")
            card = browser.wait_js("""(() => { const c = document.querySelector('.cam[data-camera="cam1"]');
                const t = c && c.querySelector('.trouble');
                return t && !t.hidden && { text: t.textContent, img: c.querySelector('img').hidden,
                  src: c.querySelector('img').getAttribute('src'), info: c.querySelector('.info').textContent }; })()""")
            # the date and time in the browser's zone, as every time on the page (#35 point 4): 2026-12-07 15:04:05
            want = browser.js(f"""(() => {{ const d = new Date({cam['last_frame_wall_time']} * 1000), p = (n) => String(n).padStart(2, '0');
                return `${{d.getFullYear()}}-${{p(d.getMonth() + 1)}}-${{p(d.getDate())}} ${{p(d.getHours())}}:${{p(d.getMinutes())}}:${{p(d.getSeconds())}}`; }})()""")
            assert f"last frame at {want}" in " ".join(card["text"].split()), card
            assert "trouble: offline" in card["text"] and FIX["offline"] in " ".join(card["text"].split()), card
            assert card["img"] is True and card["src"] is None, card  # no stale annotated frame
            assert "no frames" in card["info"] and "fps" not in card["info"], card
            assert browser.wait_js("""document.querySelector('.cam[data-camera="cam0"] img').naturalWidth > 0
                && document.querySelector('.cam[data-camera="cam0"] .trouble').hidden""")

        sw.gone.clear()  # back: healthy, no trouble, the live frame again
        assert wait_for(lambda: health(gw)[0] == 200, 20, step=0.2)
        cam = js(call(gw, "GET", "/api/cameras/cam1"))
        assert cam["state"] in ("ok", "alarm") and not cam["troubles"] and not cam["stale"]
        assert wait_for(lambda: call(gw, "GET", "/api/cameras/cam1/latest.jpg")[0] == 200, 5)
        if browser is not None:
            assert browser.wait_js("""(() => { const c = document.querySelector('.cam[data-camera="cam1"]');
                return c.querySelector('.trouble').hidden && c.querySelector('img').naturalWidth > 0; })()""")
    finally:
        if browser is not None:
            browser.close()
        gw.stop()


def test_silent_camera_is_unhealthy_within_silent_after_s_and_shows_no_stale_frame(tiny_onnx, tmp_path):
    """A camera that stays connected but whose read hangs (no stall detection within stall_s 60): /healthz
    503 within health.silent_after_s of its last frame, latest.jpg 503, fps 0."""
    sw = Switch()
    silent_after_s = 1.5
    gw = start(tiny_onnx, tmp_path, sw, silent_after_s, reconnect={"stall_s": 60, "read_timeout_s": 60,
                                                                    "first_frame_s": 60, "max_backoff_s": 0.5})
    try:
        assert wait_for(lambda: health(gw)[0] == 200 and gw.stats()["cameras"]["cam1"]["processed"] > 10, 30, step=0.2)
        sw.hang.set()
        assert wait_for(lambda: health(gw)[0] == 503, silent_after_s + 5, step=0.15)  # within api.probe_rate
        seen = time.time()
        code, body = health(gw)
        assert body["silent"] == ["cam1"], body
        late = seen - body["cameras"]["cam1"]["last_frame_wall_time"]
        assert late < silent_after_s + 0.75, f"503 came {late:.2f} s after the last frame (silent_after_s {silent_after_s})"
        cam = js(call(gw, "GET", "/api/cameras/cam1"))
        assert cam["stale"] is True and cam["fps"] == 0 and cam["last_frame_iso"]
        assert call(gw, "GET", "/api/cameras/cam1/latest.jpg")[0] == 503
    finally:
        sw.release.set()
        gw.stop()
