"""Segmentation metrics: confusion matrix, IoU/F1, and a dataset accumulator.

Two averaging styles are provided on purpose:

* **per-image** (the paper's number): IoU/F1 are computed for each image and
  then averaged (NaN-aware, so images where a class is absent from both truth
  and prediction do not count). Every image weighs the same, which matches how
  the paper reports results, but tiny leaks make this noisy: one missed
  20-pixel plume scores 0 and drags the mean as much as a large scene.
* **dataset-level**: a single confusion matrix is summed over all pixels of all
  images and IoU/F1 are computed once. This is less noisy on small objects and
  is the usual benchmark convention, so both are reported side by side.
"""
from __future__ import annotations

from typing import Sequence

import warnings

import numpy as np


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Return a ``(num_classes, num_classes)`` int64 matrix, rows=truth, cols=pred.

    Truth values outside ``[0, num_classes)`` (e.g. 255) are ignored so that
    annotation "don't care" regions never count as errors.
    """
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise ValueError(f"truth shape {truth.shape} != pred shape {pred.shape}; pass masks of equal size")
    t = truth.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    keep = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    idx = t[keep] * num_classes + p[keep]
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_f1_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class IoU and F1 from a confusion matrix.

    Classes absent from both truth and prediction get NaN (not 0 or 1) so that
    averaging with ``nanmean`` skips them instead of rewarding/punishing them.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    union = tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        f1 = np.where(union > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return {"iou": iou, "f1": f1}


class SegmentationScores:
    """Accumulate both dataset-level and per-image scores over many images.

    See the module docstring for why both averaging styles exist.
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.num_classes = num_classes
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        self._iou_rows: list[np.ndarray] = []
        self._f1_rows: list[np.ndarray] = []

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """Add one image: sum into the dataset matrix and keep its own IoU/F1."""
        cm = confusion_matrix(truth, pred, self.num_classes)
        self.confusion += cm
        s = iou_f1_from_confusion(cm)
        self._iou_rows.append(s["iou"])
        self._f1_rows.append(s["f1"])

    @property
    def images(self) -> int:
        return len(self._iou_rows)

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """Return per-class and mean scores in both averaging styles."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"got {len(names)} class names for {self.num_classes} classes")
        ds = iou_f1_from_confusion(self.confusion)
        if self._iou_rows:
            ious = np.vstack(self._iou_rows)
            f1s = np.vstack(self._f1_rows)
        else:
            ious = f1s = np.full((1, self.num_classes), np.nan)
        # nanmean warns on all-NaN columns (class never seen); NaN is the intended answer.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            iou_img = np.nanmean(ious, axis=0)
            f1_img = np.nanmean(f1s, axis=0)
            mean = lambda a: float(np.nanmean(a))  # noqa: E731
            out = {
                "per_class": {
                    n: {
                        "iou_dataset": float(ds["iou"][i]),
                        "f1_dataset": float(ds["f1"][i]),
                        "iou_per_image": float(iou_img[i]),
                        "f1_per_image": float(f1_img[i]),
                    }
                    for i, n in enumerate(names)
                },
                "mean_iou_dataset": mean(ds["iou"]),
                "mean_f1_dataset": mean(ds["f1"]),
                "mean_iou_per_image": mean(iou_img),
                "mean_f1_per_image": mean(f1_img),
                "images": self.images,
            }
        return out


def mask_agreement(reference: Sequence[np.ndarray], other: Sequence[np.ndarray], num_classes: int) -> dict[str, float]:
    """How closely ``other`` masks reproduce ``reference`` masks (e.g. INT8 or TensorRT vs fp32).

    The reference is scored as if it were ground truth, with the same confusion-matrix code
    as accuracy, so "agreement" means mask IoU: 1.0 = identical. Returns dataset-level mean IoU,
    per-image mean IoU and plain pixel agreement.
    """
    if len(reference) != len(other) or not len(reference):
        raise ValueError(f"need equally many masks, got {len(reference)} and {len(other)}")
    scores = SegmentationScores(num_classes)
    same = total = 0
    for r, o in zip(reference, other):
        scores.update(r, o)
        same += int(np.count_nonzero(r == o))
        total += r.size
    s = scores.summary()
    return {"mask_iou": s["mean_iou_dataset"], "mask_iou_per_image": s["mean_iou_per_image"],
            "pixel_agreement": same / total}


def mask_iou(reference: np.ndarray, other: np.ndarray, num_classes: int) -> float:
    """Dataset-level mean IoU of ``other`` against ``reference`` label maps (any batch shape):
    the one number every "do these two models agree" check prints (1.0 = identical masks)."""
    ref, oth = np.asarray(reference), np.asarray(other)
    if ref.shape != oth.shape:
        raise ValueError(f"mask shapes differ: {ref.shape} vs {oth.shape}")
    return mask_agreement([ref.reshape(-1)], [oth.reshape(-1)], num_classes)["mask_iou"]
