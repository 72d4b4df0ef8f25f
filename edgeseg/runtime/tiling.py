"""Tiles for distant smoke: run the network on overlapping tiles of a large frame and stitch.

A 1920x1080 frame squeezed into a 256x256 network input leaves a distant plume a few pixels
wide. Cutting the frame into ``rows x cols`` overlapping tiles and running each at the network
size gives the network ``rows x cols`` times more pixels to look at, in ONE backend call (the
tiles of all frames of a batch are one batch). The per-class probabilities are pasted back onto
a frame-aligned canvas; where tiles overlap they are blended with linear-ramp weights, so seams
do not show. Labels and regions are then made on the stitched map as usual.

Used by :meth:`edgeseg.runtime.segmenter.Segmenter.segment_batch` when ``tiles != (1, 1)``.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from edgeseg.runtime.postprocess import crop_padding
from edgeseg.runtime.preprocess import Transform, to_bgr

MAX_CANVAS_SIDE = 2048  # the stitched map's longest side is capped here (memory and post-processing time)


def parse_tiles(text: str) -> tuple[int, int]:
    """``"2x2"`` / ``"3x2"`` (rows x cols) -> (rows, cols); raises ValueError with the fix."""
    try:
        r, c = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"tiles {text!r}: give ROWSxCOLS, e.g. 2x2") from None
    check_tiles((r, c), 0.0)
    return r, c


def check_tiles(tiles: Sequence[int], overlap: float) -> tuple[int, int]:
    if len(tiles) != 2 or min(int(tiles[0]), int(tiles[1])) < 1:
        raise ValueError(f"tiles must be (rows, cols) with both >= 1, got {tuple(tiles)}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap is a fraction of a tile: 0 <= overlap < 1, got {overlap}")
    return int(tiles[0]), int(tiles[1])


def spans(length: int, n: int, overlap: float) -> list[tuple[int, int]]:
    """``n`` intervals covering ``[0, length)``, each ``overlap`` (fraction of a tile) into its
    neighbour; the first starts at 0 and the last ends at ``length``."""
    if n == 1:
        return [(0, length)]
    size = length / (n - (n - 1) * overlap)
    step = size * (1.0 - overlap)
    out = []
    for i in range(n):
        a = min(int(round(i * step)), length - 1)  # tiny frames: every tile keeps >= 1 pixel
        b = length if i == n - 1 else int(round(i * step + size))
        out.append((a, max(b, a + 1)))
    return out


def tile_boxes(h: int, w: int, tiles: tuple[int, int], overlap: float) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of every tile, row by row."""
    return [(y0, y1, x0, x1) for y0, y1 in spans(h, tiles[0], overlap) for x0, x1 in spans(w, tiles[1], overlap)]


def canvas_size(h: int, w: int, tiles: tuple[int, int], net_hw: tuple[int, int],
                max_side: int = MAX_CANVAS_SIDE) -> tuple[int, int]:
    """Resolution of the stitched map: about one network pixel per canvas pixel (a tile of the
    frame's height / rows maps to the network's height), never above the frame's own size, the
    longest side capped at ``max_side``."""
    ch, cw = min(h, tiles[0] * net_hw[0]), min(w, tiles[1] * net_hw[1])
    s = min(1.0, max_side / max(ch, cw))
    return max(1, int(round(ch * s))), max(1, int(round(cw * s)))


def _ramp(n: int, lo_overlap: int, hi_overlap: int) -> np.ndarray:
    """1-D blending weight: rises linearly over the first ``lo_overlap`` samples and falls over the
    last ``hi_overlap`` (0 at a frame edge: no neighbour, flat 1); strictly positive."""
    wgt = np.ones(n, np.float32)
    if lo_overlap > 0:
        k = min(lo_overlap, n)
        wgt[:k] = np.minimum(wgt[:k], (np.arange(k, dtype=np.float32) + 0.5) / lo_overlap)
    if hi_overlap > 0:
        k = min(hi_overlap, n)
        wgt[n - k:] = np.minimum(wgt[n - k:], (np.arange(k, dtype=np.float32)[::-1] + 0.5) / hi_overlap)
    return wgt


def _scaled_spans(sp: list[tuple[int, int]], length: int, out_len: int) -> list[tuple[int, int]]:
    s = out_len / length
    out = []
    for a, b in sp:
        a2 = min(int(round(a * s)), out_len - 1)
        out.append((a2, max(int(round(b * s)), a2 + 1)))
    return out


def cut(frame: np.ndarray, tiles: tuple[int, int], overlap: float) -> list[np.ndarray]:
    """The tile images of one frame (views, row by row)."""
    bgr = to_bgr(frame)
    h, w = bgr.shape[:2]
    return [bgr[y0:y1, x0:x1] for y0, y1, x0, x1 in tile_boxes(h, w, tiles, overlap)]


def stitch(tile_probs: Sequence[np.ndarray], transforms: Sequence[Transform], frame_hw: tuple[int, int],
           tiles: tuple[int, int], overlap: float, net_hw: tuple[int, int],
           max_side: int = MAX_CANVAS_SIDE) -> tuple[np.ndarray, Transform]:
    """Per-tile CxHxW network probabilities -> one CxHcxWc frame-aligned map and the Transform
    that maps it to the frame (a plain resize). Overlaps are blended with linear ramps; where only
    one tile covers the canvas its probabilities are kept as they are (up to the resize)."""
    h, w = frame_hw
    ch, cw = canvas_size(h, w, tiles, net_hw, max_side)
    ys = _scaled_spans(spans(h, tiles[0], overlap), h, ch)
    xs = _scaled_spans(spans(w, tiles[1], overlap), w, cw)
    c = tile_probs[0].shape[0]
    acc = np.zeros((c, ch, cw), np.float32)
    wsum = np.zeros((ch, cw), np.float32)
    k = 0
    for i, (y0, y1) in enumerate(ys):
        wy = _ramp(y1 - y0, ys[i - 1][1] - y0 if i > 0 else 0, y1 - ys[i + 1][0] if i + 1 < len(ys) else 0)
        for j, (x0, x1) in enumerate(xs):
            wx = _ramp(x1 - x0, xs[j - 1][1] - x0 if j > 0 else 0, x1 - xs[j + 1][0] if j + 1 < len(xs) else 0)
            p = crop_padding(np.asarray(tile_probs[k], np.float32), transforms[k])
            k += 1
            if p.shape[1:] != (y1 - y0, x1 - x0):
                p = cv2.resize(np.ascontiguousarray(p.transpose(1, 2, 0)), (x1 - x0, y1 - y0),
                               interpolation=cv2.INTER_LINEAR).reshape(y1 - y0, x1 - x0, c).transpose(2, 0, 1)
            wgt = wy[:, None] * wx[None, :]
            acc[:, y0:y1, x0:x1] += p * wgt
            wsum[y0:y1, x0:x1] += wgt
    probs = acc / wsum
    t = Transform(h, w, ch, cw, cw / w, ch / h, 0, 0, cw, ch, "resize")
    return probs, t
