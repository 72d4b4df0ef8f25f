"""Turn network output into label masks, leak regions and a visual overlay."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

# BGR colours: gas-smoke magenta-ish, machine cyan-ish (distinct from most scenes).
CLASS_COLORS: dict[int, tuple[int, int, int]] = {1: (255, 0, 255), 2: (255, 255, 0)}


def labels_to_frame(labels_hw: np.ndarray, transform) -> np.ndarray:
    """Map a label mask at network size back to the original frame size.

    Nearest-neighbour keeps labels integral; letterbox padding is cropped first.
    """
    t = transform
    lab = np.asarray(labels_hw)
    if t.mode == "letterbox":
        lab = lab[t.pad_y : t.pad_y + t.new_h, t.pad_x : t.pad_x + t.new_w]
    if lab.shape[:2] == (t.orig_h, t.orig_w):
        return lab.copy()
    src = lab.astype(np.uint8) if lab.dtype == np.bool_ else lab
    if src.dtype not in (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64):
        src = src.astype(np.int32)
    out = cv2.resize(src, (t.orig_w, t.orig_h), interpolation=cv2.INTER_NEAREST)
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
    labels = np.argmax(p, axis=0).astype(np.uint8)
    if threshold is None:
        return labels
    others = p.copy()
    others[leak_class] = -np.inf
    fallback = np.argmax(others, axis=0).astype(np.uint8)
    leak = p[leak_class] >= threshold
    out = np.where(labels == leak_class, fallback, labels)
    out[leak] = leak_class
    return out.astype(np.uint8)


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


def _palette() -> np.ndarray:
    """256-entry BGR lookup table: class id -> colour (black for ids without a colour)."""
    lut = np.zeros((256, 1, 3), np.uint8)
    for cls, c in CLASS_COLORS.items():
        lut[cls, 0] = c
    return lut


_PALETTE = _palette()


def overlay(frame_bgr: np.ndarray, mask: np.ndarray, regions: list[Region] | None = None, alpha: float = 0.45,
            leak_class: int = 1) -> np.ndarray:
    """Blend class colours over the frame, outline leaks and label each region.

    Returns a new image; the input frame is never modified.
    """
    out = np.array(frame_bgr, dtype=np.uint8, copy=True)
    m = np.asarray(mask)
    if m.shape[:2] != out.shape[:2]:
        raise ValueError(f"mask shape {m.shape[:2]} != frame shape {out.shape[:2]}; map it back with labels_to_frame")
    # all in OpenCV (palette LUT, masked copy): numpy boolean indexing per class cost ~30 ms on
    # a 720p frame, as much as a third of the detect loop (benchmarks/sdk_overhead.py)
    m8 = m.astype(np.uint8, copy=False)
    sel = cv2.compare(m8, 0, cv2.CMP_GT)
    if cv2.countNonZero(sel):
        color = cv2.LUT(cv2.merge([m8, m8, m8]), _PALETTE)
        blended = cv2.addWeighted(out, 1.0 - alpha, color, alpha, 0.0)
        cv2.copyTo(blended, sel, out)
    contours, _ = cv2.findContours(cv2.compare(m8, leak_class, cv2.CMP_EQ), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, CLASS_COLORS.get(leak_class, (255, 0, 255)), 1)
    for r in regions or []:
        cv2.rectangle(out, (r.x, r.y), (r.x + r.w - 1, r.y + r.h - 1), (0, 0, 255), 1)
        cv2.putText(out, f"leak {r.max_conf:.2f}", (r.x, max(r.y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1, cv2.LINE_AA)
    return out
