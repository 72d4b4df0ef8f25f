"""Camera kinds: ``visible`` or ``thermal``, and ``auto``, which tells them apart from the picture.

Why: the two kinds need different models (a thermal camera's gas is found by its motion against the
scene, a visible camera's smoke by its look), and an installer should not have to know which model is
which. A thermal camera delivers grey (white-hot / black-hot) or a false-colour palette (iron, rainbow):
in both, the colour is a function of the brightness. In a photo of the world it is not: one grey level
holds grass, sky and brick. :func:`picture_kind` measures that.
"""
from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

KINDS = ("visible", "thermal", "auto")
Kind = Literal["visible", "thermal"]
#: mean |B-G| + |G-R| below this (8-bit levels): a grey picture
GREY_SPREAD = 3.0
#: colour left unexplained by brightness (or by hue) below this share: a palette. Measured on 166 SMOKE5K /
#: industrial photos (1st percentile 0.36) and 273 real thermal frames under iron / inferno / jet palettes
#: (99th percentile 0.33, 0.25, 0.22): see tests/test_kinds.py
PALETTE_RATIO = 0.34


def _within(lab: np.ndarray, key: np.ndarray) -> float:
    """The colour's spread inside each bin of ``key``, averaged over the pixels."""
    total, weight = 0.0, 0
    for v in np.unique(key):
        sel = lab[key == v]
        if len(sel) >= 8:
            total += float(np.sqrt(sel.var(axis=0).sum())) * len(sel)
            weight += len(sel)
    return total / max(weight, 1)


def palette_ratio(frame: np.ndarray, levels: int = 32) -> float:
    """How much of the colour is NOT a function of one scalar: the chroma left within each brightness
    level over the picture's chroma (monotone palettes: iron, inferno, hot), or the colour left within
    each hue over the picture's colour (rainbow palettes: jet); the smaller. Near 0 for a palette,
    around 0.5 or more for a photo of the world."""
    small = cv2.resize(frame, (160, 120), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float32)
    hue = cv2.cvtColor(small, cv2.COLOR_BGR2HSV).reshape(-1, 3)[:, 0].astype(np.int32)
    chroma = float(np.sqrt(lab[:, 1:].var(axis=0).sum())) + 1e-6
    colour = float(np.sqrt(lab.var(axis=0).sum())) + 1e-6
    by_level = _within(lab[:, 1:], lab[:, 0].astype(np.int32) * levels // 256) / chroma
    by_hue = _within(lab, hue * levels // 180) / colour
    return min(by_level, by_hue)


def picture_kind(frame: np.ndarray) -> Kind:
    """``thermal`` for a grey or palette picture, ``visible`` otherwise."""
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return "thermal"
    bgr = np.ascontiguousarray(frame[..., :3])
    b, g, r = (bgr[..., i].astype(np.int16) for i in range(3))
    if float(np.abs(b - g).mean() + np.abs(g - r).mean()) < GREY_SPREAD:
        return "thermal"
    return "thermal" if palette_ratio(bgr) < PALETTE_RATIO else "visible"
