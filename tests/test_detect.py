"""`edgeseg detect` end to end (ONNX Runtime): images, folders, videos, bad sources."""
from __future__ import annotations

import json

import cv2
from typer.testing import CliRunner

from edgeseg.cli import app
from training.synth import render_scene, write_clip_video
from fakes import DEMO_FLAGS

runner = CliRunner()


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_detect_image(tiny_onnx, tmp_path):
    img, _ = render_scene(1, (96, 128))
    cv2.imwrite(str(tmp_path / "a.png"), img)
    res = runner.invoke(app, ["detect", str(tmp_path / "a.png"), "--model", str(tiny_onnx), "-o", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["frames_processed"] == 1
    out = cv2.imread(str(tmp_path / "out" / "a.png.annotated.png"))
    assert out.shape == img.shape
    (line,) = _lines(tmp_path / "out" / "events.jsonl")
    assert line["event"] == "detection" and line["image"] == "a.png"


def test_detect_folder_skips_corrupt(tiny_onnx, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"f{i}.png"), render_scene(i, (64, 64))[0])
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    (d / "notes.txt").write_text("ignored")
    res = runner.invoke(app, ["detect", str(d), "--model", str(tiny_onnx), "-o", str(tmp_path / "out")])
    assert res.exit_code == 3, res.output  # documented: the input was not complete (one unreadable file)
    assert "input incomplete: 1 unreadable files" in res.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"f{i}.png.annotated.png" for i in range(3)]
    assert len(_lines(tmp_path / "out" / "events.jsonl")) == 3


def test_detect_video(tiny_onnx, tmp_path):
    clip = tmp_path / "clip.mp4"
    write_clip_video(clip, seed=3, frames=8, size=(64, 64), fps=8)
    res = runner.invoke(app, ["detect", str(clip), "--model", str(tiny_onnx), "-o", str(tmp_path / "out"),
                              "--every", "2", "--k", "1", "--n", "1", "--min-area", "0", "--json", *DEMO_FLAGS])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["frames_read"] == 8 and summary["frames_processed"] == 4
    cap = cv2.VideoCapture(str(tmp_path / "out" / "annotated.mkv"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    for ev in _lines(tmp_path / "out" / "events.jsonl"):
        assert ev["event"] in {"start", "update", "end"} and "timestamp" in ev


def test_missing_source_and_corrupt_video(tiny_onnx, tmp_path):
    res = runner.invoke(app, ["detect", str(tmp_path / "nope.mp4"), "--model", str(tiny_onnx)])
    assert res.exit_code == 2 and "source not found" in res.output
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    res = runner.invoke(app, ["detect", str(bad), "--model", str(tiny_onnx)])
    assert res.exit_code == 2 and "video" in res.output
