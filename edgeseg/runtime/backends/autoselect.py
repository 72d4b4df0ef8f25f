"""``auto`` between two CPU runtimes: ONNX Runtime unless OpenVINO was *measured* faster here.

Which runtime is faster depends on the CPU, the precision and the model: on a 2-core AMD EPYC
with AVX-512 VNNI / BF16, OpenVINO fp32 was slower than ONNX Runtime fp32 while OpenVINO ran the
INT8 QDQ model well ahead of ONNX Runtime's INT8 (``edgeseg bench cpu``). So ``auto`` does not
guess: the first time a model runs on a host with both installed, it times the two sessions
side by side (interleaved, a fraction of a second each) and caches the verdict, keyed by the
model file (path, size, mtime), precision, threads, CPU model + flags and both runtime versions,
in ``$EDGESEG_CACHE_DIR`` (default ``~/.cache/edgeseg``) ``/backend_choice.json``. OpenVINO is
chosen when its median is at least :data:`MARGIN` faster.

``EDGESEG_AUTO_MEASURE=0`` turns the measurement off (``auto`` then keeps ONNX Runtime for fp32 and
int8 models, as before OpenVINO was added).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.runtime.backends.base import Backend, BackendOptions

log = logging.getLogger("edgeseg")
MARGIN = 0.05  # OpenVINO must be >= 5 % faster (median) to replace ONNX Runtime
BUDGET_S = 1.5  # timing budget per runtime (after warm-up)


def cache_dir() -> Path:
    return Path(os.environ.get("EDGESEG_CACHE_DIR") or Path.home() / ".cache" / "edgeseg")


def measuring_enabled() -> bool:
    return os.environ.get("EDGESEG_AUTO_MEASURE", "1").lower() not in ("0", "no", "off", "false")


def openvino_installed() -> bool:
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("openvino") is not None


def cache_key(model: Path, options: BackendOptions) -> str:
    from edgeseg.core.host import cpu_flags, cpu_model, package_version, PACKAGES  # noqa: PLC0415

    st = model.stat()
    flags = ",".join(sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma", "asimd"))))
    parts = [str(model.resolve()), str(st.st_size), str(st.st_mtime_ns), options.precision, str(options.threads),
             cpu_model(), flags, str(package_version(PACKAGES["onnxruntime"])), str(package_version(("openvino",)))]
    import hashlib  # noqa: PLC0415

    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def _load() -> dict[str, Any]:
    try:
        return json.loads((cache_dir() / "backend_choice.json").read_text())
    except (OSError, ValueError):
        return {}


def _save(data: dict[str, Any]) -> None:
    path = cache_dir() / "backend_choice.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError as exc:  # a read-only home must not stop inference
        log.info("auto backend: could not cache the measurement (%s)", exc)


def time_backends(backends: dict[str, Backend], budget_s: float = BUDGET_S, rounds: int = 4) -> dict[str, float]:
    """Median ms per batch-1 call of each backend, timed in interleaved rounds on the same input."""
    first = next(iter(backends.values()))
    h, w = first.input_hw or first.info.input_size
    x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
    samples: dict[str, list[float]] = {k: [] for k in backends}
    for b in backends.values():  # warm-up (first calls allocate)
        b.infer(x)
        b.infer(x)
    per_round = budget_s / rounds
    for _ in range(rounds):
        for name, b in backends.items():
            end = time.perf_counter() + per_round
            n = 0
            while n < 2 or (time.perf_counter() < end and n < 200):
                t0 = time.perf_counter()
                b.infer(x)
                samples[name].append((time.perf_counter() - t0) * 1e3)
                n += 1
    return {k: float(np.median(v)) for k, v in samples.items()}


def choose_cpu_backend(model: Path, ort_backend: Backend, options: BackendOptions, open_openvino: Any) -> Backend:
    """``ort_backend`` or an OpenVINO backend for the same file, whichever was measured faster here."""
    if not (measuring_enabled() and openvino_installed()) or model.suffix != ".onnx":
        return ort_backend
    if any(p != "CPUExecutionProvider" for p in ort_backend.providers):
        return ort_backend  # onnxruntime-gpu on a GPU: not a CPU-vs-CPU question
    key = cache_key(model, options)
    data = _load()
    verdict = data.get(key)
    if verdict is not None and verdict.get("choice") == "onnxruntime":
        log.info("auto backend: onnxruntime (measured %.1f ms vs openvino %.1f ms here, cached)",
                 verdict["ms"]["onnxruntime"], verdict["ms"]["openvino"])
        return ort_backend
    try:
        ov_backend = open_openvino(model, options)
    except Exception as exc:  # noqa: BLE001 - OpenVINO failing to load must never stop ONNX Runtime
        log.warning("auto backend: openvino cannot run %s (%s); using onnxruntime", model.name, exc)
        return ort_backend
    if verdict is None:
        ms = time_backends({"onnxruntime": ort_backend, "openvino": ov_backend})
        choice = "openvino" if ms["openvino"] <= ms["onnxruntime"] * (1 - MARGIN) else "onnxruntime"
        verdict = {"choice": choice, "ms": ms, "model": str(model), "precision": options.precision,
                   "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        data[key] = verdict
        _save(data)
        log.info("auto backend: measured onnxruntime %.1f ms vs openvino %.1f ms per frame on %s -> %s",
                 ms["onnxruntime"], ms["openvino"], model.name, choice)
    if verdict["choice"] == "openvino":
        ort_backend.close()
        return ov_backend
    ov_backend.close()
    return ort_backend
