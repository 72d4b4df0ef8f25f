"""Export the U-Net to ONNX with metadata, then prove the file computes what PyTorch computes.

An export is only useful if it is verified: we run ``onnx.checker`` and compare ONNX Runtime to
PyTorch on random noise *and* on smooth, image-like inputs (noise alone hides errors in the
softmax of confident pixels). The FP16 variant keeps float32 inputs/outputs (what TensorRT 11's
strongly typed builds and DeepStream users feed) and is judged by argmax-mask agreement
(``edgeseg.apps.fp16``, torch-free, shared with the engine builder).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch

from edgeseg.apps.fp16 import VerificationError, convert_fp16, cpu_session, image_like_inputs, verify_fp16
from edgeseg.core.model_meta import DEFAULT_MEAN, DEFAULT_STD, build_metadata, set_metadata

from .model import STRIDE, WithLabels

__all__ = [  # the torch-free pieces are re-exported for callers of the exporter
    "DEFAULT_MEAN", "DEFAULT_STD", "ExportReport", "VerificationError", "build_metadata", "check_size",
    "convert_fp16", "export_onnx", "image_like_inputs", "verify_against_torch", "verify_fp16",
]


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
    tolerance: float = 1e-4  # absolute part
    rtol: float = 5e-5  # relative part, times max |PyTorch output| of each input
    tolerance_used: float = float("nan")  # the largest per-input tolerance actually applied
    activation: str = "softmax"
    decoder_interpolation: str = "nearest"
    fp16_path: str | None = None
    fp16_mask_iou: float | None = None
    fp16_max_abs_error: float | None = None
    size_mb: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def check_size(height: int, width: int) -> None:
    """The encoder downsamples 5 times; other sizes break the skip concatenations."""
    if height % STRIDE or width % STRIDE or height <= 0 or width <= 0:
        raise ValueError(
            f"input size {height}x{width} is not a positive multiple of {STRIDE}; "
            f"use e.g. {max(STRIDE, round(height / STRIDE) * STRIDE)}x"
            f"{max(STRIDE, round(width / STRIDE) * STRIDE)}"
        )


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
    set_metadata(proto, metadata)
    proto.producer_name = "edgeseg"
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out), full_check=True)
    return out


def allowed_error(ref: np.ndarray, atol: float, rtol: float) -> float:
    """``atol + rtol * max|ref|``: fp32 rounding grows with the outputs' size, so logits of +-20
    (``--activation none``) get more room than probabilities in [0, 1]."""
    return float(atol + rtol * float(np.abs(ref).max()))


def verify_against_torch(
    model: torch.nn.Module,
    onnx_path: str | Path,
    size: tuple[int, int],
    batches: tuple[int, ...] = (1, 4),
    tolerance: float = 1e-4,
    rtol: float = 5e-5,
    tolerances: dict[str, float] | None = None,
) -> dict[str, float]:
    """Max |torch - ORT| of ``probs`` per input kind; raises VerificationError where it exceeds
    ``tolerance + rtol * max|torch output|`` of that input (filled into ``tolerances`` if given)."""
    sess = cpu_session(onnx_path)
    fixed = sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int):
        batches = (fixed,)
    errors: dict[str, float] = {}
    allowed: dict[str, float] = {} if tolerances is None else tolerances
    failures = []
    for b in batches:
        cases = {
            f"random_b{b}": np.random.default_rng(b).standard_normal((b, 3, *size)).astype(np.float32),
            f"image_like_b{b}": image_like_inputs(b, size, seed=b),
        }
        for name, x in cases.items():
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            got = sess.run(["probs"], {"image": x})[0]
            diff = np.abs(ref.astype(np.float64) - got)
            errors[name] = float(diff.max()) if np.isfinite(diff).all() else float("inf")
            allowed[name] = allowed_error(ref, tolerance, rtol)
            if not errors[name] <= allowed[name]:
                where = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf))), diff.shape)
                failures.append(
                    f"{errors[name]:.2e} > {allowed[name]:.2e} on {name} at (n,c,y,x)={tuple(int(i) for i in where)} "
                    f"(PyTorch {float(ref[where]):.6g}, ONNX Runtime {float(got[where]):.6g}, max |output| "
                    f"{float(np.abs(ref).max()):.3g})"
                )
    if failures:
        raise VerificationError(
            f"ONNX Runtime's 'probs' differs from PyTorch beyond the tolerance ({tolerance:.0e} + {rtol:.0e} x "
            f"max |output|): {'; '.join(failures)}; the file was not written. If this is rounding noise, raise "
            "--tolerance/--rtol; otherwise the exported graph computes something else"
        )
    return errors
