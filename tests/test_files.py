"""One list of image extensions: every command reads the same files from a folder."""
from __future__ import annotations

import json

import cv2
import numpy as np
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.core.files import IMAGE_EXTS, list_images, sha256_file


def test_webp_is_read_by_detect_and_bench_accuracy(tiny_onnx, tmp_path):
    """detect used to read .webp while bench accuracy skipped it; both read the one list now."""
    assert ".webp" in IMAGE_EXTS
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "gt").mkdir()
    img = np.full((64, 64, 3), 120, np.uint8)
    cv2.imwrite(str(data / "img" / "a.webp"), img)
    cv2.imwrite(str(data / "img" / "b.jpg"), img)
    for name in ("a", "b"):
        cv2.imwrite(str(data / "gt" / f"{name}.png"), np.zeros((64, 64), np.uint8))
    assert [p.name for p in list_images(data / "img")] == ["a.webp", "b.jpg"]
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "accuracy", "--model", str(tiny_onnx), "--data", str(data), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{"):])["scores"]["images"] == 2
    res = runner.invoke(app, ["detect", str(data / "img"), "--model", str(tiny_onnx), "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o").glob("*.annotated.png")) == ["a.webp.annotated.png", "b.jpg.annotated.png"]


def test_sha256_file(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
