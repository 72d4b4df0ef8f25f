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
