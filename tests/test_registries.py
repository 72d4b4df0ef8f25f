"""Sources and sinks are registries: a new kind is one module plus one entry, and ``detect`` and
``watch`` both reach it. Tested with real parts: Debian's mosquitto for ``--sink mqtt://``."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.io.sources import SOURCES, Frame, Source, SourceKind, is_live, open_source, register_source
from test_gateway import Collect, mosquitto, subscriber, wait_for  # noqa: F401 - the fixture is used by name
from fakes import DEMO_ALARM, DEMO_FLAGS

runner = CliRunner()


def _pattern_source(spec: str, **_: object) -> Source:
    """A source kind of its own: ``pattern:N`` yields N frames of a bright square on grey."""
    count = int(spec.split(":", 1)[1])

    def frames(stats):
        for i in range(count):
            img = np.full((96, 128, 3), 90, np.uint8)
            img[20:70, 30:90] = 250
            yield Frame(i, i / 10.0, img, f"pattern{i}")

    return Source(spec, "video", 10.0, frames, expected=count)


@pytest.fixture
def pattern_kind():
    kind = SourceKind("pattern", lambda s: s.startswith("pattern:"), False, _pattern_source)
    register_source(kind, first=True)
    try:
        yield kind
    finally:
        SOURCES.remove(kind)


def test_a_registered_source_works_in_detect_and_watch(pattern_kind, tiny_onnx, tmp_path):
    assert not is_live("pattern:5") and open_source("pattern:5").kind == "video"
    res = runner.invoke(app, ["detect", "pattern:12", "--model", str(tiny_onnx), "--threshold", "0.01",
                              "-o", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["frames_processed"] == 12 and summary["kind"] == "video"

    from edgeseg import Gateway

    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "threshold": 0.01, "alarm": {"k": 1, "n": 1, "m": 2, **DEMO_ALARM},
                  "cameras": [{"name": "pat", "source": "pattern:8"}]}, sinks=[col])
    gw.start()
    assert gw.wait(30)
    gw.stop()
    assert [e["event"] for e in col.of(camera="pat")][-1] == "camera_finished"
    assert col.of("start", "pat") and len(col.of("start", "pat")) == len(col.of("end", "pat"))


def test_detect_sink_mqtt_sends_the_same_events_as_events_jsonl(tiny_onnx, tmp_path, mosquitto):
    from training.synth import write_clip_video

    clip = tmp_path / "clip.mp4"
    write_clip_video(clip, frames=16, seed=3, size=(96, 128))
    sub, got = subscriber(mosquitto, "site1/#")
    try:
        res = runner.invoke(app, ["detect", str(clip), "--model", str(tiny_onnx), "--threshold", "0.01", "--k", "1",
                                  "--n", "1", *DEMO_FLAGS, "-o", str(tmp_path / "out"),
                                  "--sink", f"mqtt://127.0.0.1:{mosquitto}/site1"])
        assert res.exit_code == 0, res.output
        lines = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
        assert any(json.loads(ln)["event"] == "start" for ln in lines)
        assert wait_for(lambda: len([1 for t, _, _ in got if t.endswith("/events")]) >= len(lines), 10)
        sent = [json.loads(p) for t, p, _ in got if t.endswith("/events")]
        assert len({s.pop("event_id") for s in sent}) == len(sent)  # MQTT adds an id per event (duplicates)
        assert sent == [json.loads(ln) for ln in lines]  # every event, once, in order, the same record
    finally:
        sub.loop_stop()
        sub.disconnect()


@pytest.mark.parametrize("url, match", [
    ("ftp://x/y", r"--sink ftp://x/y: unknown sink scheme ftp:// \(fix: one of jsonl://"),
    ("mqtt://127.0.0.1:1883/a?qos=7", r"--sink mqtt://127.0.0.1:1883/a\?qos=7: qos: must be an integer >= 0 and <= 2"),
])
def test_bad_sink_url_is_one_line(url, match, tiny_onnx, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    res = runner.invoke(app, ["detect", str(tmp_path / "a.png"), "--model", str(tiny_onnx), "-o", str(tmp_path / "o"),
                              "--sink", url])
    assert res.exit_code == 2
    import re

    assert re.search(match, " ".join(res.output.split())), res.output


def test_detect_refuses_out_of_range_stream_settings_like_the_config(tiny_onnx, tmp_path):
    for flags, match in ((["--every", "0"], "--every: must be an integer >= 1"),
                         (["--threshold", "nan"], "--threshold: must be a finite number"),
                         (["--k", "6", "--n", "5"], "--k: k (6) is larger than n (5)"),
                         (["--min-area", "64"], "--min_area: must be a number >= 0.0 and < 1.0")):
        res = runner.invoke(app, ["detect", "x.png", "--model", str(tiny_onnx), *flags])
        assert res.exit_code == 2 and match in " ".join(res.output.split()), (flags, res.output)
