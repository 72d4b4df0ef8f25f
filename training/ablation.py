"""Final-activation ablation in the spirit of the paper's Table 1 (linear / sigmoid / softmax).

Same network, data, seed, steps and loss for every variant; only the activation differs. The
loss must exist for all three, so it is the one the paper's linear head can also use: mean
squared error to one-hot targets plus soft Dice, both on the *activated* output. Trained on
synthetic gas scenes (3 classes) and scored on a held-out synthetic set with argmax masks,
per-image averaged like the paper. Small budget (minutes per variant on 2 cores), so compare
the variants with each other, not with the shipped model.

    python -m training.ablation --steps 300 --out runs/ablation
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import albumentations as A
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export.model import UNetResNet18
from training.data import synthetic_gas
from training.train import MEAN, STD, evaluate

ACTIVATIONS = ("none", "sigmoid", "softmax")
PAPER = {"none": (0.342, 0.470), "sigmoid": (0.809, 0.891), "softmax": (0.845, 0.911)}


def activated_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE to one-hot + (1 - mean soft Dice over classes), on the activated output."""
    onehot = F.one_hot(target, out.shape[1]).permute(0, 3, 1, 2).float()
    mse = F.mse_loss(out, onehot)
    inter = (out * onehot).sum((0, 2, 3))
    dice = (2 * inter + 1) / (out.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
    return mse + (1 - dice.mean())


def run_variant(activation: str, train_data, test_data, steps: int, crop: int, batch: int,
                seed: int = 0) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = UNetResNet18(3, activation).to(memory_format=torch.channels_last)  # type: ignore[arg-type]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    aug = A.Compose([A.HorizontalFlip(), A.RandomCrop(crop, crop)], seed=seed)  # its own RNG: seed it too
    t0 = time.time()
    model.train()
    for _ in tqdm(range(steps), desc=f"ablation {activation}", unit="step"):
        idx = rng.integers(len(train_data), size=batch)
        outs = [aug(image=train_data.images[i], mask=train_data.labels[i]) for i in idx]
        x = (np.stack([o["image"] for o in outs])[..., ::-1].astype(np.float32) / 255 - MEAN) / STD
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(np.stack([o["mask"] for o in outs]).astype(np.int64))
        loss = activated_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.time() - t0
    s = evaluate(model, test_data)
    return {"activation": activation, "seed": seed, "steps": steps, "train_s": round(train_s, 1),
            "miou_per_image": s["mean_iou_per_image"], "mf1_per_image": s["mean_f1_per_image"],
            "miou_dataset": s["mean_iou_dataset"], "final_loss": loss.item()}


def _cell(values: list[float]) -> str:
    mean = sum(values) / len(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ({min(values):.3f}–{max(values):.3f})"


def ablation_table(rows: list[dict]) -> str:
    """Markdown: per activation, mean IoU / F1 over the seeds run (range in brackets), beside the paper."""
    n = len({r.get("seed", 0) for r in rows})
    over = "" if n == 1 else f", {n} seeds (range)"
    lines = [f"| final activation | ours: mean IoU{over} | ours: mean F1{over} | paper: mean IoU | paper: mean F1 |",
             "|---|---|---|---|---|"]
    for act in ACTIVATIONS:
        mine = [r for r in rows if r["activation"] == act]
        if not mine:
            continue
        p = PAPER[act]
        name = "linear" if act == "none" else act
        lines.append(f"| {name} | {_cell([r['miou_per_image'] for r in mine])} | "
                     f"{_cell([r['mf1_per_image'] for r in mine])} | {p[0]:.3f} | {p[1]:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train-scenes", type=int, default=600)
    ap.add_argument("--test-scenes", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="one run per seed and activation; with several, the table shows mean and range "
                         "(at a few hundred steps from scratch the seed moves scores by more than the "
                         "activation may)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_data = synthetic_gas(args.train_scenes, seed=20_000)
    test_data = synthetic_gas(args.test_scenes, seed=900_000)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [run_variant(a, train_data, test_data, args.steps, args.crop, args.batch, seed)
            for seed in args.seeds for a in ACTIVATIONS]
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2))
    table = ablation_table(rows)
    (args.out / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
