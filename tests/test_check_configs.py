"""Configs that used to pass ``edgeseg watch --check`` and then fail at start (issue #37, point 14):
each is now refused by ``--check`` AND by ``watch`` itself, before anything starts, in one line that
names the key, the problem and the fix; never a traceback. Real config files, the real CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.synth import write_clip_video

ROOT = Path(__file__).resolve().parents[1]


def _case_jsonl_under_proc(tmp: Path) -> dict:
    return {"sinks": {"jsonl": {"path": "/proc/edgeseg/events.jsonl"}}}


def _case_jsonl_is_a_folder(tmp: Path) -> dict:
    (tmp / "events").mkdir()
    return {"sinks": {"jsonl": {"path": "events"}}}


def _case_metrics_host_unresolvable(tmp: Path) -> dict:
    (tmp / "token").write_text("t" * 32 + "\n")
    return {"metrics": {"host": "no-such-host.invalid", "port": 0}, "api": {"token_file": "token"}}


def _case_mqtt_prefix_plus(tmp: Path) -> dict:
    return {"sinks": {"mqtt": {"topic_prefix": "site1/+"}}}


def _case_mqtt_prefix_hash(tmp: Path) -> dict:
    return {"sinks": {"mqtt": {"topic_prefix": "site1/#"}}}


def _case_clips_under_proc(tmp: Path) -> dict:
    return {"clips": {"dir": "/proc/edgeseg/clips"}}


def _case_camera_folder_blocked_by_a_file(tmp: Path) -> dict:
    (tmp / "clips").mkdir()
    (tmp / "clips" / "yard").write_text("not a folder")  # root can write anywhere: a file in the way stops it too
    return {"clips": {"dir": "clips"}}


def _case_webhook_header_value_crlf(tmp: Path) -> dict:
    return {"sinks": {"webhook": {"url": "http://127.0.0.1:9/events", "headers": {"Authorization": "Bearer x\r\nX-Evil: 1"}}}}


def _case_webhook_header_name_lf(tmp: Path) -> dict:
    return {"sinks": {"webhook": {"url": "http://127.0.0.1:9/events", "headers": {"X-Token\n": "abc"}}}}


def _case_webhook_url_without_host(tmp: Path) -> dict:
    return {"sinks": {"webhook": {"url": "http://"}}}


#: case -> (its config keys, the key the error line names, words of the problem)
CASES = {
    "jsonl_under_proc": (_case_jsonl_under_proc, "sinks.jsonl.path", "/proc"),
    "jsonl_is_a_folder": (_case_jsonl_is_a_folder, "sinks.jsonl.path", "is a folder, not a file"),
    "metrics_host_unresolvable": (_case_metrics_host_unresolvable, "metrics.host", "does not resolve"),
    "mqtt_prefix_plus": (_case_mqtt_prefix_plus, "sinks.mqtt.topic_prefix", "wildcard"),
    "mqtt_prefix_hash": (_case_mqtt_prefix_hash, "sinks.mqtt.topic_prefix", "wildcard"),
    "clips_under_proc": (_case_clips_under_proc, "cameras[0].clips.dir", "/proc"),
    "camera_folder_blocked_by_a_file": (_case_camera_folder_blocked_by_a_file, "cameras[0].clips.dir",
                                        "is a file (or a broken link), not a folder"),
    "webhook_header_value_crlf": (_case_webhook_header_value_crlf, "sinks.webhook.headers", "line break"),
    "webhook_header_name_lf": (_case_webhook_header_name_lf, "sinks.webhook.headers", "not a valid HTTP header name"),
    "webhook_url_without_host": (_case_webhook_url_without_host, "sinks.webhook.url", "names no host"),
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_clip_video(path, frames=8, seed=3, size=(64, 64))
    return path


def _config(tmp: Path, model: Path, clip: Path, case: str) -> Path:
    extra = CASES[case][0](tmp)
    cfg = {"model": str(model), "threads": 1, "cameras": [{"name": "yard", "source": str(clip)}],
           "state_dir": "state", **extra}
    path = tmp / "gateway.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _watch(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg.cli", "watch", str(config), "--log-level", "warning", *extra],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def _one_error_line(r: subprocess.CompletedProcess, case: str) -> str:
    out = r.stdout + r.stderr
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert "Traceback" not in out, out[-3000:]
    assert r.returncode != 0 and len(lines) == 1, (r.returncode, out[-3000:])
    _, key, words = CASES[case]
    line = lines[0]
    assert line.startswith("error: config: ") and f"{key}: " in line and words in line, line
    assert "(fix: " in line and line.rstrip().endswith(")"), line
    return line


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_refuses_in_one_line_with_a_fix(case, tiny_onnx, clip, tmp_path):
    config = _config(tmp_path, tiny_onnx, clip, case)
    _one_error_line(_watch(config, "--check"), case)
    assert not (tmp_path / "state").exists()  # the probes leave nothing behind


@pytest.mark.parametrize("case", ["jsonl_under_proc", "camera_folder_blocked_by_a_file", "metrics_host_unresolvable",
                                  "webhook_header_value_crlf", "mqtt_prefix_hash"])
def test_watch_refuses_at_start_like_check(case, tiny_onnx, clip, tmp_path):
    """``watch`` itself runs the same checks before it starts anything: the same line, no traceback."""
    config = _config(tmp_path, tiny_onnx, clip, case)
    check = _one_error_line(_watch(config, "--check"), case)
    start = _one_error_line(_watch(config), case)
    assert start == check


def test_a_good_config_still_passes_and_its_probes_leave_nothing(tiny_onnx, clip, tmp_path):
    (tmp_path / "clips").mkdir()
    cfg = {"model": str(tiny_onnx), "cameras": [{"name": "yard", "source": str(clip)}], "state_dir": "state",
           "clips": {"dir": "clips"}, "metrics": {"host": "localhost", "port": 0},
           "sinks": {"jsonl": {"path": "out/events.jsonl"}, "mqtt": {"topic_prefix": "/site1/"},
                     "webhook": {"url": "http://127.0.0.1:9/events", "headers": {"Authorization": "Bearer x y"}}}}
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps(cfg))
    r = _watch(config, "--check")
    assert r.returncode == 0 and "ok (1 camera(s))" in r.stdout + r.stderr, r.stdout + r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips", "gateway.yaml"]
    assert list((tmp_path / "clips").iterdir()) == []


def test_a_gateway_started_without_the_cli_refuses_in_one_line_too(tiny_onnx, clip, tmp_path):
    """What the sinks and the evidence set-up raise when nobody ran the checks (the Python API): an
    OutputError the CLI prints as one line, not an OSError's traceback."""
    from edgeseg.apps.gateway.config import load_config
    from edgeseg.core.errors import OutputError
    from edgeseg.io.evidence.setup import check_clips
    from edgeseg.io.sinks.jsonl import JsonlEvents

    for target in ("/proc/edgeseg/events.jsonl", tmp_path):
        with pytest.raises(OutputError, match="cannot create"):
            JsonlEvents(target)
    pytest.importorskip("av")
    config = _config(tmp_path, tiny_onnx, clip, "camera_folder_blocked_by_a_file")
    with pytest.raises(OutputError, match=r"camera yard's folder .*clips/yard cannot be created: File exists \(fix: "):
        check_clips(load_config(config).cameras)
