"""Evidence per alarm (#24): clips with pre/post-roll, snapshots, durable files, retention.

Against real parts: an H.264 file made here with PyAV, read by the gateway like any file camera,
the tiny ONNX model deciding where the leak is (a gray frame is a leak for it, a black one is
not), the clip decoded back with PyAV and compared with the source frame by frame (each frame
carries its index as the position of a white bar), ``edgeseg watch`` run as a process for
SIGTERM and kill -9, and a real tmpfs filled up.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="clips need PyAV: pip install 'edgeseg[gateway]'")

from test_faults import tmpfs  # noqa: E402,F401 - a real, small filesystem to fill
from test_gateway import Collect, paired, stop_proc, wait_for  # noqa: E402
from fakes import DEMO_FLAGS, DEMO_ALARM

ROOT = Path(__file__).resolve().parents[1]
SYS_PY = "/usr/bin/python3"
FPS = 10
SIZE = (120, 160)


def frame_image(i: int, leak: bool) -> np.ndarray:
    """Black (no leak) or gray (a leak for the tiny model), with a white bar at x = 3 * (i % 50).
    (Whole-frame black / gray steps are what the picture guards call blocked / a jump: the gateways
    of these tests run with guards off, the clips are under test here.)"""
    a = np.full((*SIZE, 3), 128 if leak else 0, np.uint8)
    x = (i * 3) % 150
    a[4:12, x:x + 8] = 255
    return a


def bar_index(img: np.ndarray) -> int:
    """The frame index (mod 50) a decoded frame carries."""
    row = img[6:10, :, :].mean(axis=(0, 2))
    return int(round((int(np.argmax(row > 200)) / 3))) % 50


def write_video(path: Path, frames: int, leak: range) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        s.codec_context.options = {"g": str(FPS), "crf": "18"}
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(frame_image(i, i in leak), format="bgr24")
            vf.pts = i
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path


def decode(path: str) -> tuple[list[np.ndarray], float]:
    with av.open(path) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
        return frames, c.duration / 1e6


def sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_file_camera_clip_has_preroll_alarm_postroll_and_snapshots(tiny_onnx, tmp_path):
    from edgeseg import Gateway

    video = write_video(tmp_path / "cam.mp4", 100, range(40, 60))
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                  "cameras": [{"name": "file", "source": str(video), "alarm": {"k": 1, "n": 1, "m": 3, **DEMO_ALARM}}],
                  "guards": {"enabled": False}, "clips": {"dir": str(tmp_path / "clips"), "pre_s": 2.0, "post_s": 1.5},
                  "sinks": {"jsonl": {"path": str(tmp_path / "ev.jsonl")}}}, sinks=[col])
    gw.start()
    assert gw.wait(60)
    gw.stop()
    assert paired(col.events)
    (start,), (end,) = col.of("start"), col.of("end")
    assert start["frame"] == 40 and end["reason"] == "quiet" and end["frame"] == 62
    ev = end["evidence"]
    assert start["evidence"]["clip"] == ev["clip"] and Path(ev["clip"]).is_file()
    clean = [c for c in ev["clips"] if not c["annotated"]]
    annotated = [c for c in ev["clips"] if c["annotated"]]
    assert len(clean) == 1 and len(annotated) == 1 and ev["dropped_frames"] == 0
    for c in ev["clips"] + ev["snapshots"]:
        assert sha(c["path"]) == c["sha256"]
    # a file camera: the clean clip is the file's own H.264 packets, copied (no re-encoding), from the
    # key frame at or before the pre-roll's first frame (20, a key frame: GOP 10)
    assert clean[0]["stream_copy"] is True
    with av.open(str(video)) as src, av.open(ev["clip"]) as cut:
        src_packets = {bytes(p): p.pts for p in src.demux(video=0) if p.size}
        cut_packets = [bytes(p) for p in cut.demux(video=0) if p.size]
    assert all(p in src_packets for p in cut_packets)  # byte for byte the source's packets
    frames, duration = decode(ev["clip"])
    # pre_s (2 s = 20 frames before the start) + the alarm (frames 40..62) + post_s (1.5 s after the end),
    # within a GOP (the last B-frames of the cut)
    assert len(frames) == ev["frames"] == clean[0]["frames"] and 58 <= len(frames) <= 58 + FPS, len(frames)
    assert abs(duration - (2.0 + 2.3 + 1.5)) <= 1.0 and abs(ev["duration_s"] - duration) < 0.2
    # the pre-roll is the source's frames 20..39, in order; the alarm follows from frame 40
    assert [bar_index(f) for f in frames[:21]] == [i % 50 for i in range(20, 41)]
    assert frames[19].mean() < 40 and frames[20].mean() > 100  # black before the leak, gray from frame 40
    drawn = decode(annotated[0]["path"])[0]  # the annotated clip: exactly the 58 frames segmented
    assert len(drawn) == 58 and [bar_index(f) for f in drawn[:3]] == [20, 21, 22]
    # snapshots: the clean frame with the largest leak area and its annotated twin, named at the start
    snap, asnap = start["evidence"]["snapshot"], start["evidence"]["snapshot_annotated"]
    assert [s["path"] for s in ev["snapshots"]] == [snap, asnap]
    import cv2

    clean_img, drawn = cv2.imread(snap), cv2.imread(asnap)
    assert clean_img.mean() > 100 and np.abs(clean_img.astype(int) - drawn.astype(int)).mean() > 1.0
    # JSONL carries the same evidence; nothing half-written stays behind
    on_disk = [json.loads(ln) for ln in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert [e for e in on_disk if e["event"] == "end"][0]["evidence"] == ev
    assert not [p for p in (tmp_path / "clips").rglob(".*.tmp")]


def test_named_zone_alarm_gets_its_own_clip(tiny_onnx, tmp_path):
    """A named zone's alarm is an alarm too: its start names its clip, its end carries the files."""
    from edgeseg import Gateway

    video = write_video(tmp_path / "cam.mp4", 80, range(30, 45))
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                  "cameras": [{"name": "file", "source": str(video), "alarm": {"k": 1, "n": 1, "m": 3, **DEMO_ALARM},
                               "zones": {"named": [{"name": "yard", "include": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}]}}],
                  "guards": {"enabled": False}, "clips": {"dir": str(tmp_path / "clips"), "pre_s": 1.0, "post_s": 1.0}},
                 sinks=[col])
    gw.start()
    assert gw.wait(60)
    gw.stop()
    (start,), (end,) = col.of("start"), col.of("end")
    assert start["zone"] == end["zone"] == "yard" and start["alarm_id"] == end["alarm_id"]
    ev = end["evidence"]
    assert start["evidence"]["clip"] == ev["clip"] and Path(ev["clip"]).name.startswith("file_yard_")
    assert {c["annotated"] for c in ev["clips"]} == {False, True} and ev["dropped_frames"] == 0
    for c in ev["clips"] + ev["snapshots"]:
        assert Path(c["path"]).is_file() and sha(c["path"]) == c["sha256"]
    frames, _ = decode(ev["clip"])
    assert [bar_index(f) for f in frames[:11]] == [i % 50 for i in range(20, 31)]  # 1 s of pre-roll, then the leak


def test_encode_budget_thins_evenly_and_splits_between_open_writers():
    """The re-encoding budget (clips.encode_share): at 10 ms a frame, 1 % of one core pays for one
    frame a second; two writers with a clip open share it (one frame every 2 s each)."""
    from edgeseg.io.evidence.budget import EncodeBudget

    a, b = EncodeBudget(0.01, cores=1), EncodeBudget(0.01, cores=1)
    a.opened()
    kept = []
    for i in range(50):  # 10 frames a second of source time
        ts = i / 10
        if a.keep(ts):
            kept.append(ts)
            a.spent(ts, 0.500 if i == 0 else 0.010)  # the first frame also opened the encoders: not counted
    assert kept == [pytest.approx(t) for t in (0.0, 0.1, 1.1, 2.1, 3.1, 4.1)] and a.thinned == 44
    b.opened()
    try:
        assert a.min_gap_s() == pytest.approx(2.0)
    finally:
        b.closed()
    assert a.min_gap_s() == pytest.approx(1.0)
    a.closed()
    assert a.keep(100.0) and EncodeBudget(1.0, cores=1).min_gap_s() == 0.0  # 1: never thinned


def test_clip_past_the_encode_budget_is_thinned_evenly_and_counted(tiny_onnx, tmp_path):
    """A re-encoded clip whose frames cost more than clips.encode_share allows keeps frames evenly
    spread in time (pre-roll included) and counts the rest in ``thinned_frames``; the stream copy
    of the same alarm keeps every frame."""
    from edgeseg import Gateway

    video = write_video(tmp_path / "cam.mp4", 100, range(40, 60))
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                  "cameras": [{"name": "file", "source": str(video), "alarm": {"k": 1, "n": 1, "m": 3, **DEMO_ALARM}}],
                  "guards": {"enabled": False},
                  "clips": {"dir": str(tmp_path / "clips"), "pre_s": 2.0, "post_s": 1.5, "encode_share": 0.0002}},
                 sinks=[col])
    gw.start()
    assert gw.wait(60)
    gw.stop()
    (end,) = col.of("end")
    ev = end["evidence"]
    (clean,), (drawn,) = [c for c in ev["clips"] if not c["annotated"]], [c for c in ev["clips"] if c["annotated"]]
    assert clean["stream_copy"] is True and clean["frames"] >= 58  # the copy is not thinned
    frames, _ = decode(drawn["path"])
    assert len(frames) == drawn["frames"] >= 2 and ev["thinned_frames"] > 0
    # every frame the writer was given (pre-roll 20 + alarm 23 + post-roll 15) is either in the clip or counted
    assert drawn["frames"] + ev["thinned_frames"] == 20 + 23 + 15, (drawn["frames"], ev["thinned_frames"])
    idx = [bar_index(f) for f in frames]
    assert idx[0] == 20 and all(0 < (b - a) % 50 for a, b in zip(idx, idx[1:])), idx  # from the pre-roll's first, in order


def _watch_config(tmp_path: Path, tiny_onnx: Path, video: Path, clips: Path, **clip_kw) -> Path:
    cfg = {"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
           "cameras": [{"name": "cam", "source": str(video), "loop": True, "alarm": {"k": 1, "n": 1, "m": 1000, **DEMO_ALARM}}],
           "guards": {"enabled": False}, "clips": {"dir": str(clips), "pre_s": 1.0, "post_s": 1.0, **clip_kw},
           "sinks": {"jsonl": {"path": str(tmp_path / "ev.jsonl")}}}
    (tmp_path / "gw.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    return tmp_path / "gw.yaml"


def _events(tmp_path: Path) -> list[dict]:
    f = tmp_path / "ev.jsonl"
    return [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()] if f.exists() else []


def _watch(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgeseg.cli", "watch", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_closes_open_clips_and_long_alarms_continue_in_parts(tiny_onnx, tmp_path):
    video = write_video(tmp_path / "cam.mp4", 200, range(20, 200))
    clips = tmp_path / "clips"
    p = _watch(_watch_config(tmp_path, tiny_onnx, video, clips, max_s=4.0))
    try:
        assert wait_for(lambda: any("clip_part" in e.get("evidence", {}) for e in _events(tmp_path)), 90), p.stderr
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0, p.stderr.read()
    finally:
        stop_proc(p)
    ev = _events(tmp_path)
    assert paired(ev)
    end = [e for e in ev if e["event"] == "end"][-1]
    assert end["reason"] == "stopped"
    parts = [e["evidence"]["clip_part"] for e in ev if "clip_part" in e.get("evidence", {})]
    clean = [c for c in end["evidence"]["clips"] if not c["annotated"]]
    assert [c["path"] for c in clean] == [end["evidence"]["clip"]] + parts
    for c in end["evidence"]["clips"]:
        assert sha(c["path"]) == c["sha256"] and len(decode(c["path"])[0]) == c["frames"] > 0
    assert all(c["duration_s"] <= 4.0 + 0.3 for c in clean), clean  # cut at max_s (pre-roll included)
    assert not list(clips.rglob(".*.tmp"))


def test_kill_9_leaves_no_final_name_half_written_and_next_start_cleans(tiny_onnx, tmp_path):
    video = write_video(tmp_path / "cam.mp4", 200, range(20, 200))
    clips = tmp_path / "clips"
    cfg = _watch_config(tmp_path, tiny_onnx, video, clips)
    p = _watch(cfg)
    try:
        assert wait_for(lambda: list(clips.rglob(".*.mp4.tmp")), 90), p.stderr
        time.sleep(0.5)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        stop_proc(p)
    assert list(clips.rglob(".*.tmp"))  # the open clip died under its temporary name ...
    for final in clips.rglob("*.mp4"):  # ... and every final name is a complete file
        assert not final.name.startswith(".") and decode(str(final))[0]
    p = _watch(cfg)
    try:
        assert wait_for(lambda: any(e["event"] == "end" and e["reason"] == "crashed" for e in _events(tmp_path)), 60)
        assert wait_for(lambda: not [t for t in clips.rglob(".*.tmp") if t.stat().st_mtime < time.time() - 5], 30)
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0, p.stderr.read()
    finally:
        stop_proc(p)
    assert not list(clips.rglob(".*.tmp"))


def test_full_disk_stops_clips_with_trouble_never_the_camera(tiny_onnx, tmp_path, tmpfs):
    from edgeseg import Gateway

    where = tmpfs("64k")  # the annotated clip alone needs about twice that
    video = write_video(tmp_path / "cam.mp4", 300, range(20, 300))
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                  "cameras": [{"name": "cam", "source": str(video), "alarm": {"k": 1, "n": 1, "m": 1000, **DEMO_ALARM}}],
                  "guards": {"enabled": False}, "clips": {"dir": str(where), "pre_s": 1.0, "post_s": 1.0, "min_free_gb": 0}}, sinks=[col])
    gw.start()
    assert gw.wait(90)
    gw.stop()
    troubles = [e for e in col.of("trouble") if e["trouble"] == "clip_write_failed"]
    assert troubles and troubles[0]["error"] == "disk full" and "fix" in troubles[0]
    assert gw.final_stats["cam"]["processed"] == 300  # the camera lost no frame
    end = col.of("end")[-1]
    assert paired(col.events) and "disk full" in end["evidence"]["error"]
    assert not [f for f in where.rglob("*") if f.is_file() and f.name.endswith(".tmp")]


def test_retention_by_age_size_and_free_space_keeps_open_alarms(tmp_path):
    from edgeseg.io.evidence import retention

    cam = tmp_path / "cam"
    cam.mkdir()
    now = time.time()
    files = []
    for i in range(6):
        f = cam / f"cam_{i}.mp4"
        f.write_bytes(b"x" * 1000)
        os.utime(f, (now - (5 - i) * 86400, now - (5 - i) * 86400))  # cam_0 is 5 days old, cam_5 new
        files.append(f)
    (cam / ".cam_9.mp4.tmp").write_bytes(b"x" * 5000)  # being written: never counted, never deleted here
    with retention.OPEN_LOCK:
        retention.OPEN.add(str(cam / "cam_0"))
    try:
        gone = retention.sweep(tmp_path, retain_days=3.5, max_gb=1.0, min_free_gb=0.0, now=now)
        assert sorted(gone) == [(str(files[1]), "age")]  # cam_0 is older but its alarm is open
        gone = retention.sweep(tmp_path, retain_days=30, max_gb=3500 / retention.GB, min_free_gb=0.0, now=now)
        assert gone == [(str(files[2]), "size"), (str(files[3]), "size")]  # oldest first, down to 3,500 bytes (the open one counts)
        gone = retention.sweep(tmp_path, retain_days=30, max_gb=1.0, min_free_gb=1e9, now=now)
        assert gone == [(str(files[4]), "disk_low"), (str(files[5]), "disk_low")]
        assert files[0].exists() and (cam / ".cam_9.mp4.tmp").exists()
    finally:
        with retention.OPEN_LOCK:
            retention.OPEN.discard(str(cam / "cam_0"))
    assert retention.clean_temporaries(cam) == [str(cam / ".cam_9.mp4.tmp")]


def test_clips_settings_inherit_and_override_per_camera(tmp_path):
    from edgeseg.apps.gateway.config import ConfigError, parse_config

    cfg = parse_config({"cameras": [{"name": "a", "source": "rtsp://h/a"},
                                    {"name": "b", "source": "rtsp://h/b", "clips": {"pre_s": 2, "annotated": False},
                                     "alarm": {"verify_s": 0}},  # no confirmation delay: 2 s covers the onset (#35)
                                    {"name": "c", "source": "rtsp://h/c", "clips": {"enabled": False}}],
                        "clips": {"dir": str(tmp_path)}, "state_dir": str(tmp_path / "s")})
    a, b, c = cfg.cameras
    assert (a.clips.pre_s, a.clips.annotated, a.clips.max_gb) == (5.0, True, 20.0)
    assert (b.clips.pre_s, b.clips.annotated, b.clips.dir) == (2.0, False, str(tmp_path)) and not c.clips.enabled
    with pytest.raises(ConfigError, match=r"^cameras\[0\]\.clips\.dir: is required"):
        parse_config({"cameras": [{"name": "a", "source": "rtsp://h/a", "clips": {"pre_s": 1}}]})
    with pytest.raises(ConfigError, match=r"^clips\.post_s: must be a number >= 0.0 and <= 300.0"):
        parse_config({"cameras": [{"name": "a", "source": "0"}], "clips": {"dir": "x", "post_s": -1}})


def test_rtsp_camera_clip_is_the_cameras_packets_and_preroll_the_frames_before(tiny_onnx, tmp_path):
    """A live H.264 camera (GStreamer's RTSP server, real time, one live pipeline for every client):
    the clean clip is the camera's own packets (stream copy) from a key frame at or before the
    pre-roll; the annotated clip holds the frames the gateway saw just before the leak, in order."""
    from test_gateway import _rtsp_available, free_port

    reason = _rtsp_available()
    if reason:
        pytest.skip(reason)
    from edgeseg import Gateway

    # black 10 s (the first second's frames come as a burst at connect; time to reconnect on a busy
    # host), gray (leak) 2 s, black 6 s
    video = write_video(tmp_path / "cam.mp4", 180, range(100, 120))
    port = free_port()
    server = subprocess.Popen([SYS_PY, str(ROOT / "tests" / "rtsp_server.py"), str(video), str(port), "/cam", "shared"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert server.stdout.readline().strip() == "ready"
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                  "cameras": [{"name": "rtsp", "source": f"rtsp://127.0.0.1:{port}/cam", "alarm": {"k": 1, "n": 1, "m": 3, **DEMO_ALARM}}],
                  "reconnect": {"read_timeout_s": 3, "max_backoff_s": 1},
                  "guards": {"enabled": False}, "clips": {"dir": str(tmp_path / "clips"), "pre_s": 2.0, "post_s": 1.5}}, sinks=[col])
    gw.start()
    try:
        assert wait_for(lambda: col.of("end"), 40), col.events
    finally:
        gw.stop()
        stop_proc(server)
    (end,) = [e for e in col.of("end") if e["reason"] == "quiet"]
    ev = end["evidence"]
    (clean,), (drawn,) = [c for c in ev["clips"] if not c["annotated"]], [c for c in ev["clips"] if c["annotated"]]
    for c in (clean, drawn):
        assert sha(c["path"]) == c["sha256"]
    alarm_s = end["timestamp"] - col.of("start")[0]["timestamp"]
    # the annotated clip: the frames the gateway segmented, about pre_s x 10 fps of them before the leak
    frames, duration = decode(drawn["path"])
    assert len(frames) == drawn["frames"]
    first_gray = next(i for i, f in enumerate(frames) if f.mean() > 100)
    pre = [bar_index(f) for f in frames[:first_gray + 1]]
    assert pre[-1] == 100 % 50 and 16 <= first_gray <= 24, pre
    assert all((b - a) % 50 == 1 for a, b in zip(pre, pre[1:])), pre  # the camera's own, in order, none lost
    assert abs(duration - (2.0 + alarm_s + 1.5)) <= 1.0, (duration, alarm_s)
    # the clean clip: the camera's H.264 packets, every one (consecutive frames), from a key frame
    assert clean["stream_copy"] is True and ev["clip"] == clean["path"]
    frames, duration = decode(clean["path"])
    source = {f.tobytes() for f in decode(str(video))[0]}  # RTSP carries Annex B, MP4 AVCC: compare pixels
    assert all(f.tobytes() in source for f in frames)  # bit-identical to the camera's decoded frames: not re-encoded
    bars = [bar_index(f) for f in frames]
    assert all((b - a) % 50 == 1 for a, b in zip(bars, bars[1:])), str(bars)
    first_gray = next(i for i, f in enumerate(frames) if f.mean() > 100)
    assert 16 <= first_gray <= 24 + FPS, first_gray  # pre_s, back to the key frame before it (GOP 1 s)
    assert abs(duration - (2.0 + alarm_s + 1.5)) <= 2.0, (duration, alarm_s)  # 1 s GOP + 1 s


def test_detect_clips_flag_writes_the_same_evidence(tiny_onnx, tmp_path):
    video = write_video(tmp_path / "cam.mp4", 150, range(60, 80))
    r = subprocess.run([sys.executable, "-m", "edgeseg.cli", "detect", str(video), "-o", str(tmp_path / "out"),
                        "--model", str(tiny_onnx), "--k", "1", "--n", "1", "--m", "3", *DEMO_FLAGS, "--clips", str(tmp_path / "clips"),
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ev = [json.loads(ln) for ln in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    (start,), (end,) = [e for e in ev if e["event"] == "start"], [e for e in ev if e["event"] == "end"]
    assert (start["frame"], end["frame"], end["reason"]) == (60, 82, "quiet")
    clip = end["evidence"]["clip"]
    assert Path(clip).parent == tmp_path / "clips" / "cam" and sha(clip) == end["evidence"]["clips"][0]["sha256"]
    frames, _ = decode(clip)
    # frames 10..132 (5 s before the start, 5 s after the end: the defaults), copied from the file from
    # the key frame at frame 10, within a GOP at the end
    assert end["evidence"]["clips"][0]["stream_copy"] and 123 <= len(frames) <= 123 + FPS
    assert [bar_index(f) for f in frames[:3]] == [10, 11, 12]


def test_retention_at_start_is_logged_and_counted_in_metrics(tiny_onnx, tmp_path, caplog):
    import logging
    import urllib.request

    from edgeseg import Gateway

    old = tmp_path / "clips" / "cam" / "cam_20200101-000000_000000001.mp4"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old evidence")
    os.utime(old, (time.time() - 30 * 86400,) * 2)
    video = write_video(tmp_path / "cam.mp4", 20, range(0))
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"), "metrics": {"port": 0},
                  "cameras": [{"name": "cam", "source": str(video)}],
                  "guards": {"enabled": False}, "clips": {"dir": str(tmp_path / "clips"), "retain_days": 7}})
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        gw.start()
        try:
            def scrape() -> str:
                return urllib.request.urlopen(gw.server.url + "/metrics").read().decode()

            assert wait_for(lambda: 'edgeseg_evidence_deleted_total{reason="age"} 1.0' in scrape(), 20)
        finally:
            gw.stop()
    assert not old.exists()
    assert any("deleted" in r.getMessage() and str(old) in r.getMessage() for r in caplog.records)


def test_rtsp_stop_mid_alarm_closes_the_stream_copy_at_once(tiny_onnx, tmp_path):
    """Stopping (what SIGTERM does) while an RTSP camera's alarm is open: the end (reason stopped)
    names a complete stream-copied clip and its annotated twin, and the stop does not hang."""
    from test_gateway import _rtsp_available, free_port

    reason = _rtsp_available()
    if reason:
        pytest.skip(reason)
    from edgeseg import Gateway

    video = write_video(tmp_path / "cam.mp4", 300, range(30, 300))  # a leak from 3 s on (the ring is connected)
    port = free_port()
    server = subprocess.Popen([SYS_PY, str(ROOT / "tests" / "rtsp_server.py"), str(video), str(port), "/cam", "shared"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert server.stdout.readline().strip() == "ready"
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                  "cameras": [{"name": "rtsp", "source": f"rtsp://127.0.0.1:{port}/cam", "alarm": {"k": 1, "n": 1, "m": 1000, **DEMO_ALARM}}],
                  "guards": {"enabled": False}, "clips": {"dir": str(tmp_path / "clips"), "pre_s": 1.0, "post_s": 1.0}}, sinks=[col])
    gw.start()
    try:
        assert wait_for(lambda: col.of("start"), 30) and wait_for(lambda: gw.cameras["rtsp"].processed > 40, 30)
    finally:
        t0 = time.monotonic()
        gw.stop()
        stop_s = time.monotonic() - t0
        stop_proc(server)
    (end,) = col.of("end")
    assert end["reason"] == "stopped" and paired(col.events) and stop_s < 10, stop_s
    clips = end["evidence"]["clips"]
    assert [c["annotated"] for c in clips] == [False, True] and clips[0]["stream_copy"]
    for c in clips:
        assert sha(c["path"]) == c["sha256"] and len(decode(c["path"])[0]) == c["frames"] > 20
    assert not list((tmp_path / "clips").rglob(".*.tmp"))


def test_webhook_carries_the_same_evidence(tiny_onnx, tmp_path):
    from test_gateway import Receiver, free_port

    from edgeseg import Gateway

    video = write_video(tmp_path / "cam.mp4", 80, range(20, 40))
    port = free_port()
    rx = Receiver(port)
    rx.up()
    col = Collect()
    try:
        gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                      "cameras": [{"name": "file", "source": str(video), "alarm": {"k": 1, "n": 1, "m": 3, **DEMO_ALARM}}],
                      "guards": {"enabled": False}, "clips": {"dir": str(tmp_path / "clips"), "pre_s": 1.0, "post_s": 1.0},
                      "sinks": {"webhook": {"url": f"http://127.0.0.1:{port}/ev", "queue_dir": str(tmp_path / "q")}}},
                     sinks=[col])
        gw.start()
        assert gw.wait(60)
        assert wait_for(lambda: any(e.get("event") == "end" for e in rx.got), 20)
        gw.stop()
    finally:
        rx.down()
    (end,) = col.of("end")
    (got,) = [e for e in rx.got if e.get("event") == "end"]
    (start,) = [e for e in rx.got if e.get("event") == "start"]
    assert got["evidence"] == end["evidence"] and got["evidence"]["clips"] and got["evidence"]["snapshots"]
    assert start["evidence"]["clip"] == end["evidence"]["clip"]


def test_unwritable_clips_dir_is_refused_at_start_in_one_line(tiny_onnx, tmp_path):
    from edgeseg import Gateway
    from edgeseg.core.errors import OutputError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                  "cameras": [{"name": "cam", "source": "rtsp://127.0.0.1:1/x"}], "clips": {"dir": str(blocker / "clips")}})
    with pytest.raises(OutputError, match=r"^clips\.dir .*: Not a directory \(fix: give a clips\.dir this user can write\)$"):
        gw.start()
    r = subprocess.run([sys.executable, "-m", "edgeseg.cli", "watch", str(_watch_config(
        tmp_path, tiny_onnx, write_video(tmp_path / "v.mp4", 5, range(0)), blocker / "clips")), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cameras[0].clips.dir:" in " ".join((r.stdout + r.stderr).split()), r.stdout + r.stderr


def test_disk_low_cleanup_never_deletes_the_open_alarms_evidence(tiny_onnx, tmp_path, monkeypatch):
    from test_gateway import FakeCam

    from edgeseg import Gateway
    from edgeseg.io.evidence import recorder

    monkeypatch.setattr(recorder, "SWEEP_EVERY_S", 0.0)  # a retention sweep after every frame
    old = tmp_path / "clips" / "cam" / "cam_20200101-000000_000000001.jpg"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"older evidence")
    os.utime(old, (time.time() - 4 * 86400,) * 2)  # past its review (clips.keep_min_hours, 72 h): space rules may take it
    col = Collect()
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"),
                  "cameras": [{"name": "cam", "source": "fake://0", "threshold": 0.01, "alarm": {"k": 1, "n": 1, "m": 1000, **DEMO_ALARM}}],
                  # the disk is always "nearly full": every sweep deletes what it may, oldest first
                  "guards": {"enabled": False}, "clips": {"dir": str(tmp_path / "clips"), "pre_s": 1.0, "post_s": 1.0, "min_free_gb": 1e9}},
                 sinks=[col], capture_factory=lambda spec: FakeCam(spec, fps=20))
    gw.start()
    try:
        assert wait_for(lambda: col.of("start"), 20)
        snap = Path(col.of("start")[0]["evidence"]["snapshot"])
        assert wait_for(snap.exists, 10) and wait_for(lambda: not old.exists(), 10)
        n = gw.cameras["cam"].processed
        assert wait_for(lambda: gw.cameras["cam"].processed >= n + 20, 20)  # 20 more frames, 20 more sweeps
        assert snap.exists() and Path(f"{snap.with_suffix('')}.annotated.jpg").exists()
    finally:
        gw.stop()
    end = col.of("end")[0]
    assert end["reason"] == "stopped" and "error" not in end["evidence"] and len(end["evidence"]["clips"]) == 2


def test_api_serves_each_alarms_clip_and_snapshots(tiny_onnx, tmp_path):
    """/api/events/<id>/clip and /snapshot.jpg serve the files the event names (sha256 as recorded),
    the annotated twins with ?annotated=1; an event without evidence answers 404 in one line."""
    import json
    import urllib.error
    import urllib.request

    from edgeseg import Gateway

    video = write_video(tmp_path / "cam.mp4", 80, range(30, 45))
    gw = Gateway({"model": str(tiny_onnx), "threads": 1, "state_dir": str(tmp_path / "state"), "metrics": {"port": 0},
                  "cameras": [{"name": "file", "source": str(video), "alarm": {"k": 1, "n": 1, "m": 3, **DEMO_ALARM}}],
                  "guards": {"enabled": False}, "clips": {"dir": str(tmp_path / "clips"), "pre_s": 1.0, "post_s": 1.0}})
    gw.start()
    try:
        assert gw.wait(60)
        base = gw.server.url
        events = json.loads(urllib.request.urlopen(f"{base}/api/events?limit=1000", timeout=10).read())
        end = next(e for e in events if e["event"] == "end")
        one = json.loads(urllib.request.urlopen(f"{base}/api/events/{end['id']}", timeout=10).read())
        assert one["clip_url"] == f"/api/events/{end['id']}/clip" and one["snapshot_url"]
        for annotated in (False, True):
            q = "?annotated=1" if annotated else ""
            clip = urllib.request.urlopen(f"{base}/api/events/{end['id']}/clip{q}", timeout=10)
            want = next(c for c in end["evidence"]["clips"] if c["annotated"] == annotated)
            assert clip.headers["Content-Type"] == "video/mp4" and hashlib.sha256(clip.read()).hexdigest() == want["sha256"]
            snap = urllib.request.urlopen(f"{base}/api/events/{end['id']}/snapshot.jpg{q}", timeout=10).read()
            want = next(s for s in end["evidence"]["snapshots"] if s["path"].endswith(".annotated.jpg") == annotated)
            assert hashlib.sha256(snap).hexdigest() == want["sha256"]
        started = next(e for e in events if e["event"] == "camera_started")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/api/events/{started['id']}/clip", timeout=10)
        assert err.value.code == 404 and "no such file" in json.loads(err.value.read())["error"]
    finally:
        gw.stop()


def test_writer_queue_stays_within_its_byte_bound_and_counts_dropped_frames(tmp_path):
    """#37.11: frames reach the recorder far faster than its idle-priority writer encodes them (here:
    1080p frames handed over in a tight loop); the frames waiting for it stay within MAX_PENDING_BYTES
    (a gateway's memory does not jump by hundreds of MB on a busy host) and the frames left out are
    counted in the alarm's ``end`` event."""
    from edgeseg.config.settings import ClipSettings
    from edgeseg.io.evidence import recorder as rec_mod
    from edgeseg.runtime.annotate import Annotator

    settings = ClipSettings(dir=str(tmp_path / "clips"), pre_s=5.0, post_s=0.0)
    rec = rec_mod.Recorder("cam", settings, Annotator(1))
    image = np.full((1080, 1920, 3), 90, np.uint8)  # 6.2 MB: the bound holds 10 of them
    mask = np.zeros((1080, 1920), np.uint8)
    out = rec.handle(0, 0.0, image, mask, [], [{"event": "start", "frame": 0, "timestamp": 0.0, "active": True}])
    for i in range(1, 400):
        out += rec.handle(i, i / 25, image, mask, [], [])
    out += rec.handle(400, 400 / 25, image, mask, [], [{"event": "end", "frame": 400, "timestamp": 16.0, "active": False}])
    out += rec.finish([], timeout=120)
    assert rec.pending_peak_bytes <= rec_mod.MAX_PENDING_BYTES + image.nbytes
    (end,) = [e for e in out if e.get("event") == "end"]
    ev = end["evidence"]
    assert ev["dropped_frames"] > 0, "a writer 400 frames behind must have dropped some"
    annotated = [c for c in ev["clips"] if c["annotated"]]
    assert annotated and annotated[0]["frames"] + ev["dropped_frames"] + ev.get("thinned_frames", 0) >= 400


def test_a_growing_leak_rewrites_its_snapshots_at_most_every_interval_and_ends_on_the_largest(tmp_path):
    """#35: a 720p leak that grew every frame had the writer draw and encode both full-size JPEGs for
    nearly every frame. Now: the first pair at once, then at most every SNAPSHOT_EVERY_S, and the
    last (the largest leak area of the alarm) when the files close."""
    import cv2

    from edgeseg.config.settings import ClipSettings
    from edgeseg.io.evidence import recorder as rec_mod
    from edgeseg.runtime.annotate import Annotator
    from edgeseg.runtime.postprocess import extract_regions

    settings = ClipSettings(dir=str(tmp_path / "clips"), pre_s=1.0, post_s=0.0, annotated=False)
    rec = rec_mod.Recorder("cam", settings, Annotator(1))
    frames = 40  # fed in well under SNAPSHOT_EVERY_S: one pair at the start, one at the end
    out = []
    t0 = time.monotonic()
    for i in range(frames):
        image = np.full((720, 1280, 3), 40 + i, np.uint8)  # each frame its own grey: the snapshot tells which
        mask = np.zeros((720, 1280), np.uint8)
        mask[100:140 + 10 * i, 100:140 + 20 * i] = 1  # grows every frame
        ev = [{"event": "start", "frame": 0, "timestamp": 0.0, "active": True}] if i == 0 else []
        out += rec.handle(i, i / 25, image, mask, extract_regions(mask), ev)
    out += rec.handle(frames, frames / 25, image, np.zeros_like(mask), [],
                      [{"event": "end", "frame": frames, "timestamp": frames / 25, "active": False}])
    out += rec.finish([], timeout=60)
    fed_s = time.monotonic() - t0
    (end,) = [e for e in out if e.get("event") == "end"]
    snap = cv2.imread(end["evidence"]["snapshots"][0]["path"])
    assert abs(float(snap.mean()) - (40 + frames - 1)) < 1.5  # the last, largest leak's frame
    assert rec.snapshot_writes <= 2 + int(fed_s / rec_mod.SNAPSHOT_EVERY_S) + 1, (rec.snapshot_writes, fed_s)
