"""The gateway per camera kind and per stream: an auto camera's kind from its first picture, one history
per camera for a temporal model, and the history reset when the camera reconnects."""
from __future__ import annotations

import numpy as np

from test_gateway import Collect, FakeCam, cams, paired, wait_for
from test_temporal import temporal_onnx  # noqa: F401 - the fixture


class GreyCam(FakeCam):
    """A thermal camera in memory: a grey (white-hot) picture."""

    def __init__(self, spec, **kw):
        super().__init__(spec, **kw)
        g = np.random.default_rng(3).integers(0, 255, self.size, np.uint8)
        self.img = np.dstack([g] * 3)


def test_each_camera_has_its_own_history_and_a_reconnect_resets_it(temporal_onnx):  # noqa: F811
    from edgeseg import Gateway

    opens: list[str] = []

    def factory(spec):
        opens.append(spec)
        first = opens.count(spec) == 1
        return FakeCam(spec, fps=60, frames=20 if first and spec.endswith("0") else None)

    col = Collect()
    gw = Gateway({"model": str(temporal_onnx), "threads": 1, "cameras": cams(2),
                  "reconnect": {"max_backoff_s": 0.5}}, sinks=[col], capture_factory=factory)
    gw.start()
    try:
        assert wait_for(lambda: all(c.stream is not None for c in gw.cameras.values()), 20)
        a, b = gw.cameras["cam0"].stream, gw.cameras["cam1"].stream
        assert a is not b and a.state is not b.state and a.memory_bytes > 0
        # cam0's picture ends after 20 frames: it reconnects, and its history starts again
        assert wait_for(lambda: a.state.resets >= 2 and a.state.frames >= 3, 30), (a.state.resets, a.state.frames)
        assert b.state.resets == 1  # the other camera's history is untouched
    finally:
        gw.stop()
    kinds = [e["event"] for e in col.of(camera="cam0")]
    assert "camera_offline" in kinds and paired(col.events)


def test_auto_cameras_take_their_kind_from_the_first_picture():
    from edgeseg import Gateway
    from edgeseg.runtime.segmenter import BUNDLED_THERMAL

    def factory(spec):
        return GreyCam(spec, fps=30) if "grey" in spec else FakeCam(spec, fps=30)

    cameras = [{"name": "thermal", "source": "fake://grey"}, {"name": "colour", "source": "fake://colour"},
               {"name": "pinned", "source": "fake://grey2", "kind": "visible"}]
    gw = Gateway({"threads": 1, "cameras": cameras}, sinks=[Collect()], capture_factory=factory)
    gw.start()
    try:
        assert wait_for(lambda: all(c.processed > 0 for c in gw.cameras.values()), 60)
        kinds = {n: c.kind for n, c in gw.cameras.items()}
        segs = {n: c.stream.segmenter for n, c in gw.cameras.items()}
    finally:
        gw.stop()
    assert kinds == {"thermal": "thermal", "colour": "visible", "pinned": "visible"}
    if BUNDLED_THERMAL.is_file():  # the thermal camera runs the thermal model, the others the visible one
        assert segs["thermal"].temporal and not segs["colour"].temporal and segs["pinned"] is segs["colour"]
    else:  # one bundled model serves both kinds: one Segmenter, one batch
        assert segs["thermal"] is segs["colour"] is segs["pinned"]
