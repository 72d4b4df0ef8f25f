"""#37 point 5: `edgeseg export int8` calibrates on every count (16, 32, the default 64: ONNX Runtime's
MinMax calibrator used to drop what it held at each 16th image), skips truncated / unreadable / tiny
calibration images naming each, and verifies on images that are never calibration images."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app

runner = CliRunner()


def _frames(d: Path, n: int, seed: int = 5, ext: str = "png") -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        out.append(d / f"f{i:03d}.{ext}")
        cv2.imwrite(str(out[-1]), cv2.resize(small, (96, 72), interpolation=cv2.INTER_CUBIC))
    return out


def _export(model: Path, data: Path, out: Path, *extra: str):
    res = runner.invoke(app, ["export", "int8", str(model), "--calib-data", str(data), "-o", str(out),
                              "--config", "qdq_u8s8_perchannel_rr", "--min-iou", "0", *extra])
    rec = json.loads(out.with_suffix(".json").read_text()) if res.exit_code == 0 else None
    return res, rec


@pytest.mark.parametrize("count", [16, 32, None])  # None: the default, 64
def test_export_int8_calibrates_on_multiples_of_16(tiny_onnx, tmp_path, count):
    data = tmp_path / "cams"
    _frames(data, (count or 64) + 4)
    extra = ["--calib-images", str(count)] if count else []
    res, rec = _export(tiny_onnx, data, tmp_path / "m.int8.onnx", *extra, "--eval-images", "4")
    assert res.exit_code == 0, res.output
    assert "No data is collected" not in res.output
    assert rec["calibration"]["images"] == rec["calibration"]["requested"] == (count or 64)
    assert f"calibrated on {count or 64} calibration images" in res.output
    assert not set(rec["calibration"]["files"]) & set(rec["agreement"]["files"]) and rec["agreement"]["images"] == 4


def test_quantize_folds_the_ranges_of_every_calibration_image(tiny_onnx, tmp_path):
    """The widest image comes first among 17: its range must survive (the 16-image discard lost it)."""
    import onnx
    from onnx import numpy_helper

    from edgeseg.bench.quantize import CONFIGS_BY_NAME, quantize

    rng = np.random.default_rng(0)
    tensors = [rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32) for _ in range(17)]
    tensors[0] = tensors[0] * 50
    out = quantize(tiny_onnx, tmp_path / "q.onnx", CONFIGS_BY_NAME["qdq_u8s8_perchannel_rr"], tensors)
    g = onnx.load(str(out)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    q = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == "image")
    assert float(inits[q.input[1]]) * 255 > 90  # the input's range spans ~[-50, 50], not the last image's [-1, 1]


def _bad_images(d: Path) -> tuple[Path, Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    full = d / "cut.jpg"
    img = cv2.resize(np.random.default_rng(1).integers(0, 255, (12, 16, 3), dtype=np.uint8), (320, 240))
    cv2.imwrite(str(full), img)
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(full)) is not None  # OpenCV decodes a cut JPEG without a word: only the SDK's check sees it
    tiny = d / "dot.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    junk = d / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    return full, tiny, junk


def test_truncated_tiny_and_corrupt_calibration_images_are_skipped_and_named(tiny_onnx, tmp_path):
    data = tmp_path / "cams"
    _frames(data, 10)
    cut, tiny, junk = _bad_images(data)
    res, rec = _export(tiny_onnx, data, tmp_path / "m.int8.onnx", "--calib-images", "8", "--eval-images", "2")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for path, why in ((cut, "truncated JPEG"), (tiny, "too small (1x1 px"), (junk, "unreadable")):
        named = [ln for ln in lines if str(path) in ln]
        assert len(named) == 1 and named[0].startswith("warning: skipping calibration image") and why in named[0]
    assert "3 skipped" in res.output
    assert {Path(s["file"]).name for s in rec["calibration"]["skipped"]} == {"cut.jpg", "dot.png", "junk.jpg"}
    used = set(rec["calibration"]["files"]) | set(rec["agreement"]["files"])
    assert not used & {"cut.jpg", "dot.png", "junk.jpg"} and rec["calibration"]["images"] == 8


def test_an_all_corrupt_folder_is_one_error_line(tiny_onnx, tmp_path):
    data = tmp_path / "bad"
    _bad_images(data)
    out = tmp_path / "m.int8.onnx"
    res, _ = _export(tiny_onnx, data, out)
    assert res.exit_code != 0 and not out.exists() and "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "0 usable calibration image(s) of 3" in errors[0] and "at least 8" in errors[0]
    assert res.output.strip().splitlines()[-1] == errors[0]  # the warnings name the files, then one error line


def test_verification_images_are_never_calibration_images(tiny_onnx, tmp_path):
    """Fewer images than --calib-images + --eval-images (the defaults, 64 + 32): some are kept apart."""
    from edgeseg.bench.int8_export import export_int8

    data = tmp_path / "cams"
    files = _frames(data, 10)
    res, rec = _export(tiny_onnx, data, tmp_path / "m.int8.onnx")
    assert res.exit_code == 0, res.output
    cal, ver = set(rec["calibration"]["files"]), set(rec["agreement"]["files"])
    assert cal and ver and not cal & ver and len(cal | ver) == 10
    # verification images named by the caller (training.ship) are dropped from the calibration images
    rec = export_int8(tiny_onnx, files, tmp_path / "n.int8.onnx", "qdq_u8s8_perchannel_rr", calib_images=10,
                      eval_images=2, floor=0.0, eval_files=files[:2])
    assert rec["agreement"]["files"] == ["f000.png", "f001.png"]
    assert not {"f000.png", "f001.png"} & set(rec["calibration"]["files"]) and rec["calibration"]["images"] == 8


def test_help_and_docs_say_calibration_images_not_held_out():
    res = runner.invoke(app, ["export", "int8", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "held-out" not in res.output and "calibration images" in res.output
    root = Path(__file__).resolve().parents[1]
    for doc in ("docs/cpu-speed.md", "docs/troubleshooting.md"):
        text = (root / doc).read_text()
        assert "held-out" not in text.lower().split("export int8", 1)[-1][:2000]
