"""One command, one CUDA GPU, no network: the paper-sized recipe on a packed copy of the data.

    python -m training.pack --out runs/smoke5k_256.tar                 # here, where the data is
    python -m training.gpu_run --pack runs/smoke5k_256.tar --out runs/gpu --epochs 20   # on the GPU machine
    python -m training.ship --run runs/gpu                             # back here: the bundled model

Recipe: stage 1, ``--epochs`` (20, the paper's) epochs over every training image of the pack
(real photos + composites, the held-out photos excluded) at the full 256 px, Adam at ``--lr``
(1e-4, the paper's) with a short warm-up and cosine decay, the paper's augmentations
(``training.train.augmenter``: flip, shift / scale / rotate, noise, brightness / contrast,
sharpen / blur, gray; on the GPU with ``--gpu-aug``); stage 2, ``--gas-epochs`` epochs of the
smoke -> gas transfer (``--synth-train`` synthetic gas scenes rendered here, mixed half and half
with smoke replay). The loss is ``training.losses.segmentation_loss`` (partial labels + Dice).

Output in ``--out``: ``weights-00.safetensors``, ... (fp16 state_dict in pieces of at most 16 MB),
``record.json`` (device, torch / CUDA versions, epochs, wall time, images/s, held-out train-photo
smoke IoU, the command), ``history.jsonl`` and ``last.pt`` (resume: rerun the same command).
Every batch is a function of (seed, stage, epoch, batch), so a resumed or re-run job on the CPU
reproduces the same weights; on a GPU, cuDNN's kernels are not bitwise deterministic.
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

import numpy as np
import torch

from training import accel
from training.data import SegData, synthetic_gas
from training.train import add_runtime_args, augmenter, evaluate, train_step


class EpochBatches(torch.utils.data.Dataset):
    """Batch ``b`` of a stage: epoch ``b // per_epoch``; its images are a slice of that epoch's
    seeded permutation, each augmented with its own seed (workers and resumes do not matter).

    Stage 2 mixes: each epoch is every synthetic scene plus as many smoke images drawn at random."""

    def __init__(self, smoke: SegData, synth: SegData | None, batch: int, seed: int, stage: int,
                 gpu_aug: bool) -> None:
        self.smoke, self.synth, self.batch, self.seed, self.stage, self.gpu_aug = smoke, synth, batch, seed, stage, gpu_aug
        self.epoch_len = 2 * len(synth) if synth is not None else len(smoke)
        self.per_epoch = self.epoch_len // batch
        self._aug = None  # albumentations pipeline, built on first use (not with --gpu-aug: PyTorch alone)
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.per_epoch

    def order(self, epoch: int) -> np.ndarray:
        """Indices of one epoch: >= 0 smoke images, < 0 synthetic scenes (-1 - i)."""
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, self.stage, epoch])
            if self.synth is None:
                items = np.arange(len(self.smoke))
            else:
                replay = rng.choice(len(self.smoke), len(self.synth), replace=False)
                items = np.concatenate([replay, -1 - np.arange(len(self.synth))])
            self._perm = (epoch, items[rng.permutation(len(items))])
        return self._perm[1]

    def __getitem__(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, j = divmod(b, self.per_epoch)
        idx = self.order(epoch)[j * self.batch:(j + 1) * self.batch]
        size = self.smoke.images.shape[1]
        if self._aug is None and not self.gpu_aug:
            self._aug = augmenter(size, 0)
        xs, ys = [], []
        for k, i in enumerate(idx):
            img, lab = (self.synth.images[-1 - i], self.synth.labels[-1 - i]) if i < 0 else (self.smoke.images[i], self.smoke.labels[i])
            if self.gpu_aug:
                xs.append(img)
                ys.append(lab)
                continue
            self._aug.set_random_seed(int(np.random.SeedSequence([self.seed, self.stage, b, k]).generate_state(1)[0] >> 1))
            out = self._aug(image=img, mask=lab)
            xs.append(out["image"])
            ys.append(out["mask"])
        x, y = np.stack(xs), np.stack(ys)
        if self.gpu_aug:
            return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
        x = (x[..., ::-1].astype(np.float32) / 255.0 - np.float32(accel.MEAN)) / np.float32(accel.STD)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y.astype(np.int64))


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def host_record(dev: torch.device) -> dict:
    rec = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "platform": platform.platform(), "cpu_count": __import__("os").cpu_count(), "device": str(dev)}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        rec.update({"gpu": p.name, "gpu_memory_gb": round(p.total_memory / 2**30, 1),
                    "cudnn": torch.backends.cudnn.version(), "driver_cuda": torch.version.cuda})
    return rec


def run(args: argparse.Namespace, log=print) -> dict:
    from training.pack import read_pack
    from training.shards import save_pieces
    from export.model import UNetResNet18

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    dev = accel.pick_device(args.device)
    amp = accel.amp_dtype(args.amp, dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    t_load = time.time()
    smoke, held, manifest = read_pack(args.pack)
    synth = synthetic_gas(args.synth_train, seed=10_000, size=manifest["size"]) if args.gas_epochs else None
    log(f"pack {args.pack}: {len(smoke)} training images, {len(held)} held-out train photos, "
        f"{manifest['size']} px; {args.synth_train if synth is not None else 0} synthetic gas scenes; "
        f"loaded in {time.time() - t_load:.0f}s")
    torch.manual_seed(args.seed)
    model = UNetResNet18(classes=3, activation="softmax")
    state_path = out / "last.pt"
    if args.encoder_weights and not state_path.is_file():
        from training.encoder_weights import load_encoder_weights

        log(load_encoder_weights(model, args.encoder_weights))
    model = model.to(dev)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    stages = [("smoke", args.epochs, None), ("gas", args.gas_epochs, synth)]
    state: dict = {"stage": 0, "batch": 0, "train_s": 0.0, "images": 0, "opt": None, "scaler": None, "wall_s": 0.0}
    if state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        state.update({k: st[k] for k in ("stage", "batch", "train_s", "images", "opt", "scaler", "wall_s")})
        if state["stage"] >= len(stages) and (out / "record.json").is_file():
            log(f"{out} is finished already (record.json); remove {state_path} to train again")
            return json.loads((out / "record.json").read_text())
        log(f"resuming from {state_path}: stage {state['stage'] + 1} batch {state['batch']}")
    wall_before = state["wall_s"]  # wall time of earlier, interrupted invocations

    def wall() -> float:
        return wall_before + time.time() - args.t_start

    log(f"device {dev} ({host_record(dev).get('gpu', 'CPU')}), amp {amp or 'off'}, channels_last "
        f"{args.channels_last}, workers {args.workers}, augmentation on {'the device' if args.gpu_aug else 'the CPU'}")
    hist = out / "history.jsonl"
    model.train()
    for si, (name, epochs, extra) in enumerate(stages):
        if si < state["stage"] or epochs == 0:
            continue
        batches = EpochBatches(smoke, extra, args.batch, args.seed, si, args.gpu_aug)
        total = batches.per_epoch * epochs
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        scaler = accel.grad_scaler(dev, amp)
        b0 = state["batch"] if si == state["stage"] else 0
        if si == state["stage"] and state["opt"] is not None:
            opt.load_state_dict(state["opt"])
            if state["scaler"]:
                scaler.load_state_dict(state["scaler"])
        data = accel.loader(batches, dev, args.workers, sampler=range(b0, total))
        warmup = min(200, total // 10 + 1)

        def save(b: int) -> None:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "scaler": scaler.state_dict(),
                        "stage": si, "batch": b, "train_s": state["train_s"], "images": state["images"],
                        "wall_s": wall()}, state_path)

        b, t_mark, losses = b0, time.time(), []
        for x, y in data:
            for g in opt.param_groups:
                g["lr"] = lr_at(b, total, args.lr, warmup)
            loss = train_step(model, opt, scaler, x, y, dev, amp, (args.seed, si, b) if args.gpu_aug else None,
                              args.channels_last)
            losses.append(loss.detach())
            b += 1
            state["images"] += x.shape[0]
            if b % batches.per_epoch == 0 or b == total or b % args.ckpt_every == 0:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                state["train_s"] += time.time() - t_mark
                rec = {"stage": name, "epoch": b / batches.per_epoch, "batch": b,
                       "loss": float(torch.stack(losses).mean()) if losses else None,
                       "lr": opt.param_groups[0]["lr"], "train_s": round(state["train_s"], 1)}
                losses = []
                if b % batches.per_epoch == 0 or b == total:
                    rec["holdout_smoke_iou"] = evaluate(model, held)["per_class"]["gas-smoke"]["iou_dataset"] if len(held) else None
                save(b)
                with hist.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                log(json.dumps(rec))
                t_mark = time.time()
        state.update({"stage": si + 1, "batch": 0, "opt": None, "scaler": None})
        torch.save({"model": model.state_dict(), "opt": None, "scaler": None, "stage": si + 1, "batch": 0,
                    "train_s": state["train_s"], "images": state["images"], "wall_s": wall()}, state_path)
    pieces = save_pieces(model.state_dict(), out)
    held_iou = evaluate(model, held)["per_class"]["gas-smoke"]["iou_dataset"] if len(held) else None
    host = host_record(dev)
    hardware = (f"1 {host['gpu']} GPU" if dev.type == "cuda" else f"{host['cpu_count']} CPU cores")
    record = {
        "command": "python -m training.gpu_run " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if args.command is None else args.command,
        "hardware": hardware, "host": host,
        "epochs": {"smoke": args.epochs, "gas": args.gas_epochs},
        "wall_s": round(wall(), 1),
        "train_s": round(state["train_s"], 1),
        "images_seen": state["images"],
        "images_per_s": round(state["images"] / max(state["train_s"], 1e-9), 1),
        "heldout_smoke_iou_argmax": held_iou, "heldout_images": len(held),
        "pack": {"file": Path(args.pack).name, "images": manifest["images"], "size": manifest["size"],
                 "bytes": Path(args.pack).stat().st_size, "quality": manifest["quality"]},
        "weights": [{"file": p.name, "bytes": p.stat().st_size} for p in pieces],
        "config": {"epochs": args.epochs, "gas_epochs": args.gas_epochs, "batch": args.batch, "lr": args.lr,
                   "optimizer": "Adam", "seed": args.seed, "synth_train": args.synth_train, "amp": str(amp),
                   "channels_last": args.channels_last, "gpu_aug": args.gpu_aug, "workers": args.workers,
                   "encoder_weights": args.encoder_weights, "size": manifest["size"]},
    }
    (out / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", type=Path, required=True, help="a training.pack file")
    ap.add_argument("--out", type=Path, default=Path("runs/gpu"))
    ap.add_argument("--epochs", type=int, default=20, help="smoke epochs over every training image (paper: 20)")
    ap.add_argument("--gas-epochs", type=int, default=2, help="gas-transfer epochs (synthetic scenes + smoke replay)")
    ap.add_argument("--synth-train", type=int, default=1500, help="synthetic gas scenes (seeds 10000..)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper: 1e-4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every", type=int, default=500, help="batches between checkpoints (and every epoch)")
    add_runtime_args(ap)
    ap.set_defaults(workers=min(8, __import__("os").cpu_count() or 1))
    args = ap.parse_args(argv)
    args.t_start = time.time()
    args.command = None if argv is None else "python -m training.gpu_run " + " ".join(shlex.quote(a) for a in argv)
    rec = run(args)
    print(f"done: {rec['hardware']}, {rec['wall_s'] / 60:.1f} min wall ({rec['images_per_s']:.0f} images/s training), "
          f"held-out train-photo smoke IoU {rec['heldout_smoke_iou_argmax']}; weights "
          + ", ".join(w["file"] for w in rec["weights"]) + f" + record.json in {args.out}")


if __name__ == "__main__":
    main()
