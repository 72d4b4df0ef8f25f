"""Nothing lost under faults (issue 12): each case with real files, real processes and real signals.

``edgeseg detect`` runs as a real subprocess wherever processes or signals matter (two runs into
one folder, SIGTERM, ``kill -9``, a full disk on a real tmpfs, a non-root user, an MJPEG stream over
real HTTP); checkpoints are real ``torch.save`` archives, forged where the case needs it.
Only the camera that reconnects at another resolution is scripted (``fakes.ResizingCamera``):
the capture is not what is under test, the recording is.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from tiny_model import make_tiny_onnx
from training.synth import render_clip, render_scene
from fakes import DEMO_ALARM, DEMO_FLAGS

runner = CliRunner()
ALARM = ["--threshold", "0.01", "--k", "1", "--n", "1", "--min-area", "0", *DEMO_FLAGS]  # every frame a leak: an open alarm


# ------------------------------------------------------------------------------- helpers

def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeseg.cli", *args]


def _detect(source, out, model, *extra: str) -> list[str]:
    return _cli("detect", str(source), "--model", str(model), "-o", str(out), "--backend", "onnxruntime", *extra)


def _events(path: Path) -> list[dict]:
    """Every line of an events file, each parsed (a corrupt or half line fails the test)."""
    data = path.read_bytes()
    assert b"\x00" not in data, f"NUL bytes in {path}"
    assert data == b"" or data.endswith(b"\n"), f"{path} ends in half a line"
    return [json.loads(line) for line in data.decode().splitlines()]


def _paired(events: list[dict]) -> None:
    """Incidents nest properly: every start has its end, no end without a start."""
    open_ = 0
    for ev in events:
        if ev["event"] == "start":
            assert open_ == 0, "a second start before the first one's end"
            open_ += 1
        elif ev["event"] == "end":
            assert open_ == 1, "an end without its start"
            open_ -= 1
    assert open_ == 0, "a start without its end"


def _decoded_frames(path: Path) -> int:
    """Frames a player gets out of a recording (decoded, not the header's claim)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened():
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def _video_in(out: Path) -> Path:
    """The annotated recording in ``out`` (whatever its container)."""
    found = sorted(out.glob("annotated.*"))
    assert found, f"no annotated video in {out}: {sorted(p.name for p in out.iterdir())}"
    return found[0]


def _one_error_line(output: str) -> str:
    """The single ``error:`` line of a failed run; no traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def _summary(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"): stdout.rindex("}") + 1])


def _wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}: {out[-500:]} {err[-1500:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _has_start(events: Path) -> bool:
    return events.exists() and events.read_bytes().startswith(b'{"event": "start"')


@pytest.fixture
def stop_later():
    """Processes a test started; any still running at the end are killed (by PID) and reaped."""
    procs: list[subprocess.Popen] = []
    yield procs.append
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """1500 small frames (about 8 s of work for the tiny model): long enough to catch a run mid-way."""
    path = tmp_path_factory.mktemp("clips") / "long.mp4"
    imgs, _ = render_clip(3, 8, (120, 160))
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120))
    for i in range(1500):
        vw.write(imgs[i % len(imgs)])
    vw.release()
    return path


@pytest.fixture
def tmpfs():
    """``tmpfs(size)``: a real, small filesystem mounted on a fresh folder (unmounted afterwards)."""
    mounted: list[str] = []

    def mount(size: str) -> Path:
        where = tempfile.mkdtemp(prefix="edgeseg-full-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where], capture_output=True, text=True)
        if r.returncode != 0:
            os.rmdir(where)
            pytest.skip(f"cannot mount a tmpfs here to fill a disk ({r.stderr.strip() or 'mount failed'})")
        mounted.append(where)
        return Path(where)

    yield mount
    for where in mounted:
        if subprocess.run(["umount", where], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", where], check=False)  # a file still open: detach it anyway
        os.rmdir(where)


# ------------------------------------------------------------------------------- 1. concurrent runs

def test_second_run_into_a_busy_folder_is_refused_naming_the_first(tiny_onnx, long_clip, tmp_path, stop_later):
    out = tmp_path / "out"
    first = subprocess.Popen(_detect(long_clip, out, tiny_onnx, "--json", *ALARM), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    stop_later(first)
    _wait_for(lambda: _has_start(out / "events.jsonl"), 60, "the first run's start event", first)
    second = subprocess.run(_detect(long_clip, out, tiny_onnx, *ALARM), capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first run ended before the second tried: make the clip longer"
    assert second.returncode == 2, second.stdout + second.stderr
    line = _one_error_line(second.stdout + second.stderr)
    assert "in use by another edgeseg run" in line and f"PID {first.pid}" in line

    stdout, stderr = first.communicate(timeout=180)
    assert first.returncode == 0, stderr[-2000:]
    summary = _summary(stdout)
    assert summary["complete"] and summary["frames_processed"] == 1500
    events = _events(out / "events.jsonl")  # untouched by the refused run: whole lines, no NULs
    _paired(events)
    assert [e["event"] for e in events].count("start") == 1 and len(events) == summary["events"]
    assert _decoded_frames(_video_in(out)) == 1500


def test_earlier_results_are_kept_unless_overwrite(tiny_onnx, tmp_path):
    clip = tmp_path / "clip.avi"
    _write_clip(clip, 12)
    out = tmp_path / "out"
    res = runner.invoke(app, _detect(clip, out, tiny_onnx, *ALARM)[3:])
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    res = runner.invoke(app, _detect(clip, out, tiny_onnx)[3:])
    assert res.exit_code == 2, res.output
    line = _one_error_line(res.output)
    assert "already holds results" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing replaced, nothing added

    res = runner.invoke(app, _detect(clip, out, tiny_onnx, "--overwrite")[3:])
    assert res.exit_code == 0, res.output
    assert (out / "events.jsonl").read_bytes() != before["events.jsonl"]  # no alarm this time: other events


def _write_clip(path: Path, frames: int, size=(120, 160), fps: float = 25.0, fourcc: str = "MJPG") -> None:
    imgs, _ = render_clip(5, min(frames, 8), size)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (size[1], size[0]))
    assert vw.isOpened()
    for i in range(frames):
        vw.write(imgs[i % len(imgs)])
    vw.release()


# ------------------------------------------------------------------------------- 2. SIGTERM, kill -9

def test_sigterm_closes_outputs_like_ctrl_c(tiny_onnx, long_clip, tmp_path, stop_later):
    out = tmp_path / "out"
    proc = subprocess.Popen(_detect(long_clip, out, tiny_onnx, "--json", *ALARM), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stop_later(proc)
    _wait_for(lambda: _has_start(out / "events.jsonl"), 60, "the start event", proc)
    time.sleep(0.5)  # mid-run, with frames in the recording
    proc.send_signal(signal.SIGTERM)  # what systemd and docker send
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]  # documented: 128 + SIGTERM
    assert "Traceback" not in stderr and "SIGTERM: closing outputs cleanly" in stderr
    summary = _summary(stdout)
    assert summary["terminated"] and not summary["complete"] and 0 < summary["frames_processed"] < 1500
    events = _events(out / "events.jsonl")
    _paired(events)
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "terminated"
    assert _decoded_frames(_video_in(out)) == summary["frames_processed"]  # the whole recording plays


def test_kill_9_loses_at_most_the_last_seconds_of_video(tiny_onnx, long_clip, tmp_path, stop_later):
    out = tmp_path / "out"
    proc = subprocess.Popen(_detect(long_clip, out, tiny_onnx, "--json", *ALARM), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stop_later(proc)
    _wait_for(lambda: any(p.stat().st_size > 400_000 for p in out.glob("annotated.*")), 60,
              "400 kB of annotated video", proc)
    proc.kill()  # SIGKILL: nothing in the process runs
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    events = _events(out / "events.jsonl")  # every line written whole: all parse
    processed = max(e["frame"] for e in events) + 1
    decoded = _decoded_frames(_video_in(out))
    # the recording plays up to its last seconds (Matroska clusters; an mp4 would play nothing)
    assert decoded >= 1 and processed - decoded <= 10 * 25, (processed, decoded)


# ------------------------------------------------------------------------------- 3. failed writes

def test_camera_reconnecting_at_another_resolution_keeps_every_frame(tiny_onnx, tmp_path):
    from edgeseg.apps.detect import run_detect
    from edgeseg.core.errors import SourceError
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.io.sources import open_source
    from edgeseg.config.settings import AlarmSettings
    from fakes import ResizingCamera

    camera = ResizingCamera([(30, (180, 320)), (30, (120, 160))])  # 320x180, drop, back at 160x120, gone
    src = open_source("rtsp://camera.invalid/stream", max_retries=1, sleep=lambda s: None, capture_factory=camera)
    out = tmp_path / "out"
    with pytest.raises(SourceError, match="dropped and did not come back"):
        run_detect(src, out, Segmenter(tiny_onnx, backend="onnxruntime", threshold=0.01, min_area=0), progress=False,
                   alarm=AlarmSettings(**DEMO_ALARM))  # an alarm at the first frame: the demo's settings (#35)
    events = _events(out / "events.jsonl")
    assert camera.connections == 3 and max(e["frame"] for e in events) == 59
    video = _video_in(out)
    assert _decoded_frames(video) == 60  # every processed frame recorded, both resolutions
    cap = cv2.VideoCapture(str(video))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (320, 180)
    cap.release()


def test_full_disk_during_video_is_one_line_with_valid_outputs(tiny_onnx, tmp_path, tmpfs):
    clip = tmp_path / "noise.avi"
    rng = np.random.default_rng(0)
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for _ in range(200):
        vw.write(rng.integers(0, 256, (240, 320, 3), np.uint8))  # noise: barely compresses
    vw.release()
    disk = tmpfs("3m")
    out = disk / "out"
    r = subprocess.run(_detect(clip, out, tiny_onnx, "--json"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout[-500:] + r.stderr[-2000:]
    line = _one_error_line(r.stdout + r.stderr)
    assert "disk full" in line
    events = _events(out / "events.jsonl")
    _paired(events)
    decoded = _decoded_frames(_video_in(out))
    assert decoded >= 1  # valid up to the last complete frame
    if events:
        assert decoded >= max(e["frame"] for e in events) + 1


def test_events_rolled_back_to_the_last_whole_line_on_a_full_disk(tmpfs):
    from edgeseg.core.errors import OutputError
    from edgeseg.io.sinks import JsonlEvents

    disk = tmpfs("64k")
    events = JsonlEvents(disk / "events.jsonl")
    events.event({"event": "start", "frame": 0})
    events.event({"event": "update", "frame": 1})
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk: the events file keeps
    try:  # only the rest of its partly used page
        while os.write(fd, b"\xff" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    try:
        with pytest.raises(OutputError, match="disk full"):
            events.event({"event": "update", "frame": 2, "regions": ["x" * 100] * 100})  # 10 kB: only part fits
    finally:
        events.close()
    assert [e["frame"] for e in _events(disk / "events.jsonl")] == [0, 1]
    os.unlink(disk / "filler")


def test_annotated_image_that_cannot_be_written_is_an_error_not_a_path(tiny_onnx, tmp_path, tmpfs):
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.random.default_rng(1).integers(0, 256, (1024, 1024, 3), np.uint8))  # ~3 MB PNG
    disk = tmpfs("512k")
    out = disk / "out"
    r = subprocess.run(_detect(big, out, tiny_onnx), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_error_line(r.stdout + r.stderr)
    assert "cannot write" in line and "disk full" in line
    assert not [p for p in out.iterdir() if p.suffix == ".png"]  # no half image, no temporary left behind


# ------------------------------------------------------------------------------- 4. name collisions

def test_same_name_different_extension_keeps_both_results(tiny_onnx, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    a, b = render_scene(1, (64, 64))[0], render_scene(2, (64, 96))[0]
    cv2.imwrite(str(d / "cam.png"), a)
    cv2.imwrite(str(d / "cam.jpg"), b)
    res = runner.invoke(app, _detect(d, tmp_path / "out", tiny_onnx, "--json")[3:])
    assert res.exit_code == 0, res.output
    assert _summary(res.stdout)["frames_processed"] == 2
    written = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in written] == ["cam.jpg.annotated.png", "cam.png.annotated.png"]
    assert cv2.imread(str(written[0])).shape == b.shape and cv2.imread(str(written[1])).shape == a.shape
    assert sorted(e["image"] for e in _events(tmp_path / "out" / "events.jsonl")) == ["cam.jpg", "cam.png"]


# ------------------------------------------------------------------------------- 5. one-line errors

def test_tiny_images_in_a_folder_do_not_end_the_run(tiny_onnx, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a_normal.png"), render_scene(1, (64, 64))[0])
    for name, shape in (("b_1x1.png", (1, 1, 3)), ("c_1x7.png", (1, 7, 3)), ("d_7x1.png", (7, 1, 3))):
        cv2.imwrite(str(d / name), np.full(shape, 200, np.uint8))
    cv2.imwrite(str(d / "e_normal.png"), render_scene(2, (64, 64))[0])
    r = subprocess.run(_detect(d, tmp_path / "out", tiny_onnx, "--json", "--threshold", "0.01", "--min-area", "0"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    names = sorted(p.name for p in (tmp_path / "out").glob("*.annotated.png"))
    assert names == sorted(f"{p.name}.annotated.png" for p in d.iterdir())  # all five, the later ones too
    assert cv2.imread(str(tmp_path / "out" / "b_1x1.png.annotated.png")).shape == (1, 1, 3)


def _odd_onnx(path: Path, case: str) -> Path:
    """An ONNX segmentation model the SDK cannot feed: 1 channel, fixed 128x128, rank 3, bad metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.core.model_meta import DEFAULT_MEAN, DEFAULT_STD, build_metadata, set_metadata

    channels = 1 if case in ("one-channel", "rank-3") else 3
    shape = {"one-channel": ["batch", 1, "height", "width"], "fixed-128": ["batch", 3, 128, 128],
             "rank-3": ["batch", "height", "width"]}.get(case, ["batch", 3, "height", "width"])
    nodes = [helper.make_node("Unsqueeze", ["image", "axis1"], ["x"])] if case == "rank-3" else []
    nodes += [helper.make_node("Conv", ["x" if case == "rank-3" else "image", "w"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
              helper.make_node("ArgMax", ["probs"], ["am"], axis=1, keepdims=0),
              helper.make_node("Cast", ["am"], ["labels"], to=TensorProto.UINT8)]
    init = [numpy_helper.from_array(np.ones((3, channels, 1, 1), np.float32), "w"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    out_hw = [128, 128] if case == "fixed-128" else ["height", "width"]
    graph = helper.make_graph(nodes, "odd", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3, *out_hw]),
                               helper.make_tensor_value_info("labels", TensorProto.UINT8, ["batch", *out_hw])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    set_metadata(model, build_metadata(["background", "gas-smoke", "machine"], "softmax", (64, 64), DEFAULT_MEAN,
                                       DEFAULT_STD, "0" * 64, "odd"))
    edits = {"bad-json": ("mean", "[0.5, 0.5"), "zero-size": ("input_size", "[0, 0]"), "zero-std": ("std", "[0, 0, 0]")}
    for p in model.metadata_props:
        if case in edits and p.key == edits[case][0]:
            p.value = edits[case][1]
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("case, says", [
    ("one-channel", "has 1 channels, the SDK feeds 3"),
    ("fixed-128", "input fixed at 128x128 but its metadata says input_size 64x64"),
    ("rank-3", "has rank 3"),
    ("bad-json", "model metadata 'mean' is not valid JSON"),
    # a model error, not an input one: refused at load, not every frame skipped as "unreadable" (exit 3)
    ("zero-size", "model metadata malformed (input_size (0, 0)"),
    ("zero-std", "std (0.0, 0.0, 0.0)"),
])
def test_onnx_the_sdk_cannot_feed_is_a_one_line_error(tmp_path, case, says):
    model = _odd_onnx(tmp_path / f"{case}.onnx", case)
    cv2.imwrite(str(tmp_path / "a.png"), render_scene(1, (64, 64))[0])
    r = subprocess.run(_detect(tmp_path / "a.png", tmp_path / "out", model), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_error_line(r.stdout + r.stderr)
    assert says in line and f"{case}.onnx" in line


def test_output_naming_an_existing_file_is_one_line(tiny_onnx, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), render_scene(1, (64, 64))[0])
    (tmp_path / "results").write_text("not a folder")
    res = runner.invoke(app, _detect(tmp_path / "a.png", tmp_path / "results", tiny_onnx)[3:])
    assert res.exit_code == 2, res.output
    assert "is an existing file, not a folder" in _one_error_line(res.output)
    assert (tmp_path / "results").read_text() == "not a folder"


def _unprivileged(cwd: Path) -> tuple[list[str], dict]:
    """How to run a child without root's power to write anywhere: as user nobody, or where this
    interpreter lies out of nobody's reach (a pyenv under /root), as root with every capability
    dropped (setpriv), which the folder's permission bits then bind the same way."""
    def nobody():
        os.setuid(65534)

    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=nobody, cwd=cwd, check=True, capture_output=True)
        return [], {"preexec_fn": nobody}
    except (PermissionError, subprocess.CalledProcessError):
        pass
    if shutil.which("setpriv"):
        return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"], {}
    pytest.skip("this interpreter is not executable by user nobody and setpriv is missing")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to start an unprivileged child")
def test_unwritable_output_folder_as_a_non_root_user(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="edgeseg-nobody-"))  # tmp_path's parents are private to root
    try:
        os.chmod(base, 0o755)
        model = make_tiny_onnx(base / "tiny.onnx")
        cv2.imwrite(str(base / "a.png"), render_scene(1, (64, 64))[0])
        (base / "cache").mkdir()
        os.chmod(base / "cache", 0o777)
        locked = base / "read-only"
        locked.mkdir()
        os.chmod(locked, 0o555)  # nobody may write in it (without CAP_DAC_OVERRIDE, not even its owner)
        prefix, how = _unprivileged(base)
        env = {**os.environ, "EDGESEG_CACHE_DIR": str(base / "cache"), "HOME": str(base / "cache")}
        r = subprocess.run(prefix + _detect(base / "a.png", locked / "out", model), capture_output=True, text=True,
                           timeout=120, env=env, cwd=base, **how)
        assert r.returncode == 2, r.stdout + r.stderr
        line = _one_error_line(r.stdout + r.stderr)
        assert f"cannot write to output folder {locked / 'out'}" in line and "Permission denied" in line
        assert not (locked / "out").exists()
    finally:
        os.chmod(base / "read-only", 0o755)
        shutil.rmtree(base)


# ------------------------------------------------------------------------------- 6. hostile checkpoints

def _forged_archive(path: Path, numel: int | None = None, shape=(64, 3, 7, 7), bomb: int = 0) -> Path:
    """A real ``torch.save`` archive whose data.pkl is rewritten so that its one tensor's storage
    claims ``numel`` elements (the archive holds 64*3*7*7) and the tensor claims ``shape``.

    ``bomb``: instead, the storage honestly holds ``bomb`` bytes of zeros, deflated (a few MB of
    file that unpack to gigabytes), and the tensor and its storage say so consistently."""
    if bomb:
        numel, shape = bomb // 4, (bomb // 4,)
    import collections
    import io
    import pickle

    import torch

    real = path.with_suffix(".real.pt")
    torch.save({"encoder.conv1.weight": torch.zeros(64, 3, 7, 7)}, real)
    storage_marker = object()

    class Tensor:
        def __reduce__(self):
            stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
            return torch._utils._rebuild_tensor_v2, (storage_marker, 0, tuple(shape), stride, False,
                                                     collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):  # torch/serialization.py writes exactly this tuple
            return ("storage", torch.FloatStorage, "0", "cpu", numel or 64 * 3 * 7 * 7) if obj is storage_marker else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(collections.OrderedDict([("encoder.conv1.weight", Tensor())]))
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if bomb and info.filename.endswith("/data/0"):
                record = zipfile.ZipInfo(info.filename)
                record.compress_type = zipfile.ZIP_DEFLATED  # only this record is deflated
                with dst.open(record, "w", force_zip64=True) as f:
                    chunk = bytes(1 << 24)
                    for _ in range(bomb // len(chunk)):
                        f.write(chunk)
                continue
            data = buf.getvalue() if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, data)
    real.unlink()
    return path


_LOAD_AND_MEASURE = r"""
import json, resource, sys, time
import torch
from export.checkpoint import CheckpointError, load_model
vm = int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize")][0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), resource.RLIM_INFINITY))  # a safety net for the host
before, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
try:
    load_model(sys.argv[1]); outcome = "loaded"
except CheckpointError as exc:
    outcome = "CheckpointError: " + str(exc)
except BaseException as exc:
    outcome = type(exc).__name__ + ": " + str(exc)[:300]
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"outcome": outcome, "grew": grew, "seconds": time.perf_counter() - t0}))
"""


@pytest.mark.parametrize("forgery, says", [
    ({"numel": 150_000_000_000}, "its storage claims 600,000,000,000 bytes but the archive holds 37,632"),
    ({"shape": (64, 3, 7, 7000)}, "of shape [64, 3, 7, 7000] does not fit its storage of 9,408 elements"),
    ({"bomb": 3 << 29}, "its tensors would take 1.5 GiB, far more than a ResNet-18 U-Net"),
], ids=["storage-claims-600GB", "tensor-larger-than-storage", "zip-bomb-1.5GiB"])
def test_forged_tensor_sizes_refused_before_any_allocation(tmp_path, forgery, says):
    pytest.importorskip("torch")
    path = _forged_archive(tmp_path / "forged.pt", **forgery)
    assert path.stat().st_size < 5_000_000
    r = subprocess.run([sys.executable, "-c", _LOAD_AND_MEASURE, str(path)], capture_output=True, text=True,
                       timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["outcome"].startswith("CheckpointError: ") and "refused before loading" in result["outcome"]
    assert says in result["outcome"] and "\n" not in result["outcome"]
    assert result["grew"] < 100 << 20 and result["seconds"] < 30, result  # refused from the index, not by allocating


@pytest.mark.parametrize("poison", ["all-nan", "one-inf"])
def test_nan_or_inf_checkpoint_is_not_exported(tmp_path, poison):
    torch = pytest.importorskip("torch")
    from export.model import UNetResNet18

    torch.manual_seed(0)
    sd = UNetResNet18(classes=3).state_dict()
    if poison == "all-nan":
        sd = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in sd.items()}
        name = "encoder.conv1.weight"
    else:
        name = "decoder.blocks.2.conv1.0.weight"
        sd[name].view(-1)[7] = float("inf")
    torch.save(sd, tmp_path / "ck.pt")
    out = tmp_path / "m.onnx"
    r = subprocess.run(_cli("export", "onnx", str(tmp_path / "ck.pt"), "-o", str(out)), capture_output=True, text=True,
                       timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode != 0, r.stdout[-2000:]
    line = _one_error_line(r.stdout + r.stderr)
    assert f"tensor '{name}' holds" in line and "NaN/Inf" in line
    assert not out.exists() and not list(tmp_path.glob("*.onnx"))


# ------------------------------------------------------------------------------- 7. quiet partial results

@pytest.mark.parametrize("container", ["avi", "mp4"])
def test_truncated_video_exits_3_input_incomplete(tiny_onnx, tmp_path, container):
    full = tmp_path / f"full.{container}"
    if container == "avi":
        _write_clip(full, 156)
    else:  # an mp4 with its index in front (as cameras and ffmpeg -movflags +faststart write it)
        if shutil.which("ffmpeg") is None:
            pytest.skip("ffmpeg not installed: cannot write a faststart mp4 to truncate")
        _write_clip(tmp_path / "raw.mp4", 156, fourcc="mp4v")
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp_path / "raw.mp4"), "-c", "copy",
                        "-movflags", "+faststart", str(full)], check=True)
    half = tmp_path / f"half.{container}"
    data = full.read_bytes()
    half.write_bytes(data[: len(data) // 2])  # cut off in the middle (a copy that did not finish)
    r = subprocess.run(_detect(half, tmp_path / "out", tiny_onnx, "--json"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stdout[-500:] + r.stderr[-2000:]
    assert "input incomplete" in r.stderr and "decoding stopped early" in r.stderr and "Traceback" not in r.stderr
    summary = _summary(r.stdout)
    assert not summary["complete"] and summary["ended_early"] and summary["frames_expected"] == 156
    assert 40 < summary["frames_read"] < 120
    assert summary["unreadable"] == r.stderr.count("skipping corrupt frame")  # each counted once
    assert _decoded_frames(_video_in(tmp_path / "out")) == summary["frames_processed"]


class _MjpegCamera(BaseHTTPRequestHandler):
    """An MJPEG camera over HTTP (multipart/x-mixed-replace) at 10 fps for 3 s, then it hangs up."""

    frames: list[bytes] = []
    fps, count = 10.0, 30

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        t0 = time.monotonic()
        for i in range(self.count):
            time.sleep(max(0.0, t0 + i / self.fps - time.monotonic()))
            jpg = self.frames[i % len(self.frames)]
            try:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                 + jpg + b"\r\n")
                self.wfile.flush()
            except OSError:
                return

    def log_message(self, *args):
        pass


def test_live_mjpeg_stream_is_recorded_at_its_measured_rate(tiny_onnx, tmp_path):
    imgs, _ = render_clip(4, 8, (120, 160))
    _MjpegCamera.frames = [cv2.imencode(".jpg", im)[1].tobytes() for im in imgs]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MjpegCamera)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        probe = cv2.VideoCapture(url)
        readable = probe.isOpened() and probe.read()[0]
        probe.release()
        if not readable:
            pytest.skip("OpenCV's FFmpeg cannot read an MJPEG-over-HTTP stream on this install")
        out = tmp_path / "out"
        r = subprocess.run(_detect(url, out, tiny_onnx, "--retries", "0"), capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    # the camera hangs up after 3 s and --retries 0 does not wait for it: a one-line "dropped"
    assert r.returncode == 2 and "dropped" in _one_error_line(r.stdout + r.stderr), r.stderr[-2000:]
    video = _video_in(out)
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert 7.0 <= fps <= 14.0, f"recorded at {fps} fps; the camera sent 10"  # not the 25 FFmpeg announces
    assert 20 <= _decoded_frames(video) <= 30
