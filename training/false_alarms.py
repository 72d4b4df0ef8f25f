"""Fewer false alarms: choose the leak threshold AND the minimum region area together, on held-out
*training* photos, under a false-alarm budget (never on val).

    python -m training.false_alarms                       # the bundled model
    python -m training.false_alarms --model M.onnx --out runs/issue17b/selection.json

The held-out photos are ``training.data.split_holdout``'s (every 10th real SMOKE5K *train* photo,
never trained on). On them:

- IoU: gas-smoke IoU (dataset-level, at the photo's own resolution) of the SDK's masks with that
  threshold and minimum area;
- false alarms: the share of their smoke-free crops (the largest smoke-free square of each photo,
  made exactly as for val: ``edgeseg.bench.accuracy.smoke_free_crops``) that raise a leak region
  of at least ``max(min_area, 64)`` px (what ``edgeseg bench accuracy --smoke-free`` counts).

Every (threshold, min_area) pair of the grid is scored from ONE network pass per image (the
post-processing is the Segmenter's own functions). Among the pairs within the false-alarm budget
whose held-out dataset IoU is not below the model's as shipped, the one with the highest
held-out per-image IoU wins (see ``choose``).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edgeseg.bench.accuracy import LabelledImage, smoke_free_crops
from edgeseg.runtime.postprocess import analyse, class_probs, extract_regions, min_area_px, resize_labels
from edgeseg.runtime.preprocess import preprocess

from training.train import DATA_ROOT  # ../shared/data/smoke5k beside the checkout
THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.10, 0.96, 0.05), 2))
#: minimum region areas as a share of the frame (what ``min_area`` means since issue #22: the same
#: share at every camera resolution); 0.0104 is 2,048 px of a 512x384 photo
MIN_AREAS = (0.0, 0.0005, 0.001, 0.002, 0.004, 0.007, 0.0104, 0.015, 0.02, 0.03, 0.045, 0.06)
ALARM_PX = 64  # a smoke-free frame "raises a leak" with a region of at least this many px (and min_area)
BUDGET = 0.10  # at most 10 % of smoke-free crops may raise a leak


def held_out_train_photos(data_root: Path = DATA_ROOT, every: int = 10) -> list[LabelledImage]:
    """The held-out real train photos of ``training.data.split_holdout`` at full resolution.

    Same rule and order: the sorted ``train`` pairs, real = not a 256x256 composite, every
    ``every``-th real photo held out."""
    from training.data import pairs

    real = []
    for ip, mp in pairs(data_root / "train"):
        small = cv2.imread(str(ip), cv2.IMREAD_REDUCED_GRAYSCALE_2)  # a 256x256 composite reads as 128x128
        if small is None:
            raise ValueError(f"unreadable image {ip}")
        if small.shape[:2] != (128, 128):
            real.append((ip, mp))
    return [LabelledImage(ip.stem, cv2.imread(str(ip), cv2.IMREAD_COLOR), cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE))
            for ip, mp in real[::every]]


@dataclass
class Pass:
    """One network pass over a frame: network-size class probabilities and the frame transform."""

    probs: np.ndarray
    transform: object


def network_passes(seg, frames: Sequence[np.ndarray]) -> list[Pass]:
    """Probabilities at network size for each frame (the Segmenter's preprocessing and backend)."""
    out = []
    for f in frames:
        x, ts = preprocess([f], seg.info.input_size, seg.info.mean, seg.info.std, seg.mode)
        out.append(Pass(class_probs(seg.backend.infer(x), seg.info.activation)[0], ts[0]))
    return out


def frame_mask(p: Pass, threshold: float, min_area: float, leak: int) -> np.ndarray:
    """The frame-size leak mask ``Segmenter(threshold=, min_area=).segment(frame).mask == leak``
    (``min_area``: a share of the frame)."""
    labels, _ = analyse(p.probs, p.transform, threshold, leak, min_area_px(min_area, p.transform))
    return resize_labels(labels, (p.transform.orig_h, p.transform.orig_w)) == leak


def score_grid(photos: list[Pass], truths: list[np.ndarray], crops: list[Pass], leak: int,
               thresholds: Sequence[float] = THRESHOLDS, min_areas: Sequence[int] = MIN_AREAS) -> list[dict]:
    """Held-out IoU (dataset and per image) and smoke-free false-alarm rate for every pair."""
    rows = []
    for thr in thresholds:
        for ma in min_areas:
            inter = union = 0
            per_image = []
            for p, t in zip(photos, truths):
                m = frame_mask(p, thr, ma, leak)
                i, u = int((m & t).sum()), int((m | t).sum())
                inter, union = inter + i, union + u
                if u:
                    per_image.append(i / u)
            hits = sum(bool(extract_regions(frame_mask(c, thr, ma, leak).astype(np.uint8), 1,
                                            max(min_area_px(ma, c.transform), ALARM_PX))) for c in crops)
            rows.append({"threshold": thr, "min_area": ma, "iou_dataset": inter / max(1, union),
                         "iou_per_image": float(np.mean(per_image)) if per_image else float("nan"),
                         "false_alarms": hits, "crops": len(crops),
                         "false_alarm_rate": hits / max(1, len(crops))})
    return rows


def choose(rows: list[dict], budget: float = BUDGET, iou_floor: float = 0.0) -> dict | None:
    """Among pairs within the false-alarm budget whose held-out dataset IoU is at least
    ``iou_floor`` (the model as shipped), the highest held-out *per-image* IoU (ties: higher
    dataset IoU, fewer false alarms, smaller minimum area); None when no pair qualifies.

    Why not simply the highest dataset IoU: dataset IoU is dominated by large plumes, so it keeps
    rising as the minimum area grows and every small region is dropped (on the shipped model it
    picked the grid's largest area, 16384 px, at a per-image IoU of 0.042 against 0.061 as
    shipped). Per-image IoU is what small, distant plumes move."""
    ok = [r for r in rows if r["false_alarm_rate"] <= budget and r["iou_dataset"] >= iou_floor]
    if not ok:
        return None
    return max(ok, key=lambda r: (round(r["iou_per_image"], 6), round(r["iou_dataset"], 6),
                                  -r["false_alarm_rate"], -r["min_area"]))


def select(model: Path | None, data_root: Path = DATA_ROOT, budget: float = BUDGET,
           shipped: tuple[float | None, float | None] = (None, None), iou_floor: float | None = None) -> dict:
    """Score the grid for ``model`` on the held-out train photos and pick a pair (``choose``);
    ``iou_floor`` None: the model's own held-out IoU with its shipped settings."""
    from edgeseg import Segmenter

    seg = Segmenter(model, backend="onnxruntime")
    leak = seg.info.leak_class
    held = held_out_train_photos(data_root)
    crops = smoke_free_crops(held)
    photos = network_passes(seg, [h.image for h in held])
    truths = [h.truth > 127 for h in held]
    crop_passes = network_passes(seg, crops)
    rows = score_grid(photos, truths, crop_passes, leak)
    thr0 = shipped[0] if shipped[0] is not None else seg.threshold
    base = score_grid(photos, truths, crop_passes, leak, [thr0], [shipped[1] if shipped[1] is not None else seg.min_area])[0]
    best = choose(rows, budget, iou_floor=base["iou_dataset"] if iou_floor is None else iou_floor)
    by_dataset_iou = max((r for r in rows if r["false_alarm_rate"] <= budget), key=lambda r: r["iou_dataset"], default=None)
    return {"model": str(seg.model_path), "held_out_photos": len(held), "smoke_free_crops": len(crops),
            "budget": budget, "alarm_px": ALARM_PX, "as_shipped": base, "chosen": best,
            "highest_dataset_iou_within_budget": by_dataset_iou, "grid": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    ap.add_argument("--data", type=Path, default=DATA_ROOT)
    ap.add_argument("--budget", type=float, default=BUDGET, help="largest allowed smoke-free false-alarm rate")
    ap.add_argument("--iou-floor", type=float, default=None,
                    help="held-out dataset IoU a pair must keep (default: the model's own as shipped); pass the "
                         "shipped model's to judge a fine-tuned candidate against it")
    ap.add_argument("--out", type=Path, default=Path("runs/issue17b/selection.json"))
    args = ap.parse_args(argv)
    if not (args.data / "train").is_dir():
        raise SystemExit(f"error: no SMOKE5K train folder at {args.data}/train")
    res = select(args.model, args.data, args.budget, iou_floor=args.iou_floor)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    b, c = res["as_shipped"], res["chosen"]
    print(f"{res['held_out_photos']} held-out train photos, {res['smoke_free_crops']} smoke-free crops of them")
    thr = "argmax" if b["threshold"] is None else f"{b['threshold']:.2f}"
    print(f"as shipped: threshold {thr} min_area {b['min_area']:g} of the frame: IoU {b['iou_dataset']:.3f} "
          f"(per image {b['iou_per_image']:.3f}), false alarms {b['false_alarms']}/{b['crops']}")
    if c is None:
        print(f"no pair within the {100 * args.budget:.0f} % false-alarm budget")
    else:
        print(f"chosen: threshold {c['threshold']:.2f} min_area {c['min_area']:g} of the frame: IoU {c['iou_dataset']:.3f} "
              f"(per image {c['iou_per_image']:.3f}), false alarms {c['false_alarms']}/{c['crops']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
