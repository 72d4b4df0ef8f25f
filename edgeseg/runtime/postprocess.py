"""Mask analysis: network output -> label masks -> leak regions. Drawing is in ``edgeseg.runtime.annotate``."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import cv2
import numpy as np

#: the one default for ``min_area`` when neither the config nor the model names one: 0.1 % of the
#: frame (about 64 network pixels at 256x256), the same share at every camera resolution. It lives
#: here, below the segmenter and the settings that both use it.
DEFAULT_MIN_AREA = 0.001


def labels_to_frame(labels_hw: np.ndarray, transform) -> np.ndarray:
    """Map a label mask at network size back to the original frame size.

    Nearest-neighbour keeps labels integral; letterbox padding is cropped first.
    """
    return resize_labels(crop_padding(np.asarray(labels_hw), transform), (transform.orig_h, transform.orig_w))


def resize_labels(labels_hw: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """A label mask (padding already cropped) at ``size_hw``, nearest-neighbour (labels stay integral)."""
    lab = np.asarray(labels_hw)
    h, w = size_hw
    if lab.shape[:2] == (h, w):
        return lab.copy()
    src = lab.astype(np.uint8) if lab.dtype == np.bool_ else lab
    if src.dtype not in (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64):
        src = src.astype(np.int32)
    out = cv2.resize(src, (w, h), interpolation=cv2.INTER_NEAREST)
    return out.astype(lab.dtype, copy=False)


def probs_to_labels(probs_chw: np.ndarray, threshold: float | None = None, leak_class: int = 1) -> np.ndarray:
    """Argmax over classes, optionally with an explicit leak-probability threshold.

    A threshold lets the operator trade false alarms for sensitivity without
    retraining: pixels with ``p_leak >= threshold`` become leak; argmax-leak
    pixels below it fall back to the best non-leak class.
    """
    p = np.asarray(probs_chw)
    if p.ndim != 3:
        raise ValueError(f"probs must be CxHxW, got shape {p.shape}")
    if threshold is None:
        return _argmax_classes(p, range(p.shape[0]))
    # the best non-leak class everywhere, then leak where p_leak >= threshold: the same as argmax
    # with argmax-leak pixels below the threshold falling back to the best non-leak class
    out = _argmax_classes(p, [c for c in range(p.shape[0]) if c != leak_class])
    out[p[leak_class] >= threshold] = leak_class
    return out


def _argmax_classes(p: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """uint8 argmax over ``classes`` of a CxHxW map, first maximum on ties like ``np.argmax``.

    One pass per class over contiguous HxW planes: several times faster than ``np.argmax(axis=0)``,
    which strides across planes (2 ms -> 0.3 ms on a 3x256x256 map, every frame).
    """
    classes = list(classes)
    out = np.full(p.shape[1:], classes[0], np.uint8)
    best = p[classes[0]].copy()
    for c in classes[1:]:
        better = p[c] > best
        out[better] = c
        np.maximum(best, p[c], out=best)
    return out


def class_probs(probs: np.ndarray, activation: str = "sigmoid") -> np.ndarray:
    """Per-class probabilities, ``[N,]CxHxW``. A binary model's single channel p(leak) becomes
    (1 - p, p), i.e. classes (background, leak), so argmax, thresholds, IoU and overlays treat it
    like any other model; logits (activation ``none``) go through a sigmoid first. Several
    channels are returned unchanged."""
    p = np.asarray(probs)
    axis = p.ndim - 3
    if p.ndim not in (3, 4) or p.shape[axis] != 1:
        return p
    if activation == "none":
        p = 1.0 / (1.0 + np.exp(-p.astype(np.float32)))
    return np.concatenate([1.0 - p, p], axis=axis).astype(np.float32, copy=False)


@dataclass
class Region:
    """One connected leak blob, in original-frame pixel coordinates."""

    x: int
    y: int
    w: int
    h: int
    area_px: int
    area_pct: float
    centroid: tuple[float, float]
    mean_conf: float
    max_conf: float

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bbox"] = list(self.bbox)
        d["centroid"] = list(self.centroid)
        return d


def extract_regions(
    mask: np.ndarray, leak_class: int = 1, min_area: int = 0, prob_map: np.ndarray | None = None
) -> list[Region]:
    """Connected leak components (8-connectivity), largest first.

    ``prob_map`` (HxW leak probability) fills mean/max confidence; without it
    both are 1.0 since the mask itself is the only evidence.
    """
    m = np.asarray(mask)
    binary = (m == leak_class).astype(np.uint8)
    n, lab, stats, cents = cv2.connectedComponentsWithStats(binary, connectivity=8)
    total = float(m.shape[0] * m.shape[1])
    regions: list[Region] = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        if prob_map is not None:
            vals = np.asarray(prob_map)[lab == i]
            mean_c, max_c = float(vals.mean()), float(vals.max())
        else:
            mean_c = max_c = 1.0
        regions.append(
            Region(x, y, w, h, area, 100.0 * area / total, (float(cents[i][0]), float(cents[i][1])), mean_c, max_c)
        )
    regions.sort(key=lambda r: r.area_px, reverse=True)
    return regions


def remove_small(mask: np.ndarray, leak_class: int = 1, min_area: int = 0) -> np.ndarray:
    """Return a copy with leak components smaller than ``min_area`` set to 0 (speckle noise)."""
    m = np.asarray(mask).copy()
    binary = (m == leak_class).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    small = np.where(stats[:, cv2.CC_STAT_AREA] < min_area)[0]
    small = small[small > 0]
    if small.size:
        m[np.isin(lab, small)] = 0
    return m


def min_area_px(share: float, transform) -> float:
    """A minimum region area given as a share of the frame (``min_area``'s unit), in that frame's
    pixels: the one conversion, so the SDK and the operating-point search count the same."""
    return float(share) * transform.orig_h * transform.orig_w


def crop_padding(a: np.ndarray, transform) -> np.ndarray:
    """The part of a network-sized map that shows the frame (letterbox padding removed)."""
    t = transform
    if t.mode == "letterbox":
        return a[..., t.pad_y:t.pad_y + t.new_h, t.pad_x:t.pad_x + t.new_w]
    return a


def analyse(probs_chw: np.ndarray, transform, threshold: float | None, leak_class: int = 1,
            min_area: int = 0) -> tuple[np.ndarray, list[Region]]:
    """One frame's network output -> (labels at network resolution, padding cropped; regions in
    frame coordinates): what ``Segmenter`` returns, for callers that run the backend themselves."""
    labels = crop_padding(probs_to_labels(probs_chw, threshold, leak_class), transform)
    return regions_at_network(labels, crop_padding(probs_chw[leak_class], transform), transform, leak_class, min_area)


def regions_at_network(labels: np.ndarray, leak_prob: np.ndarray, transform, leak_class: int = 1,
                       min_area: int = 0) -> tuple[np.ndarray, list[Region]]:
    """Leak regions found once, on the network-sized mask, and scaled to frame coordinates.

    Why here and not at frame size: connected components over a 720p mask (twice: speckle removal,
    then regions) cost more than the rest of post-processing together, and the network's own
    resolution is all the information there is. ``labels`` / ``leak_prob`` are the network-sized
    maps with letterbox padding already cropped (:func:`crop_padding`); ``min_area`` is in *frame*
    pixels (a component's area is scaled by the frame / network pixel ratio). Returns the labels
    with too-small leak components cleared (to 0) and the regions, largest first.
    """
    t = transform
    h, w = labels.shape[:2]
    sx, sy = t.orig_w / w, t.orig_h / h
    leak_mask = (labels == leak_class).astype(np.uint8)
    if not cv2.countNonZero(leak_mask):  # most frames: nothing to label
        return labels, []
    n, cc, stats, cents = cv2.connectedComponentsWithStats(leak_mask, connectivity=8)
    if n <= 1:
        return labels, []
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64) * (sx * sy)
    keep = areas >= min_area
    if not keep.all():
        labels = labels.copy()
        drop = np.zeros(n, bool)
        drop[np.flatnonzero(~keep) + 1] = True
        labels[drop[cc]] = 0  # one lookup per pixel (np.isin compared every pixel with every id)
    prob = np.asarray(leak_prob, np.float32)
    regions = []
    for i in np.flatnonzero(keep) + 1:
        x, y, bw, bh, area = (int(v) for v in stats[i])
        # mean / max leak probability over the component, read inside its bounding box only (a
        # whole-map sort per frame cost more than the rest of the analysis)
        inside = prob[y:y + bh, x:x + bw][cc[y:y + bh, x:x + bw] == i]
        x0, y0 = int(round(x * sx)), int(round(y * sy))
        x1, y1 = int(round((x + bw) * sx)), int(round((y + bh) * sy))
        cx, cy = cents[i]
        regions.append(Region(
            x0, y0, max(1, x1 - x0), max(1, y1 - y0), int(round(area * sx * sy)), 100.0 * area / float(h * w),
            (float((cx + 0.5) * sx - 0.5), float((cy + 0.5) * sy - 0.5)),
            float(inside.sum(dtype=np.float64) / area), float(inside.max()),
        ))
    regions.sort(key=lambda r: r.area_px, reverse=True)
    return labels, regions
