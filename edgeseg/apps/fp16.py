"""fp32 -> fp16 ONNX files and their check, shared by the exporter, training's ship step and the
benchmark suite (no torch). The graph rewrite itself is :mod:`edgeseg.core.onnx_precision` (the engine
compiler and the runtime's derived fp32 model use it without this converter).

The fp16 variant keeps float32 inputs/outputs (what
TensorRT 11's strongly typed builds and DeepStream users feed) and is judged by argmax-mask
agreement with fp32, not by raw probability error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.core.metrics import mask_iou
from edgeseg.core.model_meta import DEFAULT_MEAN, DEFAULT_STD, metadata_of, set_metadata
from edgeseg.core.onnx_precision import FP16_CONVERTER_MISSING, FP32_OPS, convert_to_fp16  # noqa: F401 (exporter imports them here)
from edgeseg.runtime.postprocess import class_probs


class VerificationError(RuntimeError):
    """A converted model disagrees with its reference beyond the tolerance."""


def convert_fp16(src: str | Path, dst: str | Path) -> tuple[Path, int]:
    """Write ``dst``: fp16 weights and compute, float32 I/O, ``src``'s metadata plus ``precision=fp16``.

    Returns the path and how many tiny weights were clamped to +-1e-7 (fp16's range).
    """
    import onnx

    proto = onnx.load(str(src))
    half, clamped = convert_to_fp16(proto)
    set_metadata(half, {**metadata_of(proto), "precision": "fp16"})
    onnx.save(half, str(dst))
    onnx.checker.check_model(str(dst), full_check=True)
    return Path(dst), clamped


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


def cpu_session(path: str | Path) -> Any:
    """A quiet ONNX Runtime CPU session (the reference every check compares against)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def metadata_of_session(session: Any) -> dict[str, str]:
    """The edgeseg metadata an ONNX Runtime session was built from."""
    return dict(session.get_modelmeta().custom_metadata_map)


def verify_fp16(
    fp32_path: str | Path, fp16_path: str | Path, size: tuple[int, int], min_iou: float = 0.95
) -> tuple[float, float]:
    """(argmax-mask IoU agreement, max prob error) of fp16 vs fp32 on image-like inputs."""
    s32, s16 = cpu_session(fp32_path), cpu_session(fp16_path)
    fixed = s32.get_inputs()[0].shape[0]
    x = image_like_inputs(fixed if isinstance(fixed, int) else 4, size, seed=123)
    activation = metadata_of_session(s32).get("activation", "softmax")
    p32 = class_probs(s32.run(["probs"], {"image": x})[0], activation)  # binary: (1 - p, p)
    p16 = class_probs(s16.run(["probs"], {"image": x})[0].astype(np.float32), activation)
    num_classes = p32.shape[1]
    iou = mask_iou(p32.argmax(1), p16.argmax(1), num_classes)
    err = float(np.abs(p32 - p16).max())
    if not np.isfinite(err) or iou < min_iou:
        raise VerificationError(f"fp16 masks agree with fp32 at IoU {iou:.4f} < {min_iou} (max prob error {err:.2e})")
    return iou, err
