"""Stand-ins shared by several test modules (kept out of the test files so none imports another)."""
from __future__ import annotations

import cv2
import numpy as np

from training.synth import render_scene

#: the alarm settings of a demo, as the defaults were before #35 made them site-ready (seconds): tests that
#: count frames set them explicitly (an alarm at the first k of n frames, an update per frame, a new one per leak)
DEMO_ALARM = {"verify_s": 0.0, "clear_s": 0.0, "cooldown_s": 0.0, "update_every_s": 0.0}
#: the same as ``edgeseg detect`` flags, and as YAML (a flow mapping's keys)
DEMO_FLAGS = [x for k, v in DEMO_ALARM.items() for x in (f"--{k.replace('_', '-')}", str(v))]
DEMO_YAML = ", ".join(f"{k}: {v}" for k, v in DEMO_ALARM.items())


class FakeCapture:
    """A camera that serves scripted reads; ``opens`` scripts whether reopening succeeds."""

    def __init__(self, script):
        self.script = script
        self.served = 0  # frames handed out: the source timestamp (CAP_PROP_POS_MSEC) moves with them

    def isOpened(self):
        return self.script["opens"].pop(0) if self.script["opens"] else True

    def read(self):
        if self.script["reads"]:
            ok = self.script["reads"].pop(0)
            self.served += ok
            # a real camera's pictures differ (noise): byte-identical ones are a frozen source
            return (True, np.full((4, 4, 3), self.served % 256, np.uint8)) if ok else (False, None)
        return False, None

    def get(self, prop):
        return self.served * 40.0 if prop == cv2.CAP_PROP_POS_MSEC else 25.0

    def release(self):
        pass


class FakeVideo(FakeCapture):
    """``FakeCapture`` as a video file: real synthetic frames and a frame count.

    ``reads`` scripts each read (1 = decodes, 0 = corrupt frame: OpenCV returns False).
    """

    def __init__(self, script):
        super().__init__(script)
        self.n, self.pos = len(script["reads"]), 0

    def read(self):
        ok, _ = super().read()
        self.pos += 1
        return (True, render_scene(self.pos, (64, 64))[0]) if ok else (False, None)

    def get(self, prop):
        return float(self.n) if prop == cv2.CAP_PROP_FRAME_COUNT else 10.0


def engine_meta(**kw):
    """A plausible TensorRT engine sidecar (Jetson Orin, TensorRT 10.3, fp16); ``kw`` overrides fields."""
    d = dict(onnx_sha256="ab" * 32, precision="fp16", batch_profile=(1, 4, 8), input_size=(256, 256),
             tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7", build_time_s=12.5, built_at="2026-01-01T00:00:00Z")
    d.update(kw)
    from edgeseg.core.model_meta import EngineMeta

    return EngineMeta(**d)


class ResizingCamera:
    """A live camera (for ``open_source(..., capture_factory=...)``) that serves real synthetic frames
    at a scripted size per connection, e.g. 30 frames at 320x180, then a reconnect at 160x120.

    ``sessions`` lists (frames, (h, w)) per connection; after the last one the camera stays away.
    Frames arrive ``period`` seconds apart, like a camera's; it announces 25 fps as cameras do.
    """

    def __init__(self, sessions, period: float = 0.02):
        self.sessions, self.period = list(sessions), period
        self.connections = 0

    def __call__(self, spec):
        self.connections += 1
        return _Connection(self.sessions.pop(0) if self.sessions else None, self.period)


class _Connection:
    def __init__(self, session, period):
        self.session, self.period, self.i = session, period, 0

    def isOpened(self):
        return self.session is not None

    def read(self):
        import time

        if self.session is None or self.i >= self.session[0]:
            return False, None
        time.sleep(self.period)
        self.i += 1
        return True, render_scene(self.i, self.session[1])[0]

    def get(self, prop):
        return self.i * 40.0 if prop == cv2.CAP_PROP_POS_MSEC else 25.0

    def release(self):
        pass
