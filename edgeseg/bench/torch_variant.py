"""PyTorch eager as a benchmark variant, run inside the same SDK pipeline as the ONNX models.

Why inside the Segmenter: the suite compares *deployments*. Swapping only the backend keeps
preprocessing, post-processing and the timing code identical, so differences are the
network runtime's alone. torch is imported here only, never on the runtime path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.backends.base import ModelInfo


def torch_unavailable_reason() -> str | None:
    """Why PyTorch eager cannot run here (None when it can)."""
    try:
        import torch  # noqa: F401
        import export.checkpoint  # noqa: F401
    except ImportError as exc:
        return f"PyTorch variant needs the [export] extra (torch): {exc}"
    return None


class TorchBackend:
    """``Backend`` protocol over the U-Net loaded from a checkpoint (weights only, CPU)."""

    name = "pytorch"

    def __init__(self, checkpoint: str | Path, info: ModelInfo, threads: int | None = None) -> None:
        import torch

        from export.checkpoint import load_model

        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        self.model, self.meta = load_model(checkpoint, list(info.classes), info.activation)  # type: ignore[arg-type]
        self.info = info
        self.threads = torch.get_num_threads()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(np.ascontiguousarray(batch))).numpy()


def torch_segmenter(onnx_model: str | Path, checkpoint: str | Path, threads: int | None = None) -> Any:
    """A Segmenter whose network runs in PyTorch; metadata (size, mean/std, classes) from the ONNX.

    The checkpoint must be the one the ONNX model was exported from, otherwise the comparison
    is between two different networks (the suite reports mask agreement to reveal that).
    """
    from edgeseg.segmenter import Segmenter

    seg = Segmenter(onnx_model, backend="onnxruntime", threads=threads)
    seg.backend = TorchBackend(checkpoint, seg.info, threads)
    return seg
