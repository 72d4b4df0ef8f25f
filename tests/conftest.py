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


@pytest.fixture(autouse=True)
def _backend_choice_cache(tmp_path_factory, monkeypatch):
    """``auto``'s OpenVINO-vs-ONNX Runtime measurement is off in tests (so ``auto`` stays on ONNX
    Runtime, deterministic) and its cache never touches ~/.cache; tests of it turn it back on."""
    monkeypatch.setenv("EDGESEG_CACHE_DIR", str(tmp_path_factory.mktemp("edgeseg-cache")))
    monkeypatch.setenv("EDGESEG_AUTO_MEASURE", "0")
