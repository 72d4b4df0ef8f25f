"""Binary (1-channel sigmoid) models, as smp's default ``Unet(classes=1)`` exports, through the SDK:
Segmenter, ``edgeseg detect``, ``bench accuracy``, INT8 quantisation and the TensorRT build (with
the CPU stand-ins). No torch: the tiny ONNX fixture has one output channel p(leak)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.apps.fp16 import cpu_session
from edgeseg.core.model_meta import read_model_info
from edgeseg.runtime.postprocess import class_probs
from edgeseg.runtime.preprocess import preprocess
from edgeseg.runtime.segmenter import Segmenter
from tiny_model import make_tiny_onnx
from training.synth import render_scene, write_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def binary_onnx(tmp_path_factory):
    return make_tiny_onnx(tmp_path_factory.mktemp("bin") / "bin.onnx", classes=("gas-smoke",), activation="sigmoid",
                          seed=4)


@pytest.fixture(scope="module")
def frame():
    img, _ = render_scene(2, (64, 64))
    return img


def _p_leak(model, frame):
    info = read_model_info(model)
    x = preprocess([frame], info.input_size, info.mean, info.std)[0]
    return cpu_session(model).run(["probs"], {"image": x})[0][0, 0]


def test_metadata_reads_as_background_and_leak(binary_onnx):
    info = read_model_info(binary_onnx)
    assert info.binary and info.classes == ("background", "gas-smoke") and info.leak_class == 1


def test_segmenter_thresholds_the_one_channel(binary_onnx, frame):
    p = _p_leak(binary_onnx, frame)
    assert 0 < (p >= 0.5).mean() < 1, "fixture should give a mixed mask"
    seg = Segmenter(binary_onnx, backend="onnxruntime", threads=1, min_area=0)  # raw threshold: every region kept
    assert seg.threshold == 0.5
    r = seg.segment(frame, return_probs=True)
    np.testing.assert_array_equal(r.mask, (p >= 0.5).astype(np.uint8))  # not the whole frame
    assert r.classes == ("background", "gas-smoke")
    assert r.probs.shape == (2, 64, 64)
    np.testing.assert_allclose(r.probs[1], p, atol=1e-6)
    np.testing.assert_allclose(r.probs.sum(0), 1.0, atol=1e-6)
    assert r.regions and all(0.5 <= reg.max_conf <= 1.0 for reg in r.regions)
    assert sum(reg.area_px for reg in r.regions) == int((p >= 0.5).sum())
    strict = Segmenter(binary_onnx, backend="onnxruntime", threads=1, threshold=0.9, min_area=0).segment(frame)
    np.testing.assert_array_equal(strict.mask, (p >= 0.9).astype(np.uint8))


def test_no_class_names_no_index_error(tmp_path, frame):
    model = make_tiny_onnx(tmp_path / "c.onnx", classes=("class0",), activation="sigmoid", seed=4)
    seg = Segmenter(model, backend="onnxruntime", threads=1, min_area=0)
    assert seg.info.classes == ("background", "class0") and seg.info.leak_class == 1
    r = seg.segment(frame)
    np.testing.assert_array_equal(r.mask, (_p_leak(model, frame) >= 0.5).astype(np.uint8))


def test_logits_binary_model(tmp_path, frame):
    model = make_tiny_onnx(tmp_path / "l.onnx", classes=("gas-smoke",), activation="none", seed=4)
    logit = _p_leak(model, frame)
    np.testing.assert_array_equal(Segmenter(model, backend="onnxruntime", threads=1, min_area=0).segment(frame).mask,
                                  (logit >= 0).astype(np.uint8))
    labels = cpu_session(model).run(["labels"], {"image": np.zeros((1, 3, 8, 8), np.float32)})[0]
    assert labels.shape == (1, 8, 8)


def test_class_probs():
    p = np.array([[[0.2, 0.7]]], np.float32)
    np.testing.assert_allclose(class_probs(p), [[[0.8, 0.3]], [[0.2, 0.7]]])
    np.testing.assert_allclose(class_probs(np.zeros((1, 1, 1, 2), np.float32), "none")[0, :, 0], [[0.5, 0.5]] * 2)
    three = np.ones((3, 2, 2), np.float32)
    assert class_probs(three) is three


def test_detect_image(binary_onnx, tmp_path):
    img, _ = render_scene(1, (96, 128))
    cv2.imwrite(str(tmp_path / "a.png"), img)
    res = runner.invoke(app, ["detect", str(tmp_path / "a.png"), "--model", str(binary_onnx), "-o", str(tmp_path / "out"),
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{"):])["frames_processed"] == 1
    assert cv2.imread(str(tmp_path / "out" / "a.png.annotated.png")).shape == img.shape


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_dataset(d, 5, seed=3, size=(64, 64))
    return d


def test_bench_accuracy(binary_onnx, data):
    res = runner.invoke(app, ["bench", "accuracy", "--model", str(binary_onnx), "--data", str(data), "--limit", "3",
                              "--compare", str(binary_onnx), "--threads", "1", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout[res.stdout.index("{"):])
    assert set(r["scores"]["per_class"]) == {"background", "gas-smoke"}
    (cmp,) = r["compare"].values()
    assert cmp["agreement_vs_reference"]["mask_iou"] == 1.0


def test_int8_quantize_search(binary_onnx, data, tmp_path):
    from edgeseg.bench.quantize import CONFIGS, _argmax_masks, search

    info = read_model_info(binary_onnx)
    x = preprocess([cv2.imread(str(next((data / "img").iterdir())))], info.input_size, info.mean, info.std)[0]
    (mask,) = _argmax_masks(cpu_session(binary_onnx), [x], "sigmoid")
    p = cpu_session(binary_onnx).run(["probs"], {"image": x})[0][0, 0]
    np.testing.assert_array_equal(mask, (p > 0.5).astype(np.uint8))  # not argmax over one channel (all 0)
    r = search(binary_onnx, data / "img", tmp_path / "q", configs=[CONFIGS[0]], calib=2, eval_images=2,
               duration_s=0.1, rounds=1, threads=1, keep_models=True)
    (row,) = r["configs"]
    assert row["status"] == "ok", row
    assert 0.0 <= row["agreement"]["mask_iou"] <= 1.0
    q = Segmenter(row["path"], backend="onnxruntime", threads=1)
    assert q.info.binary and q.segment(cv2.imread(str(next((data / "img").iterdir())))).mask.max() <= 1


def test_tensorrt_build_and_verify_reference_with_fakes(binary_onnx, data, tmp_path):
    from test_tensorrt_cpu import FakeMemCuda, make_fake_trt

    from edgeseg.runtime.backends.tensorrt_build import BuildOptions, build_engine

    trt = make_fake_trt("8.6.1")
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
    rep = build_engine(binary_onnx, tmp_path / "m.engine", BuildOptions(int8=True, calib_data=str(data / "img")),
                       trt=trt, cuda=FakeMemCuda())
    assert rep["precision"] == "int8"
    ref = tmp_path / "ref.npz"
    r = runner.invoke(app, ["verify", str(tmp_path / "m.engine"), "--onnx", str(binary_onnx), "--data",
                            str(data / "img"), "--save-reference", str(ref)])
    assert r.exit_code == 0, r.output
    z = np.load(ref)
    assert z["probs"].shape[1] == 2 and set(np.unique(z["masks"])) <= {0, 1}
    assert 0 < z["masks"].mean() < 1
