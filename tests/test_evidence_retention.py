"""Retention never deletes evidence awaiting review (#37 point 1).

A clips disk with less free space than ``clips.min_free_gb`` used to lose every clip seconds after
its ``end`` named it, with ``watch --check`` saying ok and no trouble. Now the space rules
(``max_gb``, ``min_free_gb``) delete only evidence older than ``clips.keep_min_hours``; when that is
not enough the rest stays and one ``trouble`` ``evidence_at_risk`` says so (cleared once the space is
back), and ``watch --check`` names a disk already below the floor. Against real parts: retention on
real files, and ``edgeseg watch`` run as a process with its clips on a real 64 MB tmpfs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("av", reason="clips need PyAV: pip install 'edgeseg[gateway]'")

from test_evidence import ROOT, sha, write_video  # noqa: E402
from test_faults import tmpfs  # noqa: E402,F401 - a real, small filesystem
from test_gateway import paired  # noqa: E402
from fakes import DEMO_ALARM

HOUR = 3600.0


def _aged(folder: Path, hours: list[float], now: float, size: int = 1000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, h in enumerate(hours):
        f = folder / f"cam_{i}.mp4"
        f.write_bytes(b"x" * size)
        os.utime(f, (now - h * HOUR,) * 2)
        out.append(f)
    return out


def test_disk_floor_deletes_only_reviewed_evidence_and_raises_trouble_once(tmp_path):
    from edgeseg.io.evidence import retention

    now = time.time()
    files = _aged(tmp_path / "cam", [100, 80, 50, 10, 0.1], now)  # oldest first; review window 72 h
    heard: list[dict] = []

    def sweep(min_free_gb: float) -> list[tuple[str, str]]:
        return retention.sweep(tmp_path, retain_days=30, max_gb=1.0, min_free_gb=min_free_gb, now=now,
                               keep_min_hours=72, report=heard.append)

    # the disk is "always below the floor": only what is past its review goes, oldest first
    assert sweep(1e9) == [(str(files[0]), "disk_low"), (str(files[1]), "disk_low")]
    assert all(f.exists() for f in files[2:])
    (trouble,) = heard
    assert trouble["event"] == "trouble" and trouble["trouble"] == "evidence_at_risk"
    assert trouble["clips_dir"] == str(tmp_path) and trouble["kept"] == 3 and trouble["min_free_gb"] == 1e9
    assert "below clips.min_free_gb" in trouble["error"] and "keep_min_hours (72 h)" in trouble["error"]
    assert "clips.dir at a larger disk" in trouble["fix"] and "clips.min_free_gb" in trouble["fix"]
    assert sweep(1e9) == [] and len(heard) == 1  # once, not at every sweep
    assert all(f.exists() for f in files[2:])
    assert sweep(0.0) == [] and heard[-1] == {"event": "trouble_cleared", "trouble": "evidence_at_risk",
                                              "clips_dir": str(tmp_path)}
    assert sweep(0.0) == [] and len(heard) == 2
    assert sweep(1e9) == [] and len(heard) == 3 and heard[-1]["event"] == "trouble"  # and again when it returns


def test_size_bound_keeps_evidence_awaiting_review_and_retain_days_stays_the_limit(tmp_path):
    from edgeseg.io.evidence import retention

    now = time.time()
    files = _aged(tmp_path / "cam", [100, 80, 30, 20, 1], now)
    heard: list[dict] = []
    gone = retention.sweep(tmp_path, retain_days=30, max_gb=1500 / retention.GB, min_free_gb=0.0, now=now,
                           keep_min_hours=72, report=heard.append)
    assert gone == [(str(files[0]), "size"), (str(files[1]), "size")]  # the 3 younger ones stay, over max_gb
    assert [h["trouble"] for h in heard] == ["evidence_at_risk"] and "over clips.max_gb" in heard[0]["error"]
    assert "clips.max_gb" in heard[0]["fix"] and heard[0]["kept"] == 3
    # retain_days shorter than the review window: it stays the hard limit (30 h old: gone), and the
    # window is at most retain_days (24 h: the 20 h old file stays, below the floor or not)
    gone = retention.sweep(tmp_path, retain_days=1.0, max_gb=1.0, min_free_gb=1e9, now=now, keep_min_hours=72)
    assert gone == [(str(files[2]), "age")] and files[3].exists() and files[4].exists()
    # keep_min_hours 0: the space rules may take any closed alarm's evidence (the behaviour before #37)
    gone = retention.sweep(tmp_path, retain_days=30, max_gb=1.0, min_free_gb=1e9, now=now, keep_min_hours=0)
    assert gone == [(str(files[3]), "disk_low"), (str(files[4]), "disk_low")]


def _config(tmp_path: Path, tiny_onnx: Path, video: Path, clips: Path) -> Path:
    """``clips.min_free_gb`` and ``keep_min_hours`` left at their defaults (2 GB, 72 h)."""
    cfg = {"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
           "cameras": [{"name": "cam", "source": str(video), "alarm": {"k": 1, "n": 1, "m": 3, **DEMO_ALARM}}],
           "guards": {"enabled": False}, "clips": {"dir": str(clips), "pre_s": 1.0, "post_s": 1.0},
           "sinks": {"jsonl": {"path": str(tmp_path / "ev.jsonl")}}}
    (tmp_path / "gw.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    return tmp_path / "gw.yaml"


def _watch(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg.cli", "watch", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_clips_on_a_disk_below_the_floor_survive_with_trouble_and_check_says_so(tiny_onnx, tmp_path, tmpfs):
    from edgeseg.apps.doctor_gateway import place_findings

    where = tmpfs("64m")  # a real 64 MB disk: always below the default 2 GB floor
    leaks = [range(20, 40), range(80, 100), range(140, 160), range(200, 220)]
    video = write_video(tmp_path / "cam.mp4", 250, [i for r in leaks for i in r])
    cfg = _config(tmp_path, tiny_onnx, video, where)

    check = _watch(str(cfg), "--check", timeout=120)
    said = " ".join((check.stdout + check.stderr).split())
    assert check.returncode == 1, said
    assert "cameras[0].clips.dir:" in said and "MB free, below clips.min_free_gb (2 GB)" in said, said
    assert "fix: free space on that disk, point clips.dir at a larger disk, or lower clips.min_free_gb" in said, said
    (low,) = [f for f in place_findings(cfg) if f.topic == "gateway: clips disk"]
    assert low.level == "warn" and "clips.min_free_gb" in low.fix

    run = _watch(str(cfg), timeout=240)  # a file camera: exits 0 when the file ends
    assert run.returncode == 0, run.stderr[-3000:]
    ev = [json.loads(ln) for ln in (tmp_path / "ev.jsonl").read_text().splitlines() if ln.strip()]
    assert paired(ev)
    ends = [e for e in ev if e["event"] == "end"]
    assert len(ends) == len(leaks)
    for end in ends:  # every alarm's evidence is still there, byte for byte as its end names it
        files = end["evidence"]["clips"] + end["evidence"]["snapshots"]
        assert len(files) == 4, end["evidence"]
        for f in files:
            assert Path(f["path"]).is_file() and sha(f["path"]) == f["sha256"], f["path"]
    risk = [e for e in ev if e.get("trouble") == "evidence_at_risk"]
    assert [e["event"] for e in risk] == ["trouble"], risk  # once, not at every sweep; never cleared here
    assert risk[0]["clips_dir"] == str(where) and risk[0]["min_free_gb"] == 2.0 and risk[0]["free_gb"] < 0.07
    assert "below clips.min_free_gb" in risk[0]["error"] and "fix" in risk[0]
    assert "evidence at risk" in run.stderr and "below clips.min_free_gb" in run.stderr  # logged at start too
