"""Training curves of a run, as a picture: loss and the periodic evaluations per stage.

    python -m training.curves runs/train -o benchmarks/reports/training_curve.png

Reads ``history.jsonl`` of ``training.train`` (one record per step, evaluations on some) or of
``training.gpu_run`` (one record per epoch and checkpoint; its batches are the steps). A resumed run repeats the
steps after its last checkpoint; the later record of a step wins, which is the one the shipped
weights descend from.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

EVALS = {"val_smoke_iou": "SMOKE5K val smoke IoU", "holdout_smoke_iou": "held-out train photos smoke IoU",
         "synth_miou": "synthetic gas mIoU"}


def load_history(run: Path) -> list[dict]:
    """Records in global step order (stage 2 continues stage 1's step axis); resumes deduplicated."""
    by_key: dict[tuple[str, int], dict] = {}
    stages: list[str] = []
    for line in (run / "history.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "batch" in rec and "step" not in rec:  # training.gpu_run: full 256 px batches, plain mean loss
            rec = {**rec, "step": rec["batch"], "loss_ema": rec["loss"], "crop": 256}
        if rec["stage"] not in stages:
            stages.append(rec["stage"])
        by_key[(rec["stage"], rec["step"])] = rec
    offset, out = 0, []
    for stage in stages:
        recs = sorted((r for (s, _), r in by_key.items() if s == stage), key=lambda r: r["step"])
        out += [{**r, "global_step": offset + r["step"]} for r in recs]
        offset += recs[-1]["step"] if recs else 0
    return out


def plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_iou) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax_loss.plot([r["global_step"] for r in history], [r["loss_ema"] for r in history], lw=1)
    ax_loss.set_ylabel("training loss (EMA)")
    for key, label in EVALS.items():
        pts = [(r["global_step"], r[key]) for r in history if key in r]
        if pts:
            ax_iou.plot(*zip(*pts), marker="o", label=label)
    # stage and crop boundaries, labelled once at the top
    prev = None
    for r in history:
        tag = (r["stage"], r["crop"])
        if tag != prev:
            for ax in (ax_loss, ax_iou):
                ax.axvline(r["global_step"], color="grey", lw=0.5, ls="--")
            ax_loss.annotate(f"{r['stage']} {r['crop']}px", (r["global_step"], 1), xycoords=("data", "axes fraction"),
                             fontsize=7, va="top", ha="left")
            prev = tag
    ax_iou.set_ylabel("IoU")
    ax_iou.set_xlabel("step")
    ax_iou.set_ylim(0, 1)
    ax_iou.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="training run folder (with history.jsonl)")
    ap.add_argument("-o", "--out", type=Path, default=Path("benchmarks/reports/training_curve.png"))
    args = ap.parse_args(argv)
    history = load_history(args.run)
    plot(history, args.out)
    for r in history:
        evals = {k: round(r[k], 3) for k in EVALS if k in r}
        if evals:
            print(f"{r['stage']:>6} step {r['step']:>5} (crop {r['crop']}): {evals}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
