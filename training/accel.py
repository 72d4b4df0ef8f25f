"""Device-agnostic training helpers: one code path for the CPU and a CUDA GPU.

- ``pick_device``: ``auto`` (CUDA when torch sees a GPU), ``cpu`` or ``cuda`` (refused in one line
  when there is none);
- ``amp_dtype`` / ``autocast`` / ``grad_scaler``: mixed precision through ``torch.autocast``
  (bf16 or fp16) with a ``GradScaler`` only where it is needed (fp16 on CUDA); the loss is
  computed in fp32;
- ``loader``: a DataLoader with worker processes, ``pin_memory`` on CUDA and persistent workers;
  the samples it yields depend only on their index and the seed (each sample / batch seeds its own
  augmentation), so the worker count never changes what the model sees;
- ``gpu_augment``: the paper's augmentations on a batch tensor on the training device (flip,
  scale / shift / rotate, brightness / contrast, noise, blur / sharpen, grayscale), parameters drawn
  from a seeded CPU generator, so the CPU runs exactly the code a GPU runs.
"""
from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
AMP_CHOICES = ("auto", "none", "bf16", "fp16")


def pick_device(name: str = "auto") -> torch.device:
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise SystemExit(f"error: --device {name!r}: use auto, cpu or cuda")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name}: torch {torch.__version__} sees no CUDA GPU "
                         f"(CUDA build: {torch.version.cuda or 'none, a CPU-only wheel'}); use --device cpu")
    return torch.device(name)


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX bf16 tiles (``amx_bf16`` in /proc/cpuinfo's flags), read at run time:
    the host's CPU changes between machines. With AMX, oneDNN runs bf16 convolutions ~3-4x faster
    than fp32 (a U-Net training step on 2 cores: 0.7 s against 2.5 s); without it bf16 is slower."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def amp_dtype(amp: str, dev: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on a GPU that has it, else fp16 on CUDA; on the CPU bf16 only where it has AMX
    (:func:`cpu_has_amx_bf16`), else none (fp32 is faster there). ``bf16`` / ``fp16`` force it (bf16
    autocast also runs on CPUs)."""
    if amp not in AMP_CHOICES:
        raise SystemExit(f"error: --amp {amp!r}: use one of {', '.join(AMP_CHOICES)}")
    if amp == "none":
        return None
    if amp == "auto" and dev.type != "cuda":
        return torch.bfloat16 if dev.type == "cpu" and cpu_has_amx_bf16() else None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and dev.type == "cpu":
        raise SystemExit("error: --amp fp16 is for CUDA; on the CPU use --amp bf16 or none")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(dev: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    return torch.autocast(device_type=dev.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def grad_scaler(dev: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16 and dev.type == "cuda")


def loader(dataset: Any, dev: torch.device, workers: int, batch_size: int | None = None,
           sampler: Any = None) -> torch.utils.data.DataLoader:
    # not persistent: each loader is iterated once (one stage), and a persistent iterator outlives
    # the loop, so its workers were shut down whenever the garbage collector reached it (a
    # segfault at that point was seen in the test process); a plain iterator ends with the loop
    kw: dict[str, Any] = {"num_workers": workers, "pin_memory": dev.type == "cuda"}
    if workers > 0:
        kw["prefetch_factor"] = 4
        # fork() copies a process whose thread pools (ONNX Runtime, OpenVINO's TBB, OpenMP) are running;
        # the copies can deadlock or crash (seen: a segfault after an OpenVINO benchmark in the same
        # process). A spawned worker starts clean, paid once per stage (one iterator per loader).
        kw["multiprocessing_context"] = "spawn"
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, **kw)


def to_device(x: torch.Tensor, y: torch.Tensor, dev: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.to(dev, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(dev, non_blocking=True)


def normalise_uint8(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 BGR -> (N, 3, H, W) float RGB normalised with ImageNet mean / std."""
    x = x.flip(-1).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def gpu_augment(img: torch.Tensor, lab: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch on its device: ``img`` (N, H, W, 3) uint8 BGR, ``lab`` (N, H, W) integer codes.

    Returns the normalised float image batch (N, 3, H, W) and the labels (N, H, W) int64. Random
    parameters come from ``gen`` (a CPU generator): same seed, same batch, on any device; the
    per-pixel noise comes from a generator on the batch's device seeded from ``gen``. Mirrors
    ``training.train.augmenter`` (h-flip 0.5; affine 0.7: scale 0.75..1.3, shift +-10 %, rotate
    +-15 deg, zero fill; noise 0.3; brightness / contrast 0.5; blur or sharpen 0.3; gray 0.15);
    crops are not needed at the full input size.
    """
    n, h, w, _ = img.shape
    dev = img.device

    def u(lo: float, hi: float, size: int = n) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(size, generator=gen)).to(dev)

    def coin(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) < p).to(dev)

    x = img.permute(0, 3, 1, 2).float() / 255.0  # BGR, 0..1
    y = lab.long()
    # geometry: one affine grid per image (identity where not drawn), flip folded into it
    flip = coin(0.5)
    do_aff = coin(0.7)
    scale = torch.where(do_aff, u(0.75, 1.3), torch.ones(n, device=dev))
    ang = torch.where(do_aff, u(-15, 15), torch.zeros(n, device=dev)) * math.pi / 180
    tx = torch.where(do_aff, u(-0.2, 0.2), torch.zeros(n, device=dev))  # grid units: 2 = the image width
    ty = torch.where(do_aff, u(-0.2, 0.2), torch.zeros(n, device=dev))
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    sx = torch.where(flip, -torch.ones(n, device=dev), torch.ones(n, device=dev))
    theta = torch.stack([torch.stack([cos * sx, -sin, tx], 1), torch.stack([sin * sx, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].long()
    # photometric
    bc = coin(0.5)[:, None, None, None]
    alpha = 1 + u(-0.25, 0.25)[:, None, None, None]
    beta = u(-0.25, 0.25)[:, None, None, None]
    x = torch.where(bc, x * alpha + beta, x)
    noise = coin(0.3)[:, None, None, None]
    std = u(0.01, 0.06)[:, None, None, None]
    # the per-pixel noise is drawn on the device, from a generator seeded by ``gen``: drawn on the
    # CPU, its 3 M normals per batch of 16 (~15 ms) held up the training loop between GPU steps
    dev_gen = torch.Generator(device=dev).manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
    eps = torch.randn(x.shape, generator=dev_gen, device=dev)
    x = torch.where(noise, x + std * eps, x)
    kind = torch.rand(n, generator=gen).to(dev)
    filt = coin(0.3)
    blur_k = torch.full((3, 1, 3, 3), 1 / 9, device=dev)
    sharp_k = torch.tensor([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=torch.float32, device=dev).expand(3, 1, 3, 3) * 0.5
    sharp_k = sharp_k + torch.tensor([[0, 0, 0], [0, 0.5, 0], [0, 0, 0]], device=dev)  # half-strength sharpen
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    blurred, sharpened = F.conv2d(xp, blur_k, groups=3), F.conv2d(xp, sharp_k, groups=3)
    x = torch.where((filt & (kind < 0.5))[:, None, None, None], blurred, x)
    x = torch.where((filt & (kind >= 0.5))[:, None, None, None], sharpened, x)
    gray = coin(0.15)[:, None, None, None]
    g = (0.114 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.299 * x[:, 2:3]).expand_as(x)  # BGR weights
    x = torch.where(gray, g, x).clamp(0, 1)
    x = x.flip(1)  # BGR -> RGB
    mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
    sd = torch.tensor(STD, device=dev).view(1, 3, 1, 1)
    return (x - mean) / sd, y


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
