"""Sinks: the preview window degrades to a warning on headless hosts; JSONL events; annotated outputs."""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from training.synth import render_scene

runner = CliRunner()


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


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
    assert (tmp_path / "out" / "a.png.annotated.png").is_file()
    assert len(_lines(tmp_path / "out" / "events.jsonl")) == 1
    (warning,) = [r.getMessage() for r in caplog.records if "--show disabled" in r.getMessage()]
    assert "no display" in warning and "\n" not in warning
    assert touched == []  # no GUI call at all, destroyAllWindows included


def test_show_with_headless_opencv_names_the_fix(monkeypatch):
    import edgeseg.io.sinks.video as sinks

    def no_gui(*args):
        raise cv2.error("The function is not implemented. Rebuild the library with GTK+ 2.x or Cocoa support")

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    reason = sinks.display_unavailable_reason()
    assert reason and "opencv-python-headless" in reason and "pip install opencv-python" in reason


def test_jsonl_events_append_and_flush_each_line(tmp_path):
    from edgeseg.io.sinks import JsonlEvents

    path = tmp_path / "events.jsonl"
    sink = JsonlEvents(path)
    sink.event({"event": "start", "frame": 1})
    assert _lines(path) == [{"event": "start", "frame": 1}]  # on disk before close: flushed per line
    sink.close()
    again = JsonlEvents(path, append=True)
    again.event({"event": "end", "frame": 2})
    again.close()
    again.close()  # twice is harmless
    assert [e["event"] for e in _lines(path)] == ["start", "end"] and again.outputs == [str(path)]


def test_annotated_video_is_playable_after_close(tmp_path):
    from edgeseg.runtime.segmenter import Result
    from edgeseg.io.sinks.video import AnnotatedVideo
    from edgeseg.io.sources import Frame

    sink = AnnotatedVideo(tmp_path / "a.mp4", fps=5)
    assert sink.outputs == []  # nothing written yet: no file promised
    for i in range(3):
        img = render_scene(i, (64, 64))[0]
        sink.frame(Frame(i, i / 5, img, "x"), Result(np.zeros((64, 64), np.uint8), [], {}, ("a",)), img)
    sink.close()
    cap = cv2.VideoCapture(str(tmp_path / "a.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
