"""Whole-frame vs tiled inference, side by side: per-image and dataset gas-smoke IoU, smoke-free
false alarms and ms/frame, on a labelled folder (SMOKE5K val by default).

    python benchmarks/tiles_report.py [--data DIR] [--tiles 1x1,2x2,3x3] [--overlap 0.2] [--out benchmarks/reports/tiles]

Every image is run through every setting in turn (interleaved), so background load on a shared
machine hits all settings alike. Times are ``Segmenter.segment(frame).mask`` wall time (pre +
network + stitch + post + the frame-size mask), single frame, ONNX Runtime on this CPU.
Writes ``OUT.md`` and ``OUT.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgeseg.bench.accuracy import false_alarm_rate, iter_labelled, smoke_free_crops
from edgeseg.core.metrics import SegmentationScores
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.tiling import parse_tiles


def run(data: Path, grids: list[str], overlap: float, model: Path | None, threads: int | None) -> dict:
    segs = {g: Segmenter(model, backend="onnxruntime", threads=threads, tiles=parse_tiles(g), overlap=overlap)
            for g in grids}
    leak = next(iter(segs.values())).info.leak_class
    scores = {g: SegmentationScores(2) for g in grids}
    ms: dict[str, list[float]] = {g: [] for g in grids}
    items = list(iter_labelled(data))
    for s in segs.values():  # warm-up (first-call allocations)
        s.segment(items[0].image)
    for item in items:
        truth = (item.truth > 127).astype(np.uint8)
        for g, s in segs.items():
            t0 = time.perf_counter()
            mask = s.segment(item.image).mask
            ms[g].append(1e3 * (time.perf_counter() - t0))
            scores[g].update(truth, (mask == leak).astype(np.uint8))
    crops = smoke_free_crops(items)
    out = {"data": str(data), "images": len(items), "overlap": overlap,
           "frame_sizes": sorted({f"{i.image.shape[1]}x{i.image.shape[0]}" for i in items}),
           "model": str(next(iter(segs.values())).model_path), "threshold": next(iter(segs.values())).threshold,
           "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs",
           "settings": {}}
    for g, s in segs.items():
        sm = scores[g].summary(["not-smoke", "gas-smoke"])["per_class"]["gas-smoke"]
        out["settings"][g] = {
            "iou_dataset": sm["iou_dataset"], "iou_per_image": sm["iou_per_image"],
            "ms_mean": float(np.mean(ms[g])), "ms_median": float(np.median(ms[g])),
            "false_alarms_smoke_free": false_alarm_rate(s, crops, 64), "smoke_free_crops": len(crops)}
    return out


def markdown(rep: dict, command: str) -> str:
    lines = [f"# Whole frame vs tiles on {rep['data']}", "",
             f"{rep['images']} labelled photos ({', '.join(rep['frame_sizes'])}), model `{Path(rep['model']).name}` "
             f"(threshold {rep['threshold']}), tile overlap {rep['overlap']}, ONNX Runtime on {rep['machine']}; "
             "each image through every setting in turn. ms = `segment(frame).mask` wall time, one frame at a time.",
             "", f"Command: `{command}`", "",
             "| tiles | gas-smoke IoU per image | gas-smoke IoU dataset | smoke-free crops raising a leak (>= 64 px) | ms/frame mean | ms/frame median |",
             "|---|---|---|---|---|---|"]
    for g, r in rep["settings"].items():
        name = "whole frame (1x1)" if g == "1x1" else g
        lines.append(f"| {name} | {r['iou_per_image']:.3f} | {r['iou_dataset']:.3f} | "
                     f"{round(r['false_alarms_smoke_free'] * r['smoke_free_crops'])} of {r['smoke_free_crops']} "
                     f"({100 * r['false_alarms_smoke_free']:.0f} %) | {r['ms_mean']:.0f} | {r['ms_median']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/smoke5k/val"))
    ap.add_argument("--tiles", default="1x1,2x2,3x3")
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/reports/tiles"))
    args = ap.parse_args()
    grids = [g.strip() for g in args.tiles.split(",") if g.strip()]
    rep = run(args.data, grids, args.overlap, args.model, args.threads)
    command = "python benchmarks/tiles_report.py " + " ".join(
        f"--{k} {v}" for k, v in [("data", args.data), ("tiles", args.tiles), ("overlap", args.overlap)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rep, indent=2) + "\n")
    md = markdown(rep, command)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
