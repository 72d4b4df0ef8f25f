"""Held-out thermal (IR) measurement of a model: gas plumes on real IR backgrounds and leak-free
real IR frames, at an operating point (leak threshold + minimum region area as a share of the frame).

    python -m training.ir_eval                                   # the bundled model
    python -m training.ir_eval --model runs/ir-finetune/model.onnx --out runs/ir-eval-candidate.json

Two sets, both never trained on (``training.ir_backgrounds``):

- ``select`` (choosing the operating point): 100 HIT-UAV frames not among the 600 training
  backgrounds; plumes composited with seeds ``SELECT_SEED + i``; leak-free = the frames as they
  are, white-hot and black-hot.
- ``heldout`` (the reported scores): another source. TNO LWIR/MWIR frames (those with real smoke
  left out), plumes composited with seeds ``HELDOUT_SEED + i`` (training uses seeds >=
  ``ir_finetune.TRAIN_SEED`` on HIT-UAV only); leak-free = every smoke-free TNO frame in
  white-hot and black-hot, plus the CC0 / CC-BY FLIR colour-palette images of IRimage.

Per operating point, on the plume frames: plume IoU (dataset-level and per-image mean),
the share of flagged pixels that lie on the plume, the share of the frame flagged, the share of
leak frames raising a leak; on the leak-free frames: the share raising a leak and the share of the
frame flagged. A frame *raises a leak* when a leak region of at least ``min_area`` (fraction of the
frame; never below ``ALARM_FLOOR``) survives. One network pass per frame (the SDK's
preprocessing and backend, ``training.false_alarms.network_passes``); masks at network size.

Operating point: on ``select``, the (threshold, min area) pair with the most alarm-worthy
behaviour: the largest (leak frames raising - leak-free frames raising), ties broken by plume IoU.
The same rule picks it for every model.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

SELECT_SEED, HELDOUT_SEED = 60_000_000, 70_000_000
N_SELECT_PLUMES, N_HELDOUT_PLUMES = 100, 160
THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.10, 0.96, 0.05), 2))
MIN_AREAS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04)  # fraction of the frame
ALARM_FLOOR = 0.001  # a region of < 0.1 % of the frame (65 px at 256 x 256) never raises a leak


def frames_of(split: str) -> dict:
    """Plume composites + leak-free real frames of a split (BGR uint8) with truths and names."""
    from training.ir_backgrounds import files
    from training.ir_plumes import read_gray, render_ir

    if split == "select":
        bg_paths, seed0, n = files("select"), SELECT_SEED, N_SELECT_PLUMES
        extra = []
    else:
        bg_paths, seed0, n = files("heldout", "tno", smoke_free=True), HELDOUT_SEED, N_HELDOUT_PLUMES
        extra = files("heldout", "irimage")
    bgs = [read_gray(p) for p in bg_paths]
    plumes, truths = [], []
    for i in range(n):
        img, lab = render_ir(bgs[i % len(bgs)], seed0 + i)
        plumes.append(img)
        truths.append(lab == 1)
    free, names = [], []
    for p, g in zip(bg_paths, bgs):
        free += [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR), cv2.cvtColor(255 - g, cv2.COLOR_GRAY2BGR)]
        names += [p.stem + ":white_hot", p.stem + ":black_hot"]
    for p in extra:
        free.append(cv2.imread(str(p), cv2.IMREAD_COLOR))
        names.append(p.stem + ":flir_palette")
    return {"plumes": plumes, "truths": truths, "free": free, "free_names": names,
            "backgrounds": len(bgs), "seeds": [seed0, seed0 + n - 1]}


def leak_probs(model: Path | None, frames: list[np.ndarray]) -> np.ndarray:
    """p(leak) at network size for each frame, through the SDK's preprocessing and backend."""
    from edgeseg import Segmenter
    from training.false_alarms import network_passes

    seg = Segmenter(model, backend="onnxruntime", threads=1)
    leak = seg.info.leak_class
    out = np.stack([p.probs[leak].astype(np.float16) for p in network_passes(seg, frames)])
    seg.close()
    return out


def masks(prob: np.ndarray, thr: float, min_area: float) -> tuple[np.ndarray, bool]:
    """Leak mask with regions smaller than ``min_area`` (fraction) removed; whether it raises a leak."""
    m = (prob >= thr).astype(np.uint8)
    px = max(min_area, ALARM_FLOOR) * m.size
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= px
    out = keep[lab]
    return out, bool(keep.any())


def score(probs_plume: np.ndarray, truths: list[np.ndarray], probs_free: np.ndarray,
          thr: float, min_area: float) -> dict:
    inter = union = flagged = 0
    per_image, frac_leak, raised_leak = [], [], 0
    for p, t in zip(probs_plume, truths):
        m, raised = masks(p, thr, min_area)
        i, u = int((m & t).sum()), int((m | t).sum())
        inter, union, flagged = inter + i, union + u, flagged + int(m.sum())
        per_image.append(i / u if u else 1.0)
        frac_leak.append(m.mean())
        raised_leak += raised
    frac_free, raised_free = [], 0
    for p in probs_free:
        m, raised = masks(p, thr, min_area)
        frac_free.append(m.mean())
        raised_free += raised
    return {"threshold": thr, "min_area": min_area,
            "plume_iou_dataset": inter / max(1, union), "plume_iou_per_image": float(np.mean(per_image)),
            "flagged_on_plume": inter / flagged if flagged else 0.0,
            "frame_flagged_leak_frames": float(np.mean(frac_leak)),
            "frame_flagged_leak_free": float(np.mean(frac_free)),
            "leak_frames_raising": raised_leak / len(truths),
            "leak_free_raising": raised_free / len(probs_free),
            "plume_frames": len(truths), "leak_free_frames": len(probs_free)}


def choose(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: (round(r["leak_frames_raising"] - r["leak_free_raising"], 6),
                                    round(r["plume_iou_dataset"], 6), r["threshold"]))


def evaluate(model: Path | None, operating_point: tuple[float, float] | None = None,
             sets: dict | None = None) -> dict:
    """Grid on ``select``, chosen point, and the held-out scores at the chosen point (and at
    ``operating_point`` when given, e.g. the model's settings as shipped)."""
    sets = sets or {s: frames_of(s) for s in ("select", "heldout")}
    res: dict = {"model": str(model) if model else "bundled"}
    probs = {s: (leak_probs(model, d["plumes"]), leak_probs(model, d["free"])) for s, d in sets.items()}
    grid = [score(*probs["select"][:1], sets["select"]["truths"], probs["select"][1], t, a)
            for t in THRESHOLDS for a in MIN_AREAS]
    chosen = choose(grid)
    res["select"] = {"chosen": chosen, "backgrounds": sets["select"]["backgrounds"], "seeds": sets["select"]["seeds"]}
    hp, hf = probs["heldout"]
    res["heldout"] = {"at_chosen": score(hp, sets["heldout"]["truths"], hf, chosen["threshold"], chosen["min_area"]),
                      "backgrounds": sets["heldout"]["backgrounds"], "seeds": sets["heldout"]["seeds"]}
    if operating_point is not None:
        res["heldout"]["at_given"] = score(hp, sets["heldout"]["truths"], hf, *operating_point)
        res["select"]["at_given"] = score(*probs["select"][:1], sets["select"]["truths"], probs["select"][1],
                                          *operating_point)
    res["heldout"]["grid"] = [score(hp, sets["heldout"]["truths"], hf, t, a) for t in THRESHOLDS[::2] for a in MIN_AREAS]
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    ap.add_argument("--threshold", type=float, default=None, help="also score at this threshold ...")
    ap.add_argument("--min-area", type=float, default=ALARM_FLOOR, help="... and min area (fraction)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    op = (a.threshold, a.min_area) if a.threshold is not None else None
    res = evaluate(a.model, op)
    text = json.dumps(res, indent=1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    brief = {k: v for k, v in res.items() if k != "heldout"}
    brief["heldout"] = {k: v for k, v in res["heldout"].items() if k != "grid"}
    print(json.dumps(brief, indent=1))


if __name__ == "__main__":
    main()
