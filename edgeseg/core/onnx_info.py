"""Describe an ONNX model without running it: I/O, edgeseg metadata, parameters, GFLOPs.

Used by ``edgeseg inspect`` so a user can check what a file is before deploying it. Needs only
the ``onnx`` package (no torch, no onnxruntime).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.core.model_meta import metadata_of


def _dims(value_info: Any) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def _elem_type(value_info: Any) -> str:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type).name


def conv_gflops(model: Any, height: int, width: int) -> float:
    """GFLOPs (2 x multiply-adds) of the Conv layers for one image of the given size."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inp = m.graph.input[0]
    for dim, val in zip(inp.type.tensor_type.shape.dim, (1, 3, height, width)):
        dim.Clear()
        dim.dim_value = val
    m = onnx.shape_inference.infer_shapes(m)
    shapes = {vi.name: _dims(vi) for vi in list(m.graph.value_info) + list(m.graph.output)}
    inits = {t.name: tuple(t.dims) for t in m.graph.initializer}
    flops = 0.0
    for node in m.graph.node:
        if node.op_type != "Conv" or node.input[1] not in inits:
            continue
        cout, cin_per_group, kh, kw = inits[node.input[1]]
        out = shapes.get(node.output[0])
        if not out or any(not isinstance(d, int) for d in out):
            continue
        flops += 2.0 * cout * out[2] * out[3] * cin_per_group * kh * kw
    return flops / 1e9


def describe(path: str | Path, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """A JSON-ready description of the model; ``size`` defaults to its metadata input size."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ValueError(f"{path}: not a valid ONNX file ({exc})") from exc
    meta = metadata_of(model)
    decoded: dict[str, Any] = {}
    for k, v in meta.items():
        try:
            decoded[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            decoded[k] = v
    if size is None:
        size = tuple(decoded.get("input_size", (256, 256)))  # type: ignore[assignment]
    params = int(sum(np.prod(t.dims) for t in model.graph.initializer))
    return {
        "path": str(path),
        "size_mb": round(path.stat().st_size / 1e6, 2),
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
        "inputs": [
            {"name": i.name, "shape": _dims(i), "dtype": _elem_type(i)} for i in model.graph.input
        ],
        "outputs": [
            {"name": o.name, "shape": _dims(o), "dtype": _elem_type(o)} for o in model.graph.output
        ],
        "metadata": decoded,
        "params": params,
        "gflops": round(conv_gflops(model, *size), 3),
        "gflops_at": list(size),
    }
