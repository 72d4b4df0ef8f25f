"""Latency and throughput of the SDK pipeline, per stage, and of a bare ONNX Runtime session.

Why both: users feel the *end-to-end* time of ``Segmenter.segment_batch`` (resize, normalise,
network, argmax/upsampling, connected components), while model papers quote the network alone.
Timing the two on the same model shows what the SDK adds around the network.

All times are wall-clock milliseconds *per call* (one call = one batch); ``fps`` is frames
processed divided by the timed wall time. Nothing here is estimated: a figure is either
measured or absent.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from edgeseg.bench.stats import summarize, timed_loop

STAGES = ("preprocess", "inference", "postprocess", "end_to_end")
_TIMING_KEYS = {"preprocess": "pre_ms", "inference": "infer_ms", "postprocess": "post_ms"}


def synthetic_frames(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """Smooth random BGR uint8 frames (camera-like spatial statistics, not white noise).

    Used when no real images are given: latency of a dense CNN does not depend on content,
    but post-processing (connected components) does a little, so frames are not constant.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    frames = []
    for _ in range(max(1, count)):
        noise = rng.integers(0, 256, (max(8, h // 8), max(8, w // 8), 3), dtype=np.uint8)
        frames.append(cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC))
    return frames


def _set_input_size(segmenter: Any, size: tuple[int, int] | None) -> tuple[int, int]:
    """Run the network at ``size`` (dynamic-shape ONNX models only); returns the size in use."""
    current = tuple(segmenter.info.input_size)
    if size is None or tuple(size) == current:
        return current  # type: ignore[return-value]
    fixed = segmenter.backend.input_hw
    if fixed is not None and tuple(fixed) != tuple(size):
        raise ValueError(f"this engine was built for {fixed[0]}x{fixed[1]}; rebuild it to benchmark {size[0]}x{size[1]}")
    # Segmenter reads info.input_size on every call, so replacing it changes the network size.
    segmenter.info = dataclasses.replace(segmenter.info, input_size=(int(size[0]), int(size[1])))
    return (int(size[0]), int(size[1]))


def measure_segmenter(segmenter: Any, frames: Sequence[np.ndarray], batch: int = 1, duration_s: float = 5.0,
                      warmup: int = 3, min_iters: int = 5, max_iters: int | None = None,
                      return_samples: bool = False) -> dict[str, Any]:
    """Time ``segmenter.segment_batch`` on batches drawn round-robin from ``frames``.

    Stage times come from the Segmenter's own ``Result.timings`` (per frame, so multiplied
    back by the batch size to give per-call figures); end to end is timed around the call.
    TensorRT's GPU compute time (CUDA events around ``execute_async_v3``, host<->device copies
    excluded) is read from the backend's ``gpu_timing_ms`` only when the backend has it.
    ``return_samples`` adds the raw per-call samples (to pool interleaved runs or plot them).
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not frames:
        raise ValueError("no frames to benchmark")
    stage_samples: dict[str, list[float]] = {k: [] for k in _TIMING_KEYS}
    gpu: list[float] = []
    backend = segmenter.backend
    gpu_whole_batch = batch <= (backend.max_batch or batch)  # a split batch times only its last part
    n = len(frames)
    timing = [False]

    def call(i: int) -> None:
        chunk = [frames[(i * batch + j) % n] for j in range(batch)]
        results = segmenter.segment_batch(chunk)
        if not timing[0]:
            return
        for stage, key in _TIMING_KEYS.items():
            stage_samples[stage].append(results[0].timings[key] * batch)
        g = backend.gpu_timing_ms
        if g is not None and gpu_whole_batch:
            gpu.append(float(g))

    for i in range(max(0, warmup)):
        call(i)
    timing[0] = True
    e2e, elapsed = timed_loop(call, duration_s, warmup=0, min_iters=min_iters, max_iters=max_iters)
    stats = {stage: summarize(s) for stage, s in stage_samples.items()}
    stats["end_to_end"] = summarize(e2e)
    out: dict[str, Any] = {
        "batch": batch,
        "iterations": len(e2e),
        "frames": len(e2e) * batch,
        "timed_s": elapsed,
        "stages_ms_per_call": stats,
        "ms_per_frame": stats["end_to_end"]["mean"] / batch,
        "fps": len(e2e) * batch / elapsed,
        "gpu_compute_ms": summarize(gpu) if gpu else None,
    }
    if return_samples:
        out["samples_ms"] = {**stage_samples, "end_to_end": e2e, "gpu_compute": gpu}
    if not gpu:
        if not hasattr(backend, "gpu_timing_ms"):
            out["gpu_compute_note"] = f"the {backend.name} backend exposes no GPU timing"
        elif not gpu_whole_batch:
            out["gpu_compute_note"] = "batch larger than the engine's max batch (split): GPU time not comparable"
        else:
            out["gpu_compute_note"] = "the backend reported no GPU timing (CUDA events unavailable)"
    return out


def run_latency(model: str | Path, backend: str = "auto", batches: Sequence[int] = (1, 4, 8),
                size: tuple[int, int] | None = None, duration_s: float = 5.0, warmup: int = 3,
                threads: int | None = None, frames: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Benchmark one model/backend over several batch sizes (what ``edgeseg bench latency`` runs).

    ``size`` is the network input size (default: the model's metadata). Frames are generated
    at that size unless given, so the resize in preprocessing is a no-op and preprocessing
    time is the normalise/transpose cost only.
    """
    from edgeseg.runtime.segmenter import Segmenter

    seg = Segmenter(model, backend=backend, threads=threads)  # type: ignore[arg-type]
    hw = _set_input_size(seg, size)
    frames = list(frames) if frames is not None else synthetic_frames(max(batches) * 2, hw)
    runs = [measure_segmenter(seg, frames, b, duration_s, warmup) for b in batches]
    return {
        "model": str(model),
        "backend": seg.backend_name,
        "providers": list(seg.backend.providers),
        "input_size": list(hw),
        "frame_size": list(frames[0].shape[:2]),
        "threads": threads,
        "duration_s": duration_s,
        "warmup": warmup,
        "runs": runs,
    }


def bare_session(model: str | Path, threads: int | None = None, providers: Sequence[str] | None = None) -> Any:
    """A plain ``onnxruntime.InferenceSession`` with the same options the SDK uses."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(model), opts, providers=list(providers or ["CPUExecutionProvider"]))


def bare_ort_latency(model: str | Path, batch: int = 1, size: tuple[int, int] | None = None,
                     duration_s: float = 5.0, warmup: int = 3, threads: int | None = None,
                     providers: Sequence[str] | None = None, session: Any = None,
                     return_samples: bool = False) -> dict[str, Any]:
    """The no-SDK baseline: ``session.run`` on a ready NCHW float32 tensor, nothing else.

    Fetches the same ``probs`` output the SDK fetches, so the difference to
    :func:`measure_segmenter` is exactly the SDK's pre/post-processing and bookkeeping.
    """
    from edgeseg.core.model_meta import ModelInfo

    sess = session or bare_session(model, threads, providers)
    info = ModelInfo.from_metadata(sess.get_modelmeta().custom_metadata_map)
    hw = tuple(size) if size else tuple(info.input_size)
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    n = fixed or batch
    outputs = [o.name for o in sess.get_outputs()]
    fetch = ["probs"] if "probs" in outputs else outputs[:1]
    x = np.random.default_rng(0).standard_normal((n, 3, *hw)).astype(np.float32)

    def call(_: int) -> None:
        sess.run(fetch, {inp.name: x})

    samples, elapsed = timed_loop(call, duration_s, warmup=warmup)
    out = {
        "model": str(model),
        "backend": "onnxruntime (bare session)",
        "providers": sess.get_providers(),
        "batch": n,
        "input_size": list(hw),
        "threads": threads,
        "inference_ms_per_call": summarize(samples),
        "ms_per_frame": float(np.mean(samples)) / n,
        "fps": len(samples) * n / elapsed,
        "iterations": len(samples),
        "timed_s": elapsed,
    }
    if return_samples:
        out["samples_ms"] = samples
    return out
