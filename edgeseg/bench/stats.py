"""Small, dependency-free helpers every benchmark shares: a timing loop, latency summaries and
mask agreement between two model variants.

Why a shared timing loop: the SDK pipeline, the bare ONNX Runtime session, PyTorch eager and
the INT8 search must all be timed the same way (same warm-up, same stopping rule, same clock)
or their numbers are not comparable side by side.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from edgeseg.core.metrics import mask_agreement  # noqa: F401  (re-exported: benchmarks import it from here)

PERCENTILES = (50, 90, 95, 99)


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """min/mean/median/p90/p95/p99/max/std of latency samples (ms); raises on an empty list.

    Percentiles use numpy's default linear interpolation, so p50 == median and the
    percentiles are monotonic by construction.
    """
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples: the timed loop did not run (duration too short?)")
    p = np.percentile(a, PERCENTILES)
    return {
        "count": int(a.size),
        "min": float(a.min()),
        "mean": float(a.mean()),
        "median": float(p[0]),
        "p90": float(p[1]),
        "p95": float(p[2]),
        "p99": float(p[3]),
        "max": float(a.max()),
        "std": float(a.std()),
    }


def timed_loop(fn: Callable[[int], None], duration_s: float, warmup: int = 3, min_iters: int = 5,
               max_iters: int | None = None) -> tuple[list[float], float]:
    """Call ``fn(i)`` repeatedly; return (per-call wall times in ms, total timed seconds).

    ``warmup`` untimed calls first (lazy allocation, kernel selection, caches). Then calls
    are timed until ``duration_s`` has elapsed *and* at least ``min_iters`` ran (so a short
    duration still yields a usable distribution), or until ``max_iters``.
    """
    if duration_s < 0 or min_iters < 1:
        raise ValueError("duration must be >= 0 and min_iters >= 1")
    for i in range(max(0, warmup)):
        fn(i)
    samples: list[float] = []
    start = time.perf_counter()
    i = 0
    while True:
        t0 = time.perf_counter()
        fn(i)
        t1 = time.perf_counter()
        samples.append((t1 - t0) * 1e3)
        i += 1
        if max_iters is not None and i >= max_iters:
            break
        if i >= min_iters and t1 - start >= duration_s:
            break
    return samples, time.perf_counter() - start


