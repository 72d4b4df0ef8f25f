"""Every setting is declared once (edgeseg.config.settings) and that one declaration drives the loader,
the JSON Schema, the docs table and detect's flags; cameras inherit and override."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.apps.gateway.config import parse_config
from edgeseg.config.settings import DEFAULT_MIN_AREA, STREAM_FIELDS, ConfigError, StreamSettings, json_schema
from edgeseg.config.settings_docs import markdown_table, refresh_docs

ROOT = Path(__file__).resolve().parents[1]


def test_cameras_inherit_top_level_and_override_per_camera():
    cfg = parse_config({
        "precision": "int8", "threshold": 0.3, "tiles": "2x2", "letterbox": True, "alarm": {"k": 2, "n": 4},
        "zones": {"ignore": [[[0, 0], [0.2, 0], [0.2, 0.2]]]},
        "cameras": [{"name": "a", "source": "rtsp://h/a"},
                    {"name": "b", "source": "rtsp://h/b", "precision": "fp32", "threshold": 0.6,
                     "alarm": {"m": 3}, "zones": {"include": [[[0, 0], [1, 0], [1, 1]]]}}]})
    a, b = cfg.cameras
    assert (a.precision, a.threshold, a.tiles, a.letterbox, a.alarm.k, a.alarm.n, a.alarm.m) == ("int8", 0.3, "2x2", True, 2, 4, 10)
    assert len(a.zones.ignore) == 1 and not a.zones.include
    # b overrides precision, threshold, one alarm key (the others still inherited) and the zones as a whole
    assert (b.precision, b.threshold, b.tiles, b.alarm.k, b.alarm.n, b.alarm.m) == ("fp32", 0.6, "2x2", 2, 4, 3)
    assert len(b.zones.include) == 1 and not b.zones.ignore
    assert a.model_key != b.model_key  # different precision: a Segmenter each


def test_inherited_values_are_checked_per_camera():
    with pytest.raises(ConfigError, match=r"^cameras\[0\]\.alarm\.k: k \(4\) is larger than n \(3\)"):
        parse_config({"alarm": {"k": 4}, "cameras": [{"name": "a", "source": "0", "alarm": {"n": 3}}]})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1, 1.0])
def test_threshold_nan_inf_and_range_refused(bad):
    with pytest.raises(ConfigError, match=r"^threshold: must be a"):
        parse_config({"threshold": bad, "cameras": [{"name": "a", "source": "0"}]})


def test_json_schema_describes_every_stream_setting():
    schema = json_schema()
    for name in STREAM_FIELDS:
        assert name in schema["properties"], name
        assert schema["properties"][name].get("description") or "$ref" in str(schema["properties"][name])
    assert schema["properties"]["threshold"]["anyOf"][0]["exclusiveMaximum"] == 1.0


def test_watch_schema_prints_the_json_schema():
    p = subprocess.run([sys.executable, "-m", "edgeseg.cli", "watch", "--schema"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    schema = json.loads(p.stdout)
    assert schema["title"] == "edgeseg watch configuration" and "cameras" in schema["required"]


def test_docs_settings_table_is_generated_and_current():
    """docs/gateway.md's table is the declarations' table (regenerate: python -m edgeseg.config.settings_docs docs/gateway.md)."""
    page = (ROOT / "docs" / "gateway.md").read_text()
    assert refresh_docs(page) == page, "stale: run python -m edgeseg.config.settings_docs docs/gateway.md"
    table = markdown_table()
    for name in STREAM_FIELDS:
        assert f"`{name}" in table


def test_min_area_has_one_default_as_a_share_of_the_frame():
    assert StreamSettings().min_area is None  # none: the model's own operating point, else DEFAULT_MIN_AREA
    assert 0 < DEFAULT_MIN_AREA < 0.01
    assert "FRACTION of the frame" in StreamSettings.model_fields["min_area"].description


def test_watch_runs_each_cameras_own_model_settings(tiny_onnx, tmp_path):
    """precision / tiles / letterbox reach watch: cameras with different model settings get their own
    Segmenter (and are batched apart); cameras with the same settings share one."""
    from edgeseg import Gateway
    from test_gateway import Collect, FakeCam, wait_for

    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"), "tiles": "2x2",
                  "cameras": [{"name": "a", "source": "fake://a"}, {"name": "b", "source": "fake://b"},
                              {"name": "c", "source": "fake://c", "tiles": "1x1", "letterbox": True}]},
                 sinks=[col], capture_factory=lambda spec: FakeCam(spec, fps=10))
    gw.start()
    try:
        assert wait_for(lambda: all(c["processed"] > 3 for c in gw.stats()["cameras"].values()), 30)
        segs = {key: seg for key, seg in gw.segmenters.items()}
        assert len(segs) == 2
        by_tiles = {seg.tiles: seg for seg in segs.values()}
        assert set(by_tiles) == {(2, 2), (1, 1)}
        assert by_tiles[(2, 2)].mode == "resize" and by_tiles[(1, 1)].mode == "letterbox"
        assert gw._segmenter_for(gw.cameras["a"].cfg) is gw._segmenter_for(gw.cameras["b"].cfg)
    finally:
        gw.stop()
