"""Temporal input for thermal models: the stream's history, its resets, and the per-stream SDK API.

A temporal model here is the torch-free tiny model with the metadata a temporal export carries
(``input: temporal-v1``): real ONNX Runtime, real histories; the network's weights do not matter for
what is checked (which picture reaches it, and that results map back to the frame).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeseg.core.errors import InputError, ModelError
from edgeseg.core.model_meta import metadata_of, set_metadata
from edgeseg.runtime import temporal
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.temporal import TemporalState


@pytest.fixture(scope="module")
def temporal_onnx(tiny_onnx: Path, tmp_path_factory) -> Path:
    proto = onnx.load(str(tiny_onnx))
    meta = metadata_of(proto)
    meta.update({"input": temporal.TEMPORAL_V1, "camera_kind": "thermal"})
    set_metadata(proto, meta)
    out = tmp_path_factory.mktemp("temporal") / "temporal.onnx"
    onnx.save(proto, str(out))
    return out


def scene(t: int, h: int = 120, w: int = 160, square: bool = True) -> np.ndarray:
    """A fixed textured scene; a bright square moves right 6 px per frame when ``square``."""
    rng = np.random.default_rng(0)
    img = (rng.integers(60, 120, (h, w))).astype(np.uint8)
    if square:
        x = 10 + 6 * t
        img[40:70, x:x + 20] = 230
    return np.dstack([img] * 3)


def test_a_still_scene_shows_no_change_and_a_moving_object_does():
    st = TemporalState((64, 64))
    for t in range(6):
        out = st.push(scene(t, square=False))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert abs(float(out[..., 1].mean()) - 128) < 1.5 and float(out[..., 2].mean()) < 1.0  # no change, no flicker
    st2 = TemporalState((64, 64))
    for t in range(6):
        moving = st2.push(scene(t))
    assert np.abs(moving[..., 1].astype(int) - 128).max() > 60 and moving[..., 2].max() > 60
    assert (moving[..., 0] == out[..., 0]).mean() < 1.0  # the frame itself is channel 0


def test_resets_on_request_on_a_new_size_and_on_a_scene_cut():
    st = TemporalState((64, 64))
    st.push(scene(0))
    st.push(scene(1))
    assert st.resets == 1 and st.frames == 2
    st.reset()  # a reconnect (may come from another thread: it only flags)
    st.push(scene(2))
    assert st.resets == 2 and st.frames == 1
    st.push(scene(3, h=240, w=320))  # the camera changed resolution
    assert st.resets == 3
    inverted = 255 - scene(4, h=240, w=320)  # a palette switch (white-hot -> black-hot)
    out = st.push(inverted)
    assert st.resets == 4 and abs(float(out[..., 1].mean()) - 128) < 0.5


def test_memory_per_stream_is_bounded_and_stated():
    st = TemporalState((256, 256))
    for t in range(50):
        st.push(scene(t % 20))
    assert st.memory_bytes == (temporal.WINDOW + 1) * 256 * 256 * 4
    assert len(st._recent) == temporal.WINDOW  # never more than the window, however long the stream


def test_streams_keep_separate_histories_in_one_batch(temporal_onnx):
    seg = Segmenter(str(temporal_onnx), backend="onnxruntime", min_area=0.0)
    a, b = seg.stream(), seg.stream()
    ref_a, ref_b = seg.stream(), seg.stream()
    for t in range(5):
        fa, fb = scene(t), 255 - scene(t, square=False)
        batch = seg.segment_batch([fa, fb], return_probs=True, states=[a.state, b.state])
        alone = [ref_a.segment(fa, return_probs=True), ref_b.segment(fb, return_probs=True)]
        for got, want in zip(batch, alone):
            np.testing.assert_allclose(got.probs, want.probs, atol=1e-5)
            assert got.frame_size == (120, 160) and got.mask.shape == (120, 160)


def test_a_still_picture_warns_once_and_gets_the_single_frame_answer(temporal_onnx, caplog):
    seg = Segmenter(str(temporal_onnx), backend="onnxruntime", min_area=0.0)
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        r1 = seg.segment(scene(3), return_probs=True)
        seg.segment(scene(4))
    warned = [r for r in caplog.records if "temporal model" in r.getMessage()]
    assert len(warned) == 1 and "Segmenter.stream()" in warned[0].getMessage()
    fresh = seg.stream().segment(scene(3), return_probs=True)  # a history of one frame
    np.testing.assert_allclose(r1.probs, fresh.probs, atol=1e-6)


def test_temporal_model_refuses_tiles_and_letterbox_and_bad_frames(temporal_onnx):
    with pytest.raises(ModelError, match="temporal"):
        Segmenter(str(temporal_onnx), backend="onnxruntime", tiles=(2, 2))
    with pytest.raises(ModelError, match="temporal"):
        Segmenter(str(temporal_onnx), backend="onnxruntime", letterbox=True)
    seg = Segmenter(str(temporal_onnx), backend="onnxruntime")
    s = seg.stream()
    s.segment(scene(0))
    with pytest.raises(InputError, match="channels"):
        seg.segment_batch([scene(1), np.zeros((10, 10, 2), np.uint8)], states=[s.state, s.state])
    assert s.state.frames == 1  # a refused batch moves no history


def test_picture_model_streams_are_plain_segment(tiny_onnx):
    seg = Segmenter(str(tiny_onnx), backend="onnxruntime", min_area=0.0)
    s = seg.stream()
    assert not seg.temporal and s.state is None and s.memory_bytes == 0
    np.testing.assert_array_equal(s.segment(scene(2)).mask, seg.segment(scene(2)).mask)


def test_the_training_clips_go_through_the_sdk_code():
    """training.thermal_train feeds the network clip_input: the same TemporalState the SDK runs."""
    frames = [scene(t) for t in range(4)]
    st = TemporalState((64, 64))
    np.testing.assert_array_equal(np.stack(temporal.clip_input(frames, (64, 64))), np.stack([st.push(f) for f in frames]))
