"""Graph-level precision rewrites of an ONNX model: fp32 -> fp16 and back, torch-free.

Why a module of its own, below the runtime: the runtime runs the bundled fp16 file as its fp32
twin (:func:`upcast_to_fp32`, via :mod:`edgeseg.runtime.derived`) and the TensorRT engine compiler needs
an fp16 graph for TensorRT 11's strongly typed builds (:func:`convert_to_fp16`); the exporter's
converter (:mod:`edgeseg.apps.fp16`) adds file writing and verification on top. None of them may
import the others' layer, so the rewrites themselves live here.

onnxconverter-common warns once per weight whose magnitude is below fp16's useful range (it
clamps them to +-1e-7): hundreds of lines for a trained net, none of them actionable. They are
counted and reported in one line instead.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from edgeseg.core.model_meta import metadata_of, set_metadata

# Resize scales must stay fp32 (ONNX spec); ArgMax output is an index, not a float
FP32_OPS = ["ArgMax", "Resize"]
FP16_CONVERTER_MISSING = "fp16 conversion needs onnxconverter-common: pip install onnxconverter-common"


def convert_to_fp16(proto: Any) -> tuple[Any, int]:
    """(fp16 model with fp32 inputs/outputs, number of tiny weights clamped to +-1e-7)."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ImportError(FP16_CONVERTER_MISSING) from exc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=FP32_OPS)
    clamped = sum("will be truncated" in str(w.message) for w in caught)
    for w in caught:  # anything else is news: pass it on
        if "will be truncated" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return half, clamped


def upcast_to_fp32(proto: Any) -> Any:
    """The fp32 twin of an fp16 model (what ``convert_to_fp16`` writes), torch-free, in place.

    FLOAT16 initializers / Constant tensors -> FLOAT; ``Cast(to=FLOAT16)`` -> ``Cast(to=FLOAT)``;
    FLOAT16 value_info / inputs / outputs -> FLOAT. Casts that are then float -> float (the
    converter's I/O and blocked-op casts) are removed, except where their output is a graph
    output. The weights are the fp16 values exactly (the fp16 rounding stays; nothing is lost
    or invented), computed in fp32: on CPUs without fast fp16 arithmetic that is the faster way to
    run them. Metadata: ``precision=fp32`` plus ``derived_from`` (the fp16 model's name).
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    FP16, FP32 = TensorProto.FLOAT16, TensorProto.FLOAT

    def up(t: Any) -> None:
        if t.data_type == FP16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))

    def fix_types(values: Any) -> None:
        for v in values:
            tt = v.type.tensor_type
            if tt.elem_type == FP16:
                tt.elem_type = FP32

    g = proto.graph
    for t in g.initializer:
        up(t)
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                up(a.t)
            if node.op_type == "Cast" and a.name == "to" and a.i == FP16:
                a.i = FP32
    for vals in (g.value_info, g.input, g.output):
        fix_types(vals)
    # float -> float casts: rewire their consumers to the cast's input and drop them
    float_names = {t.name for t in g.initializer if t.data_type == FP32}
    float_names |= {v.name for vals in (g.input, g.value_info, g.output) for v in vals
                    if v.type.tensor_type.elem_type == FP32}
    inferred = onnx.shape_inference.infer_shapes(proto)
    float_names |= {v.name for v in inferred.graph.value_info if v.type.tensor_type.elem_type == FP32}
    outputs = {o.name for o in g.output}
    rename: dict[str, str] = {}
    keep = []
    for node in g.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if (node.op_type == "Cast" and to == FP32 and node.input[0] in float_names
                and node.output[0] not in outputs):
            rename[node.output[0]] = node.input[0]
            continue
        keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    dropped = set(rename)
    kept_vi = [v for v in g.value_info if v.name not in dropped]
    del g.value_info[:]
    g.value_info.extend(kept_vi)
    meta = metadata_of(proto)
    meta["precision"] = "fp32"
    set_metadata(proto, meta)
    return proto
