"""Stand-ins shared by several test modules (kept out of the test files so none imports another)."""
from __future__ import annotations

import numpy as np


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
