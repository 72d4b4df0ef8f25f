"""`edgeseg export int8`: quantise, verify against fp32, refuse below the floor; `precision="int8"` finds it."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg import Segmenter
from edgeseg.bench.int8_export import BUNDLED_CONFIG, HOST_CONFIG_NO_VNNI, HOST_CONFIG_VNNI, host_config
from edgeseg.cli import app

runner = CliRunner()
SMOKE5K_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "smoke5k" / "train"


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(3)
    for i in range(12):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(d / f"f{i:02d}.png"), cv2.resize(small, (96, 72), interpolation=cv2.INTER_CUBIC))
    return d


def test_export_int8_writes_a_verified_sibling_that_precision_int8_runs(tiny_onnx, calib_dir, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    # the setting this CPU gets (read from its flags now: u8s8 saturates without VNNI). The floor is
    # 0.9 here, not the product's 0.95: the tiny random-weight model's INT8 agreement depends on the
    # CPU's int8 kernels (0.94 on an AVX2-only EPYC, >= 0.95 with VNNI); the floor itself is tested below
    config = host_config()[0].name
    res = runner.invoke(app, ["export", "int8", str(model), "--calib-data", str(calib_dir), "--calib-images", "6",
                              "--eval-images", "6", "--config", config, "--min-iou", "0.9"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "m.int8.onnx"
    assert out.is_file() and "mask IoU vs fp32 (onnxruntime, 6 verification images, none of them calibration images)" in res.output
    rec = json.loads((tmp_path / "m.int8.json").read_text())
    assert rec["config"] == config and rec["calibration"]["images"] == 6
    assert rec["agreement"]["mask_iou_vs_fp32"] >= 0.9 and rec["host"]["cpu_features"]
    assert set(rec["calibration"]["files"]) <= {p.name for p in calib_dir.iterdir()}
    seg = Segmenter(model, precision="int8", backend="onnxruntime")
    assert seg.model_path == out and seg.info.metadata["precision"] == "int8"
    assert seg.info.classes == Segmenter(model, backend="onnxruntime").info.classes
    frame = cv2.imread(str(next(calib_dir.iterdir())))
    agree = (seg.segment(frame).mask == Segmenter(model, backend="onnxruntime").segment(frame).mask).mean()
    assert agree > 0.9


def test_export_int8_refuses_below_the_floor_and_writes_nothing(tiny_onnx, calib_dir, tmp_path):
    out = tmp_path / "q.onnx"
    res = runner.invoke(app, ["export", "int8", str(tiny_onnx), "--calib-data", str(calib_dir), "-o", str(out),
                              "--calib-images", "4", "--eval-images", "4", "--min-iou", "1.01"])
    assert res.exit_code != 0 and "INT8 model refused: mask IoU vs fp32" in res.output and "below the floor 1.01" in res.output
    assert not out.exists()
    res = runner.invoke(app, ["export", "int8", str(tiny_onnx), "--calib-data", str(tmp_path / "none")])
    assert res.exit_code != 0 and "is not a folder of images" in res.output


def test_host_config_follows_the_cpu_flags():
    assert host_config({"avx2": True, "avx512_vnni": True})[0].name == HOST_CONFIG_VNNI
    cfg, why = host_config({"avx2": True})
    assert cfg.name == HOST_CONFIG_NO_VNNI and cfg.reduce_range and "lacks VNNI" in why


def test_bundled_int8_model_agrees_with_its_sidecar():
    from edgeseg.core.files import sha256_file
    from edgeseg.runtime.precision import int8_sibling
    from edgeseg.runtime.segmenter import BUNDLED_INT8, BUNDLED_MODEL, DEFAULT_MODEL

    int8 = BUNDLED_INT8
    if not int8.is_file():
        pytest.skip(f"no bundled INT8 model at {int8} (python -m training.ship --int8)")
    assert int8_sibling(DEFAULT_MODEL) == int8 == int8_sibling(BUNDLED_MODEL)
    rec = json.loads(int8.with_suffix(".json").read_text())
    sidecar = json.loads(BUNDLED_MODEL.with_name(BUNDLED_MODEL.name.replace(".fp16.onnx", ".json")).read_text())
    # made from the bundled weights: the fp32 model derived from the stored fp16 file, or the fp32
    # export that fp16 file was converted from (the sidecar records its sha256)
    assert rec["sha256"] == sha256_file(int8)
    assert rec["source"]["sha256"] in (sha256_file(DEFAULT_MODEL), sidecar.get("fp32_export_sha256"))
    assert rec["agreement"]["mask_iou_vs_fp32"] >= rec["agreement"]["floor"]
    assert rec["config"] == BUNDLED_CONFIG  # 7-bit weights: made and verified the same on any x86 CPU
    assert rec["agreement"]["by_runtime"]["openvino"]["mask_iou"] >= rec["agreement"]["floor"]
    assert "val" not in Path(rec["calibration"]["source"]).parts
    seg = Segmenter(precision="int8", backend="onnxruntime")
    assert seg.model_path == int8 and seg.segment(np.full((120, 160, 3), 90, np.uint8)).mask.shape == (120, 160)


def test_a_u8s8_model_warns_on_a_cpu_without_vnni(tmp_path):
    """u8s8 without reduced range saturates in ONNX Runtime's AVX2 kernels: the SDK says so at load
    on such a CPU (flags given here, so the test means the same on every host)."""
    from edgeseg.runtime.precision import int8_host_warning

    model = tmp_path / "m.int8.onnx"
    model.write_bytes(b"")
    no_vnni = {"avx2": True, "fma": True, "avx512_vnni": False, "avx_vnni": False, "amx_int8": False}
    assert int8_host_warning(model, no_vnni) is None  # no record: nothing to say
    (tmp_path / "m.int8.json").write_text(json.dumps({"config": "qdq_u8s8_perchannel"}))
    line = int8_host_warning(model, no_vnni)
    assert "8-bit dot products" in line and "fix: make one for this CPU: edgeseg export int8" in line and "\n" not in line
    assert int8_host_warning(model, {**no_vnni, "avx512_vnni": True}) is None
    (tmp_path / "m.int8.json").write_text(json.dumps({"config": "qop_u8s8_perchannel_rr"}))
    assert int8_host_warning(model, no_vnni) is None  # 7-bit weights: no saturation
    (tmp_path / "m.int8.json").write_text(json.dumps({"config": "mine", "settings": "QDQ act u8/weight s8, "
                                                      "per-channel, reduce_range, all ops, MinMax"}))
    assert int8_host_warning(model, no_vnni) is None  # said by the settings, whatever the name
