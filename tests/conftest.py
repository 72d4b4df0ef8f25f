"""Shared fixtures: a small torch-free ONNX model (real ONNX Runtime, no mock)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tiny_model import make_tiny_onnx

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A 3-class softmax model at 64x64 with edgeseg metadata; needs no torch."""
    return make_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx")
