"""Bad inputs a gateway meets in the field: wrong models, corrupt files and frames, Ctrl-C.

Each must end in a one-line error naming the culprit, or be logged and skipped, or (Ctrl-C)
leave playable outputs behind; never a traceback, never a half-written file.
"""
from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.apps.detect import run_detect
from edgeseg.core.errors import ModelError
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.io.sources import open_source
from fakes import DEMO_FLAGS, FakeVideo  # the scripted cv2.VideoCapture stand-in
from training.synth import render_scene, write_clip_video

runner = CliRunner()


def _identity_onnx(path, input_name: str, output_name: str):
    """A valid ONNX graph (Identity) that is not an edgeseg model: wrong tensor names."""
    from onnx import TensorProto, helper, save

    shape = [1, 3, 64, 64]
    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], [output_name])], "not_edgeseg",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, shape)],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


# ------------------------------------------------------------------------------- models
@pytest.mark.parametrize("names", [("x", "y"), ("image", "y"), ("x", "probs")])
def test_onnx_without_image_probs_is_a_model_error(tmp_path, names):
    model = _identity_onnx(tmp_path / "other.onnx", *names)
    with pytest.raises(ModelError, match=r"expected input 'image' and output 'probs', found inputs") as info:
        Segmenter(model, backend="onnxruntime")
    assert "other.onnx" in str(info.value) and f"['{names[0]}']" in str(info.value)
    assert "edgeseg export onnx" in str(info.value)  # the fix
    assert "\n" not in str(info.value)


def test_cli_rejects_foreign_onnx_in_one_line(tmp_path):
    model = _identity_onnx(tmp_path / "other.onnx", "x", "y")
    cv2.imwrite(str(tmp_path / "a.png"), render_scene(1, (64, 64))[0])
    res = runner.invoke(app, ["detect", str(tmp_path / "a.png"), "--model", str(model), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    (line,) = _error_lines(res.output)
    assert line.startswith("error:") and "expected input 'image'" in line and "Traceback" not in res.output


# ------------------------------------------------------------------------------- images
@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(2048), b""], ids=["random-bytes", "empty"])
def test_corrupt_single_image_fails_naming_the_file(tiny_onnx, tmp_path, content):
    bad = tmp_path / "frame.png"
    bad.write_bytes(content)
    res = runner.invoke(app, ["detect", str(bad), "--model", str(tiny_onnx), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    (line,) = _error_lines(res.output)
    assert line == f"error: cannot read image {bad} (corrupt or not an image)"


# ------------------------------------------------------------------------------- videos
def test_corrupt_frame_mid_video_is_skipped(tiny_onnx, tmp_path, caplog):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")  # open_source needs the path to exist; the fake does the decoding
    script = {"opens": [], "reads": [1, 1, 0, 1, 1]}
    src = open_source(str(clip), capture_factory=lambda spec: FakeVideo(script))
    assert src.kind == "video" and src.fps == 10.0
    caplog.set_level(logging.WARNING, logger="edgeseg")
    summary = run_detect(src, tmp_path / "out", Segmenter(tiny_onnx), progress=False)
    assert summary["frames_read"] == 4 and summary["frames_processed"] == 4 and not summary["interrupted"]
    assert any(f"skipping corrupt frame 2 of {clip}" in r.getMessage() for r in caplog.records)
    cap = cv2.VideoCapture(summary["outputs"][0])
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


# ------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_during_detect_closes_outputs_cleanly(tiny_onnx, tmp_path, monkeypatch, caplog):
    clip = tmp_path / "clip.mp4"
    write_clip_video(clip, seed=3, frames=8, size=(64, 64), fps=8)
    real_segment, calls = Segmenter.segment, []

    def interrupted_on_third(self, frame, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_segment(self, frame, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "segment", interrupted_on_third)
    out = tmp_path / "out"
    # threshold 0.01: every frame is a leak, so an alarm is open when Ctrl-C arrives
    res = runner.invoke(app, ["detect", str(clip), "--model", str(tiny_onnx), "-o", str(out), "--json",
                              "--k", "1", "--n", "1", "--min-area", "0", "--threshold", "0.01", *DEMO_FLAGS])
    assert res.exit_code == 130, res.output  # the CLI's documented exit for an interrupted run
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["interrupted"] and summary["frames_processed"] == 2
    assert any("interrupted" in r.getMessage() for r in caplog.records)
    cap = cv2.VideoCapture(str(out / "annotated.mkv"))
    assert cap.isOpened()
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    assert len(frames) == 2 and frames[0].shape == (64, 64, 3)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(events) == summary["events"]
    # every event written before the interrupt is on disk, and the open incident was closed
    assert [e["event"] for e in events] == ["start", "update", "end"]
    assert [e["frame"] for e in events] == [0, 1, 1] and events[-1]["reason"] == "interrupted"
    assert all(e["source"] == str(clip) for e in events)
