"""Accuracy of a model through the *whole SDK pipeline* (preprocess -> backend -> postprocess).

Scores come from ``edgeseg.core.metrics`` (the same code training evaluates with), both per-image
averaged (as the paper reports) and dataset-level. Two label layouts are understood:
binary smoke masks (0/255: scored as not-smoke vs gas-smoke) and class-id PNGs (0/1/2).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
import time
from typing import Any, Callable, ContextManager, Iterable, Iterator

import cv2
import numpy as np

from edgeseg.core.files import list_images
from edgeseg.core.metrics import SegmentationScores



@dataclass
class LabelledImage:
    name: str
    image: np.ndarray
    truth: np.ndarray


def iter_labelled(folder: str | Path, limit: int | None = None) -> Iterator[LabelledImage]:
    """``folder/img/*`` with ``folder/gt/<same stem>.png``; unreadable pairs raise (data bug)."""
    folder = Path(folder)
    img_dir, gt_dir = folder / "img", folder / "gt"
    if not img_dir.is_dir() or not gt_dir.is_dir():
        raise FileNotFoundError(f"{folder}: expected img/ and gt/ subfolders (see README: data layout)")
    masks = {p.stem: p for p in list_images(gt_dir)}
    n = 0
    for p in list_images(img_dir):
        if p.stem not in masks:
            continue
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        gt = cv2.imread(str(masks[p.stem]), cv2.IMREAD_GRAYSCALE)
        if img is None or gt is None:
            raise ValueError(f"unreadable image or mask: {p.name}")
        yield LabelledImage(p.stem, img, gt)
        n += 1
        if limit and n >= limit:
            return


def is_binary_layout(truth: np.ndarray) -> bool:
    """0/255 masks are binary smoke labels; small integers are class ids."""
    return bool(truth.max() > 2)


def evaluate_folder(segmenter: Any, folder: str | Path, limit: int | None = None,
                    keep_predictions: bool = False) -> dict[str, Any]:
    """Run the segmenter over a labelled folder and summarise IoU/F1 (+ optional predictions)."""
    scores: SegmentationScores | None = None
    names: list[str] = []
    preds: dict[str, np.ndarray] = {}
    binary = False
    leak = segmenter.info.leak_class
    seconds, count = 0.0, 0
    for item in iter_labelled(folder, limit):
        t0 = time.perf_counter()
        mask = segmenter.segment(item.image).mask
        seconds += time.perf_counter() - t0
        count += 1
        if scores is None:
            binary = is_binary_layout(item.truth)
            names = ["not-smoke", "gas-smoke"] if binary else list(segmenter.info.classes)
            scores = SegmentationScores(len(names))
        if binary:
            scores.update((item.truth > 127).astype(np.uint8), (mask == leak).astype(np.uint8))
        else:
            scores.update(item.truth, mask)
        if keep_predictions:
            preds[item.name] = mask
    if scores is None:
        raise FileNotFoundError(f"{folder}: no image/mask pairs found")
    out = scores.summary(names)
    out["layout"] = "binary" if binary else "classes"
    out["ms_per_image"] = 1e3 * seconds / count  # segment() through .mask, as a user gets it
    if keep_predictions:
        out["predictions"] = preds
    return out


#: a smoke-free frame "raises a leak" with a kept region of at least this many pixels
ALARM_FLOOR_PX = 64


def false_alarm_rate(segmenter: Any, frames: list[np.ndarray], min_area: int) -> float:
    """Fraction of smoke-free frames with any gas-smoke region of at least ``min_area`` px."""
    from edgeseg.runtime.postprocess import extract_regions

    leak = segmenter.info.leak_class
    hits = 0
    for f in frames:
        regions = extract_regions(segmenter.segment(f).mask, leak_class=leak, min_area=min_area)
        hits += bool(regions)
    return hits / max(1, len(frames))


def smoke_free_crops(items: Iterable[LabelledImage], min_side: int = 96) -> list[np.ndarray]:
    """The largest smoke-free square of each labelled photo (a real 'nothing there' frame), for
    false-alarm rates; photos whose largest such square is under ``min_side`` give none. The
    smoke mask is dilated by 4 px first, and the square stays inside the frame."""
    crops = []
    for item in items:
        free = (item.truth <= 127).astype(np.uint8)
        smoke = cv2.dilate(1 - free, np.ones((9, 9), np.uint8))
        # a zero border makes the image edge an obstacle too, so the square stays inside the frame
        free_padded = cv2.copyMakeBorder((1 - smoke).astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        dist = cv2.distanceTransform(free_padded, cv2.DIST_C, 3)[1:-1, 1:-1]
        r = int(dist.max())
        if 2 * r < min_side:
            continue
        y, x = np.unravel_index(int(dist.argmax()), dist.shape)
        crops.append(item.image[y - r + 1:y + r, x - r + 1:x + r].copy())
    return crops


@dataclass
class ScoreSettings:
    """How every model of one ``edgeseg bench accuracy`` run is opened and scored (the same for all)."""

    backend: str = "auto"
    threads: int | None = None
    threshold: float | None = None
    min_area: float | None = None  # a share of the frame (None: the model's, else the SDK default)
    tiles: tuple[int, int] = (1, 1)
    overlap: float = 0.2
    smoke_free: bool = False  # also the false-alarm rate on smoke-free crops of the photos


def score_model(path: Path, data: Path, limit: int | None, settings: ScoreSettings, keep_predictions: bool,
                status: Callable[[str], ContextManager[Any]] = lambda _: nullcontext()) -> tuple[dict, int]:
    """(scores, number of classes) of one model through the SDK; ``status`` wraps the scoring (a spinner)."""
    from edgeseg.runtime.segmenter import Segmenter

    s = settings
    seg = Segmenter(path, backend=s.backend, threads=s.threads, threshold=s.threshold, min_area=s.min_area,  # type: ignore[arg-type]
                    tiles=s.tiles, overlap=s.overlap)
    with status(f"scoring {path.name} on {seg.backend_name}..."):
        res = evaluate_folder(seg, data, limit, keep_predictions=keep_predictions)
        if s.smoke_free:
            crops = smoke_free_crops(iter_labelled(data, limit))
            # a crop raises a leak with a region the Segmenter keeps (its min_area share) of >= 64 px
            res["false_alarms_smoke_free_crops"] = {"frames": len(crops), "min_area": seg.min_area,
                                                    "min_area_px": ALARM_FLOOR_PX,
                                                    "fraction": false_alarm_rate(seg, crops, ALARM_FLOOR_PX)}
        res["settings"] = {"threshold": seg.threshold, "min_area": seg.min_area, "tiles": list(s.tiles),
                           "overlap": s.overlap}
        return res, len(seg.info.classes)


def score_with_variants(path: Path, data: Path, compare: list[Path], limit: int | None, settings: ScoreSettings,
                        status: Callable[[str], ContextManager[Any]] = lambda _: nullcontext()) -> dict[str, Any]:
    """Scores of ``path`` and of each reduced-precision variant in ``compare``, plus how closely each
    variant's masks agree with ``path``'s (precision lost, independent of label quality)."""
    from edgeseg.core.metrics import mask_agreement

    ref, n_classes = score_model(path, data, limit, settings, bool(compare), status)
    variants = {}
    for c in compare:
        res, _ = score_model(c, data, limit, settings, bool(compare), status)
        names = sorted(ref["predictions"])
        res["agreement_vs_reference"] = mask_agreement([ref["predictions"][n] for n in names],
                                                       [res["predictions"][n] for n in names], n_classes)
        variants[str(c)] = res
    for r in [ref, *variants.values()]:
        r.pop("predictions", None)
    return {"model": str(path), "data": str(data), "scores": ref, "compare": variants}
