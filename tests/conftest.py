"""Shared fixtures: a small random-init ONNX model (real export, real ONNX Runtime)."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch", reason="the [export] extra (torch) builds the test model")
    from export.model import UNetResNet18
    from export.onnx_export import DEFAULT_MEAN, DEFAULT_STD, build_metadata, export_onnx

    torch.manual_seed(0)
    model = UNetResNet18(classes=3).eval()
    meta = build_metadata(["background", "gas-smoke", "machine"], "softmax", (64, 64), DEFAULT_MEAN,
                          DEFAULT_STD, "0" * 64, "random-init")
    return export_onnx(model, tmp_path_factory.mktemp("model") / "tiny.onnx", meta, size=(64, 64))
