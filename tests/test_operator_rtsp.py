"""The operator's points of #35 end to end on a real RTSP camera: Debian's GStreamer RTSP server
(tests/rtsp_server.py, system Python) serving an H.264 clip made by ffmpeg, a real Gateway (the
tiny ONNX model, PyAV clips from the camera's own packets, the real HTTP server) and, where Debian's
chromium is installed, the status page in it. One gateway run:

1. the leak in the clip becomes an incident that stays listed after the alarm clears, and is
   acknowledged through the HTTP API;
2. its clip is served as video/mp4 with HTTP Range (206), and the full-size snapshot answers;
3. the RTSP server stopped, the camera shows trouble ``offline`` with its last frame's time, and
   /healthz says 503 within ``health.silent_after_s``.

The other tests of these points use in-memory or file cameras; this one is the same path a site's
camera takes (RTSP, reconnects, stream-copied clips)."""
from __future__ import annotations

import http.client
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import chromium
from edgeseg import Gateway
from test_api import call, js
from test_gateway import ROOT, SYS_PY, Collect, _rtsp_available, free_port, health, stop_proc, wait_for

pytest.importorskip("av", reason="clips need PyAV: pip install 'edgeseg[gateway]'")

SILENT_AFTER_S = 4.0
SIZE = (120, 160)  # the camera's picture (h, w): the full-size snapshot has it


@pytest.fixture(scope="module")
def leak_clip(tmp_path_factory) -> Path:
    """3 s of near-black noise (no leak for the tiny model at threshold 0.2; each picture differs, so the
    camera is not frozen), 3 s of a textured test picture (it finds "gas" in it), then a minute of the
    noise again: 10 fps H.264 with a key frame a second."""
    reason = _rtsp_available()
    if reason:
        pytest.skip(reason)
    clip = tmp_path_factory.mktemp("rtsp-operator") / "leak.mp4"
    w, h = SIZE[1], SIZE[0]
    quiet = f"color=c=0x080808:size={w}x{h}:rate=10:duration={{}},noise=alls=6:allf=t"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", quiet.format(3),
                    "-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate=10:duration=3", "-f", "lavfi", "-i", quiet.format(60),
                    "-filter_complex", "[0:v][1:v][2:v]concat=n=3:v=1[v]", "-map", "[v]",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", "-bf", "0", str(clip)], check=True)
    return clip


@pytest.fixture
def camera(leak_clip):
    """The RTSP camera ``(port, server process)``: one shared live pipeline, as a real camera's (the reader
    and the clips' packet ring see the same pictures at the same time); stopped by its PID at the end."""
    port = free_port()
    p = subprocess.Popen([SYS_PY, str(ROOT / "tests" / "rtsp_server.py"), str(leak_clip), str(port), "/cam", "shared"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        yield port, p
    finally:
        stop_proc(p)


def get(gw, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    conn.close()
    return out


def test_rtsp_camera_incident_evidence_and_offline_trouble(tiny_onnx, camera, tmp_path):
    port, server = camera
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "threshold": 0.2, "guards": {"enabled": False},
                  "alarm": {"k": 1, "n": 1, "m": 1, "verify_s": 0.2, "clear_s": 0.5, "cooldown_s": 0.0,
                            "update_every_s": 0.0},
                  "cameras": [{"name": "yard", "source": f"rtsp://127.0.0.1:{port}/cam"}],
                  "clips": {"dir": str(tmp_path / "clips"), "post_s": 0.5, "min_free_gb": 0.0},
                  "metrics": {"port": 0}, "api": {"rate": 1000}, "state_dir": str(tmp_path / "state"),
                  "health": {"silent_after_s": SILENT_AFTER_S},
                  "reconnect": {"read_timeout_s": 2.0, "max_backoff_s": 0.5}}, sinks=[col])
    exe = chromium.find()
    browser = None
    gw.start()
    try:
        # 1. the leak is an incident; cleared (the quiet part of the clip), it stays until acknowledged
        assert wait_for(lambda: col.of("start", "yard"), 30), col.events[-5:]
        assert wait_for(lambda: [e for e in col.of("end", "yard") if e.get("evidence", {}).get("clips")], 30), col.events[-5:]
        start = col.of("start", "yard")[0]
        end = next(e for e in col.of("end", "yard") if e.get("evidence", {}).get("clips"))
        assert end["reason"] == "quiet" and end["alarm_id"] == start["alarm_id"], end
        first = start["alarm_id"]
        (inc,) = js(call(gw, "GET", "/api/incidents"))
        assert (inc["id"], inc["camera"], inc["state"], inc["active"]) == (first, "yard", "cleared_unacknowledged", False)
        assert js(call(gw, "GET", "/api/cameras/yard"))["unacknowledged_incident"] == first
        code, _, body = call(gw, "POST", f"/api/incidents/{first}/ack", {"who": "ann", "note": "valve closed"})
        assert code == 200, body
        inc = js(call(gw, "GET", f"/api/incidents/{first}"))
        assert inc["state"] == "acknowledged" and inc["acknowledged"]["who"] == "ann", inc
        assert not inc["acknowledged"]["while_open"] and inc["acknowledged"]["note"] == "valve closed"
        assert wait_for(lambda: col.of("acknowledged", "yard"), 5)

        # 2. the clip (stream-copied from the camera's H.264) with HTTP Range, and the full-size snapshot
        events = js(call(gw, "GET", "/api/events?since=0&limit=1000"))
        listed = next(e for e in events if e["event"] == "end" and e.get("alarm_id") == first)
        clip = Path(listed["evidence"]["clip"])
        record = next(c for c in listed["evidence"]["clips"] if c["path"] == str(clip))
        assert record.get("stream_copy") is True, record  # the camera's own H.264 packets, not re-encoded
        data, size = clip.read_bytes(), clip.stat().st_size
        url = f"/api/events/{listed['id']}/clip"
        code, h, body = get(gw, url, {"Range": "bytes=0-1"})
        assert (code, h["content-type"], h["content-range"], body) == (206, "video/mp4", f"bytes 0-1/{size}", data[:2])
        code, h, body = get(gw, url, {"Range": "bytes=-100"})
        assert (code, h["content-range"], body) == (206, f"bytes {size - 100}-{size - 1}/{size}", data[-100:])
        code, h, body = get(gw, url)
        assert (code, h["content-type"], h["accept-ranges"], body) == (200, "video/mp4", "bytes", data)
        assert body[4:8] == b"ftyp"  # an MP4 a browser plays
        for query in ("", "?annotated=1"):
            code, h, body = get(gw, f"/api/events/{listed['id']}/snapshot.jpg{query}")
            assert (code, h["content-type"]) == (200, "image/jpeg"), (query, code, h)
            picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert picture is not None and picture.shape[:2] == SIZE, (query, None if picture is None else picture.shape)

        # 3. the camera goes away: trouble offline with its last frame's time, /healthz 503 within silent_after_s
        assert health(gw)[0] == 200
        stop_proc(server)
        t0 = time.monotonic()
        assert wait_for(lambda: health(gw)[0] == 503, SILENT_AFTER_S + 5, step=0.1)
        noticed = time.monotonic() - t0
        assert noticed < SILENT_AFTER_S, f"/healthz took {noticed:.1f} s to say 503 (silent_after_s {SILENT_AFTER_S})"
        assert wait_for(lambda: "offline" in js(call(gw, "GET", "/api/cameras/yard"))["troubles"], SILENT_AFTER_S)
        code, body = health(gw)
        assert code == 503 and body["offline"] == ["yard"] and body["cameras"]["yard"]["last_frame_iso"], body
        cam = js(call(gw, "GET", "/api/cameras/yard"))
        assert (cam["state"], cam["online"], cam["stale"]) == ("offline", False, True), cam
        off = next(t for t in cam["trouble_details"] if t["trouble"] == "offline")
        assert off["since_iso"] and cam["last_frame_iso"] and cam["last_frame_wall_time"] <= off["since_wall_time"]
        assert call(gw, "GET", "/api/cameras/yard/latest.jpg")[0] == 503  # never the old frame as if live
        if exe:  # the page says so too: trouble offline and "last frame at"
            browser = chromium.Browser(exe, str(tmp_path / "profile"))
            browser.goto(gw.server.url + "/")
            text = browser.wait_js("""(() => { const t = document.querySelector('.cam[data-camera="yard"] .trouble');
                return t && !t.hidden && t.textContent; })()""")
            assert "trouble: offline" in text and "last frame at" in text and "last frame at never" not in text, text
            listed = browser.wait_js(f"""(() => {{ const r = document.querySelector('#alarms tr[data-alarm="{first}"]');
                return r && r.textContent; }})()""")
            assert "acknowledged" in listed and "ann" in listed, listed  # the incident stays, acknowledged
    finally:
        if browser is not None:
            browser.close()
        gw.stop()
