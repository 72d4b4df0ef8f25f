"""Segmenter on a real (random-init) ONNX model through ONNX Runtime."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import edgeseg.runtime.segmenter as segmenter_mod
from edgeseg import Segmenter
from edgeseg.core.errors import InputError, ModelError


def _ov_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


# every CPU backend passes the same Segmenter tests
@pytest.fixture(scope="module", params=["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    not _ov_installed(), reason="OpenVINO not installed (pip install 'edgeseg[openvino]')"))])
def seg(request, tiny_onnx):
    return Segmenter(tiny_onnx, backend=request.param)


def test_mask_at_frame_resolution(seg):
    frame = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    r = seg.segment(frame, return_probs=True)
    assert r.mask.shape == (70, 90) and r.mask.dtype == np.uint8
    assert r.probs.shape == (3, 70, 90) and r.probs.dtype == np.float32
    np.testing.assert_allclose(r.probs.sum(0), 1.0, atol=1e-4)
    assert set(np.unique(r.mask)) <= {0, 1, 2}
    assert set(r.timings) == {"pre_ms", "infer_ms", "post_ms"} and r.timings["infer_ms"] > 0
    assert r.to_dict()["frame_size"] == [70, 90]
    assert seg.backend_name in ("onnxruntime", "openvino") and seg.info.input_size == (64, 64)


def test_batch_equals_single(seg):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (64 + 8 * i, 80, 3), dtype=np.uint8) for i in range(3)]
    batch = seg.segment_batch(frames)
    for f, r in zip(frames, batch):
        np.testing.assert_array_equal(seg.segment(f).mask, r.mask)


def test_gray_and_bgra_frames(seg):
    gray = np.full((50, 60), 128, np.uint8)
    bgra = np.dstack([np.full((50, 60, 3), 128, np.uint8), np.full((50, 60), 255, np.uint8)])
    np.testing.assert_array_equal(seg.segment(gray).mask, seg.segment(bgra).mask)


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 2), np.uint8), np.zeros((10, 10, 3), np.float64),
                                 np.zeros((0, 0, 3), np.uint8), None])
def test_bad_frames_raise_input_error(seg, bad):
    with pytest.raises(InputError):
        seg.segment(bad)


def test_model_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="not found"):
        Segmenter(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        Segmenter(junk)
    monkeypatch.setattr(segmenter_mod, "BUNDLED_MODEL", tmp_path / "none.fp16.onnx")
    with pytest.raises(ModelError, match="no trained model is bundled"):
        Segmenter()


def test_engine_without_tensorrt_falls_back_to_onnx(tiny_onnx, tmp_path, caplog):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(tiny_onnx.read_bytes())
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    seg = Segmenter(engine, backend="auto")
    assert seg.backend_name == "onnxruntime"
    assert "tensorrt cannot run m.engine" in caplog.text
    with pytest.raises(ModelError, match="tensorrt backend unavailable"):
        Segmenter(engine, backend="tensorrt")


def test_explicit_onnxruntime_on_an_engine_runs_its_onnx(tiny_onnx, tmp_path, caplog):
    """--backend onnxruntime wins over the file type, even where TensorRT is installed."""
    import logging

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ModelError, match="no m.onnx next to m.engine"):
        Segmenter(engine, backend="onnxruntime")
    (tmp_path / "m.onnx").write_bytes(tiny_onnx.read_bytes())
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        seg = Segmenter(engine, backend="onnxruntime")
    assert seg.backend_name == "onnxruntime" and "using m.onnx instead of m.engine" in caplog.text


def test_auto_with_an_unusable_sibling_engine_logs_why(tiny_onnx, tmp_path, caplog):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(tiny_onnx.read_bytes())
    (tmp_path / "m.engine").write_bytes(b"plan")
    seg = Segmenter(onnx, backend="auto")
    assert seg.backend_name == "onnxruntime"
    assert "tensorrt cannot run m.engine" in caplog.text and "TensorRT python package not installed" in caplog.text


def test_threshold_and_min_area_change_output(tiny_onnx):
    frame = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    probs = Segmenter(tiny_onnx).segment(frame, return_probs=True).probs
    strict = Segmenter(tiny_onnx, threshold=0.99, min_area=0).segment(frame)
    assert ((strict.mask == 1) == (probs[1] >= 0.99)).all()
    big = Segmenter(tiny_onnx, min_area=0.999).segment(frame)  # a share of the frame: nothing is that big
    assert big.regions == [] and not (big.mask == 1).any()
    every = Segmenter(tiny_onnx, threshold=0.5, min_area=0.0).segment(frame)
    some = Segmenter(tiny_onnx, threshold=0.5, min_area=0.01).segment(frame)  # 1 % of 64x64: 41 px
    assert all(r.area_px >= 0.01 * 64 * 64 for r in some.regions)
    assert len(some.regions) <= len(every.regions)


def test_min_area_is_a_share_of_the_frame_and_pixels_are_refused(tiny_onnx):
    from edgeseg.core.errors import ModelError
    from edgeseg.config.settings import DEFAULT_MIN_AREA

    assert Segmenter(tiny_onnx).min_area == DEFAULT_MIN_AREA  # the tiny model ships none
    with pytest.raises(ModelError, match=r"min_area is a fraction of the frame area .* got 64"):
        Segmenter(tiny_onnx, min_area=64)
    rng = np.random.default_rng(5)
    small = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    large = cv2.resize(small, (320, 240), interpolation=cv2.INTER_NEAREST)  # the same picture, 16x the pixels
    seg = Segmenter(tiny_onnx, threshold=0.05, min_area=0.02)
    assert len(seg.segment(small).regions) == len(seg.segment(large).regions)


def test_closed_segmenter_refuses_frames(tiny_onnx):
    frame = np.zeros((32, 32, 3), np.uint8)
    with Segmenter(tiny_onnx) as seg:
        assert seg.segment(frame).mask.shape == (32, 32)
    with pytest.raises(RuntimeError, match="closed"):
        seg.segment(frame)
    seg.close()  # twice is harmless


def test_runtime_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, edgeseg, edgeseg.runtime.segmenter, edgeseg.apps.detect, edgeseg.io.sources, edgeseg.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_model_leak_threshold_metadata_is_the_default(tiny_onnx, tmp_path):
    """A model shipped with a chosen threshold uses it unless the caller overrides it."""
    import onnx

    m = onnx.load(str(tiny_onnx))
    entry = m.metadata_props.add()
    entry.key, entry.value = "leak_threshold", "0.65"
    path = tmp_path / "with_threshold.onnx"
    onnx.save(m, str(path))
    assert Segmenter(path, backend="onnxruntime").threshold == 0.65
    assert Segmenter(path, backend="onnxruntime", threshold=0.3).threshold == 0.3
    assert Segmenter(tiny_onnx, backend="onnxruntime").threshold is None


def test_bundled_model_loads_and_matches_its_sidecar():
    """The shipped model is what `Segmenter()` loads; its sidecar describes that exact file."""
    import json

    from edgeseg.core.model_meta import sha256_file

    stored = segmenter_mod.BUNDLED_MODEL
    if not stored.is_file():
        pytest.skip(f"no bundled model at {stored} (produced by python -m training.ship)")
    sidecar = json.loads(stored.with_name(stored.name.replace(".fp16.onnx", ".json")).read_text())
    assert sidecar["file"] == stored.name and sidecar["onnx_sha256"] == sha256_file(stored)
    seg = Segmenter()
    assert seg.model_path == segmenter_mod.DEFAULT_MODEL != stored  # the fp32 model derived from it
    assert seg.info.classes == tuple(sidecar["classes"])
    frame = np.full((180, 320, 3), 90, np.uint8)
    res = seg.segment(frame)
    assert res.mask.shape == (180, 320)
