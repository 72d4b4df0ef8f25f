"""Export the U-Net to ONNX with metadata, then prove the file computes what PyTorch computes.

An export is only useful if it is verified: we run ``onnx.checker`` and compare ONNX Runtime to
PyTorch on random noise *and* on smooth, image-like inputs (noise alone hides errors in the
softmax of confident pixels). The FP16 variant keeps float32 inputs/outputs (what TensorRT 11's
strongly typed builds and DeepStream users feed) and is judged by argmax-mask agreement.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch

from export.model import STRIDE, WithLabels

DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass
class ExportReport:
    """What the export produced and how well it matched PyTorch; printed or emitted as JSON."""

    path: str
    opset: int
    batch: str
    inputs: list[str]
    outputs: list[str]
    max_abs_error: float = float("nan")
    errors_by_input: dict[str, float] = field(default_factory=dict)
    tolerance: float = 1e-4
    fp16_path: str | None = None
    fp16_mask_iou: float | None = None
    fp16_max_abs_error: float | None = None
    size_mb: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class VerificationError(RuntimeError):
    """The exported model disagrees with PyTorch beyond the tolerance."""


def check_size(height: int, width: int) -> None:
    """The encoder downsamples 5 times; other sizes break the skip concatenations."""
    if height % STRIDE or width % STRIDE or height <= 0 or width <= 0:
        raise ValueError(
            f"input size {height}x{width} is not a positive multiple of {STRIDE}; "
            f"use e.g. {max(STRIDE, round(height / STRIDE) * STRIDE)}x"
            f"{max(STRIDE, round(width / STRIDE) * STRIDE)}"
        )


def build_metadata(
    classes: list[str],
    activation: str,
    size: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    source_sha256: str,
    source_name: str,
) -> dict[str, str]:
    """The ONNX ``metadata_props`` the SDK reads to preprocess and label correctly."""
    return {
        "edgeseg_format": "1",
        "classes": json.dumps(classes),
        "activation": activation,
        "input_size": json.dumps(list(size)),
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
        "color_order": "RGB",
        "size_multiple": str(STRIDE),
        "source_checkpoint": source_name,
        "source_sha256": source_sha256,
    }


def export_onnx(
    model: torch.nn.Module,
    out: str | Path,
    metadata: dict[str, str],
    size: tuple[int, int] = (256, 256),
    opset: int = 17,
    batch: Literal["dynamic"] | int = "dynamic",
    labels: Literal["none", "uint8", "int32"] = "uint8",
) -> Path:
    """Write the ONNX file (``image`` -> ``probs`` [+ ``labels``]) with dynamic or fixed batch."""
    check_size(*size)
    if opset < 17:
        raise ValueError(f"opset {opset} is too old; use 17 or newer")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    outputs = ["probs"]
    net: torch.nn.Module = model
    if labels != "none":
        net = WithLabels(model, torch.uint8 if labels == "uint8" else torch.int32).eval()
        outputs.append("labels")
    n = 1 if batch == "dynamic" else int(batch)
    dummy = torch.zeros(n, 3, *size)
    axes: dict[str, dict[int, str]] = {}
    if batch == "dynamic":
        axes = {"image": {0: "batch", 2: "height", 3: "width"}}
        axes["probs"] = {0: "batch", 2: "height", 3: "width"}
        if labels != "none":
            axes["labels"] = {0: "batch", 1: "height", 2: "width"}
    with torch.no_grad():
        torch.onnx.export(
            net,
            (dummy,),
            str(out),
            input_names=["image"],
            output_names=outputs,
            opset_version=opset,
            dynamic_axes=axes or None,
            dynamo=False,
            do_constant_folding=True,
        )
    proto = onnx.load(str(out))
    del proto.metadata_props[:]
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "edgeseg"
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out), full_check=True)
    return out


def image_like_inputs(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth normalised images with bright blobs: closer to camera frames than white noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    imgs = np.empty((n, 3, h, w), np.float32)
    for i in range(n):
        base = rng.uniform(0.2, 0.6) + 0.3 * (xx / w) * rng.uniform(-1, 1)
        for _ in range(4):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(0.05, 0.3) * min(h, w)
            base = base + rng.uniform(0.2, 0.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        for c in range(3):
            chan = np.clip(base * rng.uniform(0.8, 1.1), 0, 1)
            imgs[i, c] = (chan - DEFAULT_MEAN[c]) / DEFAULT_STD[c]
    return imgs


def _ort_session(path: str | Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def verify_against_torch(
    model: torch.nn.Module,
    onnx_path: str | Path,
    size: tuple[int, int],
    batches: tuple[int, ...] = (1, 4),
    tolerance: float = 1e-4,
) -> dict[str, float]:
    """Max |torch - ORT| of ``probs`` per input kind; raises VerificationError above tolerance."""
    sess = _ort_session(onnx_path)
    fixed = sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int):
        batches = (fixed,)
    errors: dict[str, float] = {}
    for b in batches:
        cases = {
            f"random_b{b}": np.random.default_rng(b).standard_normal((b, 3, *size)).astype(np.float32),
            f"image_like_b{b}": image_like_inputs(b, size, seed=b),
        }
        for name, x in cases.items():
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            got = sess.run(["probs"], {"image": x})[0]
            errors[name] = float(np.abs(ref - got).max())
    worst = max(errors.values())
    if worst > tolerance:
        raise VerificationError(
            f"ONNX Runtime differs from PyTorch by {worst:.2e} > tolerance {tolerance:.0e} "
            f"({errors}); try another --opset or report a bug"
        )
    return errors


def mask_iou_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over classes of IoU between two label maps (1.0 = identical masks)."""
    ious = []
    for c in np.union1d(np.unique(a), np.unique(b)):
        inter = np.logical_and(a == c, b == c).sum()
        union = np.logical_or(a == c, b == c).sum()
        ious.append(inter / union)
    return float(np.mean(ious))


def convert_fp16(src: str | Path, dst: str | Path) -> tuple[Path, int]:
    """FP16 weights and compute with float32 I/O (TensorRT 11 strongly typed / smaller file).

    Returns the path and how many tiny weights were clamped to +-1e-7 (fp16's range).
    """
    from export.fp16 import convert_to_fp16

    proto = onnx.load(str(src))
    half, clamped = convert_to_fp16(proto)
    del half.metadata_props[:]
    for p in proto.metadata_props:
        entry = half.metadata_props.add()
        entry.key, entry.value = p.key, p.value
    entry = half.metadata_props.add()
    entry.key, entry.value = "precision", "fp16"
    onnx.save(half, str(dst))
    onnx.checker.check_model(str(dst), full_check=True)
    return Path(dst), clamped


def verify_fp16(
    fp32_path: str | Path, fp16_path: str | Path, size: tuple[int, int], min_iou: float = 0.95
) -> tuple[float, float]:
    """(argmax-mask IoU agreement, max prob error) of fp16 vs fp32 on image-like inputs."""
    s32, s16 = _ort_session(fp32_path), _ort_session(fp16_path)
    fixed = s32.get_inputs()[0].shape[0]
    x = image_like_inputs(fixed if isinstance(fixed, int) else 4, size, seed=123)
    p32 = s32.run(["probs"], {"image": x})[0]
    p16 = s16.run(["probs"], {"image": x})[0].astype(np.float32)
    iou = mask_iou_agreement(p32.argmax(1), p16.argmax(1))
    err = float(np.abs(p32 - p16).max())
    if iou < min_iou:
        raise VerificationError(f"fp16 masks agree with fp32 at IoU {iou:.4f} < {min_iou}")
    return iou, err
