"""`edgeseg detect` end to end (ONNX Runtime) and the stream reconnect logic."""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.errors import SourceError
from edgeseg.sources import open_source
from training.synth import render_scene, write_clip_video
from fakes import FakeCapture  # the scripted cv2.VideoCapture stand-in

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
    out = cv2.imread(str(tmp_path / "out" / "a_annotated.png"))
    assert out.shape == img.shape
    (line,) = _lines(tmp_path / "out" / "events.jsonl")
    assert line["event"] == "detection" and line["image"] == "a"


def test_detect_folder_skips_corrupt(tiny_onnx, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"f{i}.png"), render_scene(i, (64, 64))[0])
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    (d / "notes.txt").write_text("ignored")
    res = runner.invoke(app, ["detect", str(d), "--model", str(tiny_onnx), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"f{i}_annotated.png" for i in range(3)]
    assert len(_lines(tmp_path / "out" / "events.jsonl")) == 3


def test_detect_video(tiny_onnx, tmp_path):
    clip = tmp_path / "clip.mp4"
    write_clip_video(clip, seed=3, frames=8, size=(64, 64), fps=8)
    res = runner.invoke(app, ["detect", str(clip), "--model", str(tiny_onnx), "-o", str(tmp_path / "out"),
                              "--every", "2", "--k", "1", "--n", "1", "--min-area", "0", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["frames_read"] == 8 and summary["frames_processed"] == 4
    cap = cv2.VideoCapture(str(tmp_path / "out" / "annotated.mp4"))
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


def test_stream_reconnects_with_backoff_then_resumes():
    script = {"opens": [True, False, False, True], "reads": [1, 1, 0, 1, 1]}
    sleeps = []
    src = open_source("rtsp://camera/stream", max_retries=5, sleep=sleeps.append,
                      capture_factory=lambda spec: FakeCapture(script))
    it = iter(src)
    frames = [next(it) for _ in range(4)]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert sleeps == [0.5, 1.0, 2.0]  # two failed reopenings, then success


def test_stream_gives_up_after_max_retries():
    script = {"opens": [True] + [False] * 10, "reads": [1, 0]}
    sleeps = []
    src = open_source("rtsp://camera/stream", max_retries=4, sleep=sleeps.append,
                      capture_factory=lambda spec: FakeCapture(script))
    with pytest.raises(SourceError, match="did not come back after 4 retries"):
        list(src)
    assert sleeps == [0.5, 1.0, 2.0, 4.0]


def test_stream_that_reopens_but_never_delivers_gives_up():
    # every reopen succeeds, every read fails: the budget must not reset on a frameless reopen
    script = {"opens": [], "reads": [1]}
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        assert len(sleeps) <= 10, "retry budget reset on every reopen: this would loop forever"

    src = open_source("rtsp://camera/stream", max_retries=3, sleep=sleep,
                      capture_factory=lambda spec: FakeCapture(script))
    it = iter(src)
    assert next(it).index == 0
    with pytest.raises(SourceError, match="did not come back after 3 retries"):
        next(it)
    assert sleeps == [0.5, 1.0, 2.0]


def test_stream_budget_resets_after_a_delivered_frame():
    # 2 failures, a frame, 2 failures, a frame: never 3 in a row, so max_retries=2 survives
    script = {"opens": [True, False, True, False, True], "reads": [1, 0, 1, 0, 1]}
    sleeps = []
    src = open_source("rtsp://camera/stream", max_retries=2, sleep=sleeps.append,
                      capture_factory=lambda spec: FakeCapture(script))
    it = iter(src)
    assert [next(it).index for _ in range(3)] == [0, 1, 2]
    assert sleeps == [0.5, 1.0, 0.5, 1.0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the DISPLAY check is Linux-only")
def test_show_without_display_warns_and_still_writes(tiny_onnx, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    touched = []
    for name in ("imshow", "destroyAllWindows", "namedWindow"):
        monkeypatch.setattr(cv2, name, lambda *a, _n=name: touched.append(_n))
    cv2.imwrite(str(tmp_path / "a.png"), render_scene(1, (64, 64))[0])
    res = runner.invoke(app, ["detect", str(tmp_path / "a.png"), "--model", str(tiny_onnx),
                              "-o", str(tmp_path / "out"), "--show"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "a_annotated.png").is_file()
    assert len(_lines(tmp_path / "out" / "events.jsonl")) == 1
    (warning,) = [r.getMessage() for r in caplog.records if "--show disabled" in r.getMessage()]
    assert "no display" in warning and "\n" not in warning
    assert touched == []  # no GUI call at all, destroyAllWindows included


def test_show_with_headless_opencv_names_the_fix(monkeypatch):
    import edgeseg.sinks as sinks

    def no_gui(*args):
        raise cv2.error("The function is not implemented. Rebuild the library with GTK+ 2.x or Cocoa support")

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    reason = sinks.display_unavailable_reason()
    assert reason and "opencv-python-headless" in reason and "pip install opencv-python" in reason
