"""Check a TensorRT engine's masks against ONNX Runtime fp32 on real images (``edgeseg verify``).

Why a reference file: the engine runs only on the GPU device, the fp32 reference runs anywhere, so
the reference can be made on a CPU box (:func:`save_reference`) and compared on the device later.
Masks are compared (argmax agreement), not raw probabilities: that is what a user of the engine sees.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeseg.apps.fp16 import cpu_session
from edgeseg.core.metrics import mask_iou
from edgeseg.core.model_meta import ModelInfo, read_model_info
from edgeseg.runtime.postprocess import class_probs
from edgeseg.runtime.preprocess import preprocess


class VerifyError(ValueError):
    """The inputs cannot be compared (no images, a reference made from other images); one line."""


@dataclass
class VerifyBatch:
    """The test images, preprocessed the way the model expects, and their names (relative to the folder)."""

    names: list[str]
    x: np.ndarray
    info: ModelInfo


def read_images(data: Path, limit: int) -> tuple[list[str], list[np.ndarray]]:
    """Up to ``limit`` readable images of ``data`` (recursive) and their relative names."""
    import cv2

    from edgeseg.core.files import list_images

    if not data.is_dir():
        raise VerifyError(f"--data {data} is not a folder of images")
    names, frames = [], []
    for p in list_images(data, recursive=True):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is not None:
            names.append(str(p.relative_to(data)))
            frames.append(img)
        if len(frames) >= limit:
            break
    if not frames:
        raise VerifyError(f"no readable images in {data}")
    return names, frames


def prepare(onnx_model: Path, data: Path, limit: int) -> VerifyBatch:
    """The batch both sides run: ``data``'s images at ``onnx_model``'s input size and normalisation."""
    info = read_model_info(onnx_model)
    names, frames = read_images(data, limit)
    return VerifyBatch(names, preprocess(frames, info.input_size, info.mean, info.std)[0], info)


def onnx_reference(onnx_model: Path, batch: VerifyBatch) -> np.ndarray:
    """ONNX Runtime fp32 (CPU) class probabilities, one image per call (any batch profile works)."""
    sess = cpu_session(onnx_model)
    x = batch.x
    probs = np.concatenate([sess.run(["probs"], {"image": x[i : i + 1]})[0] for i in range(len(x))])
    return class_probs(probs, batch.info.activation)  # binary models: (1 - p, p)


def save_reference(path: Path, probs: np.ndarray, batch: VerifyBatch) -> None:
    """Write the reference (fp16 probabilities, uint8 masks, image names, input size) as ``.npz``."""
    np.savez_compressed(path, probs=probs.astype(np.float16), masks=probs.argmax(1).astype(np.uint8),
                        names=np.array(batch.names), input_size=np.array(batch.info.input_size))


def load_reference(path: Path, batch: VerifyBatch, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, masks) of a saved reference; :class:`VerifyError` when it is of other images."""
    ref = np.load(path)
    if list(ref["names"]) != batch.names:
        raise VerifyError(f"{path} was made from other images than {data}; re-create it with --save-reference")
    return ref["probs"].astype(np.float32), ref["masks"]


def compare_engine(
    engine: Path, onnx_model: Path, batch: VerifyBatch, ref_probs: np.ndarray, ref_masks: np.ndarray,
    reference: Optional[Path],
) -> dict[str, Any]:
    """Run the engine on the batch and report its agreement with the reference.

    Raises the backend's ``BackendUnavailable`` / ``EngineMismatch`` when the engine cannot run here.
    """
    from edgeseg.runtime.backends.tensorrt_backend import TensorRTBackend

    be = TensorRTBackend(engine, onnx_path=onnx_model)
    probs = class_probs(be.infer(batch.x), batch.info.activation)
    masks = probs.argmax(1)
    return {
        "images": len(batch.names), "mask_iou_agreement": mask_iou(ref_masks, masks, probs.shape[1]),
        "pixel_agreement": float((masks == ref_masks).mean()),
        "max_prob_error": float(np.abs(probs - ref_probs).max()), "gpu_ms_last_batch": be.gpu_timing_ms,
        "precision": be.meta.precision, "reference": str(reference) if reference else "onnxruntime fp32",
    }
