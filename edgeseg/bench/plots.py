"""Report figures: latency distribution per variant and IoU vs latency.

matplotlib is optional (the ``train`` extra): it is imported lazily with the headless Agg
backend, and when it is missing the plots are skipped with a message instead of failing the
whole benchmark.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

MISSING = "matplotlib is not installed (pip install 'edgeseg[train]' or pip install matplotlib); PNG plots skipped"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def latency_distribution(samples: dict[str, Sequence[float]], path: str | Path, title: str) -> str | None:
    """Box plot (with the individual samples jittered over it) of per-frame latency per variant.

    Returns an error message instead of raising when matplotlib is missing.
    """
    plt = _pyplot()
    if plt is None:
        return MISSING
    import numpy as np

    names = list(samples)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names)), 4.5))
    data = [np.asarray(samples[n], float) for n in names]
    ax.boxplot(data, showfliers=False, whis=(1, 99))
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, d.size), d, s=4, alpha=0.35)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
    ax.set_ylabel("end-to-end ms per frame (batch 1)")
    ax.set_title(f"{title}\nbox: p25-p75 and median, whiskers: p1-p99, dots: every sample", fontsize=10)
    if max(d.max() for d in data) > 8 * min(d.min() for d in data):  # variants far apart: log axis
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def iou_vs_latency(points: dict[str, tuple[float, float]], path: str | Path, ylabel: str, title: str) -> str | None:
    """Scatter of (median ms per frame, IoU) per variant: up and to the left is better."""
    plt = _pyplot()
    if plt is None:
        return MISSING
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    markers = "osD^vP*X"
    for i, (name, (ms, iou)) in enumerate(points.items()):  # a legend: labels of close points would overlap
        ax.scatter([ms], [iou], s=60, marker=markers[i % len(markers)], label=name, alpha=0.85)
    ax.legend(fontsize=8, loc="best")
    ax.set_xlabel("median end-to-end ms per frame (batch 1)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None
