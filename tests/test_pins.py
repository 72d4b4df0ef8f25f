"""The TensorRT / cuda-python requirements of each GPU extra resolve, today, to the version lines the code
was checked against (docs/tensorrt.md names the sources). Real resolutions with pip against the package
index (``pip install --dry-run --report``, isolated from this machine's pip config); skipped with the reason
where the index cannot be reached.

Markers are evaluated for the target machine (x86_64 / aarch64 Jetson) with ``packaging`` before pip sees
the requirement: pip evaluates them for the interpreter that runs it, even with ``--platform``.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INDEX = "https://pypi.org/simple"

#: (extra, machine, python) -> {distribution: (lowest, below)}: the line each requirement must resolve to
CHECKED = {
    ("gpu-cu12", "x86_64", "3.10"): {"tensorrt-cu12": ("10.3", "11"), "cuda-python": ("12.9", "13")},
    ("gpu-cu12", "x86_64", "3.12"): {"tensorrt-cu12": ("10.3", "11"), "cuda-python": ("12.9", "13")},
    ("gpu-cu13", "x86_64", "3.12"): {"tensorrt-cu13": ("10.13.2", "11"), "cuda-python": ("13", "14")},
    ("gpu", "x86_64", "3.10"): {"tensorrt-cu12": ("10.3", "11")},
    # JetPack 6.0 / 6.1 / 6.2: Ubuntu 22.04, Python 3.10, TensorRT from JetPack (no pip TensorRT at all)
    ("jetson", "aarch64", "3.10"): {"cuda-python": ("12.2", "12.3")},
}
PLATFORMS = {"x86_64": ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"],
             "aarch64": ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"]}


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _gpu_requirements(extra: str, machine: str, python: str) -> list[str]:
    """The extra's TensorRT / CUDA-layer requirements whose markers hold on ``machine`` / ``python``."""
    from packaging.requirements import Requirement

    env = {"platform_machine": machine, "python_version": python, "python_full_version": python + ".0",
           "sys_platform": "linux", "platform_system": "Linux", "implementation_name": "cpython", "extra": ""}
    out = []
    for text in _extras()[extra]:
        req = Requirement(text)
        if req.name.startswith(("tensorrt", "cuda-python")) and (req.marker is None or req.marker.evaluate(env)):
            out.append(str(Requirement(f"{req.name}{req.specifier}")))
    return out


def _resolve(reqs: list[str], machine: str, python: str, tmp: Path) -> dict[str, str]:
    """{name: version} pip picks for ``reqs`` (no dependencies) on ``machine`` / ``python``."""
    report = tmp / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--no-deps",
           "--quiet", "--index-url", INDEX, "--report", str(report)]
    wheels_only = [r for r in reqs if not r.startswith("tensorrt")]  # tensorrt-cuXX are sdists on PyPI
    if machine != platform.machine() or python != "%d.%d" % sys.version_info[:2]:
        if len(wheels_only) != len(reqs):
            assert platform.machine() == machine, "TensorRT sdists resolve on their own machine only"
        found: dict[str, str] = {}
        if wheels_only:
            plat = [a for p in PLATFORMS[machine] for a in ("--platform", p)]
            found |= _run(cmd + ["--only-binary=:all:", "--python-version", python, "--target", str(tmp / "t"),
                                 *plat, *wheels_only], report)
        rest = [r for r in reqs if r not in wheels_only]
        return found | (_run(cmd + rest, report) if rest else {})
    return _run(cmd + reqs, report)


def _run(cmd: list[str], report: Path) -> dict[str, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        text = proc.stderr + proc.stdout
        if any(s in text for s in ("NewConnectionError", "Max retries", "Temporary failure", "Name or service",
                                   "Network is unreachable", "ProxyError", "timed out")):
            pytest.skip(f"package index {INDEX} not reachable: {text.strip().splitlines()[-1]}")
        raise AssertionError(f"{' '.join(cmd)} failed:\n{text[-2000:]}")
    data = json.loads(report.read_text())
    return {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in data["install"]}


def _in_line(version: str, low: str, below: str) -> bool:
    from packaging.version import Version

    return Version(low) <= Version(version) < Version(below)


@pytest.mark.parametrize("extra,machine,python", sorted(CHECKED))
def test_extra_resolves_to_a_checked_line(extra, machine, python, tmp_path):
    if machine == "x86_64" and platform.machine() != "x86_64" and "gpu" in extra:
        pytest.skip("the tensorrt-cuXX sdists resolve on an x86_64 machine only")
    reqs = _gpu_requirements(extra, machine, python)
    want = CHECKED[(extra, machine, python)]
    assert sorted(r.split("<")[0].split(">")[0].split("=")[0] for r in reqs) == sorted(want), reqs
    got = _resolve(reqs, machine, python, tmp_path)
    print(f"{extra} ({machine}, Python {python}): {got}")  # shown with pytest -s: what a fresh install gets today
    for name, (low, below) in want.items():
        assert name in got, (name, got)
        assert _in_line(got[name], low, below), f"{extra}: {name} resolves to {got[name]}, outside {low} .. <{below}"


def test_no_extra_leaves_tensorrt_or_cuda_python_unbounded():
    """Every TensorRT / CUDA-layer requirement has an upper bound (a new major is a new API to check)."""
    from packaging.requirements import Requirement

    for extra, reqs in _extras().items():
        for text in reqs:
            req = Requirement(text)
            if req.name.startswith(("tensorrt", "cuda-python")):
                assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{extra}: {text}"
    assert not any(Requirement(t).name == "cuda-python" for t in _extras()["dev"]), "dev must not pick a CUDA layer"


# ----------------------------------------------------------------------------- issue #36, points 8 and 9

NVIDIA_INDEX = "https://pypi.nvidia.com"
UNREACHABLE = ("NewConnectionError", "Max retries", "Temporary failure", "Name or service", "Network is unreachable",
               "ProxyError", "timed out", "URLError")


def _pip_dry_run(args: list[str], tmp: Path) -> tuple[subprocess.CompletedProcess, Path]:
    report = tmp / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--quiet",
           "--report", str(report), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=540), report


def test_tensorrt_resolves_in_full_only_with_nvidias_index(tmp_path):
    """tensorrt-cu12 on PyPI is an sdist whose tensorrt-cu12-libs / -bindings are wheel_stub sdists: building
    their metadata downloads the real wheel from NVIDIA's index (pypi.nvidia.com), so an install that can
    reach only PyPI fails (seen here: "InstallFailedError ... from https://pypi.nvidia.com/"). docs/tensorrt.md
    names the index. The full resolution (dependencies included) is checked where that index answers."""
    if platform.machine() != "x86_64":
        pytest.skip("tensorrt-cu12 resolves on x86_64 only")
    assert f"--extra-index-url {NVIDIA_INDEX}" in (ROOT / "docs" / "tensorrt.md").read_text()
    reqs = _gpu_requirements("gpu-cu12", "x86_64", "%d.%d" % sys.version_info[:2])
    proc, report = _pip_dry_run(["--index-url", INDEX, "--extra-index-url", NVIDIA_INDEX, *reqs], tmp_path)
    text = proc.stderr + proc.stdout
    if proc.returncode != 0:
        if any(s in text for s in UNREACHABLE):
            why = next((ln.strip() for ln in text.splitlines() if any(s in ln for s in UNREACHABLE)), "")
            pytest.skip(f"NVIDIA's index {NVIDIA_INDEX} (or PyPI) not reachable from here, so the full resolution of "
                        f"{reqs} cannot run (tensorrt-cu12-libs is a wheel_stub that downloads from it): {why}")
        raise AssertionError(text[-3000:])
    got = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
           for i in json.loads(report.read_text())["install"]}
    assert {"tensorrt-cu12", "tensorrt-cu12-libs", "tensorrt-cu12-bindings"} <= set(got), got
    assert _in_line(got["tensorrt-cu12-libs"], "10.3", "11"), got


def test_jetson_extra_has_no_python312_wheel(tmp_path):
    """JetPack 7 (L4T R38, Ubuntu 24.04) has Python 3.12: cuda-python 12.2.x has aarch64 wheels for
    cp310 only (pip finds none for 3.12), which `edgeseg doctor` says on such a board."""
    reqs = _gpu_requirements("jetson", "aarch64", "3.12")
    plat = [a for p in PLATFORMS["aarch64"] for a in ("--platform", p)]
    proc, _ = _pip_dry_run(["--index-url", INDEX, "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                            "--target", str(tmp_path / "t"), *plat, *reqs], tmp_path)
    text = proc.stderr + proc.stdout
    if proc.returncode != 0 and any(s in text for s in UNREACHABLE):
        pytest.skip(f"package index {INDEX} not reachable: {text.strip().splitlines()[-1]}")
    assert proc.returncode != 0 and "No matching distribution found for cuda-python" in text, text[-2000:]


#: every requirement on these has an upper bound (issue #36, 9): a new minor has broken edgeseg before
BOUNDED = ("onnx", "onnxruntime", "onnxconverter-common", "pycuda")


def test_runtime_and_converter_requirements_have_upper_bounds(tmp_path):
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    seen = {}
    for where, reqs in [("dependencies", project["dependencies"]), *project["optional-dependencies"].items()]:
        for text in reqs:
            req = Requirement(text)
            if req.name in BOUNDED:
                assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{where}: {text}"
                seen[req.name] = req.specifier
    assert set(seen) == set(BOUNDED), seen
    # and each line still resolves today (no dependencies; pycuda is an sdist built against CUDA: left out)
    reqs = [f"{n}{seen[n]}" for n in ("onnx", "onnxruntime", "onnxconverter-common")]
    proc, report = _pip_dry_run(["--index-url", INDEX, "--no-deps", *reqs], tmp_path)
    text = proc.stderr + proc.stdout
    if proc.returncode != 0 and any(s in text for s in UNREACHABLE):
        pytest.skip(f"package index {INDEX} not reachable: {text.strip().splitlines()[-1]}")
    assert proc.returncode == 0, text[-2000:]
    got = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    print("bounded lines resolve to", got)
    assert all(got[n] in seen[n] for n in ("onnx", "onnxruntime", "onnxconverter-common")), got
