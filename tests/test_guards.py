"""Trouble is not alarm (issue #25, point 2): each picture guard on real rendered video with the
change applied (a cover, a blur, a crop shift, a brightness step), alone and through a running
gateway reading the video from a file (real decoder, real ONNX Runtime). A trouble stands beside an
open alarm and ends none (#37 point 2: tests/test_guards_occlusion.py)."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edgeseg.streaming.guards import ViewGuard, stats
from edgeseg.config.settings import GuardSettings
from test_gateway import Collect, paired, wait_for
from training.synth import render_clip
from fakes import DEMO_ALARM

SIZE = (240, 320)


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    return render_clip(3, frames=40, size=SIZE)[0]


def cover(img):
    return np.full_like(img, 6)  # a lens cap


def blur(img):
    return cv2.GaussianBlur(img, (0, 0), 6)  # focus lost


def shift(img):  # the camera turned: the view slides by a quarter of its width
    h, w = img.shape[:2]
    return cv2.warpAffine(img, np.float32([[1, 0, 0.25 * w], [0, 1, 0.15 * h]]), (w, h), borderMode=cv2.BORDER_REFLECT)


def brighter(img):  # an IR / day-night switch: the whole picture steps at once
    return cv2.convertScaleAbs(img, alpha=1.0, beta=80)


def run(guard: ViewGuard, frames) -> list[tuple[int, str, str]]:
    return [(i, e["event"], e["trouble"]) for i, f in enumerate(frames) for e in guard.check(f)]


@pytest.mark.parametrize("change, kind", [(cover, "blocked"), (blur, "defocused"), (shift, "moved")])
def test_guard_raises_after_hold_frames_and_clears(clip, change, kind):
    g = ViewGuard(GuardSettings(hold_frames=3))
    frames = clip[:15] + [change(f) for f in clip[15:25]] + clip[25:40]
    got = run(g, frames)
    assert got == [(17, "trouble", kind), (27, "trouble_cleared", kind)], got
    assert not g.troubles


def test_brightness_step_is_one_jump_then_the_reference_is_relearned(clip):
    g = ViewGuard(GuardSettings())
    frames = clip[:15] + [brighter(f) for f in clip[15:40]]
    assert run(g, frames) == [(15, "trouble", "jump")]


def test_an_inverted_palette_is_a_jump_not_moved(clip):
    g = ViewGuard(GuardSettings())
    def invert(f):  # white-hot -> black-hot around the picture's own mean: the mean stays
        return np.clip(2 * f.mean() - f.astype(np.float32), 0, 255).astype(np.uint8)

    frames = clip[:15] + [invert(f) for f in clip[15:40]]
    assert abs(stats(frames[15])["mean"] - stats(frames[14])["mean"]) < GuardSettings().jump_delta
    assert run(g, frames) == [(15, "trouble", "jump")]


def test_a_quiet_scene_raises_nothing_and_the_statistics_are_cheap(clip):
    g = ViewGuard(GuardSettings())
    assert run(g, clip + clip[::-1]) == []
    s = stats(clip[0])
    assert s["std"] > 10 and s["sharpness"] > 50 and 20 < s["mean"] < 230


def test_disabled_guards_say_nothing(clip):
    assert run(ViewGuard(GuardSettings(enabled=False)), [cover(f) for f in clip]) == []


def test_gateway_trouble_stands_beside_the_alarm(tiny_onnx, tmp_path, clip):
    """A video file: normal, covered, normal, blurred, normal, shifted, normal, then a brightness step.
    Each trouble is raised (and cleared); none ends the alarm open since frame 0 (#37 point 2)."""
    from edgeseg import Gateway

    segments = [(None, 12), (cover, 8), (None, 10), (blur, 8), (None, 10), (shift, 8), (None, 10), (brighter, 14)]
    frames, i = [], 0
    for change, n in segments:
        for _ in range(n):
            k = i % 78  # the 40-frame clip forth and back: the plume keeps moving
            f = clip[k if k < 40 else 78 - k]
            frames.append(change(f) if change else f)
            i += 1
    path = tmp_path / "changes.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SIZE[1], SIZE[0]))
    for f in frames:
        vw.write(f)
    vw.release()
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "threshold": 0.01, "alarm": {"k": 1, "n": 1, "m": 2, **DEMO_ALARM},
                  "state_dir": str(tmp_path / "state"), "cameras": [{"name": "yard", "source": str(path)}]}, sinks=[col])
    gw.start()
    try:
        assert wait_for(lambda: col.of("camera_finished"), timeout=60)
    finally:
        gw.stop()
    troubles = [(e["event"], e["trouble"]) for e in col.events if e["event"] in ("trouble", "trouble_cleared")]
    assert troubles == [("trouble", "blocked"), ("trouble_cleared", "blocked"), ("trouble", "defocused"),
                        ("trouble_cleared", "defocused"), ("trouble", "moved"), ("trouble_cleared", "moved"),
                        ("trouble", "jump")], troubles
    assert paired(col.events)
    # the alarm open before the first trouble stands beside every trouble: no end until the file ends
    assert [(e["frame"], e["reason"]) for e in col.of("end")] == [(len(frames) - 1, "source_ended")], col.of("end")
    assert [e["frame"] for e in col.of("start")] == [0]
    assert not [e for e in col.of("end") if e["reason"].startswith("trouble_")]
    # no alarm starts while the view is blocked / defocused / moved
    up = None
    for e in col.events:
        if e["event"] == "trouble" and e["trouble"] != "jump":
            up = e["trouble"]
        elif e["event"] == "trouble_cleared":
            up = None
        elif e["event"] == "start":
            assert up is None, f"an alarm started while {up}"


# -- a camera slow to deliver its first picture: reconnect.first_frame_s ---------------------------------
class _SlowStartMjpeg:
    """An MJPEG camera over real HTTP that accepts the connection, then waits ``delay`` before its first byte."""

    def __init__(self, delay: float) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        frames = [cv2.imencode(".jpg", im)[1].tobytes() for im in render_clip(4, 8, (120, 160))[0]]

        class H(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while True:
                    jpg = frames[i % len(frames)]
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                         + jpg + b"\r\n")
                    except OSError:
                        return
                    i += 1
                    time.sleep(0.1)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("first_frame_s, comes_online", [(6.0, True), (1.0, False)])
def test_first_frame_may_take_first_frame_s_not_stall_s(tiny_onnx, tmp_path, first_frame_s, comes_online):
    from edgeseg import Gateway

    cam = _SlowStartMjpeg(delay=2.5)
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                  "cameras": [{"name": "slow", "source": cam.url}],
                  "reconnect": {"stall_s": 1.0, "first_frame_s": first_frame_s, "max_backoff_s": 0.5}}, sinks=[col])
    gw.start()
    try:
        wait_for(lambda: col.of("camera_online") or col.of("camera_offline"), 15)
    finally:
        gw.stop()
        cam.close()
    first = next(e["event"] for e in col.events if e["event"] in ("camera_online", "camera_offline"))
    if comes_online:  # a 2.5 s start with stall_s 1 and first_frame_s 6: online, no trouble, no offline
        assert first == "camera_online" and not col.of("trouble"), [e["event"] for e in col.events]
    else:
        assert first == "camera_offline"
