"""The operator benchmark runs end to end with live RTSP cameras (#35): ``benchmarks/operator_overhead.py
--rtsp`` starts its own GStreamer RTSP camera, mosquitto and notification receiver, runs an ON and an
OFF gateway and writes its report. A smoke run (``--quick``, the tiny test model): it proves the
script and the live-camera path work and that every operator feature did work in the ON window; it
measures nothing (speed targets live in the benchmark's own report, not in tests)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from test_gateway import ROOT, _rtsp_available

pytest.importorskip("av", reason="clips need PyAV: pip install 'edgeseg[gateway]'")
pytest.importorskip("apprise", reason="the notify sink needs Apprise: pip install 'edgeseg[notify]'")
pytest.importorskip("matplotlib", reason="the report's plot needs matplotlib: pip install 'edgeseg[train]'")


@pytest.fixture
def leak_clip(tmp_path):
    """Two minutes of a textured test picture (the tiny model at threshold 0.2 finds "gas" in it all along):
    10 fps H.264, a key frame a second."""
    reason = _rtsp_available()
    if reason:
        pytest.skip(reason)
    clip = tmp_path / "leak.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=120",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", "-bf", "0", str(clip)], check=True)
    return clip


def test_operator_benchmark_runs_with_live_rtsp_cameras(leak_clip, tmp_path):
    if not shutil.which("mosquitto") and not shutil.which("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto is not installed (make system-deps)")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "operator_overhead.py"), "--quick", "--model", "tiny",
                        "--rtsp", str(leak_clip), "--cameras", "1", "--alarm", "demo", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=240)
    report_path = tmp_path / "operator_overhead_rtsp.quick.json"
    assert report_path.is_file(), r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["quick"] and report["settings"]["rtsp"] == str(leak_clip)
    on = [w for w in report["windows"] if w["on"]]
    off = [w for w in report["windows"] if not w["on"]]
    assert len(on) == 1 and len(off) == 1
    for w in on + off:  # live frames were read and processed in both windows (a frame read just before the
        # window may be processed in it: the worker records those in flight at its start)
        assert w["frames"] > 0 and w["frames_read"] + w["frames_in_flight_at_start"] >= w["frames"]
    work = on[0]["work"]
    assert work["incidents"] >= 1 and work["clips_written"] >= 1 and work["mqtt_messages"] > 0
    assert work["notifications"] >= 1 and work["page"]["answered"] > 0
    assert "ratio on/off = " in r.stdout and (tmp_path / "operator_overhead_rtsp.quick.png").is_file()
