"""PyTorch eager as an edgeseg backend: the checkpoint itself runs inside the SDK pipeline.

Why a backend: the benchmark suite compares *deployments*. Swapping only the backend keeps
preprocessing, post-processing and the timing code identical, so differences are the network
runtime's alone. It lives on the torch side of the package line and reaches the SDK through the
``edgeseg.runtime.backends`` entry point (``edgeseg`` never imports torch).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.core.errors import ModelError
from edgeseg.core.model_meta import ModelInfo, read_model_info

from .checkpoint import CheckpointError, load_model


class TorchBackend(Backend):
    """The U-Net loaded from a checkpoint (weights only, CPU)."""

    name = "pytorch"
    suffixes = (".safetensors", ".pt", ".pth", ".ckpt")

    @classmethod
    def open(cls, model: Path, options: BackendOptions) -> "TorchBackend":
        """Normalisation and sizes come from the sibling ``.onnx`` exported from it, when there is one."""
        onnx = Path(model).with_suffix(".onnx")
        return cls(model, read_model_info(onnx) if onnx.is_file() else None, options.threads)

    def __init__(self, checkpoint: str | Path, info: ModelInfo | None = None, threads: int | None = None) -> None:
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        try:
            names = list(info.classes) if info else None
            self.model, self.meta = load_model(  # None: what the checkpoint states, else its class count's default
                checkpoint, names, info.activation if info else None,  # type: ignore[arg-type]
                info.metadata.get("decoder_interpolation") if info else None)
        except CheckpointError as exc:
            raise ModelError(str(exc)) from exc
        self.info = info or ModelInfo(classes=tuple(self.meta["classes"]), activation=str(self.meta["activation"]),
                                      output_channels=1 if self.meta["num_classes"] == 1 else 0)
        self.threads = torch.get_num_threads()
        self.providers = (f"torch {torch.__version__} CPU",)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(np.ascontiguousarray(batch))).numpy()
