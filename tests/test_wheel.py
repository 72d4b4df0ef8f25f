"""Install as users install: a built wheel in a fresh venv, run from another folder, runs every command.

Why: `make` installs editable, so the checkout's files answer every import and every path a wheel
leaves out goes unnoticed (0.1's hand-kept package list dropped `edgeseg.evidence`, so `watch` could not
start from a wheel). These tests build the wheel exactly as the README says, install it with the
README's install line into a venv that has no checkout on its path, and run the commands from an
unrelated folder.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_gateway import free_port, stop_proc, wait_for

ROOT = Path(__file__).resolve().parents[1]
#: the README's lines: build the wheel, install it with the camera gateway's extra
README_BUILD = "python -m pip wheel --no-deps -w dist ."
README_INSTALL = "pip install 'dist/{wheel}[gateway]'"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh venv with the wheel (and the gateway extra) installed; commands run from ``elsewhere``."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    build = subprocess.run([sys.executable, "-m", *README_BUILD.split()[2:-2], str(dist), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("edgeseg-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # no PYTHONPATH: a checkout on it (its edgeseg.egg-info) would make pip think edgeseg is installed already
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[gateway]"],
                         capture_output=True, text=True, timeout=900, env=env)
    assert pip.returncode == 0, pip.stderr[-3000:]
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return {"venv": venv, "bin": venv / "bin", "cwd": elsewhere, "env": env, "wheel": wheel}


def run(installed: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["bin"] / "edgeseg"), *args], cwd=installed["cwd"], env=installed["env"],
                          capture_output=True, text=True, timeout=timeout)


def py(installed: dict, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["bin"] / "python"), "-c", code], cwd=installed["cwd"], env=installed["env"],
                          capture_output=True, text=True, timeout=120)


def site_file(installed: dict, rel: str) -> Path:
    out = py(installed, f"import edgeseg, pathlib; print(pathlib.Path(edgeseg.__file__).parent / {rel!r})")
    return Path(out.stdout.strip())


def test_readme_install_lines_are_the_ones_tested(installed):
    """The README builds and installs the wheel with the lines this file runs."""
    readme = (ROOT / "README.md").read_text()
    assert README_BUILD in readme
    assert README_INSTALL.format(wheel=installed["wheel"].name) in readme


def test_the_wheel_imports_from_site_packages_not_the_checkout(installed):
    out = py(installed, "import edgeseg, edgeseg_export, sys; print(edgeseg.__file__); print(edgeseg_export.__file__); "
                        "print(any('/work' in p and 'site-packages' not in p for p in sys.path))")
    assert out.returncode == 0, out.stderr
    pkg, export, checkout_on_path = out.stdout.split()
    assert "site-packages" in pkg and "site-packages" in export and str(ROOT) not in pkg
    assert checkout_on_path == "False" or str(ROOT) not in out.stdout


def test_version_names_the_package_and_the_bundled_model(installed):
    out = run(installed, "--version")
    import edgeseg

    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"edgeseg {edgeseg.__version__}"
    assert "edgeseg-unet-r18.fp16.onnx (sha256 " in out.stdout


def test_detect_on_the_bundled_clip(installed):
    clip = site_file(installed, "assets/demo_gas_leak.mp4")
    assert clip.is_file() and "site-packages" in str(clip)
    out = run(installed, "detect", str(clip), "-o", "demo", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (installed["cwd"] / "demo" / "annotated.mkv").stat().st_size > 0
    assert (installed["cwd"] / "demo" / "events.jsonl").exists()


def test_preprocessing_with_the_opencv_a_fresh_install_resolves(installed):
    """The fused OpenCV blob equals the numpy expression with whatever OpenCV pip picked for users
    (a fresh install resolves 5.x, whose dnn enums moved; the checkout's venv has 4.x)."""
    code = ("import cv2, numpy as np\n"
            "from edgeseg.runtime.preprocess import preprocess\n"
            "rng = np.random.default_rng(0); f = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)\n"
            "mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)\n"
            "blob, _ = preprocess([f], (64, 64), mean, std)\n"
            "rgb = cv2.resize(f, (64, 64), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].astype(np.float32) / 255\n"
            "ref = ((rgb - np.float32(mean)) / np.float32(std)).transpose(2, 0, 1)[None]\n"
            "print(cv2.__version__, float(np.abs(blob - ref).max()))")
    out = py(installed, code)
    assert out.returncode == 0, out.stderr[-2000:]
    version, err = out.stdout.split()
    assert float(err) < 1e-4, f"OpenCV {version}: preprocessing differs by {err}"


def test_help_of_every_command_and_the_shipped_docs(installed):
    for cmd in (["export", "onnx", "--help"], ["serve", "--help"], ["watch", "--help"], ["build", "--help"],
                ["export", "int8", "--help"], ["bench", "accuracy", "--help"]):
        out = run(installed, *cmd)
        assert out.returncode == 0, (cmd, out.stderr[-1500:])
        assert "docs/" not in out.stdout, f"{cmd} points at a file the wheel does not carry"
    page = run(installed, "docs", "gateway", "--path")
    assert page.returncode == 0 and "site-packages" in page.stdout and Path(page.stdout.strip()).is_file()


def test_doctor_has_the_gateway_section(installed):
    out = run(installed, "doctor", "--json")
    rep = json.loads(out.stdout)
    topics = {f["topic"] for f in rep["findings"]}
    assert {"gateway: av", "gateway: paho-mqtt", "gateway: prometheus-client", "gateway: folders", "gateway: port"} <= topics
    assert out.returncode == (0 if rep["ok"] else 1)


def test_old_import_paths_warn_and_give_the_same_module(installed):
    code = ("import warnings; warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    import edgeseg.segmenter as old\n"
            "    from edgeseg.sinks.queue import DurableQueue\n"
            "import edgeseg.runtime.segmenter as new, edgeseg.io.sinks.queue as q\n"
            "assert old is new and DurableQueue is q.DurableQueue\n"
            "print([str(x.message) for x in w if x.category is DeprecationWarning])")
    out = py(installed, code)
    assert out.returncode == 0, out.stderr
    assert "edgeseg.segmenter moved to edgeseg.runtime.segmenter" in out.stdout


def test_watch_check_and_a_short_watch_with_clips_and_the_api(installed):
    cwd = installed["cwd"]
    clip = site_file(installed, "assets/demo_gas_leak.mp4")
    port = free_port()
    cfg = {"threads": 2, "threshold": 0.05, "min_area": 0.0,
           "cameras": [{"name": "yard", "source": str(clip), "loop": True, "alarm": {"k": 1, "n": 1, "m": 1000,
                                                                                      # the demo's settings (#35)
                                                                                      "verify_s": 0.0, "clear_s": 0.0,
                                                                                      "cooldown_s": 0.0, "update_every_s": 0.0}}],
           "guards": {"enabled": False}, "clips": {"dir": "clips", "pre_s": 1.0, "post_s": 1.0,
                                                   "min_free_gb": 0.0},  # whatever this host's disk holds
           "metrics": {"host": "127.0.0.1", "port": port}, "sinks": {"jsonl": {"path": "events.jsonl"}}}
    (cwd / "gw.yaml").write_text(json.dumps(cfg))
    check = run(installed, "watch", "gw.yaml", "--check")
    assert check.returncode == 0, check.stdout + check.stderr

    def cameras() -> list[dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/cameras", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return []

    p = subprocess.Popen([str(installed["bin"] / "edgeseg"), "watch", "gw.yaml"], cwd=cwd, env=installed["env"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: any(c.get("open_alarm") for c in cameras()), 180), p.stderr.read() if p.poll() else ""
        time.sleep(1.5)
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0, p.stderr.read()[-2000:]
    finally:
        stop_proc(p)
    events = [json.loads(ln) for ln in (cwd / "events.jsonl").read_text().splitlines() if ln.strip()]
    ends = [e for e in events if e["event"] == "end"]
    assert ends and ends[-1]["reason"] == "stopped", events[-3:]
    clip_path = Path(ends[-1]["evidence"]["clip"])
    clip_path = clip_path if clip_path.is_absolute() else cwd / clip_path
    assert clip_path.is_file() and clip_path.stat().st_size > 0
    decoded = py(installed, f"import av; c = av.open({str(clip_path)!r}); print(sum(1 for _ in c.decode(video=0)))")
    assert decoded.returncode == 0 and int(decoded.stdout) > 0, decoded.stderr
    shutil.rmtree(cwd / "clips", ignore_errors=True)
