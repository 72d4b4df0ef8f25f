"""Fine-tune the bundled model for thermal (IR) gas on real IR backgrounds, keeping real smoke.

    # CPU, in the background, time-boxed; the recipe that passed the gate (round 3, docs/model-card-ir.md):
    nohup python -m training.ir_finetune --out runs/ir-finetune3 --minutes 60 --threads 2 --distill 1.0 \
        --smoke 0.35 --plumes 0.3 --raw-negatives 0.5 --lr 1e-4 --seed 25 > runs/ir-finetune3.out 2>&1 &
    # the same recipe as one prepared GPU call (longer; carry data/ir and a SMOKE5K pack):
    python -m training.ir_finetune --out runs/ir-gpu --device cuda --minutes 8 --batch 32 --workers 12 \
        --threads 4 --distill 1.0 --smoke-pack runs/smoke5k_256.tar
    python -m training.ir_ship --candidate runs/ir-finetune/model.onnx     # measure + gate + ship

Start: the bundled weights (``training.onnx_weights.load_onnx``: BatchNorm folded, so every
BatchNorm layer stays in eval mode). Each batch (a pure function of ``--seed`` and the step, so a
resumed run draws the same batches) mixes:

- ``--smoke`` (0.4) real smoke: SMOKE5K train (real photos + composites, the held-out every-10th
  real photo excluded), flipped / cropped (keeps the model from forgetting real smoke);
- ``--plumes`` (0.4) IR gas: ``training.ir_plumes.render_ir`` on the HIT-UAV training
  backgrounds (``data/ir/train``), seeds ``TRAIN_SEED + ...``, labels from the rendered density;
- the rest, real IR hard negatives: HIT-UAV frames without gas (people, cars, buildings, roads),
  through the same camera model (white-hot / black-hot / colour palettes = palette switches and
  inverted palettes, AGC, fixed-pattern noise), half of them with added hot / cold blobs; every
  pixel "not gas".

Loss ``training.losses.segmentation_loss``; Adam, warm-up then cosine decay over the *time* box
(the LR schedule follows elapsed time / ``--minutes``, so a shorter or slower run still anneals).
Output ``OUT/``: ``log.jsonl`` (one line per step), ``last.pt`` (resume: rerun the same command),
``model.onnx`` (verified export with the SDK metadata), ``record.json`` (recipe, steps, wall time,
host).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from training.data import NOT_LEAK, SegData

TRAIN_SEED = 1_000_000  # IR composites for training use seeds >= this; ir_eval uses other seeds + other backgrounds
CLASSES = ["background", "gas-smoke", "machine"]


class MixBatches(torch.utils.data.Dataset):
    """Batch ``step``: a seeded mix of smoke photos, IR plume composites and IR hard negatives."""

    def __init__(self, smoke: SegData, ir_backgrounds: list[np.ndarray], batch: int, seed: int,
                 p_smoke: float, p_plume: float, crop: int = 256, p_raw: float = 0.0) -> None:
        self.smoke, self.bgs, self.batch, self.seed = smoke, ir_backgrounds, batch, seed
        self.p_raw = p_raw
        self.p_smoke, self.p_plume, self.crop = p_smoke, p_plume, crop

    def __len__(self) -> int:
        return 10 ** 9

    def kinds(self, step: int) -> list[str]:
        rng = np.random.default_rng([self.seed, step, 1])
        u = rng.random(self.batch)
        return ["smoke" if v < self.p_smoke else "plume" if v < self.p_smoke + self.p_plume else "negative" for v in u]

    def sample(self, step: int, k: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
        from training.ir_plumes import render_ir

        rng = np.random.default_rng([self.seed, step, k, 2])
        if kind == "smoke":
            i = int(rng.integers(len(self.smoke)))
            img, lab = self.smoke.images[i], self.smoke.labels[i]
            if rng.random() < 0.5:
                img, lab = img[:, ::-1], lab[:, ::-1]
            if rng.random() < 0.15:  # gray, as a thermal camera shows the world
                img = cv2.cvtColor(cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        else:
            seed = TRAIN_SEED + (self.seed * 10_000_000 + step * 64 + k) % 100_000_000
            bg = self.bgs[int(rng.integers(len(self.bgs)))]
            if kind == "plume":
                img, lab = render_ir(bg, seed)
            elif rng.random() < self.p_raw:  # the real frame as a camera outputs it: white-hot, black-hot or a colour map
                from training.ir_plumes import PALETTES, apply_palette

                h, w = bg.shape
                side = int(min(h, w) * rng.uniform(0.6, 1.0))
                y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
                g = cv2.resize(bg[y0:y0 + side, x0:x0 + side], (self.crop, self.crop), interpolation=cv2.INTER_AREA)
                img = apply_palette(g, str(rng.choice(PALETTES, p=[0.4, 0.4, 0.1, 0.05, 0.05])))
                lab = np.full(img.shape[:2], NOT_LEAK, np.uint8)
            else:
                img, _ = render_ir(bg, seed, p_no_leak=1.0, blobs=int(rng.integers(0, 2) * rng.integers(1, 6)))
                lab = np.full(img.shape[:2], NOT_LEAK, np.uint8)
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        from training.train import MEAN, STD

        pairs = [self.sample(step, k, kind) for k, kind in enumerate(self.kinds(step))]
        x = np.stack([p[0] for p in pairs])
        y = np.stack([p[1] for p in pairs])
        x = (x[..., ::-1].astype(np.float32) / 255.0 - MEAN) / STD
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y.astype(np.int64))


def lr_at(frac: float, peak: float, warm: float = 0.03) -> float:
    if frac < warm:
        return peak * max(frac / warm, 0.05)
    t = min(1.0, (frac - warm) / (1 - warm))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def distill_loss(teacher: torch.nn.Module, logits: torch.Tensor, x: torch.Tensor, rows: list[int],
                 dev: torch.device, amp: object) -> torch.Tensor:
    """KL(teacher || student) per pixel on the batch's smoke photos (learning without forgetting).

    Why: every earlier IR round lost SMOKE5K val IoU (0.647 -> 0.603-0.613) although a share of each
    batch was labelled smoke; the labels say where smoke is, the starting model's softmax also says
    how sure it was everywhere else, which is what the ship gate's smoke threshold depends on."""
    from training import accel

    idx = torch.tensor(rows, device=dev)
    with torch.no_grad(), accel.autocast(dev, amp):
        target = torch.softmax(teacher.logits(x.index_select(0, idx)).float(), dim=1)
    student = torch.log_softmax(logits.index_select(0, idx).float(), dim=1)
    return torch.nn.functional.kl_div(student, target, reduction="none").sum(dim=1).mean()


def load_smoke(args: argparse.Namespace) -> SegData:
    from training.data import load_folder, split_holdout

    if args.smoke_pack:
        from training.pack import read_pack

        train, _, _ = read_pack(args.smoke_pack)
        return train
    train, _ = split_holdout(load_folder(args.data / "train"))
    return train


def export(model: torch.nn.Module, out: Path) -> Path:
    from export.onnx_export import DEFAULT_MEAN, DEFAULT_STD, build_metadata, export_onnx

    meta = build_metadata(CLASSES, "softmax", (256, 256), DEFAULT_MEAN, DEFAULT_STD, "", "last.pt")
    export_onnx(model.eval().float().cpu(), out, meta)
    return out


def run(args: argparse.Namespace) -> dict:
    from training import accel
    from training.ir_backgrounds import files
    from training.ir_plumes import read_gray
    from training.losses import segmentation_loss
    from training.onnx_weights import BUNDLED, freeze_bn, load_onnx

    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    dev = accel.pick_device(args.device)
    amp = accel.amp_dtype(args.amp, dev)
    logf = (out / "log.jsonl").open("a")

    def log(rec: dict) -> None:
        logf.write(json.dumps(rec) + "\n")
        logf.flush()

    t_load = time.time()
    smoke = load_smoke(args)
    bgs = [read_gray(p) for p in files("train")]
    model = load_onnx(args.init)
    if args.init_ckpt is not None:  # a later round: start from an earlier run's weights (last.pt)
        model.load_state_dict(torch.load(args.init_ckpt, map_location="cpu", weights_only=True)["model"])
    model.to(dev).to(memory_format=torch.channels_last)
    teacher = None
    if args.distill > 0:  # the starting model, frozen: its answers on the smoke photos are kept (below)
        teacher = load_onnx(args.init).to(dev).to(memory_format=torch.channels_last).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    step, spent = 0, 0.0
    ckpt = out / "last.pt"
    if ckpt.is_file():
        st = torch.load(ckpt, map_location=dev, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, spent = int(st["step"]), float(st["elapsed_s"])
        print(f"resumed at step {step} ({spent:.0f}s spent)", flush=True)
    log({"event": "start", "step": step, "elapsed_s": spent, "load_s": round(time.time() - t_load, 1),
         "smoke_images": len(smoke), "ir_backgrounds": len(bgs), "device": str(dev)})
    ds = MixBatches(smoke, bgs, args.batch, args.seed, args.smoke, args.plumes, p_raw=args.raw_negatives)
    sampler = range(step, 10 ** 9)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=sampler, num_workers=args.workers,
                                         persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers else None)
    budget = args.minutes * 60
    scaler = torch.amp.GradScaler(enabled=amp == torch.float16)
    t0 = time.time() - spent

    def save() -> None:
        tmp = out / "last.pt.tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed_s": time.time() - t0}, tmp)
        tmp.replace(ckpt)

    for x, y in loader:
        frac = (time.time() - t0) / budget
        if frac >= 1.0 or (args.steps and step >= args.steps):
            break
        if args.steps:  # a step count anneals over the steps: the same schedule on any hardware
            frac = step / args.steps
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, args.lr)
        model.train()
        freeze_bn(model)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN on CPU too (training.train.Runtime)
        with accel.autocast(dev, amp):
            logits = model.logits(x)
        loss = segmentation_loss(logits.float(), y)
        kinds = ds.kinds(step)
        smoke_rows = [i for i, kind in enumerate(kinds) if kind == "smoke"]
        if teacher is not None and smoke_rows:
            loss = loss + args.distill * distill_loss(teacher, logits, x, smoke_rows, dev, amp)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        step += 1
        log({"step": step, "elapsed_s": round(time.time() - t0, 2), "loss": round(loss.item(), 5),
             "lr": round(opt.param_groups[0]["lr"], 8), "smoke": kinds.count("smoke"), "plume": kinds.count("plume"),
             "negative": kinds.count("negative")})
        if step % args.ckpt_every == 0:
            save()
    save()
    wall = time.time() - t0
    model.eval()
    export(model, out / "model.onnx")
    rec = {"command": "python -m training.ir_finetune " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
           "init": str(args.init), "init_ckpt": str(args.init_ckpt) if args.init_ckpt else None,
           "raw_negatives": args.raw_negatives, "distill": args.distill, "steps": step, "batch": args.batch, "images": step * args.batch,
           "minutes": round(wall / 60, 2), "lr": args.lr, "mix": {"smoke": args.smoke, "plumes": args.plumes,
           "negatives": round(1 - args.smoke - args.plumes, 3)}, "seed": args.seed, "threads": args.threads,
           "device": str(dev), "amp": str(amp), "workers": args.workers, "smoke_images": len(smoke),
           "ir_backgrounds": len(bgs), "host": {"python": platform.python_version(), "torch": torch.__version__,
           "platform": platform.platform(), "processor": platform.processor()}}
    if dev.type == "cuda":
        rec["host"]["gpu"] = torch.cuda.get_device_name(dev)
    (out / "record.json").write_text(json.dumps(rec, indent=2))
    log({"event": "done", "step": step, "elapsed_s": round(wall, 1)})
    print(json.dumps(rec), flush=True)
    return rec


def main(argv: list[str] | None = None) -> None:
    from training.onnx_weights import BUNDLED
    from training.train import DATA_ROOT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", type=Path, default=BUNDLED, help="ONNX model to start from (the bundled one)")
    ap.add_argument("--data", type=Path, default=DATA_ROOT, help="SMOKE5K root (train/ val/)")
    ap.add_argument("--smoke-pack", type=Path, default=None, help="training.pack tar instead of --data (GPU machine)")
    ap.add_argument("--init-ckpt", type=Path, default=None, help="start from an earlier run's last.pt (after --init)")
    ap.add_argument("--raw-negatives", type=float, default=0.0,
                    help="share of the hard negatives shown as the raw frame (palette only, no camera model)")
    ap.add_argument("--distill", type=float, default=0.0,
                    help="weight of KL to the starting model's softmax on the smoke photos (keeps real smoke; 0: off)")
    ap.add_argument("--out", type=Path, default=Path("runs/ir-finetune"))
    ap.add_argument("--minutes", type=float, default=35.0, help="wall-time box (the LR anneals over it)")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps too, and anneal the LR over them instead of the time "
                    "box (the same schedule on any hardware; 0: time box only)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--smoke", type=float, default=0.4, help="share of real smoke photos per batch")
    ap.add_argument("--plumes", type=float, default=0.4, help="share of IR plume composites (rest: IR negatives)")
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--ckpt-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: leave a core free)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader processes rendering batches (GPU: 8-12)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--amp", default="auto", help="auto (bf16 on CUDA, none on CPU) | none | bf16 | fp16")
    run(ap.parse_args(argv))


if __name__ == "__main__":
    main()
