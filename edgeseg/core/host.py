"""Facts about the host: CPU model and feature flags, package versions, GPUs, the machine record.

Both the runtime (``auto`` picks a CPU backend by CPU and runtime version; OpenVINO says which
flags bf16 lacks) and the benchmarks (every number is quoted with the machine it ran on) need
them, so they live below both: the runtime never imports :mod:`edgeseg.bench`.

Versions come from package metadata (``importlib.metadata``), never by importing the package:
importing torch or tensorrt just to print a version would slow the runtime path and, on a
gateway without them, is pointless. The load average is recorded because a busy machine
(another job running) inflates and spreads latencies.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# distribution names to try per component (first installed one wins)
PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "onnx": ("onnx",),
    "torch": ("torch",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-cu13"),
    "openvino": ("openvino",),
    "edgeseg": ("edgeseg",),
}


def package_version(names: tuple[str, ...]) -> str | None:
    """Installed version of the first distribution in ``names`` that exists, else None."""
    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """CPU name from /proc/cpuinfo (x86 'model name', ARM 'Hardware'/'Model'), else platform."""
    info = _read("/proc/cpuinfo")
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    dt = _read("/proc/device-tree/model").strip("\x00\n ")  # Jetson / Raspberry Pi boards
    return dt or platform.processor() or platform.machine()


#: CPU features that decide which precision is fast: name in reports -> /proc/cpuinfo flag(s), any of
CPU_FEATURES: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "fma": ("fma",),
    "avx512": ("avx512f",),
    "avx512_vnni": ("avx512_vnni",),
    "avx_vnni": ("avx_vnni",),
    "avx512_bf16": ("avx512_bf16",),
    "amx_bf16": ("amx_bf16",),
    "amx_int8": ("amx_int8",),
    "neon": ("neon", "asimd"),
    "arm_dotprod": ("asimddp",),
    "arm_bf16": ("bf16",),
}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags as the kernel reports them now (x86 ``flags``, ARM ``Features``)."""
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(val.split())
    return set()


def cpu_features(cpuinfo: str | None = None) -> dict[str, bool]:
    """Which of :data:`CPU_FEATURES` this CPU has, read at run time (never assumed)."""
    flags = cpu_flags(cpuinfo)
    return {name: any(f in flags for f in names) for name, names in CPU_FEATURES.items()}


def has_vnni(features: dict[str, bool] | None = None) -> bool:
    """8-bit dot-product instructions (x86 VNNI / AMX-INT8, ARM dotprod): u8s8 INT8 without saturation."""
    f = features if features is not None else cpu_features()
    return bool(f.get("avx512_vnni") or f.get("avx_vnni") or f.get("amx_int8") or f.get("arm_dotprod"))


def has_bf16(features: dict[str, bool] | None = None) -> bool:
    """Native bf16 arithmetic (AVX512-BF16 / AMX-BF16 / ARM bf16)."""
    f = features if features is not None else cpu_features()
    return bool(f.get("avx512_bf16") or f.get("amx_bf16") or f.get("arm_bf16"))


def describe_cpu_features(features: dict[str, bool] | None = None) -> str:
    """'avx2 fma avx512 avx512_vnni avx512_bf16' (present flags) + ' | no: amx_int8 ...' (absent x86 ones)."""
    f = features if features is not None else cpu_features()
    have = [k for k, v in f.items() if v]
    x86 = ("avx2", "avx512", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    lacking = [k for k in x86 if not f.get(k)] if f.get("avx2") or f.get("avx512") else []
    return " ".join(have) + (f" (no {' '.join(lacking)})" if lacking else "")


def usable_cores() -> int | None:
    """Cores this process may run on (its CPU affinity, not the machine's count); None where the
    platform does not say."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None where not reported."""
    pairs, phys = set(), "0"
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, val = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = val.strip()
        elif key == "core id":
            pairs.add((phys, val.strip()))
    return len(pairs) or None


def ram_gb() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 ** 2, 2)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3, 2)
    except (ValueError, OSError, AttributeError):
        return None


def gpus() -> list[dict[str, str]]:
    """Name, driver and memory of each NVIDIA GPU via ``nvidia-smi`` (empty list when absent)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    rows = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            rows.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return rows


def machine_info() -> dict[str, Any]:
    """Everything needed to interpret a benchmark report (JSON-ready)."""
    affinity = usable_cores()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "usable_cores": affinity,
        "ram_gb": ram_gb(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {k: package_version(v) for k, v in PACKAGES.items()},
        "gpus": gpus(),
        "cpu_features": cpu_features(),
        "load_average_1_5_15": load,
    }
    tegra = _read("/etc/nv_tegra_release").strip()
    if tegra:
        info["jetson_l4t"] = tegra.splitlines()[0]
    try:
        import onnxruntime as ort  # the SDK's own runtime dependency, so importing it costs nothing extra

        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        info["onnxruntime_providers"] = None
    return info
