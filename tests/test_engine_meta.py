"""The TensorRT engine sidecar (edgeseg.core.model_meta): round trip, old sidecars, refusals, cache keys.

Pure file logic: runs everywhere, no TensorRT, no GPU.
"""
from __future__ import annotations

import json

import pytest

from edgeseg.core.model_meta import (EngineMismatch, cache_key, check_compatible, engine_cache_path,
                                read_sidecar, sidecar_path, write_sidecar)
from fakes import engine_meta as _meta
from tiny_model import make_tiny_onnx


def test_sidecar_roundtrip(tmp_path):
    m = _meta(onnx_metadata={"input_size": "[256, 256]"})
    write_sidecar(tmp_path / "m.engine", m)
    assert (tmp_path / "m.engine.json").is_file()
    assert read_sidecar(tmp_path / "m.engine") == m


def test_sidecar_without_labels_dtype_still_reads(tmp_path):
    d = _meta().to_dict()
    del d["labels_dtype"]
    sidecar_path(tmp_path / "m.engine").write_text(json.dumps(d))
    assert read_sidecar(tmp_path / "m.engine").labels_dtype == ""


def test_mismatch_refusal_messages(tmp_path):
    m = _meta()
    check_compatible(m, "10.3.0", "Orin", "8.7")  # same: ok
    # another GPU model is refused even with the same compute capability (NVIDIA: plans are
    # compatible "only with the type of device where they were built")
    with pytest.raises(EngineMismatch, match=r"GPU Orin \(sm 8.7\) at build vs Jetson AGX Orin 64GB \(sm 8.7\) here"):
        check_compatible(m, "10.3.0", "Jetson AGX Orin 64GB", "8.7")
    with pytest.raises(EngineMismatch) as e:
        check_compatible(m, "10.3.0", "NVIDIA GeForce RTX 4090", "8.9", engine_path="m.engine", onnx_path="m.onnx")
    msg = str(e.value)
    assert "\n" not in msg and "RTX 4090" in msg and "8.9" in msg and "rebuild with: edgeseg build m.onnx -o m.engine" in msg
    with pytest.raises(EngineMismatch, match=r"TensorRT 10.3.0 at build vs 8.6.1 here.*rebuild with: edgeseg build"):
        check_compatible(m, "8.6.1", "Orin", "8.7")
    with pytest.raises(EngineMismatch, match="no sidecar"):
        read_sidecar(tmp_path / "missing.engine")


# ----------------------------------------------------------------------------- (c) cache keys

def test_cache_keys(tmp_path):
    base = ("ab" * 32, "fp16", (1, 4, 8), "10.3.0", "8.7")
    k = cache_key(*base)
    assert k == cache_key(*base) and len(k) == 16 and int(k, 16) >= 0
    variants = [("cd" * 32, *base[1:]), (base[0], "int8", *base[2:]), (*base[:2], (1, 4, 16), *base[3:]),
                (*base[:3], "10.4.0", base[4]), (*base[:4], "8.9")]
    keys = {cache_key(*v) for v in variants}
    assert len(keys) == len(variants) and k not in keys
    onnx_path = make_tiny_onnx(tmp_path / "m.onnx")
    p = engine_cache_path(tmp_path / "cache", onnx_path, "fp16", (1, 4, 8), "10.3.0", "8.7")
    assert p == engine_cache_path(tmp_path / "cache", onnx_path, "fp16", (1, 4, 8), "10.3.0", "8.7")
    assert p.parent == tmp_path / "cache" and p.name.startswith("m.fp16.") and p.suffix == ".engine"
    other_gpu = engine_cache_path(tmp_path / "cache", onnx_path, "fp16", (1, 4, 8), "10.3.0", "8.7", None, "Orin Nano")
    assert other_gpu != p and other_gpu != engine_cache_path(tmp_path / "cache", onnx_path, "fp16", (1, 4, 8),
                                                             "10.3.0", "8.7", None, "AGX Orin")
