"""Datasets for training: any ``img/`` + ``gt/`` folder pair, cached in RAM at model resolution.

Two label layouts are read:
- binary masks (0 / 255, e.g. SMOKE5K): smoke vs *not smoke*. Not-smoke is stored as
  ``NOT_LEAK`` (3), not as background, because a real photo's "not smoke" may well contain
  machines; the loss then supervises p(gas-smoke) against p(background) + p(machine).
- class-id PNGs (0 background, 1 gas-smoke, 2 machine), e.g. the synthetic gas scenes.

Everything is resized to the model's input size once (exactly what the SDK's "resize"
preprocessing does at inference), so training sees objects at the scale it will meet them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeseg.core.files import is_image, list_images

NOT_LEAK = 3  # "background or machine": only the leak probability is supervised
CACHE_DIR = Path.home() / ".cache" / "edgeseg"


@dataclass
class SegData:
    """Images (N,H,W,3 uint8 BGR), labels (N,H,W uint8 in 0..3), and a per-image 'real' flag."""

    images: np.ndarray
    labels: np.ndarray
    real: np.ndarray  # bool: photo (not a 256x256 composite); used to oversample real photos
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)


def pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of ``folder/img`` and ``folder/gt`` matched by file stem."""
    folder = Path(folder)
    img_dir, gt_dir = folder / "img", folder / "gt"
    if not img_dir.is_dir() or not gt_dir.is_dir():
        raise FileNotFoundError(f"{folder}: expected img/ and gt/ subfolders")
    masks = {p.stem: p for p in list_images(gt_dir)}
    out = [(p, masks[p.stem]) for p in sorted(img_dir.iterdir())
           if is_image(p) and p.stem in masks]
    if not out:
        raise FileNotFoundError(f"{folder}: no image/mask pairs with matching names")
    return out


def read_label(path: Path, layout: str) -> np.ndarray:
    """Mask file -> label codes. ``layout``: 'binary' (0/255) or 'classes' (0/1/2 ids)."""
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise ValueError(f"unreadable mask {path}")
    if layout == "binary":
        return np.where(m > 127, 1, NOT_LEAK).astype(np.uint8)
    return m.astype(np.uint8)


def load_folder(
    folder: str | Path, size: int = 256, layout: str = "binary", cache: bool = True
) -> SegData:
    """Load (and cache as .npz) a folder at ``size`` x ``size``. Labels resized nearest."""
    folder = Path(folder)
    items = pairs(folder)
    key = hashlib.sha1(f"{folder.resolve()}|{len(items)}|{size}|{layout}".encode()).hexdigest()[:12]
    cache_file = CACHE_DIR / f"{folder.name}-{key}.npz"
    if cache and cache_file.is_file():
        z = np.load(cache_file)
        return SegData(z["images"], z["labels"], z["real"], [p.stem for p, _ in items])
    images = np.empty((len(items), size, size, 3), np.uint8)
    labels = np.empty((len(items), size, size), np.uint8)
    real = np.zeros(len(items), bool)
    for i, (ip, mp) in enumerate(items):
        img = cv2.imread(str(ip), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable image {ip}")
        real[i] = img.shape[:2] != (size, size)
        images[i] = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        labels[i] = cv2.resize(read_label(mp, layout), (size, size), interpolation=cv2.INTER_NEAREST)
    if cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, images=images, labels=labels, real=real)
    return SegData(images, labels, real, [p.stem for p, _ in items])


def synthetic_gas(count: int, seed: int, size: int = 256) -> SegData:
    """Render ``count`` synthetic gas scenes (class ids 0/1/2) in memory."""
    from training.synth import render_scene

    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.empty((count, size, size), np.uint8)
    for i in range(count):
        images[i], labels[i] = render_scene(seed + i, (size, size))
    return SegData(images, labels, np.zeros(count, bool), [f"synth{seed + i}" for i in range(count)])


def subset(data: SegData, idx: np.ndarray) -> SegData:
    return SegData(data.images[idx], data.labels[idx], data.real[idx], [data.names[i] for i in idx])


def split_holdout(data: SegData, every: int = 10) -> tuple[SegData, SegData]:
    """Hold out every ``every``-th real photo: a validation set drawn from the *training*
    folder, so choices (threshold, checkpoint) never look at the reported val/test images."""
    real = np.flatnonzero(data.real)
    held = real[::every]
    keep = np.setdiff1d(np.arange(len(data)), held)
    return subset(data, keep), subset(data, held)
