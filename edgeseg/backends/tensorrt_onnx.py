"""The ONNX a TensorRT build parses: an fp16 graph for strongly typed builds, and the ``labels``
output made parseable (TensorRT casts to UINT8 only from FP32/FP16).

Both are rewrites of a copy; the model on disk is never changed. Separate from the build steps in
:mod:`edgeseg.backends.tensorrt_build` because they are pure ONNX work, testable without TensorRT.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.errors import BuildError

LABEL_MODES = ("int32", "none", "keep")


# ----------------------------------------------------------------------------- fp16 ONNX (TRT 11)

def _fp16_onnx_for(onnx_path: Path, meta: dict[str, str], work_dir: Path) -> tuple[Path, str]:
    """An fp16-weights ONNX for a strongly typed build, and a note saying where it came from."""
    if onnx_path.name.endswith(".fp16.onnx") or meta.get("precision") == "fp16":
        return onnx_path, f"{onnx_path} is already fp16"
    from edgeseg.precision import fp16_sibling

    sibling = fp16_sibling(onnx_path)
    if sibling.is_file():
        return sibling, f"used {sibling} (the fp16 file beside it or the one it was derived from)"
    try:
        import onnx
        import onnxconverter_common  # noqa: F401  (checked here for the error message)
    except ImportError as exc:
        raise BuildError(
            f"TensorRT >= 11 builds strongly typed networks (no FP16 builder flag): need {sibling}. "
            f"Create it with 'edgeseg export onnx <ckpt> -o {onnx_path} --fp16' or pip install onnxconverter-common ({exc.name})"
        ) from exc
    proto = onnx.load(str(onnx_path))
    from edgeseg.onnx_precision import convert_to_fp16

    half, _ = convert_to_fp16(proto)
    dst = work_dir / (onnx_path.stem + ".fp16.onnx")
    onnx.save(half, str(dst))
    return dst, f"converted {onnx_path} to fp16 on the fly with onnxconverter-common -> {dst}"


def _prune_dead_nodes(graph: Any) -> int:
    """Drop nodes none of whose outputs is used by another node or a graph output."""
    removed = 0
    while True:
        needed = {o.name for o in graph.output}
        for node in graph.node:
            needed.update(node.input)
        dead = [n for n in graph.node if not any(o in needed for o in n.output)]
        if not dead:
            return removed
        for n in dead:
            graph.node.remove(n)
        removed += len(dead)


#: ops that move or reshape a tensor without changing its values: a Cast before them still decides the dtype
_SHAPE_OPS = frozenset({"Squeeze", "Unsqueeze", "Reshape", "Identity", "Flatten"})


def _labels_cast(graph: Any) -> Any:
    """The Cast that sets the ``labels`` dtype: its producer, or found through shape-only ops
    (a binary model's labels are ``Squeeze(Cast(p >= 0.5))``). None when there is no such Cast."""
    producers = {out: n for n in graph.node for out in n.output}
    node = producers.get("labels")
    while node is not None and node.op_type in _SHAPE_OPS:
        node = producers.get(node.input[0])
    return node if node is not None and node.op_type == "Cast" else None


def _labels_onnx_for(onnx_path: Path, mode: str, work_dir: Path) -> tuple[Path, str, str]:
    """(ONNX to parse, labels dtype the engine gets, note) for the ``labels`` output.

    edgeseg's exporter writes ``labels = Cast(ArgMax(probs), to=UINT8)`` by default. TensorRT's
    DataType docs (include/NvInferRuntimeBase.h, DataType::kUINT8, identical at v8.6.1, v10.3.0 and
    v11.1): "kUINT8 conversions are only supported for {kFLOAT, kHALF}"; an ArgMax output is an
    integer (INT64 in ONNX, INT32/INT64 in TensorRT), so that Cast may fail to build (JetPack 6.0's
    TensorRT 8.6.2 most likely). Mode "int32" rewrites the Cast to INT32 in a copy, "none" drops the
    output (the SDK argmaxes ``probs`` on the host anyway), "keep" parses the ONNX unchanged.
    """
    import onnx
    from onnx import TensorProto

    proto = onnx.load(str(onnx_path))  # with its weights: the copy is a complete model
    outs = {o.name: o for o in proto.graph.output}
    if "labels" not in outs:
        return onnx_path, "none", "no 'labels' output in the ONNX"
    out = outs["labels"]
    dtype = TensorProto.DataType.Name(out.type.tensor_type.elem_type).lower()
    if mode == "keep" or (mode == "int32" and dtype == "int32"):
        return onnx_path, dtype, f"labels output kept as {dtype} (as exported)"
    if mode == "none":
        proto.graph.output.remove(out)
        pruned = _prune_dead_nodes(proto.graph)
        note = f"labels output ({dtype}) dropped before parsing ({pruned} nodes pruned): argmax runs on the host"
        new_dtype = "none"
    else:
        producer = _labels_cast(proto.graph)
        if producer is None:
            raise BuildError(f"{onnx_path}: 'labels' ({dtype}) is not made by a Cast; build with --labels none or keep")
        for a in producer.attribute:
            if a.name == "to":
                a.i = TensorProto.INT32
        out.type.tensor_type.elem_type = TensorProto.INT32
        note = (f"labels output changed from {dtype} to int32 before parsing (TensorRT casts to UINT8 only "
                "from FP32/FP16)")
        new_dtype = "int32"
    dst = work_dir / f"{onnx_path.stem}.labels-{new_dtype}.onnx"
    onnx.save(proto, str(dst))
    return dst, new_dtype, note
