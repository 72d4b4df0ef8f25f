"""Drawing results onto frames (annotators), kept apart from mask analysis (``edgeseg.runtime.postprocess``):
a gateway that only needs events never pays for drawing, and a user can swap the look."""
from __future__ import annotations

from dataclasses import is_dataclass, replace
from typing import Any

import cv2
import numpy as np

from edgeseg.runtime.postprocess import Region

# BGR colours: gas-smoke magenta-ish, machine cyan-ish (distinct from most scenes).
CLASS_COLORS: dict[int, tuple[int, int, int]] = {1: (255, 0, 255), 2: (255, 255, 0)}


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Gray / BGRA frames as 3-channel BGR (drawing needs colour); BGR frames pass through."""
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)


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
    # everything below works inside the bounding box of the coloured (non-background) pixels:
    # leaks and machines usually cover a small part of a 720p frame, and blending, lookups and
    # contour tracing over the whole frame cost more than the rest of annotate + encode
    x, y, w, h = cv2.boundingRect(m8)  # of the non-zero pixels; all zero when there are none
    if w and h:
        roi = out[y:y + h, x:x + w]
        mr = m8[y:y + h, x:x + w]
        # threshold / inRange rather than cv2.compare(m8, scalar): compare reads a 1x1 or 1xN mask as a
        # scalar and raises, which ended whole folder runs at one tiny image
        sel = cv2.threshold(mr, 0, 255, cv2.THRESH_BINARY)[1]
        color = cv2.LUT(cv2.merge([mr, mr, mr]), _PALETTE)
        blended = cv2.addWeighted(roi, 1.0 - alpha, color, alpha, 0.0)
        cv2.copyTo(blended, sel, roi)  # writes into the view (np.copyto(where=) took 5.7 ms on a 1280x715 box)
        contours, _ = cv2.findContours(cv2.inRange(mr, leak_class, leak_class), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
        cv2.drawContours(out, contours, -1, CLASS_COLORS.get(leak_class, (255, 0, 255)), 1)
    for r in regions or []:
        cv2.rectangle(out, (r.x, r.y), (r.x + r.w - 1, r.y + r.h - 1), (0, 0, 255), 1)
        cv2.putText(out, f"leak {r.max_conf:.2f}", (r.x, max(r.y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1, cv2.LINE_AA)
    return out


class Annotator:
    """The default look: class colours blended over the frame, leak outlines, region boxes and confidence."""

    def __init__(self, leak_class: int = 1, alpha: float = 0.45) -> None:
        self.leak_class, self.alpha = leak_class, alpha

    def __call__(self, frame: np.ndarray, mask: np.ndarray, regions: list[Region]) -> np.ndarray:
        return overlay(as_bgr(frame), mask, regions, self.alpha, self.leak_class)


def fit_width(image: np.ndarray, mask: Any, regions: list, width: int) -> tuple[np.ndarray, Any, list]:
    """The frame, its mask and its regions at most ``width`` pixels wide (unchanged when narrower or
    ``width`` is 0), so a picture that is shown small is drawn small.

    Why: blending and outlining a 720p / 4K frame only to shrink it afterwards costs several times the
    pixels; the annotated clip and the page's live picture are drawn after this (#35: on two cores every
    millisecond per frame the operator features spend comes out of the cameras' frame rate)."""
    h, w = image.shape[:2]
    if not width or w <= width:
        return image, mask, regions
    nh = max(2, round(h * width / w))
    small = cv2.resize(image, (width, nh), interpolation=cv2.INTER_AREA)
    if mask is not None:
        mask = cv2.resize(np.asarray(mask, np.uint8), (width, nh), interpolation=cv2.INTER_NEAREST)
    sx, sy = width / w, nh / h
    regions = [replace(r, x=int(r.x * sx), y=int(r.y * sy), w=max(1, round(r.w * sx)), h=max(1, round(r.h * sy)))
               if is_dataclass(r) else r for r in regions]
    return small, mask, regions
