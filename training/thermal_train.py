"""Train the thermal model: the same ResNet-18 U-Net on temporal input (``edgeseg.runtime.temporal``).

    python -m training.thermal_train --out runs/thermal --minutes 45 --steps 900 --threads 2     # 2 CPU cores
    python -m training.thermal_train --out runs/thermal --device cuda --steps 6000 --batch 24     # a lent GPU

Starts from the bundled model's weights (``training.onnx_weights``); each step renders ``--batch`` clips
of ``CLIP`` frames (``training.thermal_video``: two of three without gas, every kind of motion that is
not gas), runs them through one fresh :class:`~edgeseg.runtime.temporal.TemporalState` each (the code
the SDK runs), and trains on two frames per clip: the last one and one earlier (so the network also
sees a history that has just started, as after a reconnect or a scene cut). The learning rate anneals
(cosine) over ``--steps``, so a time-boxed run and a full run follow the same schedule; ``--minutes``
stops early. Every ``--save-every`` steps ``last.pt`` is written, and a run restarts from it with
``--resume``. At the end: ``model.onnx`` (fp32, metadata ``input: temporal-v1``, ``camera_kind:
thermal``), ``record.json`` and ``log.jsonl`` in ``--out``. Then ``python -m training.thermal_gate``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from edgeseg.runtime import temporal
from training.accel import AMP_CHOICES

CLIP = 10
TRAIN_SEED = 5_000_000
P_LEAK = 1 / 3


def batch(bgs: list[np.ndarray], step: int, size: int, seed: int, n: int,
          p_leak: float = P_LEAK) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clips -> 2n network inputs (normalised NCHW) and labels, deterministic in (seed, step)."""
    from training.thermal_video import render_clip
    from training.train import MEAN, STD

    xs, ys = [], []
    for k in range(n):
        rng = np.random.default_rng([seed, step, k])
        frames, labels = render_clip(bgs[int(rng.integers(len(bgs)))], TRAIN_SEED + step * 997 + k, CLIP, size,
                                     leak=bool(rng.random() < p_leak))
        stack = temporal.clip_input(frames, (size, size))
        for t in (CLIP - 1, int(rng.integers(1, CLIP - 1))):
            xs.append(stack[t])
            ys.append(labels[t])
    x = (np.stack(xs)[..., ::-1].astype(np.float32) / 255.0 - MEAN) / STD
    return (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
            torch.from_numpy(np.stack(ys).astype(np.int64)))


def metadata(record: dict) -> dict[str, str]:
    """The exported model's metadata: what the SDK needs to feed it (input kind, temporal settings)."""
    from export.onnx_export import DEFAULT_MEAN, DEFAULT_STD, build_metadata

    meta = build_metadata(["background", "gas-smoke", "machine"], "softmax", (256, 256), DEFAULT_MEAN, DEFAULT_STD,
                          "", "last.pt")
    meta.update({"input": temporal.TEMPORAL_V1, "camera_kind": "thermal",
                 "temporal": json.dumps({"alpha": temporal.ALPHA, "window": temporal.WINDOW, "cut": temporal.CUT,
                                         "gain_diff": temporal.GAIN_DIFF, "gain_std": temporal.GAIN_STD}),
                 "training": json.dumps({k: record[k] for k in ("command", "steps", "minutes", "device")})})
    return meta


def train(args: argparse.Namespace) -> dict:
    from training.accel import amp_dtype
    from training.ir_backgrounds import files
    from training.ir_plumes import read_gray
    from training.losses import segmentation_loss
    from training.onnx_weights import freeze_bn, load_onnx

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = load_onnx(args.init) if args.init.suffix == ".onnx" else load_onnx()
    start = 0
    ckpt = out / "last.pt"
    if args.resume and ckpt.is_file():
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        start = int(st["step"])
    elif args.init.suffix == ".pt":
        st = torch.load(args.init, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"] if "model" in st else st)
    device = torch.device(args.device)
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    amp = amp_dtype(args.amp, device)
    print(f"device {device}, mixed precision: {amp or 'none (fp32)'}", flush=True)
    bgs = [read_gray(p) for p in files("train")]
    log = (out / "log.jsonl").open("a")
    t0, step, budget = time.time(), start, args.minutes * 60
    try:
        from tqdm import tqdm
        bar = tqdm(total=args.steps, initial=start, desc="thermal", unit="step", mininterval=30)
    except ImportError:  # the train extra brings tqdm; without it, the log is the progress
        bar = None
    while step < args.steps and time.time() - t0 < budget:
        x, y = batch(bgs, step, 256, args.seed, args.batch, args.p_leak)
        lr = args.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        freeze_bn(model)
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = model.logits(x.to(device).contiguous(memory_format=torch.channels_last))
        loss = segmentation_loss(logits.float(), y.to(device), leak_weight=args.leak_weight,
                                 instance_weight=args.instance_dice)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        log.write(json.dumps({"step": step, "elapsed_s": round(time.time() - t0, 1), "loss": round(loss.item(), 5),
                              "lr": round(lr, 7)}) + "\n")
        log.flush()
        if bar is not None:
            bar.update(1)
        if step % args.save_every == 0:
            torch.save({"model": model.state_dict(), "step": step}, ckpt)
    wall = time.time() - t0
    torch.save({"model": model.state_dict(), "step": step}, ckpt)
    record = {"command": "python -m training.thermal_train " + " ".join(args.argv), "init": str(args.init),
              "steps": step, "steps_planned": args.steps, "batch_clips": args.batch, "clip_frames": CLIP,
              "images_per_step": 2 * args.batch, "minutes": round(wall / 60, 2), "lr": args.lr, "seed": args.seed,
              "p_leak": args.p_leak, "leak_weight": args.leak_weight, "instance_dice": args.instance_dice,
              "device": args.device, "threads": args.threads,
              "amp": str(amp).replace("torch.", "") if amp else "none",
              "data": "HIT-UAV train frames (training/ir_sources.json, CC BY 4.0) made into clips by "
                      "training.thermal_video; rendered plumes; no filmed gas",
              "host": {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine()}}
    from export.onnx_export import export_onnx

    export_onnx(model.float().cpu().eval(), out / "model.onnx", metadata(record))
    (out / "record.json").write_text(json.dumps(record, indent=1))
    print(f"{step} steps in {wall / 60:.1f} min -> {out / 'model.onnx'}")
    return record


def main(argv: list[str] | None = None) -> None:
    import sys

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/thermal"))
    ap.add_argument("--init", type=Path, default=Path("bundled.onnx"),
                    help="start weights: an .onnx (default: the bundled model) or a .pt checkpoint")
    ap.add_argument("--steps", type=int, default=900, help="the schedule's length (the LR anneals over it)")
    ap.add_argument("--minutes", type=float, default=45.0, help="stop earlier than --steps after this long")
    ap.add_argument("--batch", type=int, default=6, help="clips per step (two frames each)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--p-leak", type=float, default=P_LEAK,
                    help="share of clips with a rendered plume (the rest: motion that is not gas)")
    ap.add_argument("--leak-weight", type=float, default=1.0,
                    help="weight of gas pixels in the NLL: >1 trades leak-free quiet for faint-plume recall")
    ap.add_argument("--instance-dice", type=float, default=0.0,
                    help="weight of a per-image Dice on gas (every plume counts the same, small ones too)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="auto", choices=AMP_CHOICES,
                    help="mixed precision: auto = bf16 on CUDA and on CPUs with AMX (read from /proc/cpuinfo), "
                         "else fp32; the loss is always fp32")
    ap.add_argument("--seed", type=int, default=38)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    ap.add_argument("--export", type=Path, default=None, metavar="CKPT",
                    help="only export CKPT (e.g. a running run's last.pt) to OUT/model.onnx, for an early look")
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.init.name == "bundled.onnx":
        from training.onnx_weights import BUNDLED

        args.init = BUNDLED
    if args.export is not None:
        export_checkpoint(args.export, args.out)
        return
    train(args)


def export_checkpoint(ckpt: Path, out: Path) -> Path:
    """A checkpoint's weights as OUT/model.onnx with the temporal metadata (no training)."""
    from export.onnx_export import export_onnx
    from training.onnx_weights import load_onnx

    model = load_onnx()
    st = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(st["model"])
    out.mkdir(parents=True, exist_ok=True)
    rec = {"command": f"python -m training.thermal_train --export {ckpt}", "steps": int(st["step"]), "minutes": None,
           "device": "cpu"}
    return export_onnx(model.eval(), out / "model.onnx", metadata(rec))


if __name__ == "__main__":
    main()
