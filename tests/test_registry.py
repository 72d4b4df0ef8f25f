"""The backend registry: names and file types to backends, backend objects, plugins, refusals."""
from __future__ import annotations

import numpy as np
import pytest

from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.runtime.backends.registry import BACKENDS, backend_class, backend_names, open_backend
from edgeseg.core.errors import ModelError
from edgeseg.core.model_meta import ModelInfo
from edgeseg.runtime.segmenter import Segmenter


class ConstantBackend(Backend):
    """A backend written by a user: every pixel is 'gas-smoke' with probability 0.9."""

    name = "constant"
    suffixes = (".const",)

    def __init__(self) -> None:
        self.info = ModelInfo(input_size=(32, 32))
        self.calls = 0
        self.closed = False

    @classmethod
    def open(cls, model, options):  # noqa: ANN001
        return cls()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        probs = np.full((len(batch), 3, *batch.shape[2:]), 0.05, np.float32)
        probs[:, 1] = 0.9
        return probs

    def close(self) -> None:
        self.closed = True


def test_segmenter_accepts_a_backend_object():
    backend = ConstantBackend()
    with Segmenter(backend=backend) as seg:
        result = seg.segment(np.zeros((48, 64, 3), np.uint8))
    assert backend.calls == 1 and backend.closed
    assert result.mask.shape == (48, 64) and (result.mask == 1).all() and result.leak


def test_names_and_suffixes_map_to_backends(tiny_onnx):
    assert backend_names()[:3] == ["auto", "tensorrt", "onnxruntime"]
    assert BACKENDS["onnxruntime"].suffixes == (".onnx",) and ".engine" in BACKENDS["tensorrt"].suffixes
    be = open_backend(tiny_onnx, "auto", BackendOptions(threads=1))
    assert be.name == "onnxruntime" and be.info.input_size == (64, 64) and be.max_batch is None
    be.close()


def test_unknown_backend_is_a_one_line_model_error(tiny_onnx):
    with pytest.raises(ModelError, match="unknown backend 'cuda'.*auto, tensorrt, onnxruntime"):
        open_backend(tiny_onnx, "cuda")
    with pytest.raises(ModelError, match="model not found"):
        open_backend(tiny_onnx.with_name("absent.onnx"), "auto")


def test_pytorch_backend_is_a_plugin_found_by_entry_point(tmp_path):
    """The torch-side package registers its backend; edgeseg finds it without importing it by name."""
    torch = pytest.importorskip("torch", reason="the PyTorch backend needs the [export] extra")
    cls = backend_class("pytorch")
    assert cls.__module__ == "edgeseg_export.torch_backend" and issubclass(cls, Backend)
    from export.model import UNetResNet18

    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    torch.save(UNetResNet18(classes=3).state_dict(), ckpt)
    with Segmenter(ckpt, backend="pytorch") as seg:
        assert seg.backend_name == "pytorch" and seg.segment(np.zeros((64, 64, 3), np.uint8)).mask.shape == (64, 64)
