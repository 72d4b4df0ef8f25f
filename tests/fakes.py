"""Stand-ins shared by several test modules (kept out of the test files so none imports another)."""
from __future__ import annotations

import cv2
import numpy as np

from training.synth import render_scene


class FakeCapture:
    """A camera that serves scripted reads; ``opens`` scripts whether reopening succeeds."""

    def __init__(self, script):
        self.script = script

    def isOpened(self):
        return self.script["opens"].pop(0) if self.script["opens"] else True

    def read(self):
        if self.script["reads"]:
            ok = self.script["reads"].pop(0)
            return (True, np.zeros((4, 4, 3), np.uint8)) if ok else (False, None)
        return False, None

    def get(self, prop):
        return 25.0

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
